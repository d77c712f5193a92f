"""Unit tests for agentq.accounts.quota: the swap planner over reading sequences, account choice."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentq.accounts.book import AccountBook, PartialSwap
from agentq.accounts.quota import (
    FORENSIC_TEXT_MAX,
    QuotaRules,
    SwapPlan,
    Verdict,
    choose_account,
    earliest_reset,
    exhausted_until_for,
    is_exhausted,
    plan_swap,
)
from agentq.agents.readings import Reading, ReadingKind, Source
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
    account: str = "",
) -> Reading:
    """A reading with sensible defaults."""
    return Reading(session, source, kind, reset_at, text, at, account)


class Planner:
    """Feeds polls through :func:`plan_swap`, keeping the returned book as the switcher does."""

    def __init__(
        self,
        confirm_polls: int = 2,
        cooldown: timedelta = timedelta(minutes=5),
        book: AccountBook | None = None,
    ) -> None:
        self.rules = QuotaRules(confirm_polls, cooldown, timedelta(hours=1))
        self.book = book or AccountBook.fresh(["a", "b"])

    def poll(self, *readings: Reading, now: datetime | None = None) -> Verdict:
        """One poll's readings; ``now`` defaults to the first reading's time."""
        verdict = plan_swap(self.book, readings, now or readings[0].at, self.rules)
        self.book = verdict.book
        return verdict

    def swaps(self, *readings: Reading, now: datetime | None = None) -> bool:
        """Whether this poll plans a swap."""
        return self.poll(*readings, now=now).plan is not None

    def suspicion(self, session: str = "agentq-0") -> int:
        """How many quota polls without a reset ``session`` has in a row."""
        entry = self.book.suspicions.get(session)
        return entry.polls if entry else 0

    def swapped_at(self, at: datetime) -> None:
        """A swap made elsewhere (``agentq swap``): the cooldown starts at ``at``."""
        self.book = self.book.swapped(self.book.active, "b", at, "manual")


def test_quota_with_reset_time_swaps_at_once() -> None:
    """A single quota reading with a parsed reset time plans a swap to the next account."""
    planner = Planner(confirm_polls=2)
    verdict = planner.poll(reading(reset_at=RESET, source="hook"))
    (decision,) = verdict.decisions
    assert decision.swap and decision.reset_at == RESET
    assert (decision.source, decision.session) == ("hook", "agentq-0")
    assert verdict.plan == SwapPlan(
        "quota: quota with a reset time (hook, agentq-0)", "a", "b", None
    )
    assert planner.book.last_swap_at == T0
    assert planner.book.exhausted_until["a"] == RESET


def test_quota_without_reset_needs_two_consecutive_polls() -> None:
    """Without a reset time the first poll only raises suspicion; the second swaps."""
    planner = Planner(confirm_polls=2)
    first = planner.poll(reading(at=poll(0)))
    assert first.plan is None
    assert "1 of 2" in first.decisions[0].reason
    assert planner.suspicion() == 1
    assert planner.swaps(reading(at=poll(1)))
    assert planner.suspicion() == 0
    assert planner.book.exhausted_until["a"] == poll(1) + timedelta(hours=1)


def test_two_readings_of_one_poll_count_once() -> None:
    """A pane and a transcript reading taken in the same poll are one poll, not two."""
    planner = Planner(confirm_polls=2)
    verdict = planner.poll(reading(at=poll(0), source="pane"), reading(at=poll(0), source="hook"))
    assert [d.swap for d in verdict.decisions] == [False, False]
    assert planner.suspicion() == 1


def test_confirmation_counts_per_session() -> None:
    """Quota polls of two different sessions do not add up to a confirmation."""
    planner = Planner(confirm_polls=2)
    planner.poll(reading(at=poll(0), session="agentq-0"))
    assert not planner.swaps(reading(at=poll(1), session="agentq-1"))


def test_confirm_polls_of_one_swaps_on_the_first_reading() -> None:
    """With confirm_polls = 1 a quota reading without reset swaps at once."""
    assert Planner(confirm_polls=1).swaps(reading())


@pytest.mark.parametrize(
    "order",
    [("server_error", "quota"), ("quota", "server_error")],
    ids=["server error read first", "quota read first"],
)
def test_server_error_vetoes_quota_of_the_same_poll(order: tuple[ReadingKind, ...]) -> None:
    """A server error of the same session and poll vetoes even a quota with a reset time."""
    planner = Planner(confirm_polls=1)
    readings = [
        reading(kind, reset_at=RESET if kind == "quota" else None, text="API Error: 500")
        for kind in order
    ]
    verdict = planner.poll(*readings)
    assert verdict.plan is None
    assert not any(d.swap for d in verdict.decisions)
    assert any("vetoed" in d.reason for d in verdict.decisions)
    assert planner.book.last_swap_at is None
    assert planner.book.exhausted_until["a"] is None


def test_veto_holds_only_for_its_own_session_and_poll() -> None:
    """A server error neither vetoes another session nor a later poll of its session."""
    planner = Planner(confirm_polls=1, cooldown=timedelta(0))
    other = planner.poll(
        reading("server_error", at=poll(0), session="agentq-0"),
        reading(at=poll(0), session="agentq-1"),
    )
    assert other.plan is not None
    assert planner.swaps(reading(at=poll(1), session="agentq-0"))


def test_server_error_breaks_the_confirmation_run() -> None:
    """quota, server error, quota (no resets) is not two consecutive quota polls."""
    planner = Planner(confirm_polls=2)
    planner.poll(reading(at=poll(0)))
    planner.poll(reading("server_error", at=poll(1), text="API Error: 529 Overloaded."))
    assert not planner.swaps(reading(at=poll(2)))


def test_recovery_resets_the_suspicion() -> None:
    """An ok reading between two quota polls resets the count: no swap."""
    planner = Planner(confirm_polls=2)
    planner.poll(reading(at=poll(0)))
    assert planner.poll(reading("ok", at=poll(1), text="")).decisions == ()
    assert planner.suspicion() == 0
    assert not planner.swaps(reading(at=poll(2)))


def test_no_new_swap_within_the_cooldown() -> None:
    """After a swap, quota readings hold until the cooldown has passed, then swap again."""
    planner = Planner(confirm_polls=1, book=AccountBook.fresh(["a", "b", "c"]))
    assert planner.swaps(reading(reset_at=RESET, at=T0))
    soon = planner.poll(reading(reset_at=RESET, at=T0 + timedelta(minutes=4)))
    assert soon.plan is None
    assert "cooldown" in soon.decisions[0].reason
    assert planner.swaps(reading(reset_at=RESET, at=T0 + timedelta(minutes=5)))


def test_cooldown_uses_the_clock_passed_in() -> None:
    """``now`` decides the cooldown, not the reading's time (late-processed readings)."""
    planner = Planner(confirm_polls=1)
    planner.swapped_at(T0)
    held = planner.poll(reading(at=T0 + timedelta(minutes=10)), now=T0 + timedelta(minutes=1))
    assert held.plan is None


