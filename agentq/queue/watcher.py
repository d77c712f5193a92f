"""Inbox watching: one watchdog observer for every inbox, handlers that only mark folders dirty.

Events are hints (reliability R8): a handler records "this inbox is dirty" and
wakes the main loop, which lists the folder. A file that arrived by rename (the
Maildir way: written in ``tmp/``, renamed in) is also noted with its inode, so the
scanner may take it as complete at once instead of waiting for the quiet period.
Besides each inbox its queue folder is watched, so an inbox deleted and recreated is
watched again at once (the periodic rescan is only the safety net). A kernel queue
overflow (events were lost) is counted and wakes the loop, which then rescans
everything. Watch health is also checked on every rescan: a dead emitter is replaced,
and an inbox whose watch cannot be added (ENOSPC, EMFILE…) is polled. This is the only
module importing watchdog.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import DEFAULT_OBSERVER_TIMEOUT, BaseObserver
from watchdog.observers.inotify import InotifyFullEmitter
from watchdog.observers.inotify_c import InotifyEvent, InotifyFD

logger = logging.getLogger(__name__)

#: Our own reads open files; open/close-nowrite events would wake us forever.
_EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileMovedEvent,
    FileClosedEvent,
    FileModifiedEvent,
    DirCreatedEvent,
    DirMovedEvent,
]
#: In a folder whose files are only ever renamed into place (hook signals, requests).
_MOVE_EVENTS: list[type[FileSystemEvent]] = [FileMovedEvent]
#: In a queue folder only an inbox (re)appearing matters.
_PARENT_EVENTS: list[type[FileSystemEvent]] = [DirCreatedEvent, DirMovedEvent]


class WatchObserver(Protocol):
    """The part of a watchdog observer :class:`InboxWatcher` uses (tests hand in a refusing one)."""

    daemon: bool

    @property
    def emitters(self) -> Iterable[Any]:
        """The emitter threads, one per scheduled watch."""
        ...

    def start(self) -> None:
        """Start the observer thread."""

    def stop(self) -> None:
        """Ask the observer thread to stop."""

    def join(self, timeout: float | None = None) -> None:
        """Wait for the observer thread to end."""

    def schedule(
        self,
        event_handler: Any,
        path: str,
        *,
        recursive: bool = False,
        event_filter: list[type[FileSystemEvent]] | None = None,
    ) -> Any:
        """Watch ``path``; raises OSError when the kernel refuses (ENOSPC, EMFILE…)."""

    def unschedule(self, watch: Any) -> None:
        """Stop one watch."""


class _OverflowReportingFD(InotifyFD):
    """watchdog's inotify reader, which also reports a kernel queue overflow.

    watchdog reads IN_Q_OVERFLOW and hands it to each watch group's
    ``on_queue_overflow``, which for a non-recursive watch only discards pending
    move halves: no event reaches any handler, so the lost events would be lost
    silently (watchdog#654). This reader calls ``on_overflow`` first.
    """

    def __init__(self, on_overflow: Callable[[], None]) -> None:
        super().__init__()
        self._on_overflow = on_overflow

    def handle_event(self, event: InotifyEvent) -> None:
        if event.is_queue_overflow:
            try:
                self._on_overflow()
            except Exception:  # the reader thread must survive whatever the callback does
                logger.exception("overflow callback failed")
        super().handle_event(event)


class _InotifyObserver(BaseObserver):
    """watchdog's ``InotifyObserver`` with an overflow-reporting reader.

    Its emitters report a file renamed in from an unwatched folder (``tmp/``) as a move
    with no source, not as a creation, so a rename in can be told from a write in place.
    """

    def __init__(self, on_overflow: Callable[[], None]) -> None:
        self._reader = _OverflowReportingFD(on_overflow)
        self._reader.start()
        super().__init__(
            InotifyFullEmitter, timeout=DEFAULT_OBSERVER_TIMEOUT, inotify_fd=self._reader
        )

    def on_thread_stop(self) -> None:
        super().on_thread_stop()
        self._reader.stop()
        self._reader.join()


@dataclass
class WatchState:
    """How one inbox is watched."""

    mode: str  # "inotify" or "polling"
    reason: str = ""
    ino: int = 0
    rewatched: int = 0


class _DirtyHandler(FileSystemEventHandler):
    """Marks one inbox dirty (noting a file renamed in); never raises, never blocks (R15)."""

    def __init__(
        self,
        inbox: Path,
        mark: Callable[[Path], None],
        renamed: Callable[[Path, str, tuple[int, int]], None] | None = None,
    ) -> None:
        self._inbox = inbox
        self._folder = os.fsencode(inbox)
        self._mark = mark
        self._renamed = renamed

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            if self._renamed is not None and isinstance(event, FileMovedEvent):
                self._note_rename(self._renamed, os.fsencode(event.dest_path))
            self._mark(self._inbox)
        except Exception:  # a handler must never kill the emitter thread
            logger.exception("watch handler failed")

    def _note_rename(self, note: Callable[[Path, str, tuple[int, int]], None], dest: bytes) -> None:
        folder, _, name = dest.rpartition(b"/")
        if folder != self._folder or not name:
            return
        with contextlib.suppress(OSError):  # gone already: nothing to note
            # The scanner trusts the rename for this inode, unchanged since, only.
            st = os.lstat(dest)
            note(self._inbox, os.fsdecode(name), (st.st_ino, st.st_mtime_ns))


class _ParentHandler(FileSystemEventHandler):
    """Notices an inbox (re)appearing in its queue folder; never raises, never blocks."""

    def __init__(self, inbox: Path, suspect: Callable[[Path], None]) -> None:
        self._inbox = os.fsencode(inbox)
        self._path = inbox
        self._suspect = suspect

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            paths = {os.fsencode(event.src_path), os.fsencode(event.dest_path or b"")}
            if self._inbox in paths:
                self._suspect(self._path)
        except Exception:  # a handler must never kill the emitter thread
            logger.exception("watch handler failed")


class InboxWatcher:
    """Watches a changing set of inbox folders and reports which are dirty."""

    def __init__(self, wake: threading.Event, *, observer: WatchObserver | None = None) -> None:
        """``observer`` replaces the overflow-aware inotify observer (tests use it)."""
        self._wake = wake
        self._lock = threading.Lock()
        self._dirty: set[Path] = set()
        #: inbox → name → (inode, mtime) of files seen arriving by rename (until taken).
        self._renamed: dict[Path, dict[str, tuple[int, int]]] = {}
        self._suspects: set[Path] = set()
        self._overflows = 0
        self._observer: WatchObserver = observer or _InotifyObserver(self._note_overflow)
        self._watches: dict[Path, Any] = {}
        self._parents: dict[Path, Any] = {}
        self._moves_only: set[Path] = set()
        self.states: dict[Path, WatchState] = {}
        self._started = False

    def start(self) -> None:
        """Start the observer thread."""
        self._observer.daemon = True
        self._observer.start()
        self._started = True

    def stop(self) -> None:
        """Stop the observer thread (and the inotify reader with it)."""
        self._observer.stop()
        if self._started:
            self._observer.join(timeout=5)

    def mark(self, inbox: Path) -> None:
        """Record ``inbox`` as dirty and wake the loop."""
        with self._lock:
            self._dirty.add(inbox)
        self._wake.set()

    def _note_renamed(self, inbox: Path, name: str, identity: tuple[int, int]) -> None:
        with self._lock:
            self._renamed.setdefault(inbox, {})[name] = identity

    def take_renamed(self, inbox: Path) -> dict[str, tuple[int, int]]:
        """Files seen arriving in ``inbox`` by rename since the last call: name → (ino, mtime)."""
        with self._lock:
            return self._renamed.pop(inbox, {})

    def _suspect(self, inbox: Path) -> None:
        """An inbox appeared in its queue folder: watch it again on the loop's thread."""
        with self._lock:
            self._suspects.add(inbox)
        self._wake.set()

    def _note_overflow(self) -> None:
        with self._lock:
            self._overflows += 1
        logger.warning("inotify queue overflowed: events were lost; rescanning")
        self._wake.set()

    def take_overflows(self) -> int:
        """How many kernel queue overflows happened since the last call (each means: rescan)."""
        with self._lock:
            count, self._overflows = self._overflows, 0
        return count

    def take_dirty(self) -> set[Path]:
        """Return and clear the dirty set (polled inboxes are listed on a timer: :meth:`polled`).

        An inbox seen (re)appearing is watched again first, then reported dirty:
        listing it after the new watch is in place misses nothing written between.
        """
        with self._lock:
            suspects, self._suspects = self._suspects, set()
        for inbox in suspects:
            self._recheck(inbox)
        with self._lock:
            dirty, self._dirty = self._dirty, set()
        return dirty

    def polling(self) -> bool:
        """Whether any inbox is polled instead of watched."""
        return any(s.mode == "polling" for s in self.states.values())

    def polled(self) -> set[Path]:
        """The inboxes listed on a timer instead of watched (configured, or a fallback)."""
        return {p for p, s in self.states.items() if s.mode == "polling"}

    def poll(self, inbox: Path, reason: str) -> None:
        """List ``inbox`` on a timer instead of watching it (``dispatch.watch: poll``)."""
        self.unwatch(inbox)
        self.states[inbox] = WatchState("polling", reason)

    def watch(self, inbox: Path, *, moves_only: bool = False) -> None:
        """Watch ``inbox`` and its queue folder (idempotent); poll when inotify refuses.

        ``moves_only``: a folder of ours whose files are renamed into place (hook signals,
        requests): only their final rename wakes the loop, not the writing before it.
        """
        if moves_only:
            self._moves_only.add(inbox)  # kept for a re-watch
        if inbox in self._watches:
            return
        try:
            ino = os.stat(inbox).st_ino
            if inbox not in self._parents:
                self._parents[inbox] = self._observer.schedule(
                    _ParentHandler(inbox, self._suspect),
                    str(inbox.parent),
                    event_filter=_PARENT_EVENTS,
                )
            if inbox in self._moves_only:
                handler = _DirtyHandler(inbox, self.mark)
                handle = self._observer.schedule(handler, str(inbox), event_filter=_MOVE_EVENTS)
            else:
                handler = _DirtyHandler(inbox, self.mark, self._note_renamed)
                handle = self._observer.schedule(handler, str(inbox), event_filter=_EVENTS)
        except OSError as exc:
            self._unschedule(self._parents.pop(inbox, None))
            reason = exc.strerror or str(exc)
            self.states[inbox] = WatchState("polling", f"inotify unavailable: {reason}")
            logger.warning(
                "inbox polled instead of watched", extra={"inbox": str(inbox), "reason": reason}
            )
            return
        previous = self.states.get(inbox)
        self._watches[inbox] = handle
        self.states[inbox] = WatchState(
            "inotify", ino=ino, rewatched=previous.rewatched if previous else 0
        )

    def unwatch(self, inbox: Path) -> None:
        """Stop watching ``inbox`` and its queue folder."""
        self._unschedule(self._watches.pop(inbox, None))
        self._unschedule(self._parents.pop(inbox, None))

    def _unschedule(self, handle: Any) -> None:
        if handle is None:
            return
        # The emitter may already have died with its folder.
        with contextlib.suppress(KeyError, OSError):
            self._observer.unschedule(handle)

    def check_health(self) -> list[Path]:
        """Re-watch inboxes that were recreated or whose emitter died; return them."""
        return [inbox for inbox in list(self.states) if self._recheck(inbox)]

    def _recheck(self, inbox: Path) -> bool:
        """Watch ``inbox`` again if it was recreated or an emitter died; True if it was.

        A missing inbox keeps its queue folder's watch, which notices it coming back.
        """
        state = self.states.get(inbox)
        if state is None or state.mode != "inotify":
            return False
        alive = {e.watch.path for e in list(self._observer.emitters) if e.is_alive()}
        try:
            ino = os.stat(inbox).st_ino
        except FileNotFoundError:
            ino = -1
        parent_alive = str(inbox.parent) in alive
        if ino == state.ino and str(inbox) in alive and parent_alive:
            return False
        self._unschedule(self._watches.pop(inbox, None))
        if not parent_alive:
            self._unschedule(self._parents.pop(inbox, None))
        if ino == -1:
            state.ino = -1
            if not parent_alive:  # the queue folder went too: only a rescan brings it back
                self.states.pop(inbox, None)
            return False
        state.rewatched += 1
        self.watch(inbox)
        self.mark(inbox)
        logger.info("inbox watched again", extra={"inbox": str(inbox)})
        return True

    def summary(self) -> dict[str, dict[str, Any]]:
        """Watch state per inbox for status output."""
        return {
            str(p): {"mode": s.mode, "reason": s.reason, "rewatched": s.rewatched}
            for p, s in self.states.items()
        }
