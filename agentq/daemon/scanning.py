"""Projects and their inboxes: discovery, watching, scanning, refusing what must not be read.

The scanner owns the set of projects this daemon serves (each one locked, so one
daemon per project), what the last scan of each inbox found ready, and when an
inbox must be looked at again (a fresh file waiting out its quiet period, one
still open for writing). Watch events only mark inboxes dirty; the scanner lists
them (reliability R8).

A reload (:meth:`ProjectScanner.reconfigure`) changes the roots and paths: new projects
are taken on at the next rescan; a project no longer configured is *leaving*: nothing
new of it is claimed, and it is released (unwatched, unlocked) once no task of it is in
flight (``.working`` or ``.delegated``), which may be at once.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from agentq.core import events as ev
from agentq.core.clock import Clock
from agentq.core.errors import LockError, QueueError
from agentq.core.lock import InstanceLock
from agentq.daemon.state import Counters
from agentq.queue import protocol as q
from agentq.queue.scan import Pending
from agentq.queue.taskfile import Footer, footer_bytes
from agentq.queue.vetting import (
    DELEGATED_SUFFIX,
    WORKING_SUFFIX,
    NameKind,
    classify_name,
    refusal_reason,
)
from agentq.queue.watcher import InboxWatcher

logger = logging.getLogger(__name__)

#: How long an inbox holding a file still open for writing waits before it is listed again.
MIN_INCOMPLETE_RECHECK = 0.5
#: How often polled inboxes are listed unless ``dispatch.poll_interval`` says otherwise.
DEFAULT_POLL_INTERVAL = 1.0


def wall_ns(clock: Clock) -> int:
    """The clock's wall time in nanoseconds (file times are compared against it)."""
    return int(clock.now().timestamp() * 1e9)


