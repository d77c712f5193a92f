"""Usage windows per account, preempt, and the spread policy's per-account plans (pure)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentq.accounts.book import AccountBook, WindowState
from agentq.accounts.quota import (
    QuotaRules,
    SwapPlan,
    Verdict,
    launch_accounts,
    plan_preempt,
    plan_swap,
)
from agentq.accounts.windows import covers, exhaust, model_family, note_use, preempt_reason
from agentq.agents.readings import Reading, ReadingKind, WindowUse
from agentq.agents.status import Window
from agentq.cli.status import collect_status, render_status
from agentq.config.load import config_from_dict
from agentq.daemon.state import StateFile

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RESET = T0 + timedelta(hours=5)
WEEK = T0 + timedelta(days=5)
FAILOVER = QuotaRules(confirm_polls=1, cooldown=timedelta(minutes=5), preempt_at=0.9)
SPREAD = replace(FAILOVER, policy="spread")


def book(*accounts: str, active: str | None = None) -> AccountBook:
    """A fresh book (``a``, ``b`` by default)."""
    fresh = AccountBook.fresh(accounts or ("a", "b"))
    return fresh if active is None else fresh.with_active(active)


def reading(
    account: str,
    kind: ReadingKind = "quota",
    *,
    window: Window | None = Window.FIVE_HOUR,
    reset: datetime | None = RESET,
    use: WindowUse | None = None,
    session: str = "s",
) -> Reading:
    """A reading of ``account``'s session ``s`` at T0."""
    return Reading(session, "hook", kind, reset, "limit", T0, account, window, use)


def warned(account: str, percent: int | None, window: Window = Window.FIVE_HOUR) -> Reading:
    """An ok reading with a usage warning."""
    return reading(account, "ok", window=None, reset=None, use=WindowUse(window, percent))


# -- the model the pool runs, and which windows cover it --------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "family"),
    [
        ([], {}, None),
        (["--model", "claude-opus-5-5"], {}, "opus"),
        (["--model=sonnet"], {}, "sonnet"),
        ([], {"ANTHROPIC_MODEL": "claude-sonnet-4-5-20250929"}, "sonnet"),
        (["--model", "opus"], {"ANTHROPIC_MODEL": "haiku"}, "opus"),
        (["--model", "custom-thing"], {}, None),
    ],
    ids=[
        "no model configured",
        "--model NAME",
        "--model=alias",
        "ANTHROPIC_MODEL",
        "the argument wins over the environment",
        "a model of no known family",
    ],
)
def test_the_pools_model_family(args: list[str], env: dict[str, str], family: str | None) -> None:
    """The family comes from the agent's arguments, else its environment."""
    assert model_family(args, env) == family


@pytest.mark.parametrize(
    ("window", "family", "covered"),
    [
        (Window.FIVE_HOUR, "sonnet", True),
        (Window.SEVEN_DAY, None, True),
        (Window.OPUS, "sonnet", False),
        (Window.OPUS, "opus", True),
        (Window.SONNET, None, True),
        (Window.SONNET, "opus", False),
    ],
    ids=[
        "the 5-hour window covers every model",
        "the weekly window covers every model",
        "an Opus window does not cover a Sonnet pool",
        "an Opus window covers an Opus pool",
        "a model window covers a pool of unknown model",
        "a Sonnet window does not cover an Opus pool",
    ],
)
def test_which_windows_cover_the_pools_model(
    window: Window, family: str | None, covered: bool
) -> None:
    """Per-model windows count only for their family, when the family is known."""
    assert covers(window, family) is covered


# -- windows in the book ---------------------------------------------------------------------


def test_a_warning_records_the_window_and_an_unchanged_one_changes_nothing() -> None:
    """The used share and reset are kept; the same warning again leaves the book as it is."""
    use = WindowUse(Window.FIVE_HOUR, 92, False, RESET)
    first = note_use(book(), "a", use, T0, timedelta(hours=1))
    assert first.windows["a"][Window.FIVE_HOUR] == WindowState(92, False, None, RESET, T0)
    again = note_use(first, "a", use, T0 + timedelta(seconds=5), timedelta(hours=1))
    assert again is first


