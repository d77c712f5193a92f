"""Which daemon events are worth a notification, and how they are coalesced: pure functions.

:func:`to_notice` maps one event of the daemon's :class:`~agentq.core.events.EventLog` to a
:class:`Notice` (or ``None``)::

    task     state=failed              → task_failed (project, task, reason)
    task_stale                         → task_stale
    swap / partial_swap                → swap / partial_swap
    hold                               → accounts_exhausted
    accounts_available                 → accounts_available
    daemon   state=degraded | started  → daemon_degraded | daemon_started

An event with ``active: false`` (a partial swap cleared) is not one; the item a message
lists is the event's fields without ``state`` and ``active``, plus its time.

:func:`step` is the coalescing state machine of one target. Per notification event it
sends at most one message per ``min_interval``. Notices wait in ``pending``; a
:class:`Tick` (the shell ticks right after taking notices in, and when one is due) sends
them together once the interval since the last message has passed, and :class:`Flush`
(the daemon stops) sends them whatever the time. So the first notice after a quiet
interval goes out at once, and a burst taken in at one tick is one message. A message
carries the number of notices it stands for (``count``) and lists the first
:data:`MAX_ITEMS` of them, so the counts of the messages add up to exactly what
happened. Notices the shell could not buffer arrive as :class:`Overflowed` (a count
without items) and are counted all the same.

The shell reports each delivery (:class:`Delivered`, :class:`Undelivered`). A message the
target did not take goes back into ``pending`` (its count too, so the next message carries
it), and the target rests :data:`FIRST_BACKOFF` seconds, doubling per failure in a row up
to :data:`MAX_BACKOFF`, before the next attempt: a dead target costs a few attempts an
hour, not one per event.
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
#: How long a target rests after a failed delivery; doubled per failure in a row, capped.
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 300.0

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
    if event.fields.get("active") is False:
        return None
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
            if k not in ("state", "active")
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
    #: Failed deliveries in a row, and when the target may be tried again.
    failures: int = 0
    resume_at: float = -math.inf


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


@dataclass(frozen=True)
class Delivered:
    """The target took the message."""

    message: Message


@dataclass(frozen=True)
class Undelivered:
    """The target did not take the message: keep it for the next one, and rest."""

    message: Message


Observation = Arrived | Overflowed | Tick | Flush | Delivered | Undelivered


def step(state: Coalescer, observation: Observation, now: float) -> tuple[Coalescer, list[Message]]:
    """Take one observation at monotonic time ``now``; return the new state and what to send.

    Notices only join ``pending``; :class:`Tick` sends what is due and :class:`Flush` sends
    everything, so notices that arrive together (one tick apart) make one message.
    """
    if isinstance(observation, Arrived):
        notice = observation.notice
        return _add(state, notice.event, Pending(1, (notice.item,))), []
    if isinstance(observation, Overflowed):
        if observation.count <= 0:
            return state, []
        return _add(state, observation.event, Pending(observation.count, (), observation.count)), []
    if isinstance(observation, Delivered):
        return replace(state, failures=0, resume_at=-math.inf), []
    if isinstance(observation, Undelivered):
        return _keep(state, observation.message, now), []
    if isinstance(observation, Tick) and now < state.resume_at:
        return state, []
    return _send(state, now, force=isinstance(observation, Flush))


def next_due(state: Coalescer) -> float | None:
    """The monotonic time the next pending message is due, or ``None`` when nothing waits."""
    dues = [_due(state, event) for event in state.pending]
    return max(min(dues), state.resume_at) if dues else None


def backoff(failures: int) -> float:
    """How long a target rests after ``failures`` failed deliveries in a row."""
    doublings = max(0, min(failures - 1, 32))
    return min(FIRST_BACKOFF * float(2**doublings), MAX_BACKOFF)


def _keep(state: Coalescer, message: Message, now: float) -> Coalescer:
    """Put an undelivered message back in front of what waits, and rest the target.

    The attempt does not count against ``min_interval`` (nobody received it): the retry
    waits for the rest only. A failure while the target already rests (another message of
    the same round) does not lengthen the rest.
    """
    event = message.event
    back = _merge(
        Pending(message.count, message.items, message.overflowed),
        state.pending.get(event, Pending(0)),
    )
    state = replace(
        state,
        pending={**state.pending, event: back},
        last_sent={e: t for e, t in state.last_sent.items() if e != event},
    )
    if now < state.resume_at:
        return state
    failures = state.failures + 1
    return replace(state, failures=failures, resume_at=now + backoff(failures))


def _due(state: Coalescer, event: NotificationEvent) -> float:
    return state.last_sent.get(event, -math.inf) + state.min_interval


def _add(state: Coalescer, event: NotificationEvent, extra: Pending) -> Coalescer:
    merged = _merge(state.pending.get(event, Pending(0)), extra)
    return replace(state, pending={**state.pending, event: merged})


def _merge(first: Pending, then: Pending) -> Pending:
    return Pending(
        first.count + then.count,
        (first.items + then.items)[:MAX_ITEMS],
        first.overflowed + then.overflowed,
    )


def _send(state: Coalescer, now: float, *, force: bool) -> tuple[Coalescer, list[Message]]:
    ready = [e for e in state.pending if force or _due(state, e) <= now]
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
