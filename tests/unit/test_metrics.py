"""The latency histograms: fed by events that carry their own moments."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from agentq.api.metrics import Metrics
from agentq.api.view import Snapshot
from agentq.core.events import EventLog

#: When the events are emitted: well after the moments they report.
EMITTED = datetime(2026, 1, 5, 10, 0, 5, tzinfo=UTC)
ARRIVED = EMITTED.timestamp() - 5.0


class _View:
    """The part of the daemon's view the histograms use: its event log."""

    def __init__(self) -> None:
        self.events = EventLog(lambda: EMITTED)

    def snapshot(self) -> Snapshot:
        at = EMITTED.timestamp()
        return Snapshot(0, at, at, {}, [], {}, {}, {}, {}, {}, [])


def _sample(text: str, name: str) -> float:
    found = re.search(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", text, re.MULTILINE)
    assert found, f"{name} not in the metrics"
    return float(found[1])


def test_pickup_and_delivery_use_the_moments_the_events_carry() -> None:
    """Arrival (file ctime) → claim (rename) → busy (the agent's hook): not emission times."""
    view = _View()
    metrics = Metrics(view)  # type: ignore[arg-type]
    task = {"project": "web", "task": "fix.md"}
    view.events.emit("task", **task, state="pending", arrived=ARRIVED)
    view.events.emit("task", **task, state="working", claimed=ARRIVED + 0.0015)
    view.events.emit("delivered", **task, session="aq-0", account="a", at=ARRIVED + 0.0615)
    text = metrics.render().decode()
    assert abs(_sample(text, "agentq_pickup_latency_seconds_sum") - 0.0015) < 1e-6
    assert abs(_sample(text, "agentq_delivery_latency_seconds_sum") - 0.06) < 1e-6
    assert 'agentq_pickup_latency_seconds_bucket{executor="local",le="0.001"} 0.0' in text
    assert 'agentq_pickup_latency_seconds_bucket{executor="local",le="0.002"} 1.0' in text


def test_events_without_moments_fall_back_to_their_own_time() -> None:
    """Events of an older shape (no arrived/claimed/at) are timed by when they were emitted."""
    view = _View()
    metrics = Metrics(view)  # type: ignore[arg-type]
    task = {"project": "web", "task": "old.md"}
    view.events.emit("task", **task, state="pending")
    view.events.emit("task", **task, state="working")
    view.events.emit("delivered", **task, session="aq-0", account="a")
    text = metrics.render().decode()
    assert _sample(text, "agentq_pickup_latency_seconds_count") == 1.0
    assert _sample(text, "agentq_pickup_latency_seconds_sum") == 0.0
    assert _sample(text, "agentq_delivery_latency_seconds_sum") == 0.0