def test_a_warning_without_a_number_keeps_the_number_known() -> None:
    """2.1.197's "Approaching weekly limit" says no percentage."""
    known = note_use(book(), "a", WindowUse(Window.SEVEN_DAY, 80, True, WEEK), T0, timedelta(1))
    vague = note_use(known, "a", WindowUse(Window.SEVEN_DAY, None), T0, timedelta(1))
    assert (
        vague.windows["a"][Window.SEVEN_DAY].used,
        vague.windows["a"][Window.SEVEN_DAY].over,
    ) == (
        80,
        True,
    )


def test_an_exhausted_window_blocks_the_account_until_its_latest_reset() -> None:
    """Two windows out: the account waits for the later reset; a warning does not undo it."""
    out = exhaust(book(), "a", Window.SEVEN_DAY, WEEK, T0)
    out = exhaust(out, "a", Window.FIVE_HOUR, RESET, T0)
    assert out.exhausted_until["a"] == WEEK
    warned_after = note_use(out, "a", WindowUse(Window.SEVEN_DAY, 50), T0, timedelta(1))
    assert warned_after.windows["a"][Window.SEVEN_DAY].exhausted_until == WEEK
    assert warned_after.current_windows("a", WEEK) == {}


_times = st.datetimes(timezones=st.just(UTC)) | st.none()
_states = st.builds(
    WindowState, st.integers(0, 100) | st.none(), st.booleans(), _times, _times, _times
)


@given(st.dictionaries(st.sampled_from(list(Window)), _states), st.sampled_from(["", "x 92%"]))
def test_windows_and_preemption_round_trip_through_state_json(
    windows: dict[Window, WindowState], why: str
) -> None:
    """What the book writes about an account's windows reads back as the same."""
    written = replace(book(), windows={"a": windows}, preempted={"b": why} if why else {})
    again = AccountBook.from_dict(written.to_dict(), ["a", "b"])
    assert dict(again.windows.get("a", {})) == windows
    assert again.preempted == written.preempted


def test_an_old_state_file_without_windows_still_loads() -> None:
    """state.json written before windows existed: no windows, the exhaustion kept."""
    old = {"accounts": {"a": {"exhausted_until": RESET.isoformat()}, "b": {"windows": "junk"}}}
    loaded = AccountBook.from_dict(old, ["a", "b"])
    assert loaded.exhausted_until["a"] == RESET and dict(loaded.windows) == {}


# -- preempt -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("use", "family", "now", "preempted"),
    [
        (WindowUse(Window.FIVE_HOUR, 92, False, RESET), None, T0, True),
        (WindowUse(Window.FIVE_HOUR, 89, False, RESET), None, T0, False),
        (WindowUse(Window.SEVEN_DAY, 90, True, WEEK), None, T0, True),
        (WindowUse(Window.SEVEN_DAY, None, False, WEEK), None, T0, False),
        (WindowUse(Window.OPUS, 97, False, WEEK), "sonnet", T0, False),
        (WindowUse(Window.OPUS, 97, False, WEEK), None, T0, True),
        (WindowUse(Window.FIVE_HOUR, 92, False, RESET), None, RESET, False),
    ],
    ids=[
        "92% of the 5-hour window is past 90%",
        "89% is not",
        "over 90% is at least 90%",
        "a warning without a number carries none",
        "an Opus window does not preempt a Sonnet pool",
        "an Opus window preempts a pool of unknown model",
        "the reading lapses at the window's reset",
    ],
)
def test_preempt_reason(use: WindowUse, family: str | None, now: datetime, preempted: bool) -> None:
    """Past ``preempt_at`` on a window covering the pool's model, until the window resets."""
    noted = note_use(book(), "a", use, T0, timedelta(hours=1))
    assert (preempt_reason(noted, "a", now, 0.9, family) is not None) is preempted
    assert preempt_reason(noted, "a", now, None, family) is None


