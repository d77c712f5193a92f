"""The task index: every task of every served project by state, without a folder walk per request.

Loaded once at start-up with one listing per folder (``inbox/``, ``done/``,
``failed/``), then kept current from the daemon's task events, and reconciled
with the folders now and then (a file removed by hand, the janitor's archiving).
Readers get pages in the order of the last state change, newest first, through
an opaque cursor. Titles, priorities and the footer fields of finished tasks are
read lazily, for the entries a page returns, and remembered.

Thread-safe: the main loop applies events, API threads read pages.
"""

from __future__ import annotations

import heapq
import os
import re
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from agentq.api.view import INBOX_STATES, TaskEntry, TaskPage
from agentq.core import events as ev
from agentq.queue import protocol as q
from agentq.queue.taskfile import MAX_FRONTMATTER_BYTES, split_footer
from agentq.queue.vetting import (
    DELEGATED_SUFFIX,
    WORKING_SUFFIX,
    NameKind,
    classify_name,
    scan_priority,
)

#: How much of a finished task's end is read to find its footer.
FOOTER_TAIL_BYTES = 32 * 1024
_FRONTMATTER = re.compile(rb"\A(?:\xef\xbb\xbf)?---[ \t]*\r?\n(.*?)^---[ \t]*$", re.DOTALL | re.M)
_TITLE = re.compile(rb"^title:[ \t]*(.*?)[ \t]*$", re.MULTILINE)
_TITLE_MAX = 200
_SUFFIX = {"pending": "", "working": WORKING_SUFFIX, "delegated": DELEGATED_SUFFIX}
_FOLDER = {
    "pending": "inbox",
    "working": "inbox",
    "delegated": "inbox",
    "done": "done",
    "failed": "failed",
}

Key = tuple[str, str, str]  # (project, folder, file name in that folder)


class _Record:
    """A mutable index entry (only ever touched under the index lock)."""

    __slots__ = (
        "account",
        "attempts",
        "changed",
        "created",
        "file",
        "filled",
        "folder",
        "priority",
        "project",
        "reason",
        "seq",
        "session",
        "state",
        "title",
    )

    def __init__(self, project: str, folder: str, file: str, state: str, at: float) -> None:
        self.project, self.folder, self.file, self.state = project, folder, file, state
        self.created = self.changed = at
        self.seq = 0
        self.title: str | None = None
        self.priority: int | None = None
        self.attempts: int | None = None
        self.session: str | None = None
        self.account: str | None = None
        self.reason: str | None = None
        self.filled = False

    @property
    def key(self) -> Key:
        return (self.project, self.folder, self.file)

    def entry(self) -> TaskEntry:
        return TaskEntry(
            project=self.project,
            name=self.file,
            state=self.state,
            created=self.created,
            changed=self.changed,
            title=self.title,
            priority=self.priority,
            attempts=self.attempts,
            session=self.session,
            account=self.account,
            reason=self.reason,
        )


