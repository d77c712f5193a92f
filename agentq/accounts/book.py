"""The account book: which account is active, which are exhausted until when, the swaps so far.

One owner (the :class:`~agentq.accounts.switcher.Switcher`); everyone else reads a copy
(the daemon writes :meth:`AccountBook.to_dict` into ``state.json``). The book is frozen:
every change makes a new book, so the quota planner can be a pure function of it.

What it holds:

- ``active``: the account new sessions start on (the active link points at its home);
- ``exhausted_until``: per account, when it can take tasks again (None: usable): the latest
  reset of the windows that ran out for it;
- ``windows``: per account, each usage window agentq heard of (five-hour, seven-day, Opus,
  Sonnet, …): how full it is (a usage warning's percentage), when it ran out until, when it
  resets (:class:`WindowState`);
- ``preempted``: accounts past ``quota.preempt_at`` on a window, and why: they take no new
  task while another account has room (derived by the planner, kept for ``state.json``);
- ``swaps``: the history of swaps (time, from, to, trigger);
- ``hold``: every account is exhausted; the queue waits until ``until``;
- ``partial``: a swap failed and so did its rollback; dispatching stops until the operator
  clears it (``agentq swap --clear``) or the daemon restarts;
- ``last_swap_at``: when the last swap was decided or made (the cooldown starts there);
- ``suspicions``: per session, a run of quota polls without a reset time (not persisted:
  a restart starts the confirmation afresh).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from agentq.agents.status import Window


@dataclass(frozen=True)
class SwapEntry:
    """One swap in the history."""

    time: datetime
    source: str
    target: str
    trigger: str

    def to_dict(self) -> dict[str, str]:
        """The entry as ``state.json`` shows it (``from``/``to``)."""
        return {
            "time": self.time.isoformat(),
            "from": self.source,
            "to": self.target,
            "trigger": self.trigger,
        }


@dataclass(frozen=True)
class Hold:
    """Every account is exhausted: the local queue waits from ``since`` until ``until``."""

    since: datetime
    until: datetime


@dataclass(frozen=True)
class PartialSwap:
    """A swap whose rollback failed too: the link may point at either account."""

    source: str
    target: str
    error: str
    rollback: str


@dataclass(frozen=True)
class Suspicion:
    """A session's run of quota polls without a reset time, and the poll it last counted."""

    polls: int
    last_at: datetime


@dataclass(frozen=True)
class WindowState:
    """One usage window of one account, as the readings told it.

    ``used`` is the share used in percent (100 once the window ran out; None when no reading
    gave a number), ``over`` says it is a threshold already passed ("Over 75%"), and
    ``resets_at`` when the window starts afresh: past it, what was read no longer holds.
    """

    used: int | None = None
    over: bool = False
    exhausted_until: datetime | None = None
    resets_at: datetime | None = None
    seen_at: datetime | None = None

    def holds(self, now: datetime) -> bool:
        """Whether the reading still holds at ``now`` (its window has not reset since)."""
        return self.resets_at is None or self.resets_at > now

    def to_dict(self) -> dict[str, Any]:
        """The window as ``state.json`` and the API show it."""
        return {
            "used": self.used,
            "over": self.over,
            "exhausted_until": _iso(self.exhausted_until),
            "resets_at": _iso(self.resets_at),
            "seen_at": _iso(self.seen_at),
        }

    @classmethod
    def from_dict(cls, value: object) -> WindowState | None:
        """A window ``to_dict`` wrote, or None when ``value`` is not one."""
        if not isinstance(value, dict):
            return None
        used = value.get("used")
        return cls(
            used if isinstance(used, int) and not isinstance(used, bool) else None,
            value.get("over") is True,
            _time(value.get("exhausted_until")),
            _time(value.get("resets_at")),
            _time(value.get("seen_at")),
        )


