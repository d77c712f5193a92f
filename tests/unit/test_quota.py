"""Unit tests for agentq.quota: the swap decision over reading sequences and account choice."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentq.accounts.quota import (
    FORENSIC_TEXT_MAX,
    QuotaMonitor,
    Reading,
    ReadingKind,
    Source,
    choose_account,
    earliest_reset,
    exhausted_until_for,
    is_exhausted,
)
from agentq.config.models import QuotaConfig

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RESET = datetime(2026, 3, 1, 17, 0, tzinfo=UTC)
QUOTA_TEXT = "You've hit your session limit · resets 5pm (UTC)"


def poll(n: int) -> datetime:
    """The time of the n-th poll (5 s apart)."""
    return T0 + timedelta(seconds=5 * n)


def reading(
    kind: ReadingKind = "quota",
    at: datetime = T0,
    *,
    session: str = "agentq-0",
    source: Source = "pane",
    reset_at: datetime | None = None,
    text: str = QUOTA_TEXT,
) -> Reading:
    """A reading with sensible defaults."""
    return Reading(session, source, kind, reset_at, text, at)


def test_quota_with_reset_time_swaps_at_once() -> None:
    """A single quota reading with a parsed reset time decides a swap."""
    monitor = QuotaMonitor(confirm_polls=2)
    decision = monitor.observe(reading(reset_at=RESET, source="hook"))
    assert decision is not None
    assert decision.swap
    assert decision.reset_at == RESET
    assert decision.source == "hook"
    assert decision.session == "agentq-0"
    assert monitor.last_swap == T0


def test_quota_without_reset_needs_two_consecutive_polls() -> None:
    """Without a reset time the first poll only raises suspicion; the second swaps."""
    monitor = QuotaMonitor(confirm_polls=2)
    first = monitor.observe(reading(at=poll(0)))
    assert first is not None
    assert not first.swap
    assert "1 of 2" in first.reason
    assert monitor.suspicion("agentq-0") == 1
    second = monitor.observe(reading(at=poll(1)))
    assert second is not None
    assert second.swap
    assert monitor.suspicion("agentq-0") == 0


def test_two_readings_of_one_poll_count_once() -> None:
    """A pane and a transcript reading taken in the same poll are one poll, not two."""
    monitor = QuotaMonitor(confirm_polls=2)
    decisions = monitor.observe_poll(
        [reading(at=poll(0), source="pane"), reading(at=poll(0), source="transcript")]
    )
    assert [d.swap for d in decisions] == [False, False]
    assert monitor.suspicion("agentq-0") == 1


def test_confirmation_counts_per_session() -> None:
    """Quota polls of two different sessions do not add up to a confirmation."""
    monitor = QuotaMonitor(confirm_polls=2)
    monitor.observe(reading(at=poll(0), session="agentq-0"))
    decision = monitor.observe(reading(at=poll(1), session="agentq-1"))
    assert decision is not None
    assert not decision.swap


def test_confirm_polls_of_one_swaps_on_the_first_reading() -> None:
    """With confirm_polls = 1 a quota reading without reset swaps at once."""
    decision = QuotaMonitor(confirm_polls=1).observe(reading())
    assert decision is not None
    assert decision.swap


@pytest.mark.parametrize(
    "order",
    [("server_error", "quota"), ("quota", "server_error")],
    ids=["server error read first", "quota read first"],
)
def test_server_error_vetoes_quota_of_the_same_poll(order: tuple[ReadingKind, ...]) -> None:
    """A server error of the same session and poll vetoes even a quota with a reset time."""
    monitor = QuotaMonitor(confirm_polls=1)
    readings = [
        reading(kind, reset_at=RESET if kind == "quota" else None, text="API Error: 500")
        for kind in order
    ]
    decisions = monitor.observe_poll(readings)
    assert not any(d.swap for d in decisions)
    assert any("vetoed" in d.reason for d in decisions)
    assert monitor.last_swap is None


def test_veto_holds_only_for_its_own_session_and_poll() -> None:
    """A server error neither vetoes another session nor a later poll of its session."""
    monitor = QuotaMonitor(confirm_polls=1, cooldown=timedelta(0))
    monitor.observe(reading("server_error", at=poll(0), session="agentq-0"))
    other = monitor.observe(reading(at=poll(0), session="agentq-1"))
    later = monitor.observe(reading(at=poll(1), session="agentq-0"))
    assert other is not None
    assert other.swap
    assert later is not None
    assert later.swap


def test_server_error_breaks_the_confirmation_run() -> None:
    """quota, server error, quota (no resets) is not two consecutive quota polls."""
    monitor = QuotaMonitor(confirm_polls=2)
    monitor.observe(reading(at=poll(0)))
    monitor.observe(reading("server_error", at=poll(1), text="API Error: 529 Overloaded."))
    decision = monitor.observe(reading(at=poll(2)))
    assert decision is not None
    assert not decision.swap


def test_recovery_resets_the_suspicion() -> None:
    """An ok reading between two quota polls resets the count: no swap."""
    monitor = QuotaMonitor(confirm_polls=2)
    monitor.observe(reading(at=poll(0)))
    assert monitor.observe(reading("ok", at=poll(1), text="")) is None
    assert monitor.suspicion("agentq-0") == 0
    decision = monitor.observe(reading(at=poll(2)))
    assert decision is not None
    assert not decision.swap


def test_no_new_swap_within_the_cooldown() -> None:
    """After a swap, quota readings hold until the cooldown has passed, then swap again."""
    monitor = QuotaMonitor(confirm_polls=1, cooldown=timedelta(minutes=5))
    first = monitor.observe(reading(reset_at=RESET, at=T0))
    soon = monitor.observe(reading(reset_at=RESET, at=T0 + timedelta(minutes=4)))
    later = monitor.observe(reading(reset_at=RESET, at=T0 + timedelta(minutes=5)))
    assert first is not None
    assert first.swap
    assert soon is not None
    assert not soon.swap
    assert "cooldown" in soon.reason
    assert later is not None
    assert later.swap


def test_cooldown_uses_the_clock_passed_in() -> None:
    """``now`` overrides the reading's time for the cooldown (late-processed readings)."""
    monitor = QuotaMonitor(confirm_polls=1, cooldown=timedelta(minutes=5))
    monitor.note_swap(T0)
    held = monitor.observe(reading(at=T0 + timedelta(minutes=10)), now=T0 + timedelta(minutes=1))
    assert held is not None
    assert not held.swap


