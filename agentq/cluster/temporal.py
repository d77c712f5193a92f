"""The Temporal adapter: connecting, submitting and re-attaching.

With :mod:`agentq.cluster.flow` (the workflow, which Temporal's sandbox re-imports on its
own) and :mod:`agentq.cluster.hostworker` (a host's workers), one of the three modules that
import ``temporalio`` (an import-linter contract says so); they are imported only when the
configuration has a ``cluster:`` section. Temporal's client is asyncio; agentq's loops are
threads waiting on an Event. So each side runs Temporal on an event loop in a thread of
its own and talks to the rest through ``concurrent.futures.Future`` values:

- :class:`FleetClient` (the submitting daemon): start a workflow or re-attach to it (the
  same id returns the same run: ``USE_EXISTING`` while it runs, ``REJECT_DUPLICATE``
  once it closed), wait for its report, cancel it. Transport errors are retried with
  backoff for as long as it takes: while Temporal is away, tasks stay ``.delegated``.
- the host's side, :class:`~agentq.cluster.hostworker.FleetWorker`, lives in
  :mod:`agentq.cluster.hostworker`.

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
from pathlib import Path
from typing import Any, TypeVar

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import (
    ApplicationError,
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

from agentq.cluster.messages import (
    WORKFLOW_NAME,
    TaskReport,
    TaskSpec,
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


class LoopThread:
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
        self._thread = LoopThread("agentq-fleet-client")
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
