"""Inbox watching: one watchdog observer for every inbox, handlers that only mark folders dirty.

Events are hints (reliability R8): a handler records "this inbox is dirty" and
wakes the main loop, which lists the folder. Watch health is checked on every
rescan: an inbox deleted and recreated is watched again, a dead emitter is
replaced, and an inbox whose watch cannot be added (ENOSPC, EMFILE…) is polled.
This is the only module importing watchdog.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from watchdog.observers import Observer

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


@dataclass
class WatchState:
    """How one inbox is watched."""

    mode: str  # "inotify" or "polling"
    reason: str = ""
    ino: int = 0
    rewatched: int = 0


class _DirtyHandler(FileSystemEventHandler):
    """Marks one inbox dirty; never raises, never blocks (reliability R15)."""

    def __init__(self, inbox: Path, mark: Callable[[Path], None]) -> None:
        self._inbox = inbox
        self._mark = mark

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            self._mark(self._inbox)
        except Exception:  # a handler must never kill the emitter thread
            logger.exception("watch handler failed")


class InboxWatcher:
    """Watches a changing set of inbox folders and reports which are dirty."""

    def __init__(self, wake: threading.Event, env: Mapping[str, str] | None = None) -> None:
        self._wake = wake
        self._lock = threading.Lock()
        self._dirty: set[Path] = set()
        self._observer: Any = Observer()
        self._watches: dict[Path, Any] = {}
        self.states: dict[Path, WatchState] = {}
        self._fault = (env or {}).get("AGENTQ_FAULT_WATCH", "")
        self._started = False

    def start(self) -> None:
        """Start the observer thread."""
        self._observer.daemon = True
        self._observer.start()
        self._started = True

    def stop(self) -> None:
        """Stop the observer thread."""
        if self._started:
            self._observer.stop()
            self._observer.join(timeout=5)

    def mark(self, inbox: Path) -> None:
        """Record ``inbox`` as dirty and wake the loop."""
        with self._lock:
            self._dirty.add(inbox)
        self._wake.set()

    def take_dirty(self) -> set[Path]:
        """Return and clear the dirty set; polled inboxes are always included."""
        with self._lock:
            dirty, self._dirty = self._dirty, set()
        dirty.update(p for p, s in self.states.items() if s.mode == "polling")
        return dirty

    def polling(self) -> bool:
        """Whether any inbox is polled instead of watched."""
        return any(s.mode == "polling" for s in self.states.values())

    def watch(self, inbox: Path) -> None:
        """Watch ``inbox`` (idempotent); fall back to polling when inotify refuses."""
        if inbox in self._watches:
            return
        try:
            ino = os.stat(inbox).st_ino
            if self._fault:
                raise OSError(28, f"injected fault ({self._fault})")
            handle = self._observer.schedule(
                _DirtyHandler(inbox, self.mark), str(inbox), recursive=False, event_filter=_EVENTS
            )
        except OSError as exc:
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
        """Stop watching ``inbox``."""
        handle = self._watches.pop(inbox, None)
        if handle is not None:
            # The emitter may already have died with its folder.
            with contextlib.suppress(KeyError, OSError):
                self._observer.unschedule(handle)

    def check_health(self) -> list[Path]:
        """Re-watch inboxes that were recreated or whose emitter died; return them."""
        alive = {e.watch.path for e in list(self._observer.emitters) if e.is_alive()}
        rewatched = []
        for inbox, state in list(self.states.items()):
            if state.mode != "inotify":
                continue
            try:
                ino = os.stat(inbox).st_ino
            except FileNotFoundError:
                ino = -1
            if ino == state.ino and str(inbox) in alive:
                continue
            self.unwatch(inbox)
            if ino == -1:
                self.states.pop(inbox, None)
                continue
            state.rewatched += 1
            self.watch(inbox)
            rewatched.append(inbox)
            self.mark(inbox)
            logger.info("inbox watched again", extra={"inbox": str(inbox)})
        return rewatched

    def summary(self) -> dict[str, dict[str, Any]]:
        """Watch state per inbox for status output."""
        return {
            str(p): {"mode": s.mode, "reason": s.reason, "rewatched": s.rewatched}
            for p, s in self.states.items()
        }
