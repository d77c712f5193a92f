"""One janitor pass: lock, list, plan, act (the thin shell around the pure plan).

A pass holds ``.agent-queue/.agentq/janitor.lock`` of each project it acts on, so the
daemon's passes and ``agentq janitor`` by hand never write the same archive; a project
whose lock is held is skipped until the next pass. A dry run takes no lock and writes
nothing. Originals are removed only after their archive is complete and fsynced, each
only if it is still the very file that was listed (inode and mtime).

Task worktrees are the worktree manager's: the janitor is handed a lister (the worktrees
of a project whose task is not in flight) and a pruner, and asks the lister only while it
holds the project's lock, only when ``keep_worktrees`` is set.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Protocol

from agentq.config.models import Config, JanitorConfig
from agentq.core import crashpoints, durable
from agentq.core.durations import format_duration
from agentq.core.errors import AgentqError, LockError
from agentq.core.lock import InstanceLock
from agentq.core.statedir import SIGNALS_DIR
from agentq.queue.janitor import plan as p
from agentq.queue.janitor.archive import write_archive
from agentq.queue.janitor.listing import list_project, list_signals
from agentq.queue.protocol import Project

logger = logging.getLogger(__name__)

LOCK_NAME = "janitor.lock"

#: Removes one task worktree's folder (``agentq.workspace.worktrees.prune_orphan``).
Pruner = Callable[[Path], None]


class Orphan(Protocol):
    """A task worktree whose task is not in flight, as the lister reports it."""

    @property
    def path(self) -> Path:
        """The worktree's folder, ``.agent-queue/worktrees/<stem>``."""

    @property
    def modified(self) -> float:
        """The folder's mtime (seconds since the epoch)."""


#: Lists a project's task worktrees whose task is not in flight
#: (``agentq.workspace.worktrees.list_orphans``).
OrphanLister = Callable[[Project], Sequence[Orphan]]


@dataclass
class Report:
    """What one pass did (or, in a dry run, would do)."""

    archived: int = 0  # files moved into an archive
    removed: int = 0  # originals an interrupted pass had archived already
    deleted: int = 0  # done/ and failed/ files deleted (archive: false)
    swept: int = 0  # quarantine, tmp/, records, signals, half-written archives
    archives: int = 0  # archive files written
    pruned: int = 0  # worktrees pruned
    skipped: int = 0  # projects another janitor was working on
    errors: int = 0
    deferred: int = 0  # left for the next pass by the limits

    def counters(self) -> dict[str, int]:
        """What this pass adds to the daemon's ``state.json`` counters (not the deferred gauge)."""
        values = {f"janitor_{f.name}": getattr(self, f.name) for f in fields(self)}
        del values["janitor_deferred"]
        return {**values, "janitor_passes": 1}

    def summary(self) -> str:
        """One line for the command line."""
        return ", ".join(f"{getattr(self, f.name)} {f.name}" for f in fields(self))