class TaskIndex:
    """Tasks by project and state, newest state change first."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self._lock = threading.Lock()
        self._records: dict[Key, _Record] = {}
        self._buckets: dict[tuple[str, str], dict[Key, _Record]] = {}
        self._projects: dict[str, q.Project] = {}
        self._seq = 0
        #: project → the oldest pending arrival, while known (counts() is asked every pass).
        self._oldest: dict[str, float | None] = {}

    # -- loading and reconciling (main loop) -----------------------------------------------

    def load(self, project: q.Project) -> None:
        """Take on a project: one listing of each of its folders."""
        name = project.path.name
        with self._lock:
            if name in self._projects:
                return
            self._projects[name] = project
        for folder in ("inbox", "failed", "done"):
            self.reconcile(name, folder)

    def drop(self, project: str) -> None:
        """Forget a project the daemon no longer serves, with its tasks."""
        with self._lock:
            self._projects.pop(project, None)
            for key in [k for k in self._records if k[0] == project]:
                self._remove(key)
            for bucket in [b for b in self._buckets if b[0] == project]:
                del self._buckets[bucket]
            self._oldest.pop(project, None)

    def projects(self) -> dict[str, q.Project]:
        """The projects the index serves, by folder name."""
        with self._lock:
            return dict(self._projects)

    def reconcile(self, project: str, folder: str) -> None:
        """Make one folder's entries match a fresh listing (adds, removals, state changes)."""
        queue = self._projects.get(project)
        if queue is None:
            return
        listed = _list(getattr(queue, folder), folder)
        states = ("pending", "working", "delegated") if folder == "inbox" else (folder,)
        with self._lock:
            known = {k: r for st in states for k, r in self._buckets.get((project, st), {}).items()}
            for key in known.keys() - {(project, folder, f) for f in listed}:
                self._remove(key)
            for file, (state, at) in sorted(listed.items(), key=lambda kv: kv[1][1]):
                record = known.get((project, folder, file))
                if record is None:
                    self._insert(_Record(project, folder, file, state, at))
                elif record.state != state:
                    self._move(record, state, at)

    # -- events (main loop) -----------------------------------------------------------------

    def apply(self, event: ev.Event) -> None:
        """Follow a task event (an :class:`~agentq.core.events.EventLog` listener)."""
        fields = event.fields
        project, task, state = fields.get("project"), fields.get("task"), fields.get("state")
        if not isinstance(project, str) or not isinstance(task, str):
            return
        at = event.time.timestamp()
        with self._lock:
            if project not in self._projects:
                return
            if event.kind == DELIVERED:
                record = self._records.get((project, "inbox", task))
                if record is not None:
                    record.session = _text(fields.get("session")) or record.session
                    record.account = _text(fields.get("account")) or record.account
                return
            if event.kind != ev.TASK or state not in _FOLDER:
                return
            self._apply_task(project, task, str(state), at, fields)

    def _apply_task(
        self, project: str, task: str, state: str, at: float, fields: Mapping[str, Any]
    ) -> None:
        inbox_key = (project, "inbox", task)
        retried = _text(fields.get("retried_from"))
        if retried:
            self._remove((project, "failed", retried))
        if state in INBOX_STATES:
            record = self._records.get(inbox_key)
            if record is None:
                record = _Record(project, "inbox", task, state, at)
                self._insert(record)
            elif record.state != state:
                self._move(record, state, at)
            if isinstance(fields.get("attempts"), int):
                record.attempts = fields["attempts"]
            record.reason = _text(fields.get("reason"))  # why it waits; gone once it moves on
            return
        previous = self._remove(inbox_key)
        file = _text(fields.get("result")) or task
        record = _Record(project, state, file, state, at)
        if previous is not None:
            record.created = previous.created
            for attr in ("title", "priority", "attempts", "session", "account"):
                setattr(record, attr, getattr(previous, attr))
        if isinstance(fields.get("attempts"), int):
            record.attempts = fields["attempts"]
        record.reason = _text(fields.get("reason"))
        old = self._records.get(record.key)
        if old is not None:
            self._remove(old.key)
        self._insert(record)

    def note_session(self, project: str, task: str, session: str, account: str | None) -> None:
        """Remember which session (and account) works on an in-flight task."""
        with self._lock:
            record = self._records.get((project, "inbox", task))
            if record is not None:
                record.session = session
                record.account = account or record.account

    # -- reading (any thread) ---------------------------------------------------------------

    def counts(self) -> dict[str, dict[str, Any]]:
        """Per project: its path, the number of tasks in each state, the oldest pending arrival."""
        with self._lock:
            out: dict[str, dict[str, Any]] = {}
            for name, project in self._projects.items():
                row: dict[str, Any] = {s: len(self._buckets.get((name, s), ())) for s in _FOLDER}
                row["path"] = str(project.path)
                row["oldest_pending"] = self._oldest_pending(name)
                out[name] = row
            return out

    def in_flight(self) -> list[TaskEntry]:
        """Every working or delegated task."""
        with self._lock:
            return [
                r.entry()
                for (_, state), bucket in self._buckets.items()
                if state in ("working", "delegated")
                for r in bucket.values()
            ]

    def page(
        self, project: str | None, state: str | None, limit: int, cursor: str | None
    ) -> TaskPage:
        """Up to ``limit`` tasks, most recent state change first, after ``cursor``.

        Raises:
            ValueError: the cursor is not one this index handed out.
        """
        below = _parse_cursor(cursor)
        with self._lock:
            buckets = [
                b
                for (p, s), b in self._buckets.items()
                if (project is None or p == project) and (state is None or s == state)
            ]
            total = sum(len(b) for b in buckets)
            merged = heapq.merge(*(_newest_first(b, below) for b in buckets), key=lambda r: -r.seq)
            records = [r for _, r in zip(range(limit + 1), merged, strict=False)]
            entries = [r.entry() for r in records[:limit]]
            unfilled = [r.key for r in records[:limit] if not r.filled]
            more = len(records) > limit
        if unfilled:
            self._fill(unfilled)
            entries = self._refresh(entries)
        next_cursor = f"s{records[limit - 1].seq}" if more and limit > 0 else None
        return TaskPage(entries, next_cursor, total)

    def find(self, project: str, name: str) -> tuple[TaskEntry, Path] | None:
        """A task by name: the in-flight one first, then ``failed/``, then ``done/``."""
        with self._lock:
            queue = self._projects.get(project)
            record = next(
                (
                    r
                    for folder in ("inbox", "failed", "done")
                    if (r := self._records.get((project, folder, name))) is not None
                ),
                None,
            )
            if queue is None or record is None:
                return None
            key, entry = record.key, record.entry()
            filled = record.filled
        if not filled:
            self._fill([key])
            entry = self._refresh([entry])[0]
        return entry, _path(queue, entry.state, entry.name)

    # -- internals (under the lock unless said otherwise) -----------------------------------

    def _oldest_pending(self, project: str) -> float | None:
        if project not in self._oldest:
            pending = self._buckets.get((project, "pending"), {})
            self._oldest[project] = min((r.created for r in pending.values()), default=None)
        return self._oldest[project]

    def _insert(self, record: _Record) -> None:
        self._seq += 1
        record.seq = self._seq
        self._records[record.key] = record
        self._buckets.setdefault((record.project, record.state), {})[record.key] = record
        if record.state == "pending" and record.project in self._oldest:
            oldest = self._oldest[record.project]
            if oldest is None or record.created < oldest:
                self._oldest[record.project] = record.created

    def _remove(self, key: Key) -> _Record | None:
        record = self._records.pop(key, None)
        if record is not None:
            self._buckets.get((record.project, record.state), {}).pop(key, None)
            if record.state == "pending" and self._oldest.get(record.project) == record.created:
                del self._oldest[record.project]  # it may have been the oldest: found again
        return record

    def _move(self, record: _Record, state: str, at: float) -> None:
        self._remove(record.key)
        record.state, record.changed = state, at
        self._insert(record)

    def _fill(self, keys: list[Key]) -> None:
        """Read title, priority and footer fields for ``keys`` (file reads outside the lock)."""
        found: dict[Key, dict[str, object]] = {}
        for key in keys:
            project, folder, file = key
            with self._lock:
                record, queue = self._records.get(key), self._projects.get(project)
                state = record.state if record else ""
            if record is None or queue is None:
                continue
            found[key] = _read_details(_path(queue, state, file), folder != "inbox")
        with self._lock:
            for key, details in found.items():
                record = self._records.get(key)
                if record is None:
                    continue
                for attr, value in details.items():
                    if value is not None and getattr(record, attr) is None:
                        setattr(record, attr, value)
                record.filled = True

    def _refresh(self, entries: list[TaskEntry]) -> list[TaskEntry]:
        with self._lock:
            out = []
            for e in entries:
                record = self._records.get((e.project, _FOLDER[e.state], e.name))
                out.append(record.entry() if record is not None else e)
            return out


