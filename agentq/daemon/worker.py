"""``agentq worker``: this host's pool, accounts and hooks working for the fleet.

The worker is the daemon without inboxes: the same wiring builds its local executor (a
pool of agent sessions in tmux, or the ``instant`` executor) and its account switcher
(quota failover, the hold when every account is exhausted), and the same kind of main
loop owns them. Its tasks come from Temporal instead: one task queue per project this
host has a checkout of (``<prefix>.<folder name>`` for each folder under
``projects.roots`` and each of ``projects.paths``).

Temporal's activities run on their own thread (:mod:`agentq.cluster.temporal`) and talk
to this loop only through the :class:`~agentq.cluster.bridge.Bridge`: a thread-safe queue
of start and cancel requests one way, futures and published progress the other. The
loop publishes the pool's free capacity every pass, 0 while the accounts are held, and
the worker polls for activities only while there is room: other hosts take the load.

A stop (SIGTERM) stops polling, interrupts the tasks still running and hands them back
to the fleet, which runs them again elsewhere (a fresh session; the run counts).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentq.cluster.bridge import Bridge, Message, MessageKind, Ticket
from agentq.cluster.messages import Progress, TaskReport, task_queue
from agentq.config.models import Config
from agentq.core.clock import Clock, SystemClock
from agentq.core.errors import AgentqError, ConfigError, TaskFileError
from agentq.core.lock import InstanceLock
from agentq.daemon.sdnotify import Notifier, forget_environment
from agentq.daemon.signals import SignalRelay
from agentq.daemon.state import StateFile
from agentq.daemon.wiring import (
    Context,
    LocalFactory,
    PoolExecutor,
    default_local,
    host_name,
    log_emitter,
    missing_sdk,
)
from agentq.queue import protocol as q
from agentq.queue import taskfile
from agentq.queue.jobs import Executor, Job, Outcome, OutcomeStatus
from agentq.queue.records import ControlRecord
from agentq.queue.router import RouteDecision
from agentq.queue.watcher import InboxWatcher

if TYPE_CHECKING:
    from agentq.accounts.switcher import Switcher
    from agentq.cluster.hostworker import FleetWorker

logger = logging.getLogger(__name__)

#: The worker's control records, one folder per project, under its state folder.
RECORDS_DIRNAME = "fleet-records"
#: The longest wait of the loop when nothing asks for an earlier pass.
IDLE_WAIT = 1.0
#: How long a stopping worker waits for its activities to hand their tasks back.
STOP_WAIT = 30.0
#: How often ``state.json`` is written at most (a busy pool changes it every pass).
STATE_EVERY = 1.0


def worker_projects(config: Config) -> dict[str, Path]:
    """The projects this host has a checkout of: folder name → path.

    Every non-hidden folder under ``projects.roots`` and each of ``projects.paths``; the
    first folder of a name wins (a task queue is named after the folder).
    """
    found: dict[str, Path] = {}
    for root in config.projects.roots:
        try:
            children = sorted(
                p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
            )
        except OSError:
            continue
        for child in children:
            if not child.name.startswith("."):
                found.setdefault(child.name, child)
    for path in config.projects.paths:
        found.setdefault(path.name, path)
    return found


def held_until(switcher: Switcher | None) -> str | None:
    """When the host's accounts come back, while every one is exhausted (None otherwise).

    The one place that reads the accounts' hold (the switcher's account book).
    """
    hold = switcher.book.hold if switcher is not None else None
    return hold.until.isoformat() if hold is not None else None


class Worker:
    """This host's pool taking the fleet's tasks; one per host (per state folder)."""

    def __init__(
        self,
        config: Config,
        env: Mapping[str, str],
        local_executor: LocalFactory | None = None,
        clock: Clock | None = None,
    ) -> None:
        if config.cluster is None:
            raise ConfigError(["agentq worker needs a cluster: section (see docs/cluster.md)"])
        self.config = config
        self.cluster = config.cluster
        self.env = env
        self.clock: Clock = clock or SystemClock()
        self.host = host_name(config)
        self.wake = threading.Event()
        self.stopping = False
        self.state: dict[str, Any] = {}
        self.state_file = StateFile(config.state_dir)
        self.notifier = Notifier(env, os.getpid())
        self.watcher = InboxWatcher(self.wake)
        self._make_local = local_executor or default_local
        self.local: Executor | None = None
        #: The local executor as a session pool (its quota readings go to the switcher).
        self.pool: PoolExecutor | None = None
        self.switcher: Switcher | None = None
        self.bridge = Bridge(
            self.wake.set, stale_after=max(1.0, self.cluster.heartbeat_timeout / 2)
        )
        self.fleet: FleetWorker | None = None
        self.projects: dict[str, q.Project] = {}
        #: Running tickets by workflow id, and the workflow of each running claim.
        self._running: dict[str, Ticket] = {}
        self._claims: dict[str, str] = {}
        self._handback: set[str] = set()
        self.counters = {"accepted": 0, "handed_back": 0, "done": 0, "failed": 0, "cancelled": 0}
        self._saved_at = 0.0

    # -- lifecycle ------------------------------------------------------------------

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the process exit code."""
        self.config.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = InstanceLock(self.config.state_dir / "lock")
        lock.acquire()
        from agentq.accounts.setup import ensure_accounts

        for step in ensure_accounts(self.config):  # raises AccountError listing every problem
            logger.info("account set-up: %s", step)
        code = 0
        # Signals act on the relay's thread: a handler setting ``wake`` could deadlock the loop.
        with SignalRelay({signal.SIGTERM: self.stop, signal.SIGINT: self.stop}):
            # The tmux server and every agent pane inherit our environment: no notify socket.
            forget_environment(os.environ)
            try:
                self.start()
                code = self._loop()
            finally:
                self.notifier.stopping()
                self._shutdown()
                lock.release()
        logger.info("agentq worker stopped")
        return code

    def stop(self) -> None:
        """Ask the loop to stop (thread-safe)."""
        self.stopping = True
        self.wake.set()

    def start(self) -> None:
        """Build the pool and the switcher, find the checkouts, connect to the fleet."""
        try:
            from agentq.cluster.hostworker import FleetWorker
            from agentq.cluster.temporal import connection_from_config
        except ImportError as exc:
            raise missing_sdk(exc) from None

        self.state = self.state_file.load()
        self.state["worker"] = {
            "pid": os.getpid(),
            "host": self.host,
            "started_at": self.clock.now().isoformat(),
        }
        records = self.config.state_dir / RECORDS_DIRNAME
        for name, path in worker_projects(self.config).items():
            control = records / name
            control.mkdir(mode=0o700, parents=True, exist_ok=True)
            for stale in control.glob("*.json"):
                stale.unlink(missing_ok=True)  # a killed worker's runs went back to the fleet
            self.projects[name] = q.Project(path, control=control)
        if not self.projects:
            raise ConfigError(["agentq worker found no project checkout under projects:"])
        local = self._make_local(Context(self.config, self.env, self.clock, self.wake.set))
        self.local, self.pool = local.executor, local.pool
        self._start_switcher()
        self.watcher.start()
        signals = self.config.state_dir / "signals"
        signals.mkdir(mode=0o700, exist_ok=True)
        self.watcher.watch(signals, moves_only=True)
        queues = [task_queue(self.cluster.task_queue_prefix, n) for n in sorted(self.projects)]
        connection = connection_from_config(self.cluster, self.env, self.host)
        every = max(0.5, min(5.0, self.cluster.heartbeat_timeout / 3))
        self.fleet = FleetWorker(connection, queues, self.bridge, self.host, every)
        self._publish()
        self.fleet.start()
        self._save_state(force=True)
        self.notifier.ready(f"working for {len(queues)} task queue(s)")
        logger.info("agentq worker ready", extra={"host": self.host, "queues": ",".join(queues)})

    def _start_switcher(self) -> None:
        """Quota failover for this host's accounts, as the daemon wires it."""
        if self.pool is None:
            return  # no agent sessions (the instant executor): no accounts to swap
        from agentq.accounts.book import AccountBook
        from agentq.accounts.switcher import Switcher

        book = AccountBook.from_dict(self.state, [a.name for a in self.config.accounts])
        self.switcher = Switcher(self.config, self.pool, book, log_emitter())

    def _loop(self) -> int:
        deadline: float | None = None
        while True:
            self.wake.wait(self._timeout())
            self.wake.clear()
            if self.stopping and deadline is None:
                deadline = self.clock.monotonic() + STOP_WAIT
                if self.fleet is not None:
                    self.fleet.request_stop()  # activities get cancelled: they hand tasks back
            try:
                self._pass()
            except Exception:
                # The worker must outlive one failure (a tmux hiccup): log it and go on.
                logger.exception("worker pass failed; retrying")
                self.wake.wait(1.0)
            else:
                self._ping()
            fleet_up = self.fleet is not None and self.fleet.alive()
            if deadline is not None and (not fleet_up or self.clock.monotonic() > deadline):
                return 0
            if deadline is None and not fleet_up:
                error = self.fleet.last_error if self.fleet is not None else None
                logger.error("the fleet connection ended; stopping", extra={"error": error})
                return 1

    def _ping(self) -> None:
        """``WATCHDOG=1`` after each good pass (systemd restarts a wedged worker)."""
        if self.notifier.watchdog_bound is not None:
            self.notifier.watchdog()

    def _shutdown(self) -> None:
        if self.fleet is not None:
            self.fleet.close()
        self.watcher.stop()
        if self.local is not None:
            self.local.close()
        self._save_state(force=True)

    def _timeout(self) -> float:
        delays = [IDLE_WAIT]
        if self.local is not None:
            wanted = self.local.next_poll()
            if wanted is not None:
                delays.append(wanted)
        if self.switcher is not None:
            wake = self.switcher.next_wakeup(self.clock.now())
            if wake is not None:
                delays.append(wake)
        return max(0.01, min(delays))

    # -- one pass -------------------------------------------------------------------

    def _pass(self) -> None:
        local = self._local()
        self.watcher.take_dirty()  # hook signals only wake the loop; the executor reads them
        for message in self.bridge.take():
            if message.kind is MessageKind.START:
                self._start(message.ticket)
            else:
                self._cancel(message)
        for outcome in local.poll(self.clock.now()):
            self._finish(outcome)
        if self.switcher is not None and self.pool is not None:
            now = self.clock.now()
            self.switcher.observe(self.pool.take_readings(), now)
            self.switcher.tick(now)
            self.state.update(self.switcher.book.to_dict())
        self._publish()
        self._save_state()

    def _local(self) -> Executor:
        if self.local is None:
            raise RuntimeError("the worker has not started")
        return self.local

    def prepare_job(self, ticket: Ticket) -> Job:
        """Turn a fleet task into the local executor's job: the one set-up step.

        The job's claim lives in this host's checkout of the project (the agent's working
        folder) with its control record in the worker's state folder. A task's ``session:``
        pin names a session of the submitter's pool, so it is dropped here. (Per-task
        worktrees, once the daemon makes them, are prepared here too.)

        Raises:
            TaskFileError: the task text cannot be parsed.
            KeyError: this host has no checkout of the task's project.
        """
        spec = ticket.spec
        project = self.projects[spec.project]
        task = taskfile.parse_task(spec.text.encode("utf-8", "surrogatepass"), spec.name)
        if task.meta.session:
            task = dataclasses.replace(task, meta=task.meta.model_copy(update={"session": None}))
        now = self.clock.now()
        record = ControlRecord(
            name=spec.name,
            ino=0,
            attempts=spec.attempt,
            claim_id=spec.claim_id,
            claimed_at=now.isoformat(),
        )
        claim = q.Claim(project, spec.name, record)
        route = RouteDecision("local", None, f"from the fleet (submitted by {spec.submitter})")
        return Job(claim, task, route, now)

    def _start(self, ticket: Ticket) -> None:
        local = self._local()
        if self.stopping or local.capacity() <= 0 or ticket.spec.project not in self.projects:
            self._hand_back(ticket)
            return
        try:
            job = self.prepare_job(ticket)
        except TaskFileError as exc:
            self._accept(ticket)
            self._resolve(ticket, self._report(ticket, "failed", error=exc.reason))
            return
        try:
            local.start(job)
        except AgentqError as exc:
            # No session could take it here (tmux trouble): another host may do better.
            logger.warning(
                "fleet task not started", extra={"task": ticket.spec.task_id, "error": str(exc)}
            )
            self._hand_back(ticket)
            return
        self._running[ticket.workflow_id] = ticket
        self._claims[ticket.spec.claim_id] = ticket.workflow_id
        self._accept(ticket)
        logger.info(
            "fleet task started",
            extra={"task": ticket.spec.task_id, "workflow_id": ticket.workflow_id},
        )

    def _accept(self, ticket: Ticket) -> None:
        self.counters["accepted"] += 1
        ticket.accepted.set_result(True)

    def _hand_back(self, ticket: Ticket) -> None:
        self.counters["handed_back"] += 1
        logger.info("fleet task handed back unrun", extra={"task": ticket.spec.task_id})
        ticket.accepted.set_result(False)

    def _cancel(self, message: Message) -> None:
        ticket = message.ticket
        wid = ticket.workflow_id
        if wid not in self._running:
            if not ticket.report.done():  # it never started here (or was handed back)
                self._resolve(ticket, self._report(ticket, "failed", error="cancelled"))
            return
        if message.handback:
            self._handback.add(wid)
        cancel = getattr(self.local, "cancel", None)
        if callable(cancel) and cancel(ticket.spec.task_id):
            self.counters["cancelled"] += 1
            logger.info("fleet task interrupted", extra={"task": ticket.spec.task_id})

    def _finish(self, outcome: Outcome) -> None:
        wid = self._claims.pop(outcome.job.claim.record.claim_id, None)
        ticket = self._running.pop(wid, None) if wid is not None else None
        outcome.job.claim.project.remove_record(outcome.job.claim.name)
        if ticket is None:
            return
        done = outcome.status is OutcomeStatus.DONE
        error = outcome.error
        if wid in self._handback:
            self._handback.discard(wid)
            error = f"interrupted: host {self.host} stopped ({error})"
        self.counters["done" if done else "failed"] += 1
        report = self._report(
            ticket,
            "done" if done else "failed",
            result=outcome.result,
            error=error,
            session=outcome.target,
            account=outcome.account,
            cost=outcome.cost,
            details=[[k, v] for k, v in outcome.details],
        )
        self._resolve(ticket, report)

    def _report(self, ticket: Ticket, status: str, **fields: Any) -> TaskReport:
        return TaskReport(
            status="done" if status == "done" else "failed",
            host=self.host,
            hosts=ticket.hosts(),
            **fields,
        )

    @staticmethod
    def _resolve(ticket: Ticket, report: TaskReport) -> None:
        if not ticket.report.done():
            ticket.report.set_result(report)

    # -- what the activities and status see -----------------------------------------

    def _publish(self) -> None:
        local = self._local()
        held = held_until(self.switcher)
        sessions = _sessions_by_task(local)
        progress: dict[str, Progress] = {}
        for wid, ticket in self._running.items():
            seen = sessions.get(ticket.spec.task_id, {})
            state = str(seen.get("state") or "")
            phase = "parked" if state == "parked" or held else _phase(state)
            last = seen.get("last_activity")
            progress[wid] = Progress(
                hosts=ticket.hosts(),
                phase=phase,
                session=str(seen["session"]) if seen.get("session") else None,
                account=str(seen["account"]) if seen.get("account") else None,
                last_activity=float(last) if isinstance(last, int | float) else None,
                held_until=held,
            )
        free = 0 if self.stopping else local.capacity()
        self.bridge.publish(free, len(self._running), progress, held)

    def _save_state(self, force: bool = False) -> None:
        now = self.clock.monotonic()
        if not force and now - self._saved_at < STATE_EVERY:
            return
        self._saved_at = now
        local = self.local
        status = getattr(local, "status", None)
        self.state["sessions"] = status() if callable(status) else []
        fleet = self.fleet.status() if self.fleet is not None else {}
        self.state["fleet"] = {
            **fleet,
            "host": self.host,
            **self.bridge.counts(),
            **self.counters,
            "running": sorted(self._running),
            "held_until": held_until(self.switcher),
        }
        try:
            self.state_file.save(json.loads(json.dumps(self.state, default=str)))
        except AgentqError as exc:
            logger.warning("cannot write the worker's state", extra={"error": str(exc)})


def _sessions_by_task(local: Executor) -> dict[str, dict[str, Any]]:
    status = getattr(local, "status", None)
    entries = status() if callable(status) else []
    out: dict[str, dict[str, Any]] = {}
    for entry in entries if isinstance(entries, list) else []:
        task = entry.get("task") if isinstance(entry, dict) else None
        if isinstance(task, str):
            out[task] = entry
    return out


def _phase(state: str) -> str:
    if state in ("busy", "quota"):
        return "working"
    if state in ("exiting",):
        return "ending"
    return "starting"


def run_worker(config: Config, env: Mapping[str, str]) -> int:
    """``agentq worker``: run this host's worker until it is stopped."""
    return Worker(config, env).run()