class Janitor:
    """Runs passes over projects and the hook signal folder."""

    def __init__(
        self,
        config: Config,
        out: Callable[[str], None] | None = None,
        prune: Pruner | None = None,
        orphans: OrphanLister | None = None,
    ) -> None:
        self._config = config
        self._out = out
        self._prune = prune
        self._orphans = orphans

    def reconfigure(self, janitor: JanitorConfig, tmp_max_age: float) -> None:
        """Keep, archive and sweep (``dispatch.tmp_max_age``) so from the next pass (a reload)."""
        dispatch = self._config.dispatch.model_copy(update={"tmp_max_age": tmp_max_age})
        self._config = self._config.model_copy(update={"janitor": janitor, "dispatch": dispatch})

    def run(
        self,
        projects: Iterable[Project],
        now: datetime,
        *,
        dry_run: bool = False,
        limits: p.Limits | None = None,
    ) -> Report:
        """Make one pass over ``projects`` and the hook signal folder."""
        report = Report()
        with contextlib.ExitStack() as locks:
            listings = []
            for project in projects:
                if not project.queue.is_dir():
                    continue
                try:
                    if not dry_run and not self._lock(project, locks):
                        report.skipped += 1
                        self._say(f"skipped {project.path}: another janitor is working on it")
                        continue
                    listing = list_project(project, now, self._config)
                except (AgentqError, OSError) as exc:
                    self._failed(report, "janitor cannot list a project", project.path, exc)
                    continue
                listings.append(self._with_worktrees(project, listing, report))
            signals_dir = self._config.state_dir / SIGNALS_DIR
            try:
                signals = list_signals(signals_dir)
            except OSError as exc:
                self._failed(report, "janitor cannot list a folder", signals_dir, exc)
                signals = ()
            decided = p.plan(
                p.Listing(tuple(listings), signals),
                now,
                self._config.janitor,
                limits=limits,
            )
            report.deferred = decided.deferred
            for action in decided.actions:
                try:
                    self._apply(action, dry_run, report)
                except (AgentqError, OSError) as exc:
                    self._failed(report, "janitor action failed", _subject(action), exc)
        if any(getattr(report, f.name) for f in fields(report)):
            logger.info("janitor pass", extra={**report.counters(), "deferred": report.deferred})
        return report

    # -- acting ---------------------------------------------------------------------

    def _apply(self, action: p.Action, dry_run: bool, report: Report) -> None:
        if isinstance(action, p.ArchiveFiles):
            self._archive(action, dry_run, report)
        elif isinstance(action, p.RemoveArchived):
            if dry_run or _unlink_if_listed(action.entry):
                report.removed += 1
                where = f"{action.entry.path} (already in {action.archive})"
                self._say(_line(dry_run, "remove", "removed", where))
        elif isinstance(action, p.Delete):
            if dry_run or _unlink_if_listed(action.entry):
                if action.reason in (p.Reason.DONE_EXPIRED, p.Reason.FAILED_EXPIRED):
                    report.deleted += 1
                else:
                    report.swept += 1
                why = f"{action.entry.path} ({self._why(action.reason)})"
                self._say(_line(dry_run, "delete", "deleted", why))
        elif self._prune is None:
            self._say(f"kept worktree {action.path}: nothing can prune worktrees")
        else:
            if not dry_run:
                self._prune(action.path)
            report.pruned += 1
            keep = self._config.janitor.keep_worktrees or 0.0
            why = f"worktree {action.path} (older than keep_worktrees, {_age_text(keep)})"
            self._say(_line(dry_run, "prune", "pruned", why))

    def _archive(self, action: p.ArchiveFiles, dry_run: bool, report: Report) -> None:
        if dry_run:
            for entry in action.files:
                self._say(f"would archive {entry.path} -> {action.archive}")
            report.archived += len(action.files)
            report.archives += 1
            return
        stored = write_archive(action.archive, action.files, extend=action.extend)
        if not stored:
            return
        report.archives += 1
        logger.info("archive written", extra={"archive": str(action.archive), "files": len(stored)})
        self._say(f"wrote {action.archive} ({len(stored)} files added)")
        for entry in stored:
            _unlink_if_listed(entry)  # it is in a complete archive: gone or replaced is fine too
            report.archived += 1
            self._say(f"archived {entry.path} -> {action.archive}")
            crashpoints.hit("janitor_mid_remove")
        for folder in {entry.path.parent for entry in stored}:
            durable.fsync_dir(folder)
        for entry in sorted(set(action.files) - set(stored), key=lambda e: e.path):
            self._say(f"kept {entry.path}: gone or changed since it was listed")

    # -- helpers --------------------------------------------------------------------

    def _with_worktrees(
        self, project: Project, listing: p.ProjectListing, report: Report
    ) -> p.ProjectListing:
        """``listing`` with the project's worktrees whose task is not in flight, if asked for.

        A failure is counted and the project's other work goes on without its worktrees.
        """
        if self._orphans is None or self._config.janitor.keep_worktrees is None:
            return listing  # nothing to prune: no git call at all
        try:
            found = self._orphans(project)
        except (AgentqError, OSError) as exc:
            self._failed(report, "janitor cannot list worktrees", project.path, exc)
            return listing
        entries = tuple(
            p.Entry(o.path, p.EntryKind.DIR, 0, int(o.modified * 1_000_000_000)) for o in found
        )
        return dataclasses.replace(listing, worktrees=entries)

    def _lock(self, project: Project, locks: contextlib.ExitStack) -> bool:
        project.control.mkdir(mode=0o700, exist_ok=True)
        lock = InstanceLock(project.control / LOCK_NAME)
        try:
            lock.acquire()
        except LockError:
            return False
        locks.callback(lock.release)
        return True

    def _why(self, reason: p.Reason) -> str:
        ages = {
            p.Reason.DONE_EXPIRED: self._config.janitor.keep_done,
            p.Reason.FAILED_EXPIRED: self._config.janitor.keep_failed,
            p.Reason.QUARANTINE_EXPIRED: self._config.janitor.keep_failed,
        }
        age = ages.get(reason)
        return reason.value if age is None else f"{reason.value}, {_age_text(age)}"

    def _say(self, line: str) -> None:
        if self._out is not None:
            self._out(line)
        else:
            logger.debug("janitor action", extra={"action": line})

    def _failed(self, report: Report, message: str, subject: Path, exc: Exception) -> None:
        report.errors += 1
        logger.warning(message, extra={"path": str(subject), "error": str(exc)})
        self._say(f"error {subject}: {exc}")


def _unlink_if_listed(entry: p.Entry) -> bool:
    """Remove an entry if it is still the one listed (a folder with what it holds)."""
    try:
        st = os.lstat(entry.path)
    except FileNotFoundError:
        return False
    if (st.st_ino, st.st_mtime_ns) != (entry.ino, entry.mtime_ns):
        return False  # replaced since it was listed: judged again by the next pass
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(entry.path)  # fd-based on Linux: links inside are removed, never followed
    else:
        with contextlib.suppress(FileNotFoundError):
            entry.path.unlink()
    return True


def _subject(action: p.Action) -> Path:
    if isinstance(action, p.ArchiveFiles):
        return action.archive
    if isinstance(action, p.RemoveArchived | p.Delete):
        return action.entry.path
    return action.path


def _line(dry_run: bool, verb: str, past: str, rest: str) -> str:
    """``removed x`` after the fact, ``would remove x`` in a dry run."""
    return f"would {verb} {rest}" if dry_run else f"{past} {rest}"


def _age_text(seconds: float) -> str:
    days, rest = divmod(seconds, 86400)
    return f"{int(days)}d" if days and not rest else format_duration(seconds)
