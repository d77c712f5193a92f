"""A host's side of the fleet: Temporal workers that take activities into the local pool.

:class:`FleetWorker` (``agentq worker``) runs one Temporal worker per project task queue,
sharing one slot supplier that gives a poll permit only while the pool has room (see
:mod:`agentq.cluster.bridge`), and the activity that hands the task to the worker's main
loop and heartbeats its progress. With :mod:`agentq.cluster.temporal` (connecting, the
submitting client) and :mod:`agentq.cluster.flow` (the workflow), one of the three modules
that import ``temporalio``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.worker import (
    CustomSlotSupplier,
    FixedSizeSlotSupplier,
    SlotMarkUsedContext,
    SlotPermit,
    SlotReleaseContext,
    SlotReserveContext,
    Worker,
    WorkerTuner,
)

from agentq.cluster.bridge import Bridge, Ticket
from agentq.cluster.flow import TaskWorkflow
from agentq.cluster.messages import (
    ACTIVITY_NAME,
    HOST_UNAVAILABLE,
    Progress,
    TaskReport,
    TaskSpec,
    exhausted_runs,
    previous_progress,
)
from agentq.cluster.temporal import BACKOFF_FIRST, BACKOFF_MAX, Connection, LoopThread, is_transient

logger = logging.getLogger(__name__)

#: Workflow tasks a worker runs at once (they are tiny; activities are bounded by the pool).
WORKFLOW_SLOTS = 20
#: How soon a task handed back unrun may be tried again (on any host).
HANDBACK_DELAY = timedelta(seconds=1)
#: How long a cancelled activity waits for the loop to interrupt its agent.
CANCEL_WAIT = 30.0
#: How long a stopping worker gives its activities to hand their tasks back.
STOP_WAIT = 30.0


class _PoolSlots(CustomSlotSupplier):
    """Activity poll permits, given only while the pool has room (shared by every queue)."""

    def __init__(self, bridge: Bridge) -> None:
        self._bridge = bridge
        self._changed: asyncio.Event | None = None

    def wake(self) -> None:
        """Room may have appeared (called on the worker's loop)."""
        if self._changed is not None:
            self._changed.set()

    async def reserve_slot(self, ctx: SlotReserveContext) -> SlotPermit:
        """Wait until the pool has room, then take a permit (Temporal polls with it)."""
        if self._changed is None:
            self._changed = asyncio.Event()
        while True:
            self._changed.clear()
            if self._bridge.try_reserve():
                return SlotPermit()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 1.0)

    def try_reserve_slot(self, ctx: SlotReserveContext) -> SlotPermit | None:
        """An eager activity: a permit only if there is room right now."""
        return SlotPermit() if self._bridge.try_reserve() else None

    def mark_slot_used(self, ctx: SlotMarkUsedContext) -> None:
        """Nothing to do: a started job is counted by the loop."""

    def release_slot(self, ctx: SlotReleaseContext) -> None:
        """The permit's activity ended (or it was never used)."""
        self._bridge.release()


class _Activities:
    """The activity: one task, handed to the worker's main loop, heartbeating until it ends."""

    def __init__(self, bridge: Bridge, host: str, heartbeat_every: float) -> None:
        self._bridge = bridge
        self._host = host
        self._every = heartbeat_every

    @activity.defn(name=ACTIVITY_NAME)
    async def run_task(self, spec: TaskSpec) -> TaskReport:
        """Run one claim of a task on this host's pool and report how it ended."""
        info = activity.info()
        before = previous_progress(list(info.heartbeat_details))
        over = exhausted_runs(spec, before, self._host)
        if over is not None:
            return over
        ticket = Ticket(spec, info.workflow_id or spec.task_id, self._host, before)
        self._bridge.submit(ticket)
        accepted = asyncio.wrap_future(ticket.accepted)
        try:
            started = await asyncio.shield(accepted)
        except asyncio.CancelledError:
            return await self._cancelled(ticket)
        if not started:
            held = self._bridge.held_until()
            why = f"its accounts are exhausted until {held}" if held else "its pool is full"
            raise ApplicationError(
                f"host {self._host} handed the task back unrun: {why}",
                type=HOST_UNAVAILABLE,
                next_retry_delay=HANDBACK_DELAY,
                category=ApplicationErrorCategory.BENIGN,  # expected: logged at DEBUG only
            )
        # Recorded at once: if this host dies, the next attempt knows it ran here.
        activity.heartbeat(Progress(hosts=ticket.hosts(), phase="starting"))
        return await self._watch(ticket)

    async def _watch(self, ticket: Ticket) -> TaskReport:
        report = asyncio.wrap_future(ticket.report)
        while True:
            try:
                done, _ = await asyncio.wait({report}, timeout=self._every)
            except asyncio.CancelledError:
                return await self._cancelled(ticket)
            if done:
                return report.result()
            progress = self._bridge.progress(ticket.workflow_id)
            if progress is not None:  # None: the main loop is wedged; let the heartbeat lapse
                activity.heartbeat(progress)

    async def _cancelled(self, ticket: Ticket) -> TaskReport:
        """Cancelled by the workflow (the task fails "cancelled") or by a stopping worker."""
        stopping = activity.is_worker_shutdown()
        self._bridge.cancel(ticket, handback=stopping)
        report = asyncio.wrap_future(ticket.report)
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(report), CANCEL_WAIT)
        if stopping or not report.done():
            raise ApplicationError(
                f"host {self._host} stopped; the task goes back to the fleet",
                type=HOST_UNAVAILABLE,
                next_retry_delay=HANDBACK_DELAY,
                category=ApplicationErrorCategory.BENIGN,
            )
        return report.result()


