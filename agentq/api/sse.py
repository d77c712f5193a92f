"""Server-Sent Events from the daemon's event log.

Each event goes out as ``id: <epoch>-<n>``, ``event: <kind>`` and its JSON. The
epoch changes with every daemon start, so a ``Last-Event-ID`` from an earlier run
(or one older than the events still kept) gets a ``resync`` event: the reader
should fetch the state again. The current snapshot goes out as a ``snapshot``
event (without an id) on connect and whenever it changes; a comment line keeps
idle connections alive every :data:`HEARTBEAT` seconds.

The main loop emits events on its own thread; :class:`Bell` carries the news to
the server's event loop with ``call_soon_threadsafe``, so no thread waits per
reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

from agentq.api.view import DaemonView

HEARTBEAT = 15.0
#: Snapshot changes are looked for at least this often.
SNAPSHOT_POLL = 1.0
#: A fresh reader (no Last-Event-ID) first gets this many recent events.
REPLAY = 50
RETRY_MS = 2000


class Bell:
    """Rings an asyncio event (on the server's loop) whenever the daemon emits an event."""

    def __init__(self, view: DaemonView, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._event = asyncio.Event()
        view.events.subscribe(self._ring_threadsafe)

    def _ring_threadsafe(self, _event: object) -> None:
        # A closed loop (the API stopped) raises RuntimeError; the daemon goes on.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._ring)

    def _ring(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    def ticket(self) -> asyncio.Event:
        """Take this before looking for news; :meth:`wait` on it then misses nothing."""
        return self._event

    @staticmethod
    async def wait(event: asyncio.Event, timeout: float) -> None:
        """Return once ``event`` (a :meth:`ticket`) rang, or after ``timeout`` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)


def frame(event: str | None, data: Any, event_id: str | None = None) -> str:
    """One SSE message."""
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if event is not None:
        lines.append(f"event: {event}")
    payload = json.dumps(data, separators=(",", ":"), default=str)
    lines.append(f"data: {payload}")
    return "\n".join(lines) + "\n\n"


def parse_last_id(header: str | None, epoch: str) -> int | None:
    """The event number to resume after; ``None`` when the header is absent; -1 to resync."""
    if not header:
        return None
    given_epoch, sep, number = header.strip().rpartition("-")
    if not sep or given_epoch != epoch or not number.isdigit():
        return -1
    return int(number)


async def stream(
    view: DaemonView, bell: Bell, last_event_id: str | None, stopping: threading.Event
) -> AsyncIterator[str]:
    """The event stream for one reader, until the server stops or the reader leaves."""
    yield f"retry: {RETRY_MS}\n\n"
    epoch = view.epoch
    resume = parse_last_id(last_event_id, epoch)
    newest = view.events.last_id
    if resume is None:
        last = max(0, newest - REPLAY)
    elif resume < 0 or resume > newest:
        yield frame("resync", {"reason": "the daemon restarted since your last event"})
        last = newest
    else:
        last = resume
    version = -1
    idle = 0.0
    loop = asyncio.get_running_loop()
    while not stopping.is_set():
        ticket = bell.ticket()
        snap = view.snapshot()
        if snap.version != version:
            version = snap.version
            yield frame("snapshot", snap.public())
        batch = view.events.after(last)
        if batch.gap:
            yield frame("resync", {"reason": "you fell behind the events the daemon keeps"})
            last = view.events.last_id
            continue
        for event in batch.events:
            yield frame(event.kind, event.to_dict(), f"{epoch}-{event.id}")
            last = event.id
        if batch.events:
            idle = 0.0
            continue
        started = loop.time()
        await bell.wait(ticket, SNAPSHOT_POLL)
        idle += loop.time() - started
        if idle >= HEARTBEAT:
            idle = 0.0
            yield ": keep-alive\n\n"
