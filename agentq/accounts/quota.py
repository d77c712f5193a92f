"""Quota decisions: the sessions' readings and the account book in, a swap plan out.

Pure: readings (from hook signals and, as the fallback, pane captures), the book and the
current time are parameters; nothing here reads a clock, a file or a pane.
:func:`plan_swap` applies one poll's readings:

- a ``server_error`` reading vetoes every ``quota`` reading of the same session in the same
  poll (same ``at``): a 5xx can print quota-like words, a quota never prints a server error;
- a ``quota`` reading with a parsed reset time swaps at once;
- one without needs ``confirm_polls`` consecutive quota polls of the same session;
- an ``ok`` reading (or a server error) breaks the run: the session's suspicion starts again;
- no new swap within ``cooldown`` of the last one (a pane still showing the old account's
  limit right after a swap must not trigger another), nor while a partial swap waits for
  the operator.

The plan names the next account not exhausted, round-robin (:func:`choose_account`), or
none: every account is exhausted and the queue holds until the earliest reset. Every
non-ok reading yields a :class:`Decision` whose ``forensic`` line says which session, which
signal, what text matched and which reset, so each detection can be logged once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from agentq.accounts.book import AccountBook, Suspicion
from agentq.agents.readings import Reading, ReadingKind, Source
from agentq.config.models import QuotaConfig

#: The matched text in a forensic line is cut to this many characters.
FORENSIC_TEXT_MAX = 120
DEFAULT_CONFIRM_POLLS = 2
DEFAULT_COOLDOWN = timedelta(minutes=5)
DEFAULT_EXHAUSTED = timedelta(hours=1)


@dataclass(frozen=True)
class QuotaRules:
    """How readings become swaps: confirmation, cooldown, and the reset assumed when unknown."""

    confirm_polls: int = DEFAULT_CONFIRM_POLLS
    cooldown: timedelta = DEFAULT_COOLDOWN
    default_exhausted: timedelta = DEFAULT_EXHAUSTED

    def __post_init__(self) -> None:
        if self.confirm_polls < 1:
            raise ValueError("confirm_polls must be at least 1")

    @classmethod
    def from_config(cls, quota: QuotaConfig) -> QuotaRules:
        """The configured confirmation count, cooldown and default exhaustion."""
        return cls(
            quota.confirm_polls,
            timedelta(seconds=quota.cooldown),
            timedelta(seconds=quota.default_exhausted),
        )


@dataclass(frozen=True)
class Decision:
    """What a non-ok reading came to; ``swap`` says whether it decided a swap."""

    swap: bool
    reason: str
    reset_at: datetime | None
    source: Source
    session: str
    forensic: str
    kind: ReadingKind = "quota"


@dataclass(frozen=True)
class SwapPlan:
    """What to do about the accounts: swap ``source`` → ``target``, or hold (no target).

    ``hold_until`` is when a hold ends (the earliest reset). ``trigger`` says why, for the
    swap history and the notification.
    """

    trigger: str
    source: str
    target: str | None
    hold_until: datetime | None = None


@dataclass(frozen=True)
class Verdict:
    """One poll's readings applied: the next book, each detection, and the plan if any."""

    book: AccountBook
    decisions: tuple[Decision, ...] = ()
    plan: SwapPlan | None = None


def plan_swap(
    book: AccountBook, readings: Iterable[Reading], now: datetime, rules: QuotaRules
) -> Verdict:
    """Apply one poll's readings to ``book``; plan a swap (or a hold) when one is due.

    The returned book carries the updated suspicions, the cooldown start and the exhausted
    account; nothing else changes until the plan is carried out.
    """
    ordered = sorted(readings, key=lambda r: r.kind != "server_error")
    suspicions = dict(book.suspicions)
    vetoed = {(r.session, r.at) for r in ordered if r.kind == "server_error"}
    decisions: list[Decision] = []
    plan: SwapPlan | None = None
    for reading in ordered:
        if reading.kind == "ok":
            suspicions.pop(reading.session, None)
            continue
        if reading.kind == "server_error":
            suspicions.pop(reading.session, None)
            decisions.append(_decide(reading, swap=False, reason="server error, not a quota"))
            continue
        if (reading.session, reading.at) in vetoed:
            reason = "vetoed by a server error in the same poll"
            decisions.append(_decide(reading, swap=False, reason=reason))
            continue
        reason, confirmed = _quota_reason(reading, suspicions, rules)
        wait = _wait_reason(book, reading, now, rules) if confirmed else None
        if not confirmed or wait is not None:
            full = f"{reason}; {wait}" if wait else reason
            decisions.append(_decide(reading, swap=False, reason=full))
            continue
        decision = _decide(reading, swap=True, reason=reason)
        decisions.append(decision)
        suspicions.clear()
        vetoed.clear()
        until = exhausted_until_for(reading.reset_at, now, rules.default_exhausted)
        book = replace(book.exhausted(book.active, until), last_swap_at=now)
        trigger = f"quota: {reason} ({decision.source}, {decision.session})"
        plan = plan_target(book, trigger, None, now, rules)
    return Verdict(replace(book, suspicions=suspicions), tuple(decisions), plan)


