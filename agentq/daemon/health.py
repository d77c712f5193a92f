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

:func:`assess` and :func:`status_line` are pure; :func:`probe_write` is the one
piece of I/O.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: The file the write probe rewrites in the state dir.
PROBE_NAME = ".health-probe"
#: Watch modes that count as healthy; ``polling`` only with a reason (a declared fallback).
WATCHED = "inotify"
POLLING = "polling"


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
