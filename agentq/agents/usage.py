"""What a task used: its tokens per model, summed over its transcript entries, and their cost.

Pure: transcript entries (parsed JSONL objects) in, numbers and footer rows out; reading the
files is :mod:`agentq.agents.transcript`'s. What counts as the task's:

- the session transcript from our prompt's submission on (the last user entry that starts
  with the prompt's first line), to its end: resumed turns after a swap append to the same
  file, so they count too;
- the transcripts of the agents the task's turns started (``<session>/subagents/*.jsonl``),
  their entries from that submission's time on: their tokens are the task's too;
- only ``assistant`` entries with a ``message.usage``; an API error entry (model
  ``<synthetic>``) used nothing. Claude Code writes one entry per content block of a reply,
  each with the whole reply's usage, so a reply counts once (by ``message.id``, else its
  ``requestId``). 2.1.332's ``api-request*`` and ``cost-state`` entries are not replies and
  are not counted (``cost-state`` would count a second time what the replies say).

The cost is at API prices (:mod:`agentq.core.pricing`): real for an API-key login, labelled
"API-equivalent" otherwise (a subscription is not billed per token); ``unknown`` when a
model used has no price, never $0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from agentq.agents.status import Login
from agentq.core.pricing import DEFAULT_PRICES, PriceLike, cost_anthropic, count_tokens, find_price

SYNTHETIC_MODEL = "<synthetic>"
UNKNOWN_MODEL = "unknown"

Entry = Mapping[str, object]
Detail = tuple[str, str]


@dataclass(frozen=True)
class Tokens:
    """Token counts in Anthropic's terms (``input`` excludes cache reads and writes)."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0

    def __add__(self, other: Tokens) -> Tokens:
        return Tokens(
            self.input + other.input,
            self.output + other.output,
            self.cache_read + other.cache_read,
            self.cache_write + other.cache_write,
        )

    @classmethod
    def of(cls, usage: Mapping[str, object]) -> Tokens:
        """The counts of one reply's ``usage`` object."""
        return cls(
            count_tokens(usage, "input_tokens"),
            count_tokens(usage, "output_tokens"),
            count_tokens(usage, "cache_read_input_tokens"),
            count_tokens(usage, "cache_creation_input_tokens"),
        )

    def as_usage(self) -> dict[str, object]:
        """The counts as an Anthropic ``usage`` object (for the cost formula)."""
        return {
            "input_tokens": self.input,
            "output_tokens": self.output,
            "cache_read_input_tokens": self.cache_read,
            "cache_creation_input_tokens": self.cache_write,
        }


@dataclass(frozen=True)
class TaskUsage:
    """A task's tokens per model (first used first), its replies, and the agents counted."""

    models: tuple[tuple[str, Tokens], ...] = ()
    replies: int = 0
    agents: int = 0

    @property
    def total(self) -> Tokens:
        """Every model's tokens together."""
        total = Tokens()
        for _, tokens in self.models:
            total += tokens
        return total


def entry_text(entry: Entry) -> str:
    """The text of a transcript entry's message (a string, or its text blocks joined)."""
    message = entry.get("message")
    content = message.get("content") if isinstance(message, Mapping) else None
    if isinstance(content, str):
        return content
    blocks = content if isinstance(content, list) else []
    texts = [b.get("text") for b in blocks if isinstance(b, Mapping)]
    return "\n".join(text for text in texts if isinstance(text, str))


def has_reply(entries: Iterable[Entry], text: str) -> bool:
    """Whether an assistant entry says ``text`` (the transcript has caught up with a turn).

    Compared by first line: a hook's copy of a reply and the transcript's may join blocks
    or trail whitespace differently.
    """
    wanted = _first_line(text)
    return any(
        entry.get("type") == "assistant" and _first_line(entry_text(entry)) == wanted
        for entry in entries
    )


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0].strip() if lines else ""


def task_start(entries: Sequence[Entry], first_line: str) -> int | None:
    """The index of the task's prompt: the last user entry starting with ``first_line``."""
    if not first_line:
        return None
    for index in range(len(entries) - 1, -1, -1):
        entry = entries[index]
        if entry.get("type") == "user" and entry_text(entry).startswith(first_line):
            return index
    return None


