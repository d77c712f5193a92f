"""The notifier: listens to the daemon's event log and delivers from one worker thread per target.

:meth:`Notifier.offer` is the :class:`~agentq.core.events.EventLog` listener. It runs on the
emitting thread (the main loop), so it only maps the event
(:func:`~agentq.daemon.notify.rules.to_notice`) and appends the notice to each interested
target's bounded buffer; a full buffer counts the notice instead (the message then says how
many were not listed, and its count stays exact).

Each target's worker drains its buffer, steps the pure coalescer
(:func:`~agentq.daemon.notify.rules.step`) and sends what is due, so a slow or dead target delays
only its own messages. A failed delivery is logged with the target's name (never its URL),
recorded, and kept for the next attempt after a back-off; it never reaches the daemon.
:meth:`Notifier.stop` flushes what is pending within a short deadline. The last
:data:`HISTORY` delivery attempts (target, event, count, ok) are kept for ``agentq status``.

A reload hands :meth:`Notifier.reconfigure` the targets to keep (by their ``spec``, the
fingerprint of their settings) and the new ones: a kept target goes on with its worker, so
its coalescing state (counts waiting for the interval, its back-off) carries over; a
removed or changed one is flushed, as on stop (what it holds is sent now, under its old
settings) and its worker ends; a changed one then starts afresh under its new settings.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from agentq.config.models import NotificationEvent
from agentq.core import events as ev
from agentq.core.clock import Clock
from agentq.core.errors import NotificationError
from agentq.daemon.notify import rules

logger = logging.getLogger(__name__)

#: How many sent messages the history keeps.
HISTORY = 50
#: Notices a target's buffer holds before it only counts them.
DEFAULT_BUFFER = 1000
#: How long stopping may take to flush what is pending.
DEFAULT_STOP_DEADLINE = 5.0


class Sender(Protocol):
    """Delivers a message to one target (webhook, Apprise)."""

    name: str

    def send(self, message: rules.Message, at: datetime, timeout: float | None = None) -> None:
        """Deliver ``message``; ``timeout`` caps the target's own.

        Raises:
            NotificationError: not delivered.
        """
        ...

    def close(self) -> None:
        """Release connections."""
        ...


@dataclass(frozen=True)
class Target:
    """A configured target: its sender, the events it wants, how often at most."""

    sender: Sender
    events: frozenset[NotificationEvent]
    min_interval: float
    #: A fingerprint of the target's settings: a reload keeps a target whose spec is unchanged.
    spec: str = ""

    @property
    def name(self) -> str:
        """The target's name (logs and status show it; never the URL)."""
        return self.sender.name


