"""The daemon's event log: what happened, in order, for the API's event stream and notifications.

The daemon emits an :class:`Event` for every task state change, swap, hold and
notification. Events carry a growing integer id, so a reader that saw id ``n``
asks for everything after ``n`` (Server-Sent Events resume with
``Last-Event-ID``). The log keeps the last :data:`DEFAULT_KEEP` events in memory;
a reader that fell further behind is told so (``gap``) and should re-read the
state. Thread-safe: the main loop emits, API threads read and wait.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

DEFAULT_KEEP = 2000

#: Event kinds. Task events carry ``project``, ``task`` and ``state`` (pending, working,
#: delegated, done, failed, requeued) plus ``reason`` when it failed.
TASK = "task"
SWAP = "swap"
PARTIAL_SWAP = "partial_swap"
HOLD = "hold"
ACCOUNTS_AVAILABLE = "accounts_available"
NOTIFICATION = "notification"
STALE = "task_stale"
DAEMON = "daemon"


@dataclass(frozen=True)
class Event:
    """One thing that happened."""

    id: int
    time: datetime
    kind: str
    fields: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"id", "time", "kind", **fields}``."""
        return {"id": self.id, "time": self.time.isoformat(), "kind": self.kind, **self.fields}


@dataclass(frozen=True)
class Batch:
    """Events after a given id; ``gap`` when some were already dropped from memory."""

    events: list[Event]
    gap: bool
    last_id: int


Listener = Callable[[Event], None]


class Emit(Protocol):
    """How a collaborator reports what happened (:meth:`EventLog.emit`, handed in)."""

    def __call__(self, kind: str, /, **fields: Any) -> object:
        """Append one event of ``kind`` with ``fields``."""
        ...


class EventLog:
    """An in-memory, bounded, ordered log of events with blocking reads."""

    def __init__(self, now: Callable[[], datetime], keep: int = DEFAULT_KEEP) -> None:
        self._now = now
        self._events: deque[Event] = deque(maxlen=keep)
        self._next_id = 1
        self._cond = threading.Condition()
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener`` with every later event (on the emitting thread; it must not block)."""
        with self._cond:
            self._listeners.append(listener)

    def emit(self, kind: str, /, **fields: Any) -> Event:
        """Append an event and wake every waiting reader."""
        with self._cond:
            event = Event(self._next_id, self._now(), kind, dict(fields))
            self._next_id += 1
            self._events.append(event)
            listeners = list(self._listeners)
            self._cond.notify_all()
        for listener in listeners:
            listener(event)
        return event

    @property
    def last_id(self) -> int:
        """The id of the newest event (0 before the first)."""
        with self._cond:
            return self._next_id - 1

    def after(self, last_id: int, limit: int = 500) -> Batch:
        """Events with an id greater than ``last_id`` (oldest first, at most ``limit``)."""
        with self._cond:
            return self._after(last_id, limit)

    def wait(self, last_id: int, timeout: float, limit: int = 500) -> Batch:
        """Like :meth:`after`, but wait up to ``timeout`` seconds for a newer event."""
        with self._cond:
            self._cond.wait_for(lambda: self._next_id - 1 > last_id, timeout)
            return self._after(last_id, limit)

    def _after(self, last_id: int, limit: int) -> Batch:
        events = [e for e in self._events if e.id > last_id][:limit]
        oldest = self._events[0].id if self._events else self._next_id
        gap = last_id + 1 < oldest and last_id < self._next_id - 1
        return Batch(events, gap, events[-1].id if events else max(last_id, 0))
