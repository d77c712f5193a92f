"""Which daemon events are worth a notification, and how they are coalesced: pure functions.

:func:`to_notice` maps one event of the daemon's :class:`~agentq.core.events.EventLog` to a
:class:`Notice` (or ``None``)::

    task     state=failed              → task_failed (project, task, reason)
    task_stale                         → task_stale
    swap / partial_swap                → swap / partial_swap
    hold                               → accounts_exhausted
    accounts_available                 → accounts_available
    daemon   state=degraded | started  → daemon_degraded | daemon_started

:func:`step` is the coalescing state machine of one target. Per notification event it
sends at most one message per ``min_interval``: the first notice after a quiet interval
goes out at once; later ones wait in ``pending`` until the interval since the last
message has passed (:class:`Tick`), or until the daemon stops (:class:`Flush`). A
message carries the number of notices it stands for (``count``) and lists the first
:data:`MAX_ITEMS` of them, so the counts of the messages add up to exactly what
happened. Notices the shell could not buffer arrive as :class:`Overflowed` (a count
without items) and are counted all the same.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from agentq.config.models import NOTIFICATION_EVENTS, NotificationEvent
from agentq.core import events as ev

#: How many notices one message lists; ``count`` says how many it stands for.
MAX_ITEMS = 10

_BY_KIND: dict[str, NotificationEvent] = {
    ev.SWAP: "swap",
    ev.PARTIAL_SWAP: "partial_swap",
    ev.HOLD: "accounts_exhausted",
    ev.ACCOUNTS_AVAILABLE: "accounts_available",
    ev.STALE: "task_stale",
}
_BY_STATE: dict[tuple[str, str], NotificationEvent] = {
    (ev.TASK, "failed"): "task_failed",
    (ev.DAEMON, "degraded"): "daemon_degraded",
    (ev.DAEMON, "started"): "daemon_started",
}
_SCALARS = (str, int, float, bool, type(None))

Item = Mapping[str, Any]


@dataclass(frozen=True)
class Notice:
    """One event worth a notification: which one, and what a message lists about it."""

    event: NotificationEvent
    item: Item


def to_notice(event: ev.Event) -> Notice | None:
    """The notification an event stands for, or ``None`` for events nobody is notified of."""
    state = event.fields.get("state")
    kind = _BY_KIND.get(event.kind)
    if kind is None and isinstance(state, str):
        kind = _BY_STATE.get((event.kind, state))
    if kind is None:
        return None
    if kind == "task_failed":
        item: dict[str, Any] = {
            "project": str(event.fields.get("project", "")),
            "task": str(event.fields.get("task", "")),
            "reason": str(event.fields.get("reason", "")),
        }
    else:
        item = {
            k: v if isinstance(v, _SCALARS) else str(v)
            for k, v in event.fields.items()
            if k != "state"
        }
    item["time"] = event.time.isoformat()
    return Notice(kind, item)


# --- coalescing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pending:
    """Notices of one event waiting for the interval to pass."""

    count: int
    items: tuple[Item, ...] = ()
    #: Of ``count``, how many the shell could only count (its buffer was full).
    overflowed: int = 0


@dataclass(frozen=True)
class Message:
    """One notification to send: ``count`` notices of ``event``, the first few listed."""

    event: NotificationEvent
    count: int
    items: tuple[Item, ...] = ()
    overflowed: int = 0


@dataclass(frozen=True)
class Coalescer:
    """The coalescing state of one target (monotonic seconds)."""

    min_interval: float
    last_sent: Mapping[NotificationEvent, float] = field(default_factory=dict)
    pending: Mapping[NotificationEvent, Pending] = field(default_factory=dict)


@dataclass(frozen=True)
class Arrived:
    """A notice for this target."""

    notice: Notice


@dataclass(frozen=True)
class Overflowed:
    """``count`` notices of ``event`` the shell could not buffer: counted, not listed."""

    event: NotificationEvent
    count: int


@dataclass(frozen=True)
class Tick:
    """Time passed: send what is due."""


@dataclass(frozen=True)
class Flush:
    """The daemon stops: send everything pending now."""


Observation = Arrived | Overflowed | Tick | Flush


def step(state: Coalescer, observation: Observation, now: float) -> tuple[Coalescer, list[Message]]:
    """Take one observation at monotonic time ``now``; return the new state and what to send."""
    if isinstance(observation, Arrived):
        notice = observation.notice
        state = _add(state, notice.event, Pending(1, (notice.item,)))
        return _send(state, [notice.event], now, force=False)
    if isinstance(observation, Overflowed):
        if observation.count <= 0:
            return state, []
        extra = Pending(observation.count, (), observation.count)
        state = _add(state, observation.event, extra)
        return _send(state, [observation.event], now, force=False)
    return _send(state, list(state.pending), now, force=isinstance(observation, Flush))


def next_due(state: Coalescer) -> float | None:
    """The monotonic time the next pending message is due, or ``None`` when nothing waits."""
    dues = [_due(state, event) for event in state.pending]
    return min(dues) if dues else None


def _due(state: Coalescer, event: NotificationEvent) -> float:
    return state.last_sent.get(event, -math.inf) + state.min_interval


def _add(state: Coalescer, event: NotificationEvent, extra: Pending) -> Coalescer:
    old = state.pending.get(event, Pending(0))
    merged = Pending(
        old.count + extra.count,
        (old.items + extra.items)[:MAX_ITEMS],
        old.overflowed + extra.overflowed,
    )
    return replace(state, pending={**state.pending, event: merged})


def _send(
    state: Coalescer, events: list[NotificationEvent], now: float, *, force: bool
) -> tuple[Coalescer, list[Message]]:
    ready = [e for e in events if e in state.pending and (force or _due(state, e) <= now)]
    if not ready:
        return state, []
    ready.sort(key=NOTIFICATION_EVENTS.index)
    messages = [
        Message(e, state.pending[e].count, state.pending[e].items, state.pending[e].overflowed)
        for e in ready
    ]
    pending = {e: p for e, p in state.pending.items() if e not in ready}
    last_sent = {**state.last_sent, **dict.fromkeys(ready, now)}
    return replace(state, pending=pending, last_sent=last_sent), messages