@dataclass(frozen=True)
class Sent:
    """One delivery attempt, as the history keeps it."""

    time: datetime
    target: str
    event: NotificationEvent
    count: int
    ok: bool
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for ``state.json``."""
        return {
            "time": self.time.isoformat(),
            "target": self.target,
            "event": self.event,
            "count": self.count,
            "ok": self.ok,
            "error": self.error,
        }


class Notifier:
    """Owns the notification workers and the history of what they sent."""

    def __init__(
        self,
        targets: Sequence[Target],
        clock: Clock,
        events: ev.EventLog | None = None,
        buffer_size: int = DEFAULT_BUFFER,
    ) -> None:
        self._clock = clock
        self._events = events
        self._lock = threading.Lock()
        self._history: deque[Sent] = deque(maxlen=HISTORY)
        self._buffer_size = buffer_size
        self._workers = [_Worker(t, clock, self._record, buffer_size) for t in targets]
        #: Workers a reload removed: flushing on their own threads; joined on stop.
        self._retired: list[_Worker] = []
        self._started = False

    @property
    def targets(self) -> list[str]:
        """The targets' names."""
        return [w.target.name for w in self._workers]

    def specs(self) -> frozenset[str]:
        """The specs of the targets in use (what a reload compares)."""
        return frozenset(w.target.spec for w in self._workers)

    def reconfigure(self, keep: Collection[str], add: Sequence[Target]) -> None:
        """Keep the targets whose spec is in ``keep``, flush and end the others, add ``add``.

        Runs on the emitting thread (the main loop), like :meth:`offer`; it never waits for a
        delivery: a removed target flushes on its own thread within the stop deadline.
        """
        end = self._clock.monotonic() + DEFAULT_STOP_DEADLINE
        kept = [w for w in self._workers if w.target.spec in keep]
        gone = [w for w in self._workers if w.target.spec not in keep]
        for worker in gone:
            worker.request_stop(end)
        self._retired += gone
        added = [_Worker(t, self._clock, self._record, self._buffer_size) for t in add]
        if self._started:
            for worker in added:
                worker.start()
        self._workers = kept + added
        if not (gone or added):
            return
        logger.info(
            "notification targets reconfigured",
            extra={
                "kept": [w.target.name for w in kept],
                "added": [w.target.name for w in added],
                "flushed": [w.target.name for w in gone],
            },
        )

    def offer(self, event: ev.Event) -> None:
        """Take one event from the log (the listener: never blocks, never raises)."""
        try:
            notice = rules.to_notice(event)
            if notice is None:
                return
            for worker in self._workers:
                if notice.event in worker.target.events:
                    worker.offer(notice)
        except Exception:
            # This runs on the emitting thread (the main loop): a notification bug must
            # cost a notification, never a task.
            logger.exception("notification listener failed", extra={"event_kind": event.kind})

    def start(self) -> None:
        """Start one worker thread per target."""
        self._started = True
        for worker in self._workers:
            worker.start()

    def stop(self, deadline: float = DEFAULT_STOP_DEADLINE) -> None:
        """Flush what is pending and stop the workers, waiting at most ``deadline`` seconds."""
        end = self._clock.monotonic() + deadline
        for worker in self._workers:
            worker.request_stop(end)
        for worker in [*self._workers, *self._retired]:
            if not worker.join(max(0.0, end - self._clock.monotonic())):
                # Its thread is a daemon thread stuck in a send: it ends with the process.
                logger.warning(
                    "notification target still busy at the stop deadline",
                    extra={"target": worker.target.name, "deadline_s": deadline},
                )

    def history(self) -> list[dict[str, Any]]:
        """The last :data:`HISTORY` delivery attempts, oldest first."""
        with self._lock:
            return [sent.to_dict() for sent in self._history]

    def _record(self, sent: Sent) -> None:
        with self._lock:
            self._history.append(sent)
        if self._events is not None:
            outcome = "sent" if sent.ok else f"not delivered: {sent.error}"
            self._events.emit(
                ev.NOTIFICATION,
                target=sent.target,
                event=sent.event,
                count=sent.count,
                ok=sent.ok,
                message=f"{sent.event} x{sent.count} to {sent.target}: {outcome}",
            )


