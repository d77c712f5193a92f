"""The janitor's decisions, pure: what to archive, remove or delete, given a listing of folders.

:mod:`agentq.queue.janitor.listing` reads the folders into a :class:`Listing`, :func:`plan`
turns it into actions, :mod:`agentq.queue.janitor.run` carries them out. The rules:

- ``done/`` and ``failed/``: a plain file (regular, one link, ours) that finished (its
  mtime) more than ``keep_done``/``keep_failed`` ago goes into the archive of its folder
  and month (UTC): ``archive/done-2026-11.tar.gz``. ``archive: false`` deletes it instead.
  A result named like a task still in flight (``x.md``, ``x.1.md`` for ``inbox/x.md.working``)
  waits: start-up recovery looks for that result by name.
- An old file that the newest archive of its month already holds (same original name, size
  and SHA-256) is only removed: a pass archived it and was interrupted before removing it.
  Only the newest archive can hold such a file, because a pass writes at most one archive per
  month and removes these leftovers before it writes anything.
- An archive grows (rewritten whole, then renamed over the old one) until it holds
  :data:`ARCHIVE_CAP_BYTES`; the month then goes on in ``done-2026-11.1.tar.gz``. An archive
  that cannot be read is never rewritten: its month goes on in the next number.
- ``quarantine/`` entries are deleted, never opened or archived, once they were quarantined
  (the later of mtime and ctime: the move updates the ctime) more than ``keep_failed`` ago.
- Stale ``tmp/`` files and control records without a task come from the queue's own rules
  (``Project.stale_tmp``, ``Project.orphan_records``); a record also has to be
  :data:`RECORD_GRACE` old, so the fresh record of a claim made meanwhile is never taken.
- Hook signal files older than :data:`SIGNAL_MAX_AGE`: no session waits for them any more.
- Temp files in ``archive/`` are what a crash left mid-write; the janitor lock says nobody
  else writes there.
- Task worktrees kept after their task (``.agent-queue/worktrees/<stem>``): the caller lists
  those whose task is not in flight (``ProjectListing.worktrees``, from the worktree manager,
  which reads the control records); one whose folder was last modified more than
  ``keep_worktrees`` ago becomes a :class:`PruneWorktree`. ``keep_worktrees: null`` keeps
  them all.

Limits bound one pass (the daemon's); what does not fit is counted as deferred.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from pathlib import Path

from agentq.config.models import JanitorConfig

#: An archive is extended (rewritten) only while its members hold less than this.
ARCHIVE_CAP_BYTES = 8 << 20
#: A control record without a task is removed only once it is this old.
RECORD_GRACE = 3600.0
#: A hook signal file older than this is an orphan.
SIGNAL_MAX_AGE = 86400.0
#: The bounds of one daemon pass: files acted on, bytes of new files archived.
DEFAULT_PASS_FILES = 200
DEFAULT_PASS_BYTES = 4 << 20
#: Worktrees pruned in one daemon pass: each is a few git calls and a whole tree to delete.
DEFAULT_PASS_WORKTREES = 2

ARCHIVE_SUFFIX = ".tar.gz"
_ARCHIVE_RE = re.compile(r"^(done|failed)-(\d{4}-\d{2})(?:\.([1-9][0-9]{0,8}))?\.tar\.gz$")
_SUFFIXED_RE = re.compile(r"^(.+)\.[0-9]+\.md$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NS = 1_000_000_000


class EntryKind(Enum):
    """What an ``lstat`` says an entry is."""

    FILE = "file"  # a plain file: regular, one link, ours (the only kind ever opened)
    DIR = "dir"
    OTHER = "other"  # links, FIFOs, devices, hard-linked or foreign files


@dataclass(frozen=True)
class Entry:
    """One folder entry as listed (``sha256`` only where it may match an archive member)."""

    path: Path
    kind: EntryKind
    size: int
    mtime_ns: int
    ctime_ns: int = 0
    ino: int = 0
    sha256: str | None = None

    @property
    def name(self) -> str:
        """The entry's file name."""
        return self.path.name


@dataclass(frozen=True)
class Member:
    """One file inside an archive: its stored name, the name it had, its size and hash."""

    name: str
    original: str
    size: int
    sha256: str


