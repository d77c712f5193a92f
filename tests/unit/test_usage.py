"""What a task used: tokens summed over its transcript entries, and the footer's cost."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentq.agents.status import Login
from agentq.agents.usage import (
    Tokens,
    has_reply,
    task_start,
    task_usage,
    usage_cost,
    usage_footer,
)
from agentq.core.pricing import DEFAULT_PRICES, Price

CORPUS = Path(__file__).resolve().parent.parent / "fixtures" / "corpus"
HEADER = "[agentq task t.md · project proj · attempt 1]"
SONNET = "claude-sonnet-4-5-20250929"


def user(text: str, at: str = "2026-01-01T10:00:00.000Z", **extra: Any) -> dict[str, Any]:
    """A user entry."""
    return {"type": "user", "message": {"role": "user", "content": text}, "timestamp": at, **extra}


def reply(
    msg_id: str,
    tokens: tuple[int, int, int, int] = (10, 5, 100, 20),
    model: str = SONNET,
    at: str = "2026-01-01T10:00:01.000Z",
    **extra: Any,
) -> dict[str, Any]:
    """An assistant entry of reply ``msg_id`` with (input, output, cache read, cache write)."""
    usage = dict(
        zip(
            (
                "input_tokens",
                "output_tokens",
                "cache_read_input_tokens",
                "cache_creation_input_tokens",
            ),
            tokens,
            strict=True,
        )
    )
    message = {"id": msg_id, "model": model, "role": "assistant", "usage": usage, "content": []}
    return {"type": "assistant", "message": message, "timestamp": at, **extra}


PROMPT = user(f"{HEADER}\n\nDo the thing.")
ERROR = reply("e1", (0, 0, 0, 0), "<synthetic>", isApiErrorMessage=True)


@pytest.mark.parametrize(
    ("entries", "agents", "expected"),
    [
        ([PROMPT, reply("m1")], [], (Tokens(10, 5, 100, 20), 1, 0)),
        (
            [reply("old", (999, 999, 0, 0)), PROMPT, reply("m1")],
            [],
            (Tokens(10, 5, 100, 20), 1, 0),
        ),
        ([PROMPT, reply("m1"), reply("m1")], [], (Tokens(10, 5, 100, 20), 1, 0)),
        ([PROMPT, reply("m1"), ERROR, reply("m2")], [], (Tokens(20, 10, 200, 40), 2, 0)),
        (
            [PROMPT, reply("m1"), {"type": "cost-state", "costUSD": 9.9}, {"type": "api-request"}],
            [],
            (Tokens(10, 5, 100, 20), 1, 0),
        ),
        (
            [PROMPT, reply("m1"), user("The usage limit interrupted…"), reply("m2")],
            [],
            (Tokens(20, 10, 200, 40), 2, 0),
        ),
        (
            [PROMPT, reply("m1")],
            [[reply("a1", (1, 2, 3, 4), "claude-haiku-4-5")]],
            (Tokens(11, 7, 103, 24), 2, 1),
        ),
        (
            [PROMPT, reply("m1")],
            [[reply("a0", (1, 2, 3, 4), at="2026-01-01T09:00:00.000Z")]],
            (Tokens(10, 5, 100, 20), 1, 0),
        ),
    ],
    ids=[
        "one reply after our prompt",
        "entries before our prompt are another task's",
        "a reply's several entries count once",
        "an API error entry used nothing",
        "2.1.332's cost-state and api-request entries are no replies",
        "the turns resumed after a swap count (same file)",
        "the task's background agent counts too",
        "an agent transcript from before the task is not the task's",
    ],
)
def test_task_usage_sums_the_task_entries(
    entries: list[dict[str, Any]],
    agents: list[list[dict[str, Any]]],
    expected: tuple[Tokens, int, int],
) -> None:
    """Only this task's replies are summed, each once."""
    usage = task_usage(entries, agents, HEADER)
    assert usage is not None
    assert (usage.total, usage.replies, usage.agents) == expected


def test_the_last_delivery_of_the_prompt_starts_the_task() -> None:
    """With recycle off a session runs several tasks: the task starts at its own prompt."""
    other = user("[agentq task other.md · project proj · attempt 1]")
    entries = [PROMPT, reply("m1"), other, reply("m2"), PROMPT, reply("m3")]
    assert task_start(entries, HEADER) == 4
    assert task_usage([reply("m1")], [], HEADER) is None


def test_the_captured_background_agent_transcript_is_summed() -> None:
    """Claude Code 2.1.332's capture: the main turn, the agent's follow-up turn, no errors."""
    lines = (CORPUS / "v2332_53_transcript_background_agent.txt").read_text().splitlines()
    entries = [json.loads(line) for line in lines if line.strip()]
    usage = task_usage(entries, [], "please start BGAGENT now")
    assert usage is not None and usage.replies == 3
    assert usage.total == Tokens(151 + 1 + 309, 1 + 4 + 4, 0, 0)
    assert [model for model, _ in usage.models] == ["claude-opus-5-5"]