# -- the planner, per policy -----------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One poll: the book, the readings, and what the planner should decide."""

    id: str
    rules: QuotaRules
    before: AccountBook
    readings: tuple[Reading, ...]
    stop: tuple[str, ...]
    plan: SwapPlan | None
    reason: str = ""


TRIGGER_A = "quota: account a exhausted (hook, s)"
CASES = [
    Case(
        "failover: the active account's limit swaps every session to the next",
        FAILOVER,
        book(),
        (reading("a"),),
        (),
        SwapPlan("quota: quota with a reset time (hook, s)", "a", "b"),
    ),
    Case(
        "failover: another account's limit stops only its sessions",
        FAILOVER,
        book(active="b"),
        (reading("a"),),
        ("a",),
        None,
        "account a is not the active one; its sessions stop, their tasks resume on b",
    ),
    Case(
        "spread: a limit stops only that account's sessions",
        SPREAD,
        book(active="b"),
        (reading("a"),),
        ("a",),
        None,
        "its sessions stop, their tasks resume on b",
    ),
    Case(
        "spread: the active account's limit moves the active link",
        SPREAD,
        book(),
        (reading("a"),),
        ("a",),
        SwapPlan(TRIGGER_A, "a", "b", mode="link"),
    ),
    Case(
        "spread: the last account with quota out holds the queue until the earliest reset",
        SPREAD,
        book().exhausted("b", WEEK),
        (reading("a"),),
        ("a",),
        SwapPlan(TRIGGER_A, "a", None, RESET),
    ),
    Case(
        "spread: an exhausted account's further limits are ignored",
        SPREAD,
        book().exhausted("a", RESET),
        (reading("a"),),
        (),
        None,
        "account a is exhausted already",
    ),
    Case(
        "spread: two accounts out in one poll stop both and hold",
        SPREAD,
        book(),
        (reading("a"), reading("b", session="t")),
        ("a", "b"),
        SwapPlan("quota: account b exhausted (hook, t)", "a", None, RESET),
    ),
    Case(
        "spread: no cooldown between two accounts running out",
        SPREAD,
        replace(book(active="b"), last_swap_at=T0),
        (reading("a"),),
        ("a",),
        None,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_the_planner_decides_per_account(case: Case) -> None:
    """Which accounts stop, and the swap, link move or hold, per policy."""
    verdict = plan_swap(case.before, case.readings, T0, case.rules)
    assert verdict.stop == case.stop
    assert verdict.plan == case.plan
    assert case.reason in verdict.decisions[-1].reason
    for account in case.stop:
        assert verdict.book.is_exhausted(account, T0)
        assert verdict.book.windows[account][Window.FIVE_HOUR].exhausted_until == RESET


def test_a_limit_records_its_window() -> None:
    """The window a limit names is the one that ran out; an unknown one is recorded as such."""
    weekly = plan_swap(book(), [reading("a", window=Window.SEVEN_DAY, reset=WEEK)], T0, SPREAD)
    assert weekly.book.windows["a"][Window.SEVEN_DAY].used == 100
    unknown = plan_swap(book(), [reading("a", window=None)], T0, SPREAD)
    assert Window.UNKNOWN in unknown.book.windows["a"]


@pytest.mark.parametrize(
    ("rules", "before", "launch"),
    [
        (FAILOVER, book(active="b"), ("b",)),
        (SPREAD, book(), ("a", "b")),
        (SPREAD, book().exhausted("a", RESET), ("b",)),
        (SPREAD, book().exhausted("a", T0 - timedelta(seconds=1)), ("a", "b")),
        (SPREAD, book().with_preempted({"a": "92%"}), ("b",)),
        (SPREAD, book().with_preempted({"a": "92%", "b": "95%"}), ("a", "b")),
        (SPREAD, book().exhausted("a", RESET).exhausted("b", RESET), ()),
    ],
    ids=[
        "failover: the active account only",
        "spread: every account",
        "spread: not an exhausted one",
        "spread: an account rejoins once its reset passed",
        "spread: not a preempted one while another has room",
        "spread: preempted ones when every one is",
        "spread: none when every account is exhausted",
    ],
)
def test_the_accounts_sessions_launch_on(
    rules: QuotaRules, before: AccountBook, launch: tuple[str, ...]
) -> None:
    """Which accounts new sessions start on."""
    assert launch_accounts(before, T0, rules) == launch


def _warned_book(*percent: tuple[str, int]) -> AccountBook:
    result = book()
    for account, used in percent:
        result = note_use(
            result, account, WindowUse(Window.FIVE_HOUR, used, False, RESET), T0, timedelta(1)
        )
    return result


@pytest.mark.parametrize(
    ("rules", "before", "plan"),
    [
        (
            FAILOVER,
            _warned_book(("a", 92)),
            SwapPlan(
                "preempt: account a: five_hour window 92% used (preempt at 90%)",
                "a",
                "b",
                mode="preempt",
            ),
        ),
        (FAILOVER, _warned_book(("a", 92), ("b", 95)), None),
        (FAILOVER, replace(_warned_book(("a", 92)), last_swap_at=T0), None),
        (FAILOVER, _warned_book(("a", 92)).exhausted("b", RESET), None),
        (SPREAD, _warned_book(("a", 92)), None),
        (replace(FAILOVER, preempt_at=None), _warned_book(("a", 92)), None),
    ],
    ids=[
        "failover: a soft swap off the preempted active account",
        "failover: no swap when the other account is preempted too",
        "failover: no preempt within the cooldown",
        "failover: no preempt to an exhausted account",
        "spread: no swap (the account only takes no new task)",
        "preempt off",
    ],
)
def test_preempt_plans(rules: QuotaRules, before: AccountBook, plan: SwapPlan | None) -> None:
    """An account past preempt_at is marked; the failover swap off it is soft."""
    verdict: Verdict = plan_preempt(before, T0, rules)
    assert verdict.plan == plan
    assert ("a" in verdict.book.preempted) is (rules.preempt_at is not None)


def test_warnings_of_any_reading_feed_the_windows() -> None:
    """A warning on an ok reading is recorded without touching suspicions or swaps."""
    verdict = plan_swap(book(), [warned("a", 92)], T0, FAILOVER)
    assert verdict.plan is None and verdict.stop == ()
    assert verdict.book.windows["a"][Window.FIVE_HOUR].used == 92


def test_status_shows_each_accounts_windows_and_preemption(tmp_path: Path) -> None:
    """``agentq status`` reads state.json: exhaustion, preemption and every window."""
    noted = note_use(book(), "b", WindowUse(Window.SEVEN_DAY, 90, True, WEEK), T0, timedelta(1))
    out = exhaust(noted, "a", Window.FIVE_HOUR, RESET, T0).with_preempted({"b": "seven_day 90%"})
    config = config_from_dict({"state_dir": str(tmp_path)}, {"HOME": str(tmp_path)}, tmp_path)
    StateFile(tmp_path).save({**out.to_dict(), "counters": {}})
    doc = collect_status(config, T0.timestamp())
    assert doc["accounts"]["b"]["preempted"] == "seven_day 90%"
    assert [row["window"] for row in doc["accounts"]["a"]["windows"]] == ["five_hour"]
    text = render_status(doc)
    assert f"account a: exhausted until {RESET.isoformat()}" in text
    assert "account a: five_hour window 100% used, out until" in text
    assert "account b: takes no new task (seven_day 90%)" in text
    assert f"account b: seven_day window over 90% used, resets {WEEK.isoformat()}" in text