@dataclass(frozen=True)
class ArchiveIndex:
    """What a completed archive holds."""

    members: tuple[Member, ...] = ()

    @property
    def raw_bytes(self) -> int:
        """The members' total size, uncompressed."""
        return sum(m.size for m in self.members)

    def originals(self) -> frozenset[str]:
        """The names the members had in ``done/`` or ``failed/``."""
        return frozenset(m.original for m in self.members)

    def holds(self, entry: Entry) -> bool:
        """Whether a member has ``entry``'s name, size and (known) content hash."""
        return entry.sha256 is not None and any(
            (m.original, m.size, m.sha256) == (entry.name, entry.size, entry.sha256)
            for m in self.members
        )


@dataclass(frozen=True)
class ProjectListing:
    """One project's folders as the janitor saw them."""

    path: Path
    archive_dir: Path
    done: tuple[Entry, ...] = ()
    failed: tuple[Entry, ...] = ()
    quarantine: tuple[Entry, ...] = ()
    stale_tmp: tuple[Entry, ...] = ()
    orphan_records: tuple[Entry, ...] = ()
    archive_temps: tuple[Entry, ...] = ()
    #: File names of the archives in ``archive/``.
    archives: tuple[str, ...] = ()
    #: Archive name → its index; ``None`` when it could not be read.
    indexes: Mapping[str, ArchiveIndex | None] = field(default_factory=dict)
    #: Task names with an ``.md.working`` or ``.md.delegated`` entry in the inbox.
    in_flight: frozenset[str] = frozenset()
    #: Task worktrees whose task is not in flight, as the caller listed them (folder mtimes).
    worktrees: tuple[Entry, ...] = ()


@dataclass(frozen=True)
class Listing:
    """Everything one pass looks at."""

    projects: tuple[ProjectListing, ...] = ()
    signals: tuple[Entry, ...] = ()


@dataclass(frozen=True, order=True)
class Bucket:
    """A folder and month: the files that share one archive series."""

    month: str
    folder: str

    def archive_name(self, seq: int) -> str:
        """``done-2026-11.tar.gz`` for the first archive, ``done-2026-11.<seq>.tar.gz`` after."""
        stem = f"{self.folder}-{self.month}"
        return f"{stem}{ARCHIVE_SUFFIX}" if seq == 0 else f"{stem}.{seq}{ARCHIVE_SUFFIX}"


class Reason(Enum):
    """Why an entry is deleted."""

    DONE_EXPIRED = "older than keep_done"
    FAILED_EXPIRED = "older than keep_failed"
    QUARANTINE_EXPIRED = "quarantined longer than keep_failed"
    STALE_TMP = "a producer's file left in tmp/"
    ORPHAN_RECORD = "a control record whose task is gone"
    ORPHAN_SIGNAL = "a hook signal file nobody read"
    ARCHIVE_TEMP = "an archive left half-written"


@dataclass(frozen=True)
class ArchiveFiles:
    """Write ``files`` into ``archive`` (``extend``: with the members it already has)."""

    archive: Path
    extend: bool
    files: tuple[Entry, ...]


@dataclass(frozen=True)
class RemoveArchived:
    """Remove an original that ``archive`` already holds."""

    entry: Entry
    archive: Path


@dataclass(frozen=True)
class Delete:
    """Delete an entry (a folder in quarantine with what it holds)."""

    entry: Entry
    reason: Reason


@dataclass(frozen=True)
class PruneWorktree:
    """Prune a task worktree kept longer than ``keep_worktrees`` (its branch stays)."""

    path: Path


Action = ArchiveFiles | RemoveArchived | Delete | PruneWorktree


@dataclass(frozen=True)
class Limits:
    """The bounds of one pass."""

    files: int = DEFAULT_PASS_FILES
    bytes: int = DEFAULT_PASS_BYTES
    worktrees: int = DEFAULT_PASS_WORKTREES


@dataclass(frozen=True)
class Plan:
    """The actions of one pass, in order, and how many entries wait for a later pass."""

    actions: tuple[Action, ...] = ()
    deferred: int = 0