def test_confirmed_suspicion_survives_the_cooldown() -> None:
    """A confirmation reached during the cooldown swaps on the first poll after it."""
    planner = Planner(confirm_polls=2, cooldown=timedelta(minutes=1))
    planner.swapped_at(poll(0))
    planner.poll(reading(at=poll(1)))
    assert not planner.swaps(reading(at=poll(2)))
    assert planner.swaps(reading(at=poll(13)))


def test_no_swap_while_a_partial_swap_waits_for_the_operator() -> None:
    """A confirmed quota during a partial swap is held: the operator decides first."""
    book = AccountBook.fresh(["a", "b"]).with_partial(PartialSwap("a", "b", "ensure", "flip"))
    verdict = Planner(confirm_polls=1, book=book).poll(reading(reset_at=RESET))
    assert verdict.plan is None
    assert "partial swap" in verdict.decisions[0].reason


def test_a_reading_from_another_account_than_the_active_one_does_not_swap() -> None:
    """Only the active account's sessions can trigger a swap away from it."""
    verdict = Planner(confirm_polls=1).poll(reading(reset_at=RESET, account="b"))
    assert verdict.plan is None
    assert "not the active one" in verdict.decisions[0].reason


def test_every_account_exhausted_plans_a_hold_until_the_earliest_reset() -> None:
    """No usable account left: the plan has no target and holds until the soonest reset."""
    book = AccountBook.fresh(["a", "b"]).exhausted("b", RESET + timedelta(hours=2))
    verdict = Planner(confirm_polls=1, book=book).poll(reading(reset_at=RESET))
    assert verdict.plan == SwapPlan(
        "quota: quota with a reset time (pane, agentq-0)", "a", None, RESET
    )