class _Worker:
    """One target's buffer, coalescer and delivery thread."""

    def __init__(
        self,
        target: Target,
        clock: Clock,
        record: Callable[[Sent], None],
        buffer_size: int,
    ) -> None:
        self.target = target
        self._clock = clock
        self._record = record
        self._size = buffer_size
        self._cond = threading.Condition()
        self._buffer: deque[rules.Notice] = deque()
        self._overflow: Counter[NotificationEvent] = Counter()
        self._stop_at: float | None = None
        self._state = rules.Coalescer(target.min_interval)  # the worker thread's alone
        self._thread = threading.Thread(
            target=self._run, name=f"agentq-notify-{target.name}", daemon=True
        )

    def offer(self, notice: rules.Notice) -> None:
        """Buffer a notice, or count it when the buffer is full (the emitting thread)."""
        with self._cond:
            if len(self._buffer) < self._size:
                self._buffer.append(notice)
            else:
                self._overflow[notice.event] += 1
            self._cond.notify()

    def start(self) -> None:
        """Start the delivery thread."""
        self._thread.start()

    def request_stop(self, end: float) -> None:
        """Flush and stop; deliveries give up at monotonic time ``end``."""
        with self._cond:
            self._stop_at = end if self._stop_at is None else min(self._stop_at, end)
            self._cond.notify()

    def join(self, timeout: float) -> bool:
        """Wait for the thread; True when it finished (or never started)."""
        if self._thread.ident is None:
            self.target.sender.close()  # never started: no thread will close it
            return True
        if not self._thread.is_alive():
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            self._deliver_until_stopped()
        finally:
            # Closed by its own thread once it is done with it (a thread stuck in a send at
            # the stop deadline is a daemon thread: it ends with the process).
            self.target.sender.close()

    def _deliver_until_stopped(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(self._has_work, self._wait())
                notices = list(self._buffer)
                self._buffer.clear()
                overflow = dict(self._overflow)
                self._overflow.clear()
                stop_at = self._stop_at
            messages = self._coalesce(notices, overflow, flush=stop_at is not None)
            if stop_at is not None:
                for message in messages:
                    self._deliver(message, stop_at)
                return
            self._deliver_round(messages)

    def _has_work(self) -> bool:
        return bool(self._buffer or self._overflow) or self._stop_at is not None

    def _wait(self) -> float | None:
        due = rules.next_due(self._state)
        return None if due is None else max(0.0, due - self._clock.monotonic())

    def _coalesce(
        self,
        notices: list[rules.Notice],
        overflow: dict[NotificationEvent, int],
        *,
        flush: bool,
    ) -> list[rules.Message]:
        observations: list[rules.Observation] = [rules.Arrived(n) for n in notices]
        for event, count in overflow.items():
            logger.warning(
                "notification buffer full; counting without listing",
                extra={"target": self.target.name, "event": event, "count": count},
            )
            observations.append(rules.Overflowed(event, count))
        observations.append(rules.Flush() if flush else rules.Tick())
        return self._step(observations)

    def _step(self, observations: list[rules.Observation]) -> list[rules.Message]:
        now = self._clock.monotonic()
        messages: list[rules.Message] = []
        for observation in observations:
            self._state, out = rules.step(self._state, observation, now)
            messages += out
        return messages

    def _deliver_round(self, messages: list[rules.Message]) -> None:
        """Send what is due; after a failure the rest waits with it for the next attempt."""
        error: str | None = None
        for message in messages:
            tried = error is None
            if tried:
                error = self._deliver(message, None)
            self._step([rules.Delivered(message) if error is None else rules.Undelivered(message)])
            if tried and error is not None:
                logger.warning(
                    "notification not delivered; kept for the next attempt",
                    extra={
                        "target": self.target.name,
                        "event": message.event,
                        "count": message.count,
                        "error": error,
                        "retry_in_s": round(self._state.resume_at - self._clock.monotonic(), 1),
                    },
                )

    def _deliver(self, message: rules.Message, stop_at: float | None) -> str | None:
        """Send one message and record the attempt; the error, or ``None`` when delivered."""
        name = self.target.name
        timeout = None if stop_at is None else stop_at - self._clock.monotonic()
        error: str | None = None
        if timeout is not None and timeout <= 0:
            error = "not sent: the stop deadline passed"
        else:
            try:
                self.target.sender.send(message, self._clock.now(), timeout)
            except NotificationError as exc:
                error = exc.reason
            except Exception:
                # A library bug must cost this message, not the worker (and not the daemon).
                logger.exception("notification sender failed", extra={"target": name})
                error = "internal error"
        fields = {"target": name, "event": message.event, "count": message.count}
        if error is None:
            logger.info("notification sent", extra=fields)
        elif stop_at is not None:
            logger.warning(
                "notification not delivered before stop", extra={**fields, "error": error}
            )
        sent = Sent(self._clock.now(), name, message.event, message.count, error is None, error)
        self._record(sent)
        return error
