"""Scanning an inbox: every entry sorted into ready, waiting, refused or in flight.

:class:`InboxScanner` applies the rules of :mod:`agentq.queue.vetting` to a listing of
one inbox. A fresh file waits out the quiet period unless it arrived whole (renamed in,
or linked in and unlinked from ``tmp/``); a file someone still has open for writing is
*incomplete*; one that is not plainly ours is refused before it is opened. A ready
file's head is read (no links followed) for its priority and the scheduler's keys, once
per version of the file; the checks on the open file (ours, no writer) run on every
scan. Reliability rules R9 and R10.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agentq.core.errors import RefusedEntryError
from agentq.queue.taskfile import MAX_FRONTMATTER_BYTES, TaskMeta, peek_meta
from agentq.queue.vetting import (
    DELEGATED_SUFFIX,
    WORKING_SUFFIX,
    NameKind,
    arrived_whole,
    classify_name,
    invalid_name_reason,
    refusal_reason,
    relook_ns,
    scan_priority,
)

logger = logging.getLogger(__name__)

_F_SETLEASE = getattr(fcntl, "F_SETLEASE", 1024)
_F_RDLCK = getattr(fcntl, "F_RDLCK", 0)
_F_UNLCK = getattr(fcntl, "F_UNLCK", 2)


@dataclass(frozen=True)
class Pending:
    """A pending task seen by a scan."""

    name: str
    priority: int
    arrival_ns: int
    #: What the scheduler reads before the claim (defaults when unreadable).
    meta: TaskMeta = field(default_factory=TaskMeta)


@dataclass
class ScanResult:
    """What one scan of an inbox found."""

    ready: list[Pending] = field(default_factory=list)
    waiting: dict[str, int] = field(default_factory=dict)  #: name → wall ns it may be ready
    incomplete: list[str] = field(default_factory=list)  #: names a writer still has open
    #: name → arrival (ctime, ns) of every pending task seen, ready or waiting.
    arrivals: dict[str, int] = field(default_factory=dict)
    #: name → (inode, mtime) of fresh files with a second link (a producer's from ``tmp/``?).
    linked: dict[str, tuple[int, int]] = field(default_factory=dict)
    refused: list[tuple[str, str]] = field(default_factory=list)
    working: list[str] = field(default_factory=list)
    delegated: list[str] = field(default_factory=list)


class InboxScanner:
    """Sorts one inbox's entries; remembers what the scheduler read of each ready file."""

    def __init__(self, inbox: Path, uid: int) -> None:
        self._inbox = inbox
        self._uid = uid
        #: name → ((inode, size, mtime, ctime), the task as a scan found it ready): its head is
        #: read and parsed once per version of the file (the writer probe runs on every scan).
        self._known: dict[str, tuple[tuple[int, int, int, int], Pending]] = {}

    def scan(
        self,
        entries: Iterable[os.DirEntry[str]],
        now_ns: int,
        quiet_ns: int,
        whole: Mapping[str, tuple[int, int]] | None = None,
    ) -> ScanResult:
        """Sort the inbox's ``entries`` into ready / waiting / refused / in flight.

        ``whole``: name → (inode, mtime) of files that arrived complete (renamed, or linked in
        and unlinked from ``tmp/``): they skip the quiet period, no other rule.
        """
        result = ScanResult()
        for entry in entries:
            kind = classify_name(entry.name)
            if kind is NameKind.WORKING:
                result.working.append(entry.name[: -len(WORKING_SUFFIX)])
            elif kind is NameKind.DELEGATED:
                result.delegated.append(entry.name[: -len(DELEGATED_SUFFIX)])
            elif kind in (NameKind.INVALID, NameKind.PENDING):
                invalid = kind is NameKind.INVALID
                self._vet_pending(entry, now_ns, quiet_ns, result, invalid, whole or {})
        result.ready.sort(key=lambda p: (-p.priority, p.arrival_ns, p.name))
        ready = {p.name for p in result.ready}
        self._known = {n: k for n, k in self._known.items() if n in ready}
        return result

    def _vet_pending(
        self,
        entry: os.DirEntry[str],
        now_ns: int,
        quiet_ns: int,
        out: ScanResult,
        invalid_name: bool,
        whole: Mapping[str, tuple[int, int]],
    ) -> None:
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            return
        quiet_at = st.st_mtime_ns + quiet_ns
        fresh = stat.S_ISREG(st.st_mode) and quiet_at > now_ns
        if fresh and not arrived_whole(entry.name, st, whole):
            # A fresh regular file may still be mid-write: judge it once it is quiet. One
            # with a second link is looked at again in a moment: a producer's link from
            # tmp/ is undone within milliseconds (then it is whole), a hard link is not.
            out.waiting[entry.name] = quiet_at
            if st.st_nlink > 1:
                out.linked[entry.name] = (st.st_ino, st.st_mtime_ns)
                out.waiting[entry.name] = min(quiet_at, now_ns + relook_ns(now_ns, st))
            out.arrivals[entry.name] = st.st_ctime_ns
            return
        reason = refusal_reason(st, self._uid)
        if reason:
            out.refused.append((entry.name, reason))
            return
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        known = self._known.get(entry.name)
        if known is not None and known[0] != stamp:
            known = None
        try:
            head, busy = self._peek(self._inbox / entry.name, read=known is None)
        except RefusedEntryError as exc:
            out.refused.append((entry.name, exc.reason))
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            out.refused.append((entry.name, f"refused: unreadable ({exc.strerror})"))
            return
        if busy:
            out.incomplete.append(entry.name)
        elif invalid_name:
            out.refused.append((entry.name, invalid_name_reason(entry.name)))
        else:
            if known is None:
                task = Pending(entry.name, scan_priority(head), st.st_ctime_ns, peek_meta(head))
                known = self._known[entry.name] = (stamp, task)
            out.ready.append(known[1])
            out.arrivals[entry.name] = st.st_ctime_ns

    def _peek(self, path: Path, read: bool = True) -> tuple[bytes, bool]:
        """Read the head of a file safely; report whether someone still has it open for writing.

        ``read=False``: only the checks (its head is known for this version of the file).
        """
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            reason = refusal_reason(os.fstat(fd), self._uid)
            if reason:
                raise RefusedEntryError(reason, path)
            busy = _has_writer(fd)
            head = os.read(fd, MAX_FRONTMATTER_BYTES + 8) if read else b""
        finally:
            os.close(fd)
        return head, busy


def _has_writer(fd: int) -> bool:
    """True when another process has the file open for writing (a read lease is refused then)."""
    try:
        fcntl.fcntl(fd, _F_SETLEASE, _F_RDLCK)
    except OSError as exc:
        # EAGAIN: a writer holds it. Anything else: leases are unsupported here (network
        # file systems), so the quiet period alone decides.
        return exc.errno in (errno.EAGAIN, errno.EBUSY)
    fcntl.fcntl(fd, _F_SETLEASE, _F_UNLCK)
    return False