def test_from_config_takes_confirm_polls_cooldown_and_default_exhaustion() -> None:
    """The rules are built from the quota section of the config."""
    rules = QuotaRules.from_config(QuotaConfig(confirm_polls=3, cooldown=90, default_exhausted=600))
    assert rules == QuotaRules(3, timedelta(seconds=90), timedelta(seconds=600))


def test_forensic_line_names_session_source_text_and_reset() -> None:
    """Each detection carries one line with session, source, matched text and reset."""
    verdict = Planner().poll(reading(reset_at=RESET, source="transcript"))
    line = verdict.decisions[0].forensic
    assert "session=agentq-0" in line
    assert "source=transcript" in line
    assert f"reset={RESET.isoformat()}" in line
    assert QUOTA_TEXT in line
    assert "\n" not in line


def test_forensic_text_is_cut_and_quoted() -> None:
    """Long or multi-line matched text is cut to the limit and cannot forge log fields."""
    text = 'line one\nsession=evil "x" ' + "y" * 300
    forensic = Planner().poll(reading(text=text)).decisions[0].forensic
    quoted = forensic.split(" text=", 1)[1]
    assert "\n" not in forensic
    assert '\\"x\\"' in quoted
    shown = json.loads(quoted)
    assert len(shown) == FORENSIC_TEXT_MAX
    assert shown.startswith('line one session=evil "x" yyy')
    assert "reset=unknown" in forensic


def test_rejects_confirm_polls_below_one() -> None:
    """A confirmation count below one is a programming error."""
    with pytest.raises(ValueError, match="confirm_polls"):
        QuotaRules(confirm_polls=0)


def test_planning_never_changes_the_book_it_was_given() -> None:
    """The book is frozen: a plan comes with a new book, the old one stays as it was."""
    book = AccountBook.fresh(["a", "b"])
    before = replace(book)
    plan_swap(book, [reading(reset_at=RESET)], T0, QuotaRules(confirm_polls=1))
    assert book == before


_kinds = st.sampled_from(["quota", "server_error", "ok"])
_steps = st.lists(
    st.tuples(_kinds, st.booleans(), st.integers(0, 2), st.integers(1, 120)), max_size=60
)


@given(_steps)
def test_swaps_are_never_closer_than_the_cooldown(
    steps: list[tuple[ReadingKind, bool, int, int]],
) -> None:
    """Whatever the readings, two swaps are always at least the cooldown apart."""
    planner = Planner(confirm_polls=2, cooldown=timedelta(minutes=5))
    at = T0
    swaps: list[datetime] = []
    for kind, with_reset, session, gap in steps:
        at += timedelta(seconds=gap)
        r = reading(kind, at, session=f"s{session}", reset_at=RESET if with_reset else None)
        verdict = planner.poll(r)
        if verdict.plan is not None:
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