class _Budget:
    """What is left of a pass's limits (nothing is ever refused without limits)."""

    def __init__(self, limits: Limits | None) -> None:
        self._limits = limits
        self._files = limits.files if limits else 0
        self._bytes = limits.bytes if limits else 0
        self._worktrees = limits.worktrees if limits else 0
        self.deferred = 0

    def take(self, size: int = 0) -> bool:
        """Spend one file (and ``size`` archived bytes); False, and counted, when spent out."""
        if self._limits is None:
            return True
        if self._files <= 0 or (size and self._bytes <= 0):
            self.deferred += 1
            return False
        self._files -= 1
        self._bytes -= size  # the last file may go past the bound: a big one still moves on
        return True

    def take_worktree(self) -> bool:
        """Spend one worktree prune; False, and counted, when spent out."""
        if self._limits is None:
            return True
        if self._worktrees <= 0:
            self.deferred += 1
            return False
        self._worktrees -= 1
        return True


# -- helpers the listing shell uses too ------------------------------------------------


def to_ns(moment: datetime) -> int:
    """A timezone-aware time as integer nanoseconds since the epoch (exact to the microsecond)."""
    delta = moment - _EPOCH
    return (delta.days * 86400 + delta.seconds) * _NS + delta.microseconds * 1000


def month_of(mtime_ns: int) -> str:
    """The UTC month (``2026-11``) of a file time."""
    return (_EPOCH + timedelta(microseconds=mtime_ns // 1000)).strftime("%Y-%m")


def parse_archive_name(name: str) -> tuple[Bucket, int] | None:
    """``done-2026-11.2.tar.gz`` → (its bucket, 2); ``None`` for any other name."""
    match = _ARCHIVE_RE.fullmatch(name)
    if match is None:
        return None
    folder, month, seq = match.groups()
    return Bucket(month, folder), int(seq or 0)


def latest_archives(names: Iterable[str]) -> dict[Bucket, tuple[str, int]]:
    """The newest archive (highest number) of each bucket."""
    latest: dict[Bucket, tuple[str, int]] = {}
    for name in names:
        parsed = parse_archive_name(name)
        if parsed is not None:
            bucket, seq = parsed
            if bucket not in latest or seq > latest[bucket][1]:
                latest[bucket] = (name, seq)
    return latest


def archives_to_read(project: ProjectListing, now: datetime, config: JanitorConfig) -> list[str]:
    """The archives whose index the plan needs: the newest of each month with old files."""
    if not config.archive:
        return []
    latest = latest_archives(project.archives)
    buckets = {bucket for bucket, _ in _aged(project, to_ns(now), config)}
    return sorted(latest[b][0] for b in buckets if b in latest)


def files_to_hash(project: ProjectListing, now: datetime, config: JanitorConfig) -> list[Path]:
    """Old files whose name and size an archive member has: only those may be in it already."""
    latest = latest_archives(project.archives)
    wanted = []
    for bucket, entry in _aged(project, to_ns(now), config):
        index = project.indexes.get(latest[bucket][0]) if bucket in latest else None
        if index is not None and any(
            (m.original, m.size) == (entry.name, entry.size) for m in index.members
        ):
            wanted.append(entry.path)
    return wanted


# -- the plan ------------------------------------------------------------------------------


def plan(
    listing: Listing,
    now: datetime,
    config: JanitorConfig,
    *,
    limits: Limits | None = None,
) -> Plan:
    """Decide one pass.

    Args:
        listing: the folders as listed (and the indexes and hashes the helpers asked for).
        now: the current wall time.
        config: keep ages and whether to archive.
        limits: the bounds of this pass; ``None`` does everything (``agentq janitor``).
    """
    now_ns = to_ns(now)
    budget = _Budget(limits)
    actions: list[Action] = []
    for project in listing.projects:
        actions += _plan_project(project, now_ns, config, budget)
    signal_age = int(SIGNAL_MAX_AGE * _NS)
    for entry in sorted(listing.signals, key=lambda e: e.mtime_ns):
        old = entry.kind is not EntryKind.DIR and now_ns - entry.mtime_ns > signal_age
        if old and budget.take():
            actions.append(Delete(entry, Reason.ORPHAN_SIGNAL))
    return Plan(tuple(actions), budget.deferred)


def _plan_project(
    project: ProjectListing, now_ns: int, config: JanitorConfig, budget: _Budget
) -> list[Action]:
    actions: list[Action] = [Delete(e, Reason.ARCHIVE_TEMP) for e in project.archive_temps]
    by_bucket: dict[Bucket, list[Entry]] = defaultdict(list)
    for bucket, entry in _aged(project, now_ns, config):
        by_bucket[bucket].append(entry)
    latest = latest_archives(project.archives)
    for bucket in sorted(by_bucket):
        entries = by_bucket[bucket]
        if not config.archive:
            reason = Reason.DONE_EXPIRED if bucket.folder == "done" else Reason.FAILED_EXPIRED
            actions += [Delete(e, reason) for e in entries if budget.take()]
        else:
            actions += _archive_bucket(project, bucket, entries, latest.get(bucket), budget)
    keep_failed = int(config.keep_failed * _NS)
    for entry in project.quarantine:
        if now_ns - max(entry.mtime_ns, entry.ctime_ns) > keep_failed and budget.take():
            actions.append(Delete(entry, Reason.QUARANTINE_EXPIRED))
    actions += [Delete(e, Reason.STALE_TMP) for e in project.stale_tmp if budget.take()]
    grace = int(RECORD_GRACE * _NS)
    for entry in project.orphan_records:
        if now_ns - entry.mtime_ns > grace and budget.take():
            actions.append(Delete(entry, Reason.ORPHAN_RECORD))
    return actions + _prune_worktrees(project, now_ns, config, budget)


def _prune_worktrees(
    project: ProjectListing, now_ns: int, config: JanitorConfig, budget: _Budget
) -> list[Action]:
    """Worktrees kept longer than ``keep_worktrees``, oldest first (none when it is null)."""
    if config.keep_worktrees is None:
        return []
    keep = int(config.keep_worktrees * _NS)
    return [
        PruneWorktree(entry.path)
        for entry in sorted(project.worktrees, key=lambda e: (e.mtime_ns, e.name))
        if now_ns - entry.mtime_ns > keep and budget.take_worktree()
    ]


def _archive_bucket(
    project: ProjectListing,
    bucket: Bucket,
    entries: list[Entry],
    latest: tuple[str, int] | None,
    budget: _Budget,
) -> list[Action]:
    """Leftovers of an interrupted pass are removed first; the rest goes into one archive."""
    index = project.indexes.get(latest[0]) if latest else None
    actions: list[Action] = []
    fresh: list[Entry] = []
    for entry in entries:
        if latest is not None and index is not None and index.holds(entry):
            if budget.take():
                actions.append(RemoveArchived(entry, project.archive_dir / latest[0]))
        elif budget.take(entry.size):
            fresh.append(entry)
    if not fresh:
        return actions
    if latest is None:
        target, extend = bucket.archive_name(0), False
    elif index is not None and index.raw_bytes < ARCHIVE_CAP_BYTES:
        target, extend = latest[0], True
    else:  # full, or unreadable and so never rewritten
        target, extend = bucket.archive_name(latest[1] + 1), False
    actions.append(ArchiveFiles(project.archive_dir / target, extend, tuple(fresh)))
    return actions


def _aged(
    project: ProjectListing, now_ns: int, config: JanitorConfig
) -> list[tuple[Bucket, Entry]]:
    """The plain files of ``done/`` and ``failed/`` past their keep age, oldest first."""
    found = []
    for folder, entries, keep in (
        ("done", project.done, config.keep_done),
        ("failed", project.failed, config.keep_failed),
    ):
        keep_ns = int(keep * _NS)
        for entry in entries:
            if (
                entry.kind is EntryKind.FILE
                and not entry.name.startswith(".")
                and now_ns - entry.mtime_ns > keep_ns
                and not _result_of_task_in_flight(entry.name, project.in_flight)
            ):
                found.append((Bucket(month_of(entry.mtime_ns), folder), entry))
    found.sort(key=lambda item: (item[1].mtime_ns, item[1].name))
    return found


def _result_of_task_in_flight(name: str, in_flight: frozenset[str]) -> bool:
    """Whether ``name`` (``x.md`` or ``x.3.md``) may be the result of an in-flight ``x.md``."""
    if name in in_flight:
        return True
    match = _SUFFIXED_RE.fullmatch(name)
    return match is not None and f"{match.group(1)}.md" in in_flight