#: The event kind the daemon emits when an agent was seen busy on a task (delivery confirmed).
DELIVERED = "delivered"


def _newest_first(bucket: dict[Key, _Record], below: int | None) -> Iterator[_Record]:
    for record in reversed(bucket.values()):
        if below is None or record.seq < below:
            yield record


def _parse_cursor(cursor: str | None) -> int | None:
    if cursor is None or cursor == "":
        return None
    if not re.fullmatch(r"s[0-9]{1,18}", cursor):
        raise ValueError("invalid cursor")
    return int(cursor[1:])


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _path(queue: q.Project, state: str, file: str) -> Path:
    folder = {"done": queue.done, "failed": queue.failed}.get(state, queue.inbox)
    return folder / (file + _SUFFIX.get(state, ""))


def _list(folder: Path, kind: str) -> dict[str, tuple[str, float]]:
    """One listing: file name → (state, change time); names the queue ignores are skipped."""
    out: dict[str, tuple[str, float]] = {}
    try:
        entries: Iterable[os.DirEntry[str]] = list(os.scandir(folder))
    except OSError:
        return out
    for entry in entries:
        if kind == "inbox":
            named = classify_name(entry.name)
            if named is NameKind.WORKING:
                name, state = entry.name[: -len(WORKING_SUFFIX)], "working"
            elif named is NameKind.DELEGATED:
                name, state = entry.name[: -len(DELEGATED_SUFFIX)], "delegated"
            elif named is NameKind.PENDING:
                name, state = entry.name, "pending"
            else:
                continue
        elif entry.name.startswith(".") or not entry.name.endswith(".md"):
            continue
        else:
            name, state = entry.name, kind
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        out[name] = (state, st.st_ctime if state == "pending" else st.st_mtime)
    return out


def _read_details(path: Path, finished: bool) -> dict[str, object]:
    """Title and priority from the head; attempts, session, account, reason from the footer."""
    details: dict[str, object] = {}
    head = _read(path, 0, MAX_FRONTMATTER_BYTES + 8)
    front = _FRONTMATTER.match(head)
    if front:
        found = _TITLE.search(front.group(1))
        if found:
            title = found.group(1).decode("utf-8", "replace").strip().strip("\"'")
            details["title"] = title[:_TITLE_MAX] or None
        details["priority"] = scan_priority(head)
    else:
        details["priority"] = 0
    if finished:
        tail = _read(path, -FOOTER_TAIL_BYTES, FOOTER_TAIL_BYTES)
        _, footer = split_footer(tail.decode("utf-8", "replace"))
        if footer is not None:
            details["attempts"] = footer.attempts
            details["account"] = footer.account
            details["reason"] = footer.error
            if footer.executor == "local":
                details["session"] = footer.target
    return details


def _read(path: Path, offset: int, size: int) -> bytes:
    """Read ``size`` bytes at ``offset`` (negative: from the end) of a plain file, never a link."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return b""
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return b""
        if offset < 0:
            os.lseek(fd, max(0, st.st_size + offset), os.SEEK_SET)
        return os.read(fd, size)
    except OSError:
        return b""
    finally:
        os.close(fd)
