"""The Temporal adapter: connecting, submitting and re-attaching, and a host's workers.

With :mod:`agentq.cluster.flow` (the workflow, which Temporal's sandbox re-imports on its
own), this is the only module that imports ``temporalio``; it is imported only when the
configuration has a ``cluster:`` section. Temporal's client is asyncio; agentq's loops are
threads waiting on an Event. So each side runs Temporal on an event loop in a thread of
its own and talks to the rest through ``concurrent.futures.Future`` values:

- :class:`FleetClient` (the submitting daemon): start a workflow or re-attach to it (the
  same id returns the same run: ``USE_EXISTING`` while it runs, ``REJECT_DUPLICATE``
  once it closed), wait for its report, cancel it. Transport errors are retried with
  backoff for as long as it takes: while Temporal is away, tasks stay ``.delegated``.
- :class:`FleetWorker` (``agentq worker``): one Temporal worker per project task queue,
  sharing one slot supplier that gives a poll permit only while the pool has room (see
  :mod:`agentq.cluster.bridge`), and the activity that hands the task to the worker's
  main loop and heartbeats its progress.

Temporal's errors are translated here, once, into :class:`~agentq.core.errors.ClusterError`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import random
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from temporalio import activity
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import (
    ApplicationError,
    ApplicationErrorCategory,
    CancelledError,
    TerminatedError,
    TimeoutError,
    WorkflowAlreadyStartedError,
)
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)
from temporalio.service import RPCError, RPCStatusCode, TLSConfig
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
    WORKFLOW_NAME,
    Progress,
    TaskReport,
    TaskSpec,
    exhausted_runs,
    previous_progress,
)
from agentq.config.models import ClusterConfig
from agentq.core.errors import ClusterError, ConfigError
from agentq.core.secrets import resolve_key

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: RPC statuses worth another try: the server or the network is away or busy.
TRANSIENT = frozenset(
    {
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.RESOURCE_EXHAUSTED,
        RPCStatusCode.ABORTED,
        RPCStatusCode.INTERNAL,
        RPCStatusCode.UNKNOWN,
        RPCStatusCode.CANCELLED,
    }
)
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 15.0
#: Workflow tasks a worker runs at once (they are tiny; activities are bounded by the pool).
WORKFLOW_SLOTS = 20
#: How soon a task handed back unrun may be tried again (on any host).
HANDBACK_DELAY = timedelta(seconds=1)
#: How long a cancelled activity waits for the loop to interrupt its agent.
CANCEL_WAIT = 30.0
#: How long a stopping worker gives its activities to hand their tasks back.
STOP_WAIT = 30.0


_runtime: Runtime | None = None


def _sdk_runtime() -> Runtime:
    """One SDK runtime per process, its core's log lines sent through agentq's logging.

    Only the core's errors: its retries while Temporal is away are reported once, by us.
    """
    global _runtime
    if _runtime is None:
        forward = LogForwardingConfig(logger=logging.getLogger(f"{__name__}.core"))
        quiet = TelemetryFilter(core_level="ERROR", other_level="ERROR")
        _runtime = Runtime(
            telemetry=TelemetryConfig(logging=LoggingConfig(filter=quiet, forwarding=forward))
        )
    return _runtime


@dataclass(frozen=True)
class Connection:
    """Where and how to reach Temporal."""

    address: str
    namespace: str
    identity: str
    tls: TLSConfig | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)  # never in a log line

    async def connect(self) -> Client:
        """A client (raises at once when the server cannot be reached)."""
        return await Client.connect(
            self.address,
            namespace=self.namespace,
            tls=self.tls if self.tls is not None else bool(self.api_key),
            api_key=self.api_key,
            identity=self.identity,
            runtime=_sdk_runtime(),
        )


def connection_from_config(cluster: ClusterConfig, env: Mapping[str, str], host: str) -> Connection:
    """The connection ``cluster:`` describes; certificate and key files are read now.

    Raises:
        ConfigError: a file is missing, unreadable, or (the API key) not private to us.
    """
    tls: TLSConfig | None = None
    if cluster.tls is not None:
        t = cluster.tls
        tls = TLSConfig(
            server_root_ca_cert=_read(t.ca_file) if t.ca_file else None,
            client_cert=_read(t.cert_file) if t.cert_file else None,
            client_private_key=_read(t.key_file) if t.key_file else None,
            domain=t.server_name,
        )
    api_key = resolve_key(None, cluster.api_key_file, env) if cluster.api_key_file else None
    return Connection(
        cluster.address, cluster.namespace, f"{host}@{os.getpid()}", tls=tls, api_key=api_key
    )


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"cluster.tls: cannot read {path}: {exc.strerror or exc}"]) from None


def is_transient(exc: BaseException) -> bool:
    """Whether a Temporal call that raised ``exc`` may work when tried again later."""
    if isinstance(exc, RPCError):
        return exc.status in TRANSIENT
    if isinstance(exc, ConnectionError):
        return True
    # A failed (lazy or lost) connection surfaces as a RuntimeError from the SDK's core.
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("connect" in text or "transport" in text)


def _describe_failure(exc: WorkflowFailureError) -> str:
    cause = exc.cause
    if isinstance(cause, TerminatedError):
        return f"the workflow was terminated: {cause.message or 'no reason given'}"
    if isinstance(cause, CancelledError):
        return "the workflow was cancelled"
    if isinstance(cause, TimeoutError):
        return "the workflow timed out"
    if isinstance(cause, ApplicationError):
        return f"the workflow failed: {cause.message}"
    return f"the workflow failed: {cause}"


class _LoopThread:
    """An asyncio event loop in a thread of its own; coroutines come in from other threads."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` on the loop; its outcome arrives in the returned future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the loop soon (from any thread; a no-op once it stopped)."""
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(callback)

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel what still runs on the loop, stop it and join the thread."""

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self.loop.is_running():
            with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
                self.submit(cancel_all()).result(timeout)
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.loop.close()


async def _backoff(attempt: int) -> None:
    delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** min(attempt, 10))
    await asyncio.sleep(delay * (0.5 + random.random() / 2))  # noqa: S311 (jitter, not crypto)


class FleetClient:
    """The submitting daemon's side: start or re-attach to workflows, wait for their reports."""

    def __init__(self, connection: Connection, wake: Callable[[], None] | None = None) -> None:
        self._connection = connection
        self._wake = wake
        self._thread = _LoopThread("agentq-fleet-client")
        self._client: Client | None = None
        self._lock: asyncio.Lock | None = None
        self.connected = False
        self.last_error: str | None = None

    # -- the daemon's thread -------------------------------------------------------------

    def start_workflow(
        self, spec: TaskSpec, workflow_id: str, task_queue: str
    ) -> concurrent.futures.Future[None]:
        """Start the workflow, or find it: the same id never makes a second run."""
        return self._run(self._start(spec, workflow_id, task_queue))

    def result(self, workflow_id: str) -> concurrent.futures.Future[TaskReport]:
        """The report of the workflow, once it ends (a long wait)."""
        return self._run(self._result(workflow_id))

    def cancel(self, workflow_id: str) -> concurrent.futures.Future[None]:
        """Ask Temporal to cancel the workflow (its activity interrupts the agent)."""
        return self._run(self._cancel(workflow_id))

    def count(self, query: str | None = None) -> concurrent.futures.Future[int]:
        """How many workflows the namespace lists (for tests and benchmarks)."""
        return self._run(self._count(query))

    def close(self) -> None:
        """Stop waiting; the workflows go on in Temporal and are re-attached after a restart."""
        self._thread.stop()

    def _run(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        future = self._thread.submit(coro)
        if self._wake is not None:
            wake = self._wake
            future.add_done_callback(lambda _f: wake())
        return future

    # -- the client's loop ---------------------------------------------------------------

    async def _get(self) -> Client:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._client is None:
                self._client = await self._connection.connect()
                self.connected = True
                self.last_error = None
                logger.info("connected to Temporal", extra={"address": self._connection.address})
            return self._client

    async def _retrying(self, what: str, op: Callable[[Client], Awaitable[T]]) -> T:
        """Run ``op`` until it succeeds or fails for good; transport errors wait and retry."""
        attempt = 0
        while True:
            try:
                return await op(await self._get())
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if isinstance(exc, RuntimeError) and self._client is None:
                    self.connected = False
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                if attempt == 0:
                    logger.warning(
                        "Temporal unreachable; retrying",
                        extra={"call": what, "error": self.last_error},
                    )
                await _backoff(attempt)
                attempt += 1

    async def _start(self, spec: TaskSpec, workflow_id: str, task_queue: str) -> None:
        async def start(client: Client) -> None:
            # A closed workflow of this id ran already: its report waits in its history.
            with contextlib.suppress(WorkflowAlreadyStartedError):
                await client.start_workflow(
                    WORKFLOW_NAME,
                    spec,
                    id=workflow_id,
                    task_queue=task_queue,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                )

        try:
            await self._retrying("start", start)
        except RPCError as exc:
            raise ClusterError(
                f"Temporal refused the workflow: {exc.message}",
                workflow_id=workflow_id,
                terminal=True,
            ) from exc

    async def _result(self, workflow_id: str) -> TaskReport:
        async def wait(client: Client) -> TaskReport:
            handle: WorkflowHandle[Any, TaskReport] = client.get_workflow_handle(
                workflow_id, result_type=TaskReport
            )
            return await handle.result()

        try:
            return await self._retrying("result", wait)
        except WorkflowFailureError as exc:
            raise ClusterError(
                _describe_failure(exc), workflow_id=workflow_id, terminal=True
            ) from exc
        except RPCError as exc:
            reason = (
                "Temporal has no such workflow (removed after its retention period?)"
                if exc.status == RPCStatusCode.NOT_FOUND
                else f"Temporal refused: {exc.message}"
            )
            raise ClusterError(reason, workflow_id=workflow_id, terminal=True) from exc

    async def _cancel(self, workflow_id: str) -> None:
        async def cancel(client: Client) -> None:
            handle = client.get_workflow_handle(workflow_id)
            description = await handle.describe()
            if description.status == WorkflowExecutionStatus.RUNNING:
                await handle.cancel()

        try:
            await self._retrying("cancel", cancel)
        except RPCError as exc:
            raise ClusterError(
                f"Temporal refused the cancellation: {exc.message}", workflow_id=workflow_id
            ) from exc

    async def _count(self, query: str | None) -> int:
        async def count(client: Client) -> int:
            return (await client.count_workflows(query)).count

        return await self._retrying("count", count)


# -- the worker's side -------------------------------------------------------------------


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
        self._thread: _LoopThread | None = None
        self._main: concurrent.futures.Future[None] | None = None
        self._workers: list[Worker] = []
        #: Set (on the worker's loop) to stop; made here so a stop before the start counts.
        self._stopping = asyncio.Event()
        self.connected = False
        self.last_error: str | None = None

    def start(self) -> None:
        """Connect (retrying while Temporal is away) and poll every queue, in the background."""
        self._thread = _LoopThread("agentq-fleet-worker")
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
