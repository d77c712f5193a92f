"""Inbox watching: one inotify reader for every inbox, callbacks that only mark folders dirty.

Events are hints (reliability R8): a callback records "this inbox is dirty" and
wakes the main loop, which lists the folder. A file that arrived by rename (the
Maildir way: written in ``tmp/``, renamed in) is also noted with its inode and mtime,
so the scanner may take it as complete at once instead of waiting for the quiet period.
Besides each inbox its queue folder is watched, so an inbox deleted and recreated is
watched again at once (the periodic rescan is only the safety net). A kernel queue
overflow (events were lost) is counted and wakes the loop, which then rescans
everything. Watch health is also checked on every rescan: a watch the kernel dropped
is added again, and an inbox whose watch cannot be added (ENOSPC, EMFILE…) is polled.

Every watch is a callback on watchdog's inotify reader (one thread, one inotify
descriptor, for all of them), called on the reader's thread: no thread per watch,
so a thousand inboxes cost a thousand kernel watches and nothing more. This is the
only module importing watchdog.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from watchdog.observers.inotify_c import InotifyConstants as C
from watchdog.observers.inotify_c import InotifyEvent, InotifyFD

logger = logging.getLogger(__name__)

_FOLDER = C.IN_ONLYDIR | C.IN_DONT_FOLLOW | C.IN_DELETE_SELF | C.IN_MOVE_SELF
#: An inbox: arrivals, writes in place (and their close), renames out. Our own reads open
#: files; open/close-nowrite events would wake us forever.
_INBOX = _FOLDER | C.IN_CREATE | C.IN_MOVE | C.IN_MODIFY | C.IN_CLOSE_WRITE
#: A folder of ours whose files are only ever renamed into place (hook signals, requests).
_MOVES = _FOLDER | C.IN_MOVED_TO
#: A queue folder: only an inbox (re)appearing in it matters.
_PARENT = _FOLDER | C.IN_CREATE | C.IN_MOVED_TO


class InotifyReader(Protocol):
    """The part of watchdog's inotify reader :class:`InboxWatcher` uses (tests hand in one)."""

    daemon: bool

    def start(self) -> None:
        """Start the reader thread."""

    def stop(self) -> None:
        """Ask the reader thread to stop (it closes the descriptor and every watch)."""

    def join(self, timeout: float | None = None) -> None:
        """Wait for the reader thread to end."""

    def is_alive(self) -> bool:
        """Whether the reader thread runs."""
        ...

    def add_callback(self, path: bytes, mask: Any, callback: Any, id_: Any) -> Any:
        """Watch ``path``; raises OSError when the kernel refuses (ENOSPC, EMFILE…)."""

    def remove_callbacks(self, callbacks: list[tuple[Any, Any]]) -> None:
        """Stop the given (watch descriptor, callback id) pairs."""