@pytest.mark.parametrize(
    ("login", "cost"),
    [(Login.SUBSCRIBER, "$0.0009 (API-equivalent)"), (Login.API_KEY, "$0.0009")],
    ids=["a subscription's cost is API-equivalent", "an API key's cost is real"],
)
def test_the_footer_names_model_tokens_and_cost(login: Login, cost: str) -> None:
    """Model, tokens and the cost at API prices (3/15/0.3/3.75 per million for Sonnet 4.5)."""
    got_cost, details = usage_footer([PROMPT, reply("m1", (100, 20, 1000, 10))], [], HEADER, login)
    # 100·3 + 20·15 + 1000·0.3 + 10·3.75 = 937.5 per million
    assert got_cost == cost
    assert dict(details)["model"] == SONNET
    assert dict(details)["tokens"] == (
        "input 100 · output 20 · cache read 1,000 · cache write 10 (1 reply)"
    )


def test_an_unpriced_model_makes_the_cost_unknown_never_zero() -> None:
    """A model missing from the table: the cost is unknown and says which model."""
    entries = [PROMPT, reply("m1", model="claude-opus-5-5")]
    cost, details = usage_footer(entries, [], HEADER, Login.SUBSCRIBER)
    assert cost == "unknown (no price for claude-opus-5-5)"
    assert dict(details)["model"] == "claude-opus-5-5"
    assert usage_footer([reply("m1")], [], HEADER, Login.SUBSCRIBER) == (
        "unknown (no transcript of the task)",
        (),
    )


_counts = st.tuples(*[st.integers(0, 10**6)] * 4)
_replies = st.lists(st.tuples(st.sampled_from(["m1", "m2", "m3", "m4"]), _counts), max_size=12)


def _entries(items: Sequence[tuple[str, tuple[int, int, int, int]]]) -> list[dict[str, Any]]:
    return [reply(msg_id, counts) for msg_id, counts in items]


def _by_id(items: Sequence[tuple[str, tuple[int, int, int, int]]]) -> Mapping[str, Tokens]:
    last: dict[str, Tokens] = {}
    for msg_id, counts in items:
        last[msg_id] = Tokens(*counts)
    return last


@given(_replies, st.randoms())
def test_the_sum_is_each_reply_once_in_any_order(
    items: list[tuple[str, tuple[int, int, int, int]]], rnd: Any
) -> None:
    """Whatever the order of distinct replies and however often a reply repeats, each counts
    once, and the total is the sum of the replies' usages."""
    distinct = list(_by_id(items).items())
    shuffled = [(k, (t.input, t.output, t.cache_read, t.cache_write)) for k, t in distinct]
    rnd.shuffle(shuffled)
    repeated = shuffled + shuffled[: len(shuffled) // 2]
    usage = task_usage([PROMPT, *_entries(repeated)], [], HEADER)
    assert usage is not None and usage.replies == len(distinct)
    expected = Tokens()
    for _, tokens in distinct:
        expected += tokens
    assert usage.total == expected


@given(_replies, _replies)
def test_entries_before_the_prompt_never_count(
    before: list[tuple[str, tuple[int, int, int, int]]],
    after: list[tuple[str, tuple[int, int, int, int]]],
) -> None:
    """What came before our prompt is another task's, whatever it holds."""
    renamed = [(f"old-{k}", c) for k, c in before]
    with_history = task_usage([*_entries(renamed), PROMPT, *_entries(after)], [], HEADER)
    alone = task_usage([PROMPT, *_entries(after)], [], HEADER)
    assert with_history == alone


@given(_counts)
def test_the_cost_is_never_negative_and_zero_only_for_no_tokens(
    counts: tuple[int, int, int, int],
) -> None:
    """Priced tokens cost something; no tokens cost nothing; never below zero."""
    usage = task_usage([PROMPT, reply("m1", counts)], [], HEADER)
    assert usage is not None
    cost, unpriced = usage_cost(usage, {"claude-sonnet-4-5": Price(3.0, 15.0, 0.3, 3.75)})
    assert unpriced == [] and cost is not None and cost >= 0
    assert (cost == 0) == (sum(counts) == 0)
    assert usage_cost(usage, DEFAULT_PRICES)[0] == pytest.approx(cost)


def test_has_reply_finds_the_hooks_reply_by_its_first_line() -> None:
    """The footer waits for the transcript to hold the reply the Stop hook quoted."""
    said = {"type": "assistant", "message": {"content": [{"type": "text", "text": "Done.\nAll."}]}}
    asked = {"type": "user", "message": {"content": "Done."}}
    assert has_reply([asked, said], "Done.\nAll.  \n")
    assert has_reply([said], "  Done.")
    assert not has_reply([asked], "Done.")
    assert not has_reply([said], "Not yet.")
