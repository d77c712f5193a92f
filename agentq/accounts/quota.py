"""Quota decisions: readings of the agent sessions in, account swap decisions out.

Pure: readings (from hook signals, transcripts and, as the fallback, pane captures) and the
current time are parameters; nothing here reads a clock, a file or a pane. The rules:

- a ``server_error`` reading vetoes every ``quota`` reading of the same session in the same
  poll (same ``at``): a 5xx can print quota-like words, a quota never prints a server error;
- a ``quota`` reading with a parsed reset time swaps at once;
- one without needs ``confirm_polls`` consecutive quota polls of the same session;
- an ``ok`` reading (or a server error) breaks the run: the session's suspicion starts again;
- no new swap within ``cooldown`` of the last one (a pane still showing the old account's
  limit right after a swap must not trigger another).

Every non-ok reading yields a :class:`Decision` whose ``forensic`` line says which session,
which signal, what text matched and which reset, so each detection can be logged once.
Account choice (:func:`choose_account`) and reset bookkeeping (:func:`exhausted_until_for`,
:func:`earliest_reset`) take each account's ``exhausted_until`` as data.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from agentq.config.models import QuotaConfig

logger = logging.getLogger(__name__)

Source = Literal["hook", "transcript", "pane"]
ReadingKind = Literal["quota", "server_error", "ok"]

#: The matched text in a forensic line is cut to this many characters.
FORENSIC_TEXT_MAX = 120
DEFAULT_CONFIRM_POLLS = 2
DEFAULT_COOLDOWN = timedelta(minutes=5)


@dataclass(frozen=True)
class Reading:
    """One classified signal of one session: what it said, where from, and when it was taken.

    ``at`` identifies the poll: readings of the same session with the same ``at`` belong to
    the same poll (a pane capture and the transcript read in the same round).
    """

    session: str
    source: Source
    kind: ReadingKind
    reset_at: datetime | None
    text: str
    at: datetime


@dataclass(frozen=True)
class Decision:
    """What the monitor made of a non-ok reading; ``swap`` says whether to swap accounts now."""

    swap: bool
    reason: str
    reset_at: datetime | None
    source: Source
    session: str
    forensic: str


@dataclass
class _Suspicion:
    """A session's current run of quota polls without a reset time."""

    polls: int
    last_at: datetime


class QuotaMonitor:
    """Turns a stream of readings into swap decisions (per-session confirmation, veto, cooldown)."""

    def __init__(
        self, confirm_polls: int = DEFAULT_CONFIRM_POLLS, cooldown: timedelta = DEFAULT_COOLDOWN
    ) -> None:
        if confirm_polls < 1:
            raise ValueError("confirm_polls must be at least 1")
        self.confirm_polls = confirm_polls
        self.cooldown = cooldown
        self._suspicion: dict[str, _Suspicion] = {}
        self._vetoed: dict[str, datetime] = {}
        self._last_swap: datetime | None = None

    @classmethod
    def from_config(cls, quota: QuotaConfig) -> QuotaMonitor:
        """A monitor with the configured confirmation count and cooldown."""
        return cls(quota.confirm_polls, timedelta(seconds=quota.cooldown))

    @property
    def last_swap(self) -> datetime | None:
        """When the last swap was decided (or noted), if any."""
        return self._last_swap

    def suspicion(self, session: str) -> int:
        """How many consecutive quota polls without a reset time ``session`` has shown."""
        entry = self._suspicion.get(session)
        return entry.polls if entry else 0

    def note_swap(self, at: datetime) -> None:
        """Record a swap made elsewhere (``agentq swap``): the cooldown starts, suspicion ends."""
        self._last_swap = at
        self._suspicion.clear()
        self._vetoed.clear()

    def observe(self, reading: Reading, now: datetime | None = None) -> Decision | None:
        """Apply one reading; return a decision for quota and server errors, None for ok.

        ``now`` (default: ``reading.at``) is the clock the cooldown is measured against. Feed
        a poll's readings through :meth:`observe_poll` so a server error of the same poll
        vetoes a quota reading whichever order they were read in.
        """
        when = reading.at if now is None else now
        if reading.kind == "ok":
            self._suspicion.pop(reading.session, None)
            return None
        if reading.kind == "server_error":
            self._suspicion.pop(reading.session, None)
            self._vetoed[reading.session] = reading.at
            return _decide(reading, swap=False, reason="server error, not a quota")
        if self._vetoed.get(reading.session) == reading.at:
            return _decide(reading, swap=False, reason="vetoed by a server error in the same poll")
        if reading.reset_at is None:
            polls = self._count(reading)
            if polls < self.confirm_polls:
                reason = f"suspected quota ({polls} of {self.confirm_polls} polls)"
                return _decide(reading, swap=False, reason=reason)
            reason = f"quota confirmed by {polls} consecutive polls"
        else:
            reason = "quota with a reset time"
        if self._last_swap is not None and when - self._last_swap < self.cooldown:
            wait = f"cooldown since the swap at {self._last_swap.isoformat()}"
            return _decide(reading, swap=False, reason=f"{reason}; {wait}")
        self.note_swap(when)
        return _decide(reading, swap=True, reason=reason)

    def observe_poll(
        self, readings: Iterable[Reading], now: datetime | None = None
    ) -> list[Decision]:
        """Apply one poll's readings, server errors first; return every decision in order."""
        ordered = sorted(readings, key=lambda r: r.kind != "server_error")
        decisions = (self.observe(reading, now) for reading in ordered)
        return [decision for decision in decisions if decision is not None]

    def _count(self, reading: Reading) -> int:
        """Count a quota poll without a reset; two readings of one poll count once."""
        entry = self._suspicion.get(reading.session)
        if entry is None:
            entry = self._suspicion[reading.session] = _Suspicion(0, reading.at)
        elif entry.last_at == reading.at and entry.polls:
            return entry.polls
        entry.polls += 1
        entry.last_at = reading.at
        return entry.polls


def _decide(reading: Reading, *, swap: bool, reason: str) -> Decision:
    return Decision(
        swap=swap,
        reason=reason,
        reset_at=reading.reset_at,
        source=reading.source,
        session=reading.session,
        forensic=forensic_line(reading, "swap" if swap else "hold", reason),
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