class ProjectScanner:
    """Finds projects, watches their inboxes, and lists what is ready to claim."""

    def __init__(
        self,
        roots: list[Path],
        paths: list[Path],
        quiet_period: float,
        watcher: InboxWatcher,
        counters: Counters,
        clock: Clock,
        events: ev.EventLog,
        *,
        poll: bool = False,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> None:
        self._roots = roots
        self._paths = paths
        self._quiet_ns = int(quiet_period * 1e9)
        self._recheck_ns = int(max(quiet_period, MIN_INCOMPLETE_RECHECK) * 1e9)
        self._watcher = watcher
        self._counters = counters
        self._clock = clock
        self._events = events
        #: inbox → the pending names already announced as events.
        self._announced: dict[Path, set[str]] = {}
        self.projects: dict[Path, q.Project] = {}
        #: project path → why it is not served (another daemon holds it, a symlinked folder…).
        self.refused: dict[str, str] = {}
        #: inbox → the tasks its last scan found ready, best first.
        self.pending: dict[Path, list[Pending]] = {}
        #: inbox → names still open for writing by someone.
        self.incomplete: dict[str, list[str]] = {}
        #: inbox → how many tasks its last scan found claimed: (``.working``, ``.delegated``).
        self.in_flight: dict[Path, tuple[int, int]] = {}
        #: inbox → pending names that cannot be claimed yet (being written, or too fresh).
        self.not_ready: dict[Path, set[str]] = {}
        self._waiting: dict[Path, int] = {}
        self._locks: dict[Path, InstanceLock] = {}
        #: Projects no longer configured, released once nothing of theirs is in flight.
        self.leaving: set[Path] = set()
        #: inbox → name → (inode, mtime) of files that arrived complete (renamed or linked in).
        self._whole: dict[Path, dict[str, tuple[int, int]]] = {}
        #: ``dispatch.watch: poll``: every inbox is listed on a timer, none is watched.
        self._poll = poll
        self._poll_interval = poll_interval
        self._next_poll = 0.0
        #: Inboxes to list in this pass (new projects, a rescan): handed out by :meth:`due`.
        self._relist: set[Path] = set()

    # -- projects ---------------------------------------------------------------------

    def discover(self) -> None:
        """Take on every project found under the roots that is not served yet."""
        for path in q.find_projects(self._roots, self._paths):
            if path in self.projects:
                continue
            project = q.Project(path)
            problem = self._claim_project(project)
            if problem is not None:
                if self.refused.get(str(path)) != problem:
                    logger.error("project refused", extra={"project": str(path), "reason": problem})
                self.refused[str(path)] = problem
                continue
            self.refused.pop(str(path), None)
            self.projects[path] = project
            self._watch(project.inbox)
            self._relist.add(project.inbox)
            logger.info("project watched", extra={"project": str(path)})

    def _claim_project(self, project: q.Project) -> str | None:
        """Create the queue folders and lock the project; the reason it is refused, if so."""
        try:
            project.ensure_dirs()
            lock = InstanceLock(project.control / "lock")
            lock.acquire()
        except LockError as exc:
            # One daemon per project, whatever its state_dir: another daemon's in-flight
            # tasks must never be "recovered" here.
            return f"held by another agentq daemon ({exc})"
        except QueueError as exc:
            return str(exc)
        self._locks[project.path] = lock
        return None

    def reconfigure(self, roots: list[Path], paths: list[Path], quiet_period: float) -> None:
        """Serve the projects under ``roots`` and ``paths`` (a reload); see the module doc."""
        self._roots, self._paths = roots, paths
        self._quiet_ns = int(quiet_period * 1e9)
        self._recheck_ns = int(max(quiet_period, MIN_INCOMPLETE_RECHECK) * 1e9)
        wanted = set(q.find_projects(roots, paths))
        self.leaving = {path for path in self.projects if path not in wanted}
        for path in sorted(self.leaving):
            self.pending.pop(self.projects[path].inbox, None)  # claim nothing new of it
            logger.info("project leaving: no longer configured", extra={"project": str(path)})
        for refused in [p for p in self.refused if Path(p) not in wanted]:
            self.refused.pop(refused)
        self.release_idle()

    def release_idle(self) -> None:
        """Release the leaving projects that have nothing in flight."""
        for path in sorted(self.leaving):
            project = self.projects[path]
            if self.in_flight.get(project.inbox, (0, 0)) != (0, 0) or _has_claims(project):
                continue
            self.leaving.discard(path)
            del self.projects[path]
            for table in (self.pending, self.in_flight, self._waiting, self._announced):
                table.pop(project.inbox, None)
            self.incomplete.pop(str(project.inbox), None)
            self._watcher.release(project.inbox)
            lock = self._locks.pop(path, None)
            if lock is not None:
                lock.release()
            logger.info("project released", extra={"project": str(path)})

    def rescan(self, *, periodic: bool = True) -> None:
        """The safety net: find new projects, re-watch and re-list every inbox.

        ``periodic`` rescans are counted as ``rescans``; one forced by an inotify
        overflow is counted by the caller, as ``overflows``.
        """
        self.discover()
        for project in self.projects.values():
            try:
                project.ensure_dirs()
            except QueueError as exc:
                logger.error(
                    "project unusable", extra={"project": str(project.path), "reason": str(exc)}
                )
                continue
            self._watch(project.inbox)
            self._relist.add(project.inbox)
        self._watcher.check_health()
        self.release_idle()
        if periodic:
            self._counters.bump("rescans")

    def _watch(self, inbox: Path) -> None:
        if self._poll:
            self._watcher.poll(inbox, "dispatch.watch: poll")
        else:
            self._watcher.watch(inbox)

    def project_of(self, inbox: Path) -> q.Project | None:
        """The served project whose inbox is ``inbox``."""
        return self.projects.get(inbox.parent.parent)

    def release(self) -> None:
        """Unlock every project (at shutdown)."""
        for lock in self._locks.values():
            lock.release()
        self._locks.clear()

    # -- inboxes ----------------------------------------------------------------------

    def due(self) -> set[Path]:
        """Inboxes to list now: waiting files may have become ready, or a poll is due.

        Polled inboxes (``dispatch.watch: poll``, or inotify refused them) are all listed
        once per ``poll_interval``; taking them restarts the interval. The inboxes of new
        projects and of a rescan (:meth:`discover`, :meth:`rescan`, both on the loop's
        thread before it asks) are listed in the same pass, with no wake-up of their own.
        """
        now = wall_ns(self._clock)
        due = {inbox for inbox, at in self._waiting.items() if at <= now}
        due |= self._relist
        self._relist = set()
        mono = self._clock.monotonic()
        if mono >= self._next_poll:
            polled = self._watcher.polled()
            if polled:
                due |= polled
                self._next_poll = mono + self._poll_interval
        return due

    def next_due(self) -> float | None:
        """Seconds until the soonest waiting file may be ready or the next poll; None: neither."""
        delays = [0.0] if self._relist else []  # a pass failed before it listed them
        if self._waiting:
            delays.append((min(self._waiting.values()) - wall_ns(self._clock)) / 1e9)
        if self._watcher.polling():
            delays.append(self._next_poll - self._clock.monotonic())
        return min(delays) if delays else None

    def scan(self, inbox: Path) -> None:
        """List one inbox: remember what is ready, refuse what must not be read."""
        self._relist.discard(inbox)
        project = self.project_of(inbox)
        if project is None:
            return
        now = wall_ns(self._clock)
        whole = self._whole.get(inbox, {}) | self._watcher.take_renamed(inbox)
        try:
            found = project.scan(now, self._quiet_ns, whole)
        except QueueError as exc:
            logger.error("inbox scan failed", extra={"inbox": str(inbox), "reason": str(exc)})
            self._waiting.pop(inbox, None)  # the rescan tries again; no busy loop meanwhile
            return
        for name, reason in found.refused:
            self._refuse(project, name, reason)
        # Remembered while still pending: a file taken whole stays so until it is claimed.
        pending = found.arrivals
        self._whole[inbox] = {n: i for n, i in whole.items() if n in pending} | found.linked
        self.pending[inbox] = found.ready if project.path not in self.leaving else []
        self.in_flight[inbox] = (len(found.working), len(found.delegated))
        if project.path in self.leaving:
            self.release_idle()
            if project.path not in self.projects:
                return
        self._announce(project, inbox, found.arrivals)
        if found.waiting:
            self._waiting[inbox] = min(found.waiting.values())
        elif found.incomplete:
            self._waiting[inbox] = now + self._recheck_ns
        else:
            self._waiting.pop(inbox, None)
        self.incomplete[str(inbox)] = found.incomplete
        self.not_ready[inbox] = set(found.waiting) | set(found.incomplete)

    def _announce(self, project: q.Project, inbox: Path, arrivals: dict[str, int]) -> None:
        """Emit a ``pending`` event for each task seen in the inbox for the first time.

        ``arrived`` is when the file arrived (its ctime: a rename in sets it), in Unix seconds.
        """
        known = self._announced.get(inbox, set())
        for name in sorted(arrivals.keys() - known):
            self._events.emit(
                ev.TASK,
                project=project.path.name,
                task=name,
                state="pending",
                arrived=arrivals[name] / 1e9,
            )
        self._announced[inbox] = set(arrivals)

    def _refuse(self, project: q.Project, name: str, reason: str) -> None:
        now = self._clock.now()
        footer = Footer.failure(
            reason, executor="queue", started=now, finished=now, details=(("original name", name),)
        )
        try:
            st = os.lstat(project.inbox / name)
        except FileNotFoundError:
            return
        if classify_name(name) is NameKind.PENDING and refusal_reason(st, os.getuid()) is None:
            return  # acceptable by now (a producer's link from tmp/ was removed): no refusal
        try:
            path = project.refuse(name, reason, footer_bytes(footer))
        except OSError as exc:
            logger.error("cannot refuse entry", extra={"entry": name, "error": str(exc)})
            return
        self._counters.bump("refused")
        result = {"result": path.name} if path is not None else {}
        self._events.emit(
            ev.TASK, project=project.path.name, task=name, state="failed", reason=reason, **result
        )
        logger.warning(
            "inbox entry refused", extra={"entry": name, "reason": reason, "path": str(path)}
        )


def _has_claims(project: q.Project) -> bool:
    """Whether the project's inbox holds a claimed task (``.working`` or ``.delegated``)."""
    try:
        names = os.listdir(project.inbox)
    except OSError:
        return False
    return any(n.endswith((WORKING_SUFFIX, DELEGATED_SUFFIX)) for n in names)