def replies(entries: Iterable[Entry]) -> dict[str, tuple[str, Tokens]]:
    """Each reply's model and tokens, by reply id (a reply's several entries count once)."""
    found: dict[str, tuple[str, Tokens]] = {}
    for entry in entries:
        message = entry.get("message")
        if entry.get("type") != "assistant" or entry.get("isApiErrorMessage") is True:
            continue
        if not isinstance(message, Mapping) or not isinstance(message.get("usage"), Mapping):
            continue
        model = message.get("model")
        model = model if isinstance(model, str) and model else UNKNOWN_MODEL
        if model == SYNTHETIC_MODEL:
            continue
        key = message.get("id") or entry.get("requestId") or entry.get("uuid")
        usage = message["usage"]
        if isinstance(key, str) and key and isinstance(usage, Mapping):
            found[key] = (model, Tokens.of(usage))
        elif isinstance(usage, Mapping):
            found[f"#{len(found)}"] = (model, Tokens.of(usage))
    return found


def task_usage(
    main: Sequence[Entry], agents: Sequence[Sequence[Entry]], first_line: str
) -> TaskUsage | None:
    """What the task whose prompt starts with ``first_line`` used; None when it is not found.

    ``main`` is the session transcript, ``agents`` the transcripts of its agents.
    """
    start = task_start(main, first_line)
    if start is None:
        return None
    since = _time(main[start].get("timestamp"))
    found = replies(main[start:])
    counted = 0
    for transcript in agents:
        mine = [e for e in transcript if _at_or_after(e.get("timestamp"), since)]
        theirs = replies(mine)
        counted += bool(theirs)
        found.update({key: value for key, value in theirs.items() if key not in found})
    models: dict[str, Tokens] = {}
    for model, tokens in found.values():
        models[model] = models.get(model, Tokens()) + tokens
    return TaskUsage(tuple(models.items()), len(found), counted)


def usage_cost(
    usage: TaskUsage, prices: Mapping[str, PriceLike] = DEFAULT_PRICES
) -> tuple[float | None, list[str]]:
    """The cost at API prices, and the models without a price (then the cost is None)."""
    total, unpriced = 0.0, []
    for model, tokens in usage.models:
        price = find_price(model, table=prices)
        if price is None:
            unpriced.append(model)
            continue
        total += cost_anthropic(tokens.as_usage(), price)
    return (None if unpriced else total), unpriced


def usage_footer(
    main: Sequence[Entry],
    agents: Sequence[Sequence[Entry]],
    first_line: str,
    login: Login,
    prices: Mapping[str, PriceLike] = DEFAULT_PRICES,
) -> tuple[str, tuple[Detail, ...]]:
    """The footer's cost and its ``model`` and ``tokens`` rows for a task.

    The cost is ``unknown`` (and no rows) when the task's prompt is not in the transcript.
    """
    usage = task_usage(main, agents, first_line)
    if usage is None:
        return "unknown (no transcript of the task)", ()
    total = usage.total
    tokens = (
        f"input {total.input:,} · output {total.output:,} · cache read {total.cache_read:,}"
        f" · cache write {total.cache_write:,} ({usage.replies} repl"
        + ("y" if usage.replies == 1 else "ies")
    )
    if usage.agents:
        tokens += f"; {usage.agents} agent transcript(s) included"
    details = [
        ("model", ", ".join(model for model, _ in usage.models) or "none"),
        ("tokens", tokens + ")"),
    ]
    cost, unpriced = usage_cost(usage, prices)
    if cost is None:
        return f"unknown (no price for {', '.join(unpriced)})", tuple(details)
    label = "" if login is Login.API_KEY else " (API-equivalent)"
    return f"${cost:.4f}{label}", tuple(details)


def _time(value: object) -> datetime | None:
    """An entry's ISO timestamp (``2026-12-01T15:45:26.615Z``), or None."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _at_or_after(value: object, since: datetime | None) -> bool:
    """Whether an entry's timestamp is not before ``since`` (everything counts without one)."""
    when = _time(value)
    if since is None or when is None:
        return True
    try:
        return when >= since
    except TypeError:  # one naive, one aware: the transcripts' own format never mixes them
        return True
