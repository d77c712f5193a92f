"""Is the daemon healthy enough to ping the systemd watchdog, and what does ``STATUS=`` say.

The rules (reliability R19), checked by the main loop once per watchdog period:

- the loop turns: pings are only sent from the loop, after a pass that did not
  fail, so a wedged or failing loop stops pinging by itself;
- every watched inbox is watched (inotify) or in its declared polling fallback
  (a mode with a reason); any other watch state is a problem;
- a write probe of the state dir succeeds (a full, read-only or vanished disk
  is a problem; a hung one wedges the loop, which the first rule covers).

When a rule fails the loop withholds ``WATCHDOG=1`` rather than sending
``WATCHDOG=trigger``: a problem that clears within ``WatchdogSec`` costs nothing,
one that does not gets the daemon restarted by systemd.

Degradation is wider than the watchdog's rules: conditions the daemon survives but the
operator should hear of (:func:`conditions`): an inbox polled instead of watched (even a
declared fallback), inotify overflows since the last check, a main-loop pass slower than
:data:`LAG_LIMIT`, a failed write probe. :func:`step_conditions` turns one check into
``daemon`` events, once per change of each condition: ``state: degraded`` (with the
condition and its reason) when it begins, ``state: recovered`` when it ends;
:class:`HealthMonitor` keeps that state and emits them.

:func:`assess`, :func:`conditions`, :func:`step_conditions` and :func:`status_line` are
pure; :func:`probe_write` is the one piece of I/O.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentq.core import events as ev

logger = logging.getLogger(__name__)

#: The file the write probe rewrites in the state dir.
PROBE_NAME = ".health-probe"
#: Watch modes that count as healthy; ``polling`` only with a reason (a declared fallback).
WATCHED = "inotify"
POLLING = "polling"
#: A main-loop pass slower than this (seconds) degrades the daemon.
LAG_LIMIT = 10.0
#: The conditions, in the order events report them.
POLLED, OVERFLOW, LAG, DISK = "watch_polling", "inotify_overflow", "loop_lag", "disk"


@dataclass(frozen=True)
class Health:
    """The outcome of one check: healthy when there is no problem."""

    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems


def assess(watches: Mapping[str, Mapping[str, Any]], probe_error: str | None) -> Health:
    """Apply the health rules to a watch summary and the result of the write probe.

    Args:
        watches: inbox → ``{"mode": …, "reason": …}`` (the watcher's summary).
        probe_error: why the state-dir write probe failed, or None when it worked.
    """
    problems = []
    for inbox, watch in sorted(watches.items()):
        mode = watch.get("mode")
        if mode == WATCHED or (mode == POLLING and watch.get("reason")):
            continue
        problems.append(f"inbox {inbox} is {mode or 'not watched'}")
    if probe_error is not None:
        problems.append(f"state dir not writable: {probe_error}")
    return Health(tuple(problems))


def probe_write(state_dir: Path) -> str | None:
    """Write and fsync a small file in ``state_dir``; return the error, or None when it worked."""
    path = state_dir / PROBE_NAME
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(path, flags, 0o600)
        try:
            os.write(fd, f"{os.getpid()}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def conditions(
    watches: Mapping[str, Mapping[str, Any]],
    probe_error: str | None,
    new_overflows: int,
    lag: float,
    lag_limit: float = LAG_LIMIT,
) -> dict[str, str]:
    """Each degraded condition now, with its reason (empty when nothing is degraded).

    Args:
        watches: the watcher's summary (inbox → mode and reason).
        probe_error: why the state-dir write probe failed, or None.
        new_overflows: inotify overflows since the last check.
        lag: how long the last main-loop pass took, in seconds.
    """
    found: dict[str, str] = {}
    polled = sorted(inbox for inbox, w in watches.items() if w.get("mode") != WATCHED)
    if polled:
        reasons = sorted({str(watches[i].get("reason") or "not watched") for i in polled})
        found[POLLED] = f"{len(polled)} folder(s) polled instead of watched ({'; '.join(reasons)})"
    if new_overflows > 0:
        found[OVERFLOW] = f"inotify dropped events {new_overflows} time(s); every inbox rescanned"
    if lag > lag_limit:
        found[LAG] = f"a main-loop pass took {lag:.1f}s (more than {lag_limit:g}s)"
    if probe_error is not None:
        found[DISK] = f"state dir not writable: {probe_error}"
    return found


@dataclass(frozen=True)
class Conditions:
    """What the last check found degraded (condition → reason) and the overflows counted."""

    degraded: Mapping[str, str] = field(default_factory=dict)
    overflows: int = 0


def step_conditions(
    state: Conditions, found: Mapping[str, str], overflows: int
) -> tuple[Conditions, list[dict[str, str]]]:
    """The next state and the ``daemon`` event fields for each condition that began or ended."""
    events = [
        {"state": "degraded", "condition": name, "reason": reason}
        for name, reason in found.items()
        if name not in state.degraded
    ]
    events += [
        {"state": "recovered", "condition": name, "reason": f"recovered from: {reason}"}
        for name, reason in state.degraded.items()
        if name not in found
    ]
    return Conditions(dict(found), overflows), events


class HealthMonitor:
    """Keeps the degraded conditions of the last check and emits their changes."""

    def __init__(self, emit: ev.Emit, lag_limit: float = LAG_LIMIT) -> None:
        self._emit = emit
        self._lag_limit = lag_limit
        self._state = Conditions()

    def check(
        self,
        watches: Mapping[str, Mapping[str, Any]],
        probe_error: str | None,
        overflows: int,
        lag: float,
    ) -> None:
        """One check: ``overflows`` is the cumulative count, ``lag`` the last pass's duration."""
        new = max(0, overflows - self._state.overflows)
        found = conditions(watches, probe_error, new, lag, self._lag_limit)
        self._state, events = step_conditions(self._state, found, overflows)
        for fields in events:
            extra = {"condition": fields["condition"], "reason": fields["reason"]}
            if fields["state"] == "degraded":
                logger.warning("daemon degraded", extra=extra)
            else:
                logger.info("daemon recovered", extra=extra)
            self._emit(ev.DAEMON, **fields)


@dataclass(frozen=True)
class Summary:
    """What ``STATUS=`` shows: the queue's counts (pending, ``.working``, ``.delegated``), the
    pool's sessions, the active account, a hold and a partial swap."""

    pending: int
    working: int = 0
    delegated: int = 0
    sessions: Sequence[Mapping[str, Any]] | None = None
    account: str | None = None
    hold_until: str | None = None
    partial_swap: bool = False


def status_line(summary: Summary, health: Health) -> str:
    """One line for ``systemctl status``: counts, account, hold, and any health problem.

    Nothing in it moves by itself (no ages, no clocks), so it changes only when the
    daemon's state does and the loop sends it only then.
    """
    parts = [f"{summary.pending} pending", f"{summary.working} working"]
    if summary.delegated:
        parts.append(f"{summary.delegated} delegated")
    if summary.sessions is not None:
        busy = sum(1 for s in summary.sessions if s.get("task"))
        parts.append(f"sessions {busy}/{len(summary.sessions)} busy")
    if summary.account:
        parts.append(f"account {summary.account}")
    if summary.hold_until:
        parts.append(f"hold until {summary.hold_until} (all accounts exhausted)")
    if summary.partial_swap:
        parts.append("partial swap: run agentq swap --clear")
    line = ", ".join(parts)
    if not health.ok:
        line = f"unhealthy ({'; '.join(health.problems)}): {line}"
    return line