def test_confirmed_suspicion_survives_the_cooldown() -> None:
    """A confirmation reached during the cooldown swaps on the first poll after it."""
    monitor = QuotaMonitor(confirm_polls=2, cooldown=timedelta(minutes=1))
    monitor.note_swap(poll(0))
    monitor.observe(reading(at=poll(1)))
    held = monitor.observe(reading(at=poll(2)))
    after = monitor.observe(reading(at=poll(13)))
    assert held is not None
    assert not held.swap
    assert after is not None
    assert after.swap


def test_from_config_takes_confirm_polls_and_cooldown() -> None:
    """The monitor is built from the quota section of the config."""
    monitor = QuotaMonitor.from_config(QuotaConfig(confirm_polls=3, cooldown=90))
    assert monitor.confirm_polls == 3
    assert monitor.cooldown == timedelta(seconds=90)


def test_forensic_line_names_session_source_text_and_reset() -> None:
    """Each detection carries one line with session, source, matched text and reset."""
    decision = QuotaMonitor().observe(reading(reset_at=RESET, source="transcript"))
    assert decision is not None
    line = decision.forensic
    assert "session=agentq-0" in line
    assert "source=transcript" in line
    assert f"reset={RESET.isoformat()}" in line
    assert QUOTA_TEXT in line
    assert "\n" not in line


def test_forensic_text_is_cut_and_quoted() -> None:
    """Long or multi-line matched text is cut to the limit and cannot forge log fields."""
    text = 'line one\nsession=evil "x" ' + "y" * 300
    decision = QuotaMonitor().observe(reading(text=text))
    assert decision is not None
    quoted = decision.forensic.split(" text=", 1)[1]
    assert "\n" not in decision.forensic
    assert '\\"x\\"' in quoted
    shown = json.loads(quoted)
    assert len(shown) == FORENSIC_TEXT_MAX
    assert shown.startswith('line one session=evil "x" yyy')
    assert "reset=unknown" in decision.forensic


def test_rejects_confirm_polls_below_one() -> None:
    """A confirmation count below one is a programming error."""
    with pytest.raises(ValueError, match="confirm_polls"):
        QuotaMonitor(confirm_polls=0)


_kinds = st.sampled_from(["quota", "server_error", "ok"])
_steps = st.lists(
    st.tuples(_kinds, st.booleans(), st.integers(0, 2), st.integers(1, 120)), max_size=60
)