class FleetWorker:
    """A host's Temporal workers: one per project task queue, polling only while there is room."""

    def __init__(
        self,
        connection: Connection,
        queues: list[str],
        bridge: Bridge,
        host: str,
        heartbeat_every: float,
    ) -> None:
        self._connection = connection
        self._queues = list(queues)
        self._bridge = bridge
        self._slots = _PoolSlots(bridge)
        self._activities = _Activities(bridge, host, heartbeat_every)
        self._thread: LoopThread | None = None
        self._main: concurrent.futures.Future[None] | None = None
        self._workers: list[Worker] = []
        #: Set (on the worker's loop) to stop; made here so a stop before the start counts.
        self._stopping = asyncio.Event()
        self.connected = False
        self.last_error: str | None = None

    def start(self) -> None:
        """Connect (retrying while Temporal is away) and poll every queue, in the background."""
        self._thread = LoopThread("agentq-fleet-worker")
        thread = self._thread
        self._bridge.listen(lambda: thread.call(self._slots.wake))
        self._main = thread.submit(self._serve())

    def request_stop(self) -> None:
        """Stop polling; running activities are cancelled and hand their tasks back.

        Returns at once: the caller's loop goes on answering the activities' cancel
        requests until :meth:`alive` is False, then calls :meth:`close`.
        """
        if self._thread is not None:
            self._thread.call(self._stopping.set)

    def alive(self) -> bool:
        """Whether the Temporal workers still serve (or shut down)."""
        return self._main is not None and not self._main.done()

    def close(self, timeout: float = STOP_WAIT) -> None:
        """Stop at once what still runs and end the background thread."""
        thread = self._thread
        if thread is None:
            return
        self.request_stop()
        if self._main is not None:
            with contextlib.suppress(Exception):
                self._main.result(timeout)
        thread.stop()
        self._thread = None

    def status(self) -> dict[str, Any]:
        """Connection and queues, for the worker's ``state.json``."""
        return {
            "connected": self.connected,
            "queues": list(self._queues),
            "error": self.last_error,
            "address": self._connection.address,
            "namespace": self._connection.namespace,
        }

    async def _serve(self) -> None:
        attempt = 0
        while not self._stopping.is_set():
            try:
                client = await self._connection.connect()
            except Exception as exc:
                if not is_transient(exc):
                    self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                    logger.error("cannot connect to Temporal", extra={"error": self.last_error})
                    raise
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                if attempt == 0:
                    logger.warning(
                        "Temporal unreachable; retrying", extra={"error": self.last_error}
                    )
                await self._pause(attempt)
                attempt += 1
                continue
            attempt = 0
            self.connected, self.last_error = True, None
            logger.info("polling the fleet", extra={"queues": ",".join(self._queues)})
            await self._run_workers(client)
        self.connected = False

    async def _pause(self, attempt: int) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** min(attempt, 10))
            await asyncio.wait_for(self._stopping.wait(), delay)

    async def _run_workers(self, client: Client) -> None:
        tuner = WorkerTuner.create_composite(
            workflow_supplier=FixedSizeSlotSupplier(WORKFLOW_SLOTS),
            activity_supplier=self._slots,
            local_activity_supplier=FixedSizeSlotSupplier(1),
            nexus_supplier=FixedSizeSlotSupplier(1),
        )
        self._workers = [
            Worker(
                client,
                task_queue=name,
                workflows=[TaskWorkflow],
                activities=[self._activities.run_task],
                tuner=tuner,
                graceful_shutdown_timeout=timedelta(0),
                identity=self._connection.identity,
            )
            for name in self._queues
        ]
        runs = [asyncio.ensure_future(w.run()) for w in self._workers]
        stop = asyncio.ensure_future(self._stopping.wait())
        done, _ = await asyncio.wait([*runs, stop], return_when=asyncio.FIRST_COMPLETED)
        for failed in (r for r in runs if r in done and r.exception() is not None):
            self.last_error = f"worker stopped: {failed.exception()}"[:300]
            logger.error("Temporal worker failed; reconnecting", extra={"error": self.last_error})
        await asyncio.gather(*(w.shutdown() for w in self._workers), return_exceptions=True)
        await asyncio.gather(*runs, return_exceptions=True)
        stop.cancel()
        self.connected = False
        if not self._stopping.is_set():
            await self._pause(1)