class _OverflowReportingFD(InotifyFD):
    """watchdog's inotify reader, which also reports a kernel queue overflow once.

    watchdog reads IN_Q_OVERFLOW and hands it to each callback's ``on_queue_overflow``;
    this reader calls ``on_overflow`` first, once per overflow, whatever the number of
    watches (watchdog#654: the lost events would be lost silently otherwise).
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


@dataclass
class WatchState:
    """How one inbox is watched."""

    mode: str  # "inotify" or "polling"
    reason: str = ""
    ino: int = 0
    rewatched: int = 0


@dataclass(eq=False)
class _Watch:
    """One folder's watch; its events go straight to the watcher, on the reader's thread.

    ``kind``: ``inbox``, ``moves`` (a folder of ours, renames only) or ``parent`` (the
    queue folder of ``inbox``). Never raises, never blocks (reliability R15).
    """

    watcher: InboxWatcher
    inbox: Path
    kind: str
    wd: Any = None
    folder: bytes = field(init=False)

    def __post_init__(self) -> None:
        self.folder = os.fsencode(self.inbox.parent if self.kind == "parent" else self.inbox)

    def on_event(self, event: InotifyEvent) -> None:
        try:
            self.watcher.on_event(self, event)
        except Exception:  # a callback must never kill the reader thread
            logger.exception("watch handler failed")

    def on_watch_deleted(self, wd: Any) -> None:
        try:
            self.watcher.on_watch_deleted(self)
        except Exception:  # a callback must never kill the reader thread
            logger.exception("watch handler failed")

    def on_queue_overflow(self) -> None:
        """Counted once, by the reader (:class:`_OverflowReportingFD`)."""


class InboxWatcher:
    """Watches a changing set of inbox folders and reports which are dirty."""

    def __init__(self, wake: threading.Event, *, reader: InotifyReader | None = None) -> None:
        """``reader`` replaces the overflow-aware inotify reader (tests use it)."""
        self._wake = wake
        self._lock = threading.Lock()
        self._dirty: set[Path] = set()
        #: inbox → name → (inode, mtime) of files seen arriving by rename (until taken).
        self._renamed: dict[Path, dict[str, tuple[int, int]]] = {}
        self._suspects: set[Path] = set()
        self._overflows = 0
        self._reader: InotifyReader = reader or _OverflowReportingFD(self._note_overflow)
        self._watches: dict[Path, _Watch] = {}
        self._parents: dict[Path, _Watch] = {}
        #: Watches the kernel still holds (one it dropped, with its folder, leaves).
        self._live: set[_Watch] = set()
        self._moves_only: set[Path] = set()
        self.states: dict[Path, WatchState] = {}
        self._started = False

    def start(self) -> None:
        """Start the reader thread."""
        self._reader.daemon = True
        self._reader.start()
        self._started = True

    def stop(self) -> None:
        """Stop the reader thread (its descriptor and every watch go with it)."""
        if self._started:
            self._reader.stop()
            self._reader.join(timeout=5)

    def mark(self, inbox: Path) -> None:
        """Record ``inbox`` as dirty and wake the loop."""
        with self._lock:
            self._dirty.add(inbox)
        self._wake.set()

    # -- the reader's thread ---------------------------------------------------------------

    def on_event(self, watch: _Watch, event: InotifyEvent) -> None:
        """One event of ``watch``: mark its inbox dirty, note a rename in, suspect a re-creation."""
        if event.is_delete_self or event.is_move_self:
            self._suspect(watch.inbox)  # the folder itself went: watch the new one, if any
            return
        if watch.kind == "parent":
            if event.is_directory and os.fsencode(watch.inbox.name) == event.name:
                self._suspect(watch.inbox)
            return
        if watch.kind == "inbox" and event.is_moved_to and not event.is_directory:
            self._note_rename(watch, event.name)
        self.mark(watch.inbox)

    def on_watch_deleted(self, watch: _Watch) -> None:
        """The kernel dropped ``watch`` (its folder was deleted): the loop rechecks it."""
        with self._lock:
            self._live.discard(watch)
        self._suspect(watch.inbox)

    def _note_rename(self, watch: _Watch, name: bytes) -> None:
        with contextlib.suppress(OSError):  # gone already: nothing to note
            # The scanner trusts the rename for this inode, unchanged since, only.
            st = os.lstat(os.path.join(watch.folder, name))
            with self._lock:
                entry = (st.st_ino, st.st_mtime_ns)
                self._renamed.setdefault(watch.inbox, {})[os.fsdecode(name)] = entry

    def _suspect(self, inbox: Path) -> None:
        """An inbox appeared in (or left) its queue folder: recheck it on the loop's thread."""
        with self._lock:
            self._suspects.add(inbox)
        self._wake.set()

    def _note_overflow(self) -> None:
        with self._lock:
            self._overflows += 1
        logger.warning("inotify queue overflowed: events were lost; rescanning")
        self._wake.set()

    # -- the loop's thread -----------------------------------------------------------------

    def take_renamed(self, inbox: Path) -> dict[str, tuple[int, int]]:
        """Files seen arriving in ``inbox`` by rename since the last call: name → (ino, mtime)."""
        with self._lock:
            return self._renamed.pop(inbox, {})

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
                self._parents[inbox] = self._add(_Watch(self, inbox, "parent"), _PARENT)
            if inbox in self._moves_only:
                handle = self._add(_Watch(self, inbox, "moves"), _MOVES)
            else:
                handle = self._add(_Watch(self, inbox, "inbox"), _INBOX)
        except OSError as exc:
            self._remove(self._parents.pop(inbox, None))
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

    def _add(self, watch: _Watch, mask: int) -> _Watch:
        watch.wd = self._reader.add_callback(watch.folder, mask, watch, id(watch))
        with self._lock:
            self._live.add(watch)
        return watch

    def unwatch(self, inbox: Path) -> None:
        """Stop watching ``inbox`` and its queue folder."""
        self._remove(self._watches.pop(inbox, None))
        self._remove(self._parents.pop(inbox, None))

    def _remove(self, watch: _Watch | None) -> None:
        if watch is None:
            return
        with self._lock:
            self._live.discard(watch)
        # The watch may already have gone with its folder.
        with contextlib.suppress(KeyError, OSError):
            self._reader.remove_callbacks([(watch.wd, id(watch))])

    def release(self, inbox: Path) -> None:
        """Forget ``inbox`` for good (its project is no longer served)."""
        self.unwatch(inbox)
        self.states.pop(inbox, None)
        with self._lock:
            self._dirty.discard(inbox)

    def check_health(self) -> list[Path]:
        """Re-watch inboxes that were recreated or whose watch the kernel dropped; return them."""
        return [inbox for inbox in list(self.states) if self._recheck(inbox)]

    def _alive(self, watch: _Watch | None) -> bool:
        with self._lock:
            return watch is not None and watch in self._live and self._reader.is_alive()

    def _recheck(self, inbox: Path) -> bool:
        """Watch ``inbox`` again if it was recreated or its watch dropped; True if it was.

        A missing inbox keeps its queue folder's watch, which notices it coming back.
        """
        state = self.states.get(inbox)
        if state is None or state.mode != "inotify":
            return False
        try:
            ino = os.stat(inbox).st_ino
        except FileNotFoundError:
            ino = -1
        parent_alive = self._alive(self._parents.get(inbox))
        if ino == state.ino and self._alive(self._watches.get(inbox)) and parent_alive:
            return False
        self._remove(self._watches.pop(inbox, None))
        if not parent_alive:
            self._remove(self._parents.pop(inbox, None))
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