@dataclass(frozen=True)
class AccountBook:
    """The accounts' state; see the module docstring."""

    accounts: tuple[str, ...]
    active: str
    exhausted_until: Mapping[str, datetime | None] = field(default_factory=dict)
    swaps: tuple[SwapEntry, ...] = ()
    hold: Hold | None = None
    partial: PartialSwap | None = None
    last_swap_at: datetime | None = None
    suspicions: Mapping[str, Suspicion] = field(default_factory=dict)
    windows: Mapping[str, Mapping[Window, WindowState]] = field(default_factory=dict)
    preempted: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def fresh(cls, accounts: Sequence[str]) -> AccountBook:
        """A book for ``accounts`` (the first active; ``default`` when there are none)."""
        names = tuple(accounts) or ("default",)
        return cls(names, names[0], dict.fromkeys(names))

    # -- reading ------------------------------------------------------------------------

    def is_exhausted(self, account: str, now: datetime) -> bool:
        """True while ``account``'s recorded reset lies in the future."""
        until = self.exhausted_until.get(account)
        return until is not None and until > now

    def current_windows(self, account: str, now: datetime) -> dict[Window, WindowState]:
        """``account``'s windows whose readings still hold at ``now`` (not reset since)."""
        known = self.windows.get(account, {})
        return {window: state for window, state in known.items() if state.holds(now)}

    # -- changes ------------------------------------------------------------------------

    def exhausted(self, account: str, until: datetime) -> AccountBook:
        """``account`` is out of quota until ``until``."""
        return replace(self, exhausted_until={**self.exhausted_until, account: until})

    def with_window(self, account: str, window: Window, state: WindowState) -> AccountBook:
        """What the readings tell of one of ``account``'s windows now."""
        windows = {**self.windows, account: {**self.windows.get(account, {}), window: state}}
        return replace(self, windows=windows)

    def with_preempted(self, preempted: Mapping[str, str]) -> AccountBook:
        """The accounts past ``quota.preempt_at`` now, and why."""
        return replace(self, preempted=dict(preempted))

    def swapped(self, source: str, target: str, at: datetime, trigger: str) -> AccountBook:
        """A swap from ``source`` to ``target`` completed: active, history, cooldown, no hold."""
        entry = SwapEntry(at, source, target, trigger)
        return replace(
            self,
            active=target,
            swaps=(*self.swaps, entry),
            hold=None,
            last_swap_at=at,
            suspicions={},
        )

    def held(self, since: datetime, until: datetime) -> AccountBook:
        """Every account is exhausted: hold the queue until ``until``."""
        return replace(self, hold=Hold(since, until))

    def released(self) -> AccountBook:
        """The hold ended without a swap (spread: an account has quota again)."""
        return replace(self, hold=None)

    def with_partial(self, partial: PartialSwap | None) -> AccountBook:
        """Enter (or, with None, leave) the partial-swap state."""
        return replace(self, partial=partial)

    def with_active(self, account: str) -> AccountBook:
        """``account`` is the active one (after the operator cleared a partial swap)."""
        return replace(self, active=account)

    # -- state.json ---------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The keys the book owns in ``state.json`` (suspicions stay in memory)."""
        hold = self.hold
        partial = self.partial
        return {
            "active_account": self.active,
            "accounts": {name: self._account_dict(name) for name in self.accounts},
            "swaps": [entry.to_dict() for entry in self.swaps],
            "hold": {"since": hold.since.isoformat(), "until": hold.until.isoformat()}
            if hold
            else None,
            "partial_swap": {
                "from": partial.source,
                "to": partial.target,
                "error": partial.error,
                "rollback": partial.rollback,
            }
            if partial
            else None,
            "last_swap_at": _iso(self.last_swap_at),
        }

    def _account_dict(self, name: str) -> dict[str, Any]:
        """One account in ``state.json``: its exhaustion, windows and preemption when known."""
        entry: dict[str, Any] = {"exhausted_until": _iso(self.exhausted_until.get(name))}
        windows = self.windows.get(name)
        if windows:
            entry["windows"] = {str(w): state.to_dict() for w, state in windows.items()}
        if name in self.preempted:
            entry["preempted"] = self.preempted[name]
        return entry

    @classmethod
    def from_dict(cls, state: Mapping[str, Any], accounts: Sequence[str]) -> AccountBook:
        """The book ``state.json`` recorded, for the accounts configured now.

        Unknown or malformed entries are dropped (the file is a cache); an active account
        that is no longer configured falls back to the first one.
        """
        book = cls.fresh(accounts)
        recorded = state.get("accounts")
        entries = recorded if isinstance(recorded, dict) else {}
        rows: dict[str, dict[str, Any]] = {
            name: row if isinstance(row := entries.get(name), dict) else {}
            for name in book.accounts
        }
        until = {name: _time(row.get("exhausted_until")) for name, row in rows.items()}
        windows = {name: _windows(row.get("windows")) for name, row in rows.items()}
        preempted = {
            name: row["preempted"]
            for name, row in rows.items()
            if isinstance(row.get("preempted"), str)
        }
        active = state.get("active_account")
        return replace(
            book,
            active=active if active in book.accounts else book.active,
            exhausted_until=until,
            swaps=tuple(_swaps(state.get("swaps"))),
            hold=_hold(state.get("hold")),
            partial=_partial(state.get("partial_swap")),
            last_swap_at=_time(state.get("last_swap_at")),
            windows={name: known for name, known in windows.items() if known},
            preempted=preempted,
        )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _swaps(value: object) -> list[SwapEntry]:
    entries = []
    for item in value if isinstance(value, list) else []:
        when = _time(item.get("time")) if isinstance(item, dict) else None
        if when is not None and isinstance(item, dict):
            fields = (str(item.get(k, "")) for k in ("from", "to", "trigger"))
            entries.append(SwapEntry(when, *fields))
    return entries


def _hold(value: object) -> Hold | None:
    if not isinstance(value, dict):
        return None
    since, until = _time(value.get("since")), _time(value.get("until"))
    return Hold(since, until) if since is not None and until is not None else None


def _partial(value: object) -> PartialSwap | None:
    if not isinstance(value, dict):
        return None
    fields = (str(value.get(k, "")) for k in ("from", "to", "error", "rollback"))
    return PartialSwap(*fields)


def _windows(value: object) -> dict[Window, WindowState]:
    """An account's windows as ``state.json`` holds them (unknown names and bad entries dropped)."""
    known = {str(w): w for w in Window}
    out: dict[Window, WindowState] = {}
    for name, raw in value.items() if isinstance(value, dict) else ():
        state = WindowState.from_dict(raw)
        if name in known and state is not None:
            out[known[name]] = state
    return out


def window_rows(entry: object) -> list[dict[str, Any]]:
    """An account's windows as status and the API list them: one object per window, named.

    ``entry`` is the account's ``state.json`` entry (:meth:`AccountBook.to_dict`).
    """
    windows = entry.get("windows") if isinstance(entry, dict) else None
    rows = []
    for name, raw in sorted(windows.items()) if isinstance(windows, dict) else ():
        state = WindowState.from_dict(raw)
        if state is not None:
            rows.append({"window": str(name), **state.to_dict()})
    return rows


def account_status(entry: object) -> dict[str, Any]:
    """An account's ``state.json`` entry in the shape status and the API show (every key)."""
    row = entry if isinstance(entry, dict) else {}
    preempted = row.get("preempted")
    return {
        "exhausted_until": row.get("exhausted_until"),
        "windows": window_rows(row),
        "preempted": preempted if isinstance(preempted, str) else None,
    }