def plan_target(
    book: AccountBook, trigger: str, to: str | None, now: datetime, rules: QuotaRules
) -> SwapPlan:
    """The swap for ``trigger``: to ``to`` if given, else the next usable account, else a hold."""
    target = to or choose_account(book.accounts, book.active, book.exhausted_until, now)
    if target is not None:
        return SwapPlan(trigger, book.active, target)
    until = earliest_reset(book.exhausted_until, now) or now + rules.default_exhausted
    return SwapPlan(trigger, book.active, None, until)


def _quota_reason(
    reading: Reading, suspicions: dict[str, Suspicion], rules: QuotaRules
) -> tuple[str, bool]:
    """Why a quota reading counts, and whether it is confirmed (counting its poll once)."""
    if reading.reset_at is not None:
        return "quota with a reset time", True
    entry = suspicions.get(reading.session)
    if entry is None or entry.last_at != reading.at or not entry.polls:
        polls = (entry.polls if entry else 0) + 1
        entry = suspicions[reading.session] = Suspicion(polls, reading.at)
    if entry.polls < rules.confirm_polls:
        return f"suspected quota ({entry.polls} of {rules.confirm_polls} polls)", False
    return f"quota confirmed by {entry.polls} consecutive polls", True


def _wait_reason(
    book: AccountBook, reading: Reading, now: datetime, rules: QuotaRules
) -> str | None:
    """Why a confirmed quota does not swap now; None when it does."""
    if book.partial is not None:
        return "a partial swap waits for `agentq swap --clear`"
    if reading.account and reading.account != book.active:
        return f"account {reading.account} is not the active one"
    if book.last_swap_at is not None and now - book.last_swap_at < rules.cooldown:
        return f"cooldown since the swap at {book.last_swap_at.isoformat()}"
    return None


def _decide(reading: Reading, *, swap: bool, reason: str) -> Decision:
    return Decision(
        swap=swap,
        reason=reason,
        reset_at=reading.reset_at,
        source=reading.source,
        session=reading.session,
        forensic=forensic_line(reading, "swap" if swap else "hold", reason),
        kind=reading.kind,
    )


def forensic_line(reading: Reading, verdict: str, reason: str) -> str:
    """One log line for a detection: session, signal source, matched text, reset and verdict."""
    text = " ".join(reading.text.split())
    if len(text) > FORENSIC_TEXT_MAX:
        text = text[: FORENSIC_TEXT_MAX - 1] + "…"
    reset = reading.reset_at.isoformat() if reading.reset_at else "unknown"
    # json.dumps quotes the session's text so a crafted pane cannot forge log fields.
    return (
        f"quota detection session={reading.session} source={reading.source} kind={reading.kind}"
        f" reset={reset} decision={verdict} reason={json.dumps(reason)}"
        f" text={json.dumps(text, ensure_ascii=False)}"
    )


def exhausted_until_for(reset_at: datetime | None, now: datetime, default: timedelta) -> datetime:
    """An exhausted account's ``exhausted_until``: its parsed reset, else ``now + default``.

    A reset that is not in the future (a stale or misread time) counts as unknown.
    """
    if reset_at is not None and reset_at > now:
        return reset_at
    return now + default


def is_exhausted(
    account: str, exhausted_until: Mapping[str, datetime | None], now: datetime
) -> bool:
    """True while ``account``'s recorded reset lies in the future."""
    until = exhausted_until.get(account)
    return until is not None and until > now


def choose_account(
    accounts: Sequence[str],
    current: str,
    exhausted_until: Mapping[str, datetime | None],
    now: datetime,
) -> str | None:
    """The next usable account after ``current``, round-robin; None when all are exhausted.

    ``current`` itself comes last, so the answer is ``current`` only when every other account
    is exhausted and it is not (then no swap is needed).
    """
    start = accounts.index(current) + 1 if current in accounts else 0
    for offset in range(len(accounts)):
        candidate = accounts[(start + offset) % len(accounts)]
        if not is_exhausted(candidate, exhausted_until, now):
            return candidate
    return None


def earliest_reset(
    exhausted_until: Mapping[str, datetime | None], now: datetime
) -> datetime | None:
    """The soonest future ``exhausted_until``: when a held queue can try again; None if none."""
    future = [until for until in exhausted_until.values() if until is not None and until > now]
    return min(future, default=None)