@given(_steps)
def test_swaps_are_never_closer_than_the_cooldown(
    steps: list[tuple[ReadingKind, bool, int, int]],
) -> None:
    """Whatever the readings, two swaps are always at least the cooldown apart."""
    monitor = QuotaMonitor(confirm_polls=2, cooldown=timedelta(minutes=5))
    at = T0
    swaps: list[datetime] = []
    for kind, with_reset, session, gap in steps:
        at += timedelta(seconds=gap)
        r = reading(kind, at, session=f"s{session}", reset_at=RESET if with_reset else None)
        decision = monitor.observe(r)
        if decision is not None and decision.swap:
            assert kind == "quota"
            swaps.append(at)
    assert all(b - a >= timedelta(minutes=5) for a, b in pairwise(swaps))


# --- account choice -------------------------------------------------------------------------


ACCOUNTS = ["a", "b", "c"]


def test_choose_next_account_round_robin() -> None:
    """The next account after the current one is chosen, wrapping around."""
    assert choose_account(ACCOUNTS, "a", {"a": RESET}, T0) == "b"
    assert choose_account(ACCOUNTS, "c", {"c": RESET}, T0) == "a"


def test_choose_skips_exhausted_accounts() -> None:
    """Exhausted accounts are skipped; one whose reset has passed is usable again."""
    until = {"a": RESET, "b": RESET, "c": T0 - timedelta(minutes=1)}
    assert choose_account(ACCOUNTS, "a", until, T0) == "c"


def test_choose_returns_none_when_all_are_exhausted() -> None:
    """With every account exhausted there is no account to choose."""
    until = {name: RESET + timedelta(hours=i) for i, name in enumerate(ACCOUNTS)}
    assert choose_account(ACCOUNTS, "b", until, T0) is None


def test_choose_returns_current_only_as_last_resort() -> None:
    """The current account comes back only when it is the only usable one."""
    assert choose_account(ACCOUNTS, "a", {"b": RESET, "c": RESET}, T0) == "a"
    assert choose_account(ACCOUNTS, "a", {}, T0) == "b"


def test_choose_with_unknown_current_starts_at_the_first() -> None:
    """A current account not in the list (renamed in config) starts the search at the top."""
    assert choose_account(ACCOUNTS, "gone", {"a": RESET}, T0) == "b"
    assert choose_account([], "a", {}, T0) is None


def test_earliest_reset_is_the_soonest_future_one() -> None:
    """The soonest future reset is when a held queue can try again; past ones are ignored."""
    until = {"a": RESET + timedelta(hours=2), "b": RESET, "c": T0 - timedelta(hours=1), "d": None}
    assert earliest_reset(until, T0) == RESET
    assert earliest_reset({"a": T0 - timedelta(seconds=1), "b": None}, T0) is None
    assert earliest_reset({}, T0) is None


def test_all_exhausted_resumes_at_the_earliest_reset() -> None:
    """When all are exhausted the earliest reset names the account that comes back first."""
    until = {"a": RESET + timedelta(hours=1), "b": RESET, "c": RESET + timedelta(hours=3)}
    assert choose_account(ACCOUNTS, "a", until, T0) is None
    resume = earliest_reset(until, T0)
    assert resume == RESET
    assert choose_account(ACCOUNTS, "a", until, resume) == "b"


def test_exhausted_until_uses_the_parsed_reset() -> None:
    """A parsed future reset is the exhaustion end."""
    assert exhausted_until_for(RESET, T0, timedelta(hours=1)) == RESET


@pytest.mark.parametrize(
    "reset_at",
    [None, T0 - timedelta(minutes=1), T0],
    ids=["unknown reset", "reset in the past", "reset right now"],
)
def test_exhausted_until_falls_back_to_the_default(reset_at: datetime | None) -> None:
    """An unknown or non-future reset means now plus the configured default."""
    assert exhausted_until_for(reset_at, T0, timedelta(hours=1)) == T0 + timedelta(hours=1)


def test_is_exhausted_until_the_reset() -> None:
    """An account is exhausted strictly before its reset and usable from it on."""
    assert is_exhausted("a", {"a": RESET}, T0)
    assert not is_exhausted("a", {"a": RESET}, RESET)
    assert not is_exhausted("a", {"a": None}, T0)
    assert not is_exhausted("a", {}, T0)
