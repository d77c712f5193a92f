"""The event log: ordered ids, resume after an id, bounded memory with an honest gap flag."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from agentq.core.events import EventLog


def _log(keep: int = 10) -> EventLog:
    return EventLog(lambda: datetime(2026, 1, 1, tzinfo=UTC), keep=keep)


def test_events_get_growing_ids_and_resume_after_an_id() -> None:
    """A reader that saw id n gets exactly the events after n, in order."""
    log = _log()
    for i in range(5):
        log.emit("task", n=i)
    batch = log.after(2)
    assert [e.id for e in batch.events] == [3, 4, 5]
    assert [e.fields["n"] for e in batch.events] == [2, 3, 4]
    assert batch.last_id == 5 and not batch.gap


def test_a_reader_behind_the_kept_window_is_told_of_the_gap() -> None:
    """Events dropped from memory are reported as a gap, never silently skipped."""
    log = _log(keep=3)
    for i in range(6):
        log.emit("task", n=i)
    batch = log.after(1)
    assert [e.id for e in batch.events] == [4, 5, 6]
    assert batch.gap
    assert not log.after(3).gap


def test_wait_returns_when_an_event_arrives() -> None:
    """A waiting reader wakes for a new event emitted on another thread."""
    log = _log()
    emitted = threading.Event()

    def emit_later() -> None:
        emitted.wait(5)
        log.emit("swap", to="b")

    thread = threading.Thread(target=emit_later)
    thread.start()
    emitted.set()
    batch = log.wait(0, timeout=5)
    thread.join()
    assert [e.kind for e in batch.events] == ["swap"]


def test_listeners_see_every_event_and_to_dict_is_flat() -> None:
    """Subscribers get each event; the JSON form carries id, time, kind and the fields."""
    log = _log()
    seen: list[str] = []
    log.subscribe(lambda e: seen.append(e.kind))
    event = log.emit("hold", until="later")
    assert seen == ["hold"]
    assert event.to_dict() == {
        "id": 1,
        "time": "2026-01-01T00:00:00+00:00",
        "kind": "hold",
        "until": "later",
    }
