"""The worker's bridge: Temporal's activities on one thread, the worker's main loop on another.

The main loop owns the local executor (the session pool), as the daemon's does; an
activity never touches it. An activity puts a :class:`Ticket` on a thread-safe queue and
wakes the loop; the loop starts the job, later resolves the ticket's futures (accepted,
then the report), and publishes what the activities heartbeat (session, phase, last
activity) together with the pool's free capacity, which the slot supplier reads so the
worker polls for activities only while it has room for them.

Slot accounting: a new poll permit is given only while ``reserved - started < free``,
where ``reserved`` counts the permits Temporal holds (polling or in use), ``started`` the
jobs the loop runs for activities, and ``free`` the executor's capacity (0 while every
account is exhausted). A permit handed out just before the host was held can still bring
an activity; the loop hands that one back unrun.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import Enum

from agentq.cluster.messages import Progress, TaskReport, TaskSpec

logger = logging.getLogger(__name__)


class MessageKind(Enum):
    """What an activity asks of the loop."""

    START = "start"
    CANCEL = "cancel"


@dataclass(eq=False)
class Ticket:
    """One activity attempt waiting on the loop."""

    spec: TaskSpec
    workflow_id: str
    host: str
    #: The progress the previous attempts left (its hosts ran this claim before).
    before: Progress
    #: True once the loop started the job; False when it handed the activity back unrun.
    accepted: Future[bool] = field(default_factory=Future)
    #: The report, once the job ended (never set for a ticket handed back).
    report: Future[TaskReport] = field(default_factory=Future)

    def hosts(self) -> list[str]:
        """Every host that ran this claim, this one included."""
        return [*self.before.hosts, self.host]


@dataclass(frozen=True)
class Message:
    """A request from an activity to the loop."""

    kind: MessageKind
    ticket: Ticket
    #: For a cancel: hand the task back to the fleet (worker stopping) instead of failing it.
    handback: bool = False


class Bridge:
    """The thread-safe meeting point of the activities and the worker's main loop."""

    def __init__(
        self,
        wake: Callable[[], None],
        stale_after: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._wake = wake
        self._stale_after = stale_after
        self._clock = clock
        self._queue: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._free = 0
        self._started = 0
        self._reserved = 0
        self._published_at: float | None = None
        self._progress: dict[str, Progress] = {}
        self._held_until: str | None = None
        self._listeners: list[Callable[[], None]] = []

    # -- the activity side (Temporal's threads) ----------------------------------------

    def submit(self, ticket: Ticket) -> None:
        """Ask the loop to run a ticket's task."""
        self._queue.put(Message(MessageKind.START, ticket))
        self._wake()

    def cancel(self, ticket: Ticket, *, handback: bool = False) -> None:
        """Ask the loop to interrupt a ticket's task (and fail it, or hand it back)."""
        self._queue.put(Message(MessageKind.CANCEL, ticket, handback))
        self._wake()

    def progress(self, workflow_id: str) -> Progress | None:
        """What to heartbeat for a task; None while the loop has not published lately.

        A wedged main loop stops the heartbeats, so Temporal moves its tasks elsewhere.
        """
        with self._lock:
            if self._published_at is None:
                return None
            if self._clock() - self._published_at > self._stale_after:
                return None
            current = self._progress.get(workflow_id)
            if current is None:
                return None
            return Progress(
                hosts=list(current.hosts),
                phase=current.phase,
                session=current.session,
                account=current.account,
                last_activity=current.last_activity,
                held_until=current.held_until,
            )

    # -- the slot side (Temporal's poller reservations) --------------------------------

    def try_reserve(self) -> bool:
        """Take a poll permit if the pool has room for one more activity."""
        with self._lock:
            if self._reserved - self._started < self._free:
                self._reserved += 1
                return True
            return False

    def release(self) -> None:
        """Give a poll permit back (its activity ended, or it was never used)."""
        with self._lock:
            self._reserved = max(0, self._reserved - 1)
        self._notify()

    def listen(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (from any thread) whenever room may have appeared."""
        self._listeners.append(callback)

    def held_until(self) -> str | None:
        """When this host's accounts come back, while every one is exhausted."""
        with self._lock:
            return self._held_until

    # -- the loop side -----------------------------------------------------------------

    def take(self) -> list[Message]:
        """Every request queued since the last call, oldest first."""
        out: list[Message] = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out

    def publish(
        self,
        free: int,
        started: int,
        progress: dict[str, Progress],
        held_until: str | None,
    ) -> None:
        """The pool's room and every running task's progress, as of this pass."""
        with self._lock:
            self._free = max(0, free)
            self._started = started
            self._progress = progress
            self._held_until = held_until
            self._published_at = self._clock()
            room = self._reserved - self._started < self._free
        if room:
            self._notify()

    def counts(self) -> dict[str, int]:
        """The slot accounting, for the worker's status."""
        with self._lock:
            return {"free": self._free, "started": self._started, "reserved": self._reserved}

    def _notify(self) -> None:
        for callback in list(self._listeners):
            callback()
