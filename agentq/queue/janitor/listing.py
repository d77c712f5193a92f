"""Reading the folders a janitor pass looks at into a :class:`~agentq.queue.janitor.plan.Listing`.

Read-only: entries are ``lstat``-ed, never followed; the only files opened are archives
(to read their index) and plain files of ours that may already be archived (to hash them).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import stat
from datetime import datetime
from pathlib import Path

from agentq.config.models import Config
from agentq.core import durable
from agentq.core.errors import ArchiveError
from agentq.queue.janitor import plan as p
from agentq.queue.janitor.archive import file_sha256, read_index
from agentq.queue.protocol import Project
from agentq.queue.vetting import NameKind, classify_name, refusal_reason, task_of

logger = logging.getLogger(__name__)

ARCHIVE_DIRNAME = "archive"
_IN_FLIGHT = (NameKind.WORKING, NameKind.DELEGATED)


def archive_dir(project: Project) -> Path:
    """Where a project's archives live: ``<project>/.agent-queue/archive/``."""
    return project.queue / ARCHIVE_DIRNAME


def list_project(project: Project, now: datetime, config: Config) -> p.ProjectListing:
    """List one project's folders, then read the indexes and hashes the plan will need."""
    uid = os.getuid()
    archives, temps = [], []
    for name in _names(archive_dir(project)):
        if name.startswith(durable.TEMP_PREFIX):
            temps.append(archive_dir(project) / name)
        elif p.parse_archive_name(name) is not None:
            archives.append(name)
    records = project.orphan_records()  # before the inbox listing below: see the plan's grace
    listing = p.ProjectListing(
        path=project.path,
        archive_dir=archive_dir(project),
        done=_entries(project.done, uid, hidden=False),
        failed=_entries(project.failed, uid, hidden=False),
        quarantine=_entries(project.quarantine, uid),
        stale_tmp=_stat_all(project.stale_tmp(now.timestamp(), config.dispatch.tmp_max_age), uid),
        orphan_records=_stat_all(records, uid),
        archive_temps=_stat_all(temps, uid),
        archives=tuple(sorted(archives)),
        in_flight=frozenset(
            task_of(n) for n in _names(project.inbox) if classify_name(n) in _IN_FLIGHT
        ),
    )
    indexes: dict[str, p.ArchiveIndex | None] = {}
    for name in p.archives_to_read(listing, now, config.janitor):
        try:
            indexes[name] = read_index(listing.archive_dir / name)
        except ArchiveError as exc:
            logger.warning("archive unreadable; left as it is", extra={"error": str(exc)})
            indexes[name] = None
    listing = dataclasses.replace(listing, indexes=indexes)
    hashes = {path: file_sha256(path) for path in p.files_to_hash(listing, now, config.janitor)}
    if not hashes:
        return listing
    return dataclasses.replace(
        listing,
        done=tuple(_with_hash(e, hashes) for e in listing.done),
        failed=tuple(_with_hash(e, hashes) for e in listing.failed),
    )


def list_signals(folder: Path) -> tuple[p.Entry, ...]:
    """Every entry of the hook signal folder (``<state_dir>/signals``), temp files included."""
    return _stat_all([folder / name for name in _names(folder)], os.getuid())


def entry_of(path: Path, uid: int) -> p.Entry | None:
    """``lstat`` one path into an entry; ``None`` when it is gone."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if refusal_reason(st, uid) is None:
        kind = p.EntryKind.FILE
    elif stat.S_ISDIR(st.st_mode):
        kind = p.EntryKind.DIR
    else:
        kind = p.EntryKind.OTHER
    return p.Entry(path, kind, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def _names(folder: Path) -> list[str]:
    try:
        return sorted(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []


def _entries(folder: Path, uid: int, *, hidden: bool = True) -> tuple[p.Entry, ...]:
    """The entries of a folder, without our own temp files (and dotfiles unless ``hidden``)."""
    names = [
        n
        for n in _names(folder)
        if not n.startswith(durable.TEMP_PREFIX) and (hidden or not n.startswith("."))
    ]
    return _stat_all([folder / n for n in names], uid)


def _stat_all(paths: list[Path], uid: int) -> tuple[p.Entry, ...]:
    return tuple(e for e in (entry_of(path, uid) for path in paths) if e is not None)


def _with_hash(entry: p.Entry, hashes: dict[Path, str | None]) -> p.Entry:
    return dataclasses.replace(entry, sha256=hashes[entry.path]) if entry.path in hashes else entry
