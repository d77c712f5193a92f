"""The daemon: start-up order, the level-triggered main loop, graceful stop.

Start-up (ARCHITECTURE.md §2): single-instance lock → install watches → sweep
stale temp files → recover in-flight tasks → scan every inbox → ``READY=1``.
The loop waits on one :class:`threading.Event` with a timeout; watch events,
timers and signals only set it. Each pass reconciles: rescan when due, list the
dirty inboxes, claim what is ready, collect what executors finished.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from agentq.config.models import Config
from agentq.core import durable
from agentq.core.errors import AgentqError, LockError, QueueError, RefusedEntryError, TaskFileError
from agentq.core.lock import InstanceLock
from agentq.core.secrets import redact
from agentq.daemon.instant import InstantExecutor
from agentq.daemon.sdnotify import Notifier
from agentq.daemon.state import StateFile
from agentq.queue import protocol as q
from agentq.queue import taskfile
from agentq.queue.jobs import Executor, Job, Outcome, OutcomeStatus, RecoveryKind
from agentq.queue.router import RouteDecision, RoutingPolicy, route
from agentq.queue.vetting import (
    DELEGATED_SUFFIX,
    WORKING_SUFFIX,
    NameKind,
    classify_name,
    refusal_reason,
)
from agentq.queue.watcher import InboxWatcher

logger = logging.getLogger(__name__)

LEDGER_FILENAME = "instant-ledger.jsonl"
#: How often an inbox that inotify cannot watch is listed.
POLL_INTERVAL = 1.0
ExecutorFactory = Callable[["Daemon"], Executor]
RemoteFactory = Callable[["Daemon"], tuple[Executor | None, frozenset[str], list[str]]]


def utcnow() -> datetime:
    """The current time, timezone-aware (the daemon's single clock read)."""
    return datetime.now(UTC)


class Daemon:
    """Wires the queue, the watcher, the executors and the state file together."""

    def __init__(
        self,
        config: Config,
        env: Mapping[str, str],
        local_executor: ExecutorFactory | None = None,
        remote_executor: RemoteFactory | None = None,
    ) -> None:
        self.config = config
        self.env = env
        self.state_dir = config.state_dir
        self.wake = threading.Event()
        self.stopping = False
        self.watcher = InboxWatcher(self.wake, env)
        self.notifier = Notifier(env)
        self.state_file = StateFile(self.state_dir)
        self.state: dict[str, Any] = {}
        self.projects: dict[Path, q.Project] = {}
        self.refused_projects: dict[str, str] = {}
        self._pending: dict[Path, list[q.Pending]] = {}
        self._waiting: dict[Path, int] = {}
        self._next_rescan = 0.0
        self._state_dirty = True
        self._make_local = local_executor or _default_local_executor
        self.local: Executor | None = None
        self.remote: Executor | None = None
        self._make_remote = remote_executor or _default_remote_executor
        #: Tasks routed to an executor that was full: not claimed again until it has room.
        self._full_skips: dict[tuple[Path, str], Executor] = {}
        self._project_locks: list[InstanceLock] = []
        self.switcher: Any = None
        self._last_saved = ""
        self.policy = RoutingPolicy(allow_by_default=config.delegation.allow_by_default)

    # -- lifecycle ------------------------------------------------------------------

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the process exit code."""
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = InstanceLock(self.state_dir / "lock")
        lock.acquire()
        from agentq.accounts.setup import ensure_accounts

        for step in ensure_accounts(self.config):  # raises AccountError listing every problem
            logger.info("account set-up: %s", step)
        self._install_signals()
        try:
            self._start()
            self._loop()
        finally:
            self.notifier.send("STOPPING=1")
            self.watcher.stop()
            for executor in self._executors():
                executor.close()
            self._save_state(force=True)
            lock.release()
        logger.info("agentq stopped")
        return 0

    def _install_signals(self) -> None:
        def request_stop(signum: int, frame: FrameType | None) -> None:
            self.stopping = True
            self.wake.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        # The writer probe takes a read lease for a moment; a writer opening the file in
        # that moment sends SIGIO, whose default action would kill the daemon.
        signal.signal(signal.SIGIO, signal.SIG_IGN)

    def _start(self) -> None:
        self.state = self.state_file.load()
        self.state["daemon"] = {"pid": os.getpid(), "started_at": utcnow().isoformat()}
        self.local = self._make_local(self)
        self._start_switcher()
        self.remote, available, warnings = self._make_remote(self)
        for provider in self.config.delegation.providers:
            if provider.api_key_env:
                # Keys are in the clients now; tmux and every agent pane inherit our environment.
                os.environ.pop(provider.api_key_env, None)
        for warning in warnings:
            logger.warning("delegation: %s", warning)
        delegation = self.config.delegation
        self.policy = RoutingPolicy(
            allow_by_default=delegation.allow_by_default,
            configured=frozenset(p.name for p in delegation.providers),
            available=available if self.remote is not None else frozenset(),
            fallbacks=delegation.fallbacks,
            complexity={str(k): v for k, v in delegation.complexity.items()},
        )
        self.watcher.start()
        for folder in ("signals", "requests"):
            path = self.state_dir / folder
            path.mkdir(mode=0o700, exist_ok=True)
            self.watcher.watch(path)
        self._discover()
        now = time.time()
        swept = sum(p.sweep(now, self.config.dispatch.tmp_max_age) for p in self.projects.values())
        swept += durable.sweep_temp_files(self.state_dir, self.state_dir / "signals")
        if swept:
            logger.info("stale temp files swept", extra={"count": swept})
        self._bump("swept", swept)
        for project in list(self.projects.values()):
            self._recover(project)
        for inbox in self.watcher.take_dirty() | {p.inbox for p in self.projects.values()}:
            self._scan(inbox)
        self._dispatch()
        self._collect()
        self._save_state(force=True)
        self._next_rescan = time.monotonic() + self.config.dispatch.rescan_interval
        self.notifier.send("READY=1\nSTATUS=watching " + f"{len(self.projects)} projects")
        logger.info("agentq ready", extra={"projects": len(self.projects)})

    def _loop(self) -> None:
        while not self.stopping:
            self.wake.wait(self._timeout())
            self.wake.clear()
            if self.stopping:
                break
            try:
                self._pass()
            except Exception:
                # The daemon must outlive any one failure (a full disk, a tmux hiccup): log it,
                # skip the watchdog ping for this pass, and try again after a short pause.
                logger.exception("main loop pass failed; retrying")
                self._bump("loop_errors")
                self.wake.wait(1.0)
                continue
            self.notifier.ping(time.monotonic())

    def _start_switcher(self) -> None:
        from agentq.accounts.switcher import Switcher
        from agentq.daemon.notify import Notifier as EventNotifier
        from agentq.sessions.executor import SessionExecutor

        if not isinstance(self.local, SessionExecutor):
            return
        notify = EventNotifier(self.config.notifications, self.state)
        self.switcher = Switcher(self.config, self.local, self.state, notify, self.env)
        home = {a.name: a.home for a in self.config.accounts}.get(self.switcher.active)
        if home is not None:
            self.local.set_account(self.switcher.active, home)

    def _pass(self) -> None:
        if time.monotonic() >= self._next_rescan:
            self._rescan()
        self._take_requests()
        now_ns = time.time_ns()
        due = {inbox for inbox, at in self._waiting.items() if at <= now_ns}
        for inbox in self.watcher.take_dirty() | due:
            self._scan(inbox)
        self._dispatch()
        self._collect()
        if self.switcher is not None:
            self.switcher.tick(utcnow())
        self._save_state()

    def _take_requests(self) -> None:
        """Operator requests (``agentq swap``) arrive as JSON files in ``state_dir/requests``."""
        folder = self.state_dir / "requests"
        for path in sorted(folder.glob("*.request.json")):
            try:
                request = json.loads(path.read_text())
            except (OSError, ValueError):
                path.unlink(missing_ok=True)
                continue
            # The request is answered and removed whatever happens: a failing swap must not
            # be replayed on every pass.
            path.unlink(missing_ok=True)
            try:
                answer = self._answer(request)
            except AgentqError as exc:
                answer = {"ok": False, "message": f"failed: {exc}"}
            result = path.with_name(path.name.replace(".request.json", ".result.json"))
            durable.write_atomic(result, json.dumps(answer).encode())
            self._state_dirty = True

    def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.switcher is None:
            return {"ok": False, "message": "account swaps need an agent session pool"}
        if request.get("action") == "clear":
            outcome = self.switcher.clear_partial()
        else:
            to = request.get("to")
            outcome = self.switcher.swap("manual (agentq swap)", str(to) if to else None, utcnow())
        return {"ok": outcome.swapped, "message": outcome.message}

    def _timeout(self) -> float:
        delays = [self._next_rescan - time.monotonic()]
        if self._waiting:
            delays.append((min(self._waiting.values()) - time.time_ns()) / 1e9)
        if self.notifier.watchdog_interval:
            delays.append(self.notifier.watchdog_interval)
        if self.watcher.polling():
            delays.append(POLL_INTERVAL)
        if self.switcher is not None:
            wake = self.switcher.next_wakeup(utcnow())
            if wake is not None:
                delays.append(wake)
        for executor in self._executors():
            wanted = executor.next_poll()
            if wanted is not None:
                delays.append(wanted)
        return max(0.01, min(delays))

    # -- projects and scanning ------------------------------------------------------

    def _discover(self) -> None:
        paths = q.find_projects(self.config.projects.roots, self.config.projects.paths)
        for path in paths:
            if path in self.projects:
                continue
            project = q.Project(path)
            problem = self._claim_project(project)
            if problem is not None:
                if self.refused_projects.get(str(path)) != problem:
                    logger.error("project refused", extra={"project": str(path), "reason": problem})
                self.refused_projects[str(path)] = problem
                continue
            self.refused_projects.pop(str(path), None)
            self.projects[path] = project
            self.watcher.watch(project.inbox)
            self.watcher.mark(project.inbox)
            logger.info("project watched", extra={"project": str(path)})

    def _claim_project(self, project: q.Project) -> str | None:
        """Create the queue folders and lock the project; the reason it is refused, if so."""
        try:
            project.ensure_dirs()
            lock = InstanceLock(project.control / "lock")
            lock.acquire()
        except LockError as exc:
            # One daemon per project, whatever its state_dir: another daemon's in-flight
            # tasks must never be "recovered" here.
            return f"held by another agentq daemon ({exc})"
        except QueueError as exc:
            return str(exc)
        self._project_locks.append(lock)
        return None

    def _rescan(self) -> None:
        self._discover()
        for project in self.projects.values():
            try:
                project.ensure_dirs()
            except QueueError as exc:
                logger.error(
                    "project unusable", extra={"project": str(project.path), "reason": str(exc)}
                )
                continue
            self.watcher.watch(project.inbox)
            self.watcher.mark(project.inbox)
        self.watcher.check_health()
        self._bump("rescans")
        self._next_rescan = time.monotonic() + self.config.dispatch.rescan_interval

    def _project_of(self, inbox: Path) -> q.Project | None:
        return self.projects.get(inbox.parent.parent)

    def _scan(self, inbox: Path) -> None:
        project = self._project_of(inbox)
        if project is None:
            return
        try:
            found = project.scan(time.time_ns(), int(self.config.dispatch.quiet_period * 1e9))
        except QueueError as exc:
            logger.error("inbox scan failed", extra={"inbox": str(inbox), "reason": str(exc)})
            self._waiting.pop(inbox, None)  # the rescan tries again; no busy loop meanwhile
            return
        for name, reason in found.refused:
            self._refuse(project, name, reason)
        self._pending[inbox] = found.ready
        if found.waiting:
            self._waiting[inbox] = min(found.waiting.values())
        elif found.incomplete:
            self._waiting[inbox] = time.time_ns() + int(
                max(self.config.dispatch.quiet_period, 0.5) * 1e9
            )
        else:
            self._waiting.pop(inbox, None)
        self.state.setdefault("incomplete", {})[str(inbox)] = found.incomplete

    def _refuse(self, project: q.Project, name: str, reason: str) -> None:
        now = utcnow()
        footer = taskfile.footer_bytes(
            taskfile.Footer(
                status="failed",
                executor="queue",
                target=None,
                account=None,
                started=now,
                finished=now,
                attempts=0,
                cost=None,
                result=None,
                error=reason,
                claim_id=None,
                details=(("original name", name),),
            )
        )
        try:
            st = os.lstat(project.inbox / name)
        except FileNotFoundError:
            return
        if classify_name(name) is NameKind.PENDING and refusal_reason(st, os.getuid()) is None:
            return  # acceptable by now (a producer's link from tmp/ was removed): no refusal
        try:
            path = project.refuse(name, reason, footer)
        except OSError as exc:
            logger.error("cannot refuse entry", extra={"entry": name, "error": str(exc)})
            return
        self._bump("refused")
        logger.warning(
            "inbox entry refused", extra={"entry": name, "reason": reason, "path": str(path)}
        )

    # -- recovery -------------------------------------------------------------------

    def _recover(self, project: q.Project) -> None:
        try:
            found = project.scan(time.time_ns(), 0)
        except QueueError as exc:
            logger.error(
                "recovery scan failed", extra={"project": str(project.path), "reason": str(exc)}
            )
            return
        entries = [(n, DELEGATED_SUFFIX) for n in found.delegated]
        entries += [(n, WORKING_SUFFIX) for n in found.working if n not in found.delegated]
        for name, suffix in entries:
            try:
                self._recover_one(project, name, suffix)
            except (AgentqError, OSError) as exc:
                # One broken entry must not stop start-up (that would be a crash loop).
                logger.error("cannot recover task", extra={"task": name, "error": str(exc)})

    def _executors(self) -> list[Executor]:
        return [e for e in (self.local, self.remote) if e is not None]

    def _executor_named(self, name: str) -> Executor | None:
        if self.remote is not None and name == self.remote.name:
            return self.remote
        return self.local

    def _recover_one(self, project: q.Project, name: str, suffix: str) -> None:
        record = project.load_record(name)
        claim = q.Claim(project, name, record or q.ControlRecord(name=name, ino=0), suffix)
        if suffix == DELEGATED_SUFFIX:
            stale = project.inbox / (name + WORKING_SUFFIX)
            if stale.exists():
                stale.unlink()  # the marker was written; the working copy is redundant
        if record is None and suffix == DELEGATED_SUFFIX:
            record = claim.record
            record.executor = "provider"
            record.claim_id = self._claim_id_from_marker(claim)
        if record is None or not record.claim_id:
            project.requeue(claim)  # claimed but no attempt began: nothing was done yet
            return
        if project.find_result(name, record.claim_id) is not None:
            project.drop(claim)  # a completion finished its move before the crash
            self._bump("recovered_completed")
            return
        executor = self._executor_named(record.executor)
        if suffix == DELEGATED_SUFFIX and self.remote is None:
            reason = (
                "delegated to a provider, but delegation is no longer configured; the job may "
                "still run at the provider (see the delegation block)"
            )
            self._finish_early(claim, reason, None)
            return
        if executor is None or record.executor not in (executor.name, ""):
            logger.warning(
                "no executor for an in-flight task; requeued", extra={"task": claim.task_id}
            )
            project.requeue(claim)
            return
        task = self._parse_quietly(claim)
        decision = executor.recover(claim, task, utcnow())
        if decision.kind is RecoveryKind.ADOPT and task is not None:
            started = _parse_time(record.claimed_at)
            executor.adopt(Job(claim, task, self._route(task, record), started))
            self._bump("recovered_adopted")
        elif decision.kind is RecoveryKind.REQUEUE:
            project.requeue(claim)
            self._bump("recovered_requeued")
        elif decision.kind is RecoveryKind.FAIL:
            self._finish_early(claim, decision.reason or "abandoned after restart", None)
            self._bump("recovered_failed")
        logger.info(
            "in-flight task recovered", extra={"task": claim.task_id, "action": decision.kind.value}
        )

    def _claim_id_from_marker(self, claim: q.Claim) -> str:
        """A marker whose record was lost still names its claim in its idempotency key."""
        from agentq.delegation.manager import claim_id_of
        from agentq.delegation.marker import read_info

        task = self._parse_quietly(claim)
        info = read_info(task.meta.model_extra) if task is not None else None
        return claim_id_of(info.idempotency_key) if info is not None else ""

    def _parse_quietly(self, claim: q.Claim) -> taskfile.Task | None:
        try:
            return taskfile.parse_task(claim.project.read_claimed(claim), claim.name)
        except (AgentqError, OSError):
            return None

    # -- dispatch -------------------------------------------------------------------

    def _dispatch(self) -> None:
        if self.local is None:
            return
        self._full_skips = {k: e for k, e in self._full_skips.items() if e.capacity() <= 0}
        candidates = [(p, inbox) for inbox, items in self._pending.items() for p in items]
        candidates.sort(key=lambda c: (-c[0].priority, c[0].arrival_ns, c[0].name))
        for pending, inbox in candidates:
            if self.stopping or not any(e.capacity() > 0 for e in self._executors()):
                break
            if (inbox, pending.name) in self._full_skips:
                continue
            self._pending[inbox].remove(pending)
            project = self._project_of(inbox)
            if project is not None:
                try:
                    self._start_task(project, pending.name)
                except OSError as exc:
                    logger.error(
                        "cannot start task", extra={"task": pending.name, "error": str(exc)}
                    )

    def _start_task(self, project: q.Project, name: str) -> None:
        claim = project.claim(name)
        if claim is None:
            return
        if claim.record.attempts >= self.config.dispatch.max_attempts:
            limit = self.config.dispatch.max_attempts
            self._finish_early(
                claim, f"attempts exceeded ({claim.record.attempts} of {limit})", None
            )
            return
        started = utcnow()
        project.begin_attempt(claim, "", started.isoformat())
        try:
            raw = project.read_claimed(claim)
            task = taskfile.parse_task(raw, name)
        except (TaskFileError, RefusedEntryError) as exc:
            self._finish_early(claim, getattr(exc, "reason", str(exc)), None, started)
            return
        decision = self._route(task, claim.record)
        executor = self.remote if decision.executor == "provider" else self.local
        if executor is None:
            return
        if executor.capacity() <= 0:
            project.release(claim)  # nothing was done: give the attempt back
            self._full_skips[(project.inbox, name)] = executor
            return
        claim.record.executor = executor.name
        try:
            executor.start(Job(claim, task, decision, started))
        except AgentqError as exc:
            self._finish_early(claim, str(exc), task, started)
            return
        self._bump("started")
        logger.info("task started", extra={"task": claim.task_id, "attempt": claim.record.attempts})

    def _route(self, task: taskfile.Task, record: q.ControlRecord) -> RouteDecision:
        unavailable = frozenset(str(p) for p in record.data.get("unavailable", []))
        decision = route(task.meta, self.policy, unavailable)
        if decision.executor == "provider" and self.remote is None:
            # Delegation is not wired to an executor here: run it locally, and say so.
            warning = f"provider {decision.provider!r} is not available; ran locally"
            return RouteDecision("local", None, decision.reason, (*decision.warnings, warning))
        return decision

    # -- completion -----------------------------------------------------------------

    def _collect(self) -> None:
        for executor in self._executors():
            for outcome in executor.poll(utcnow()):
                try:
                    self._complete(outcome)
                except OSError as exc:
                    # The task stays claimed (.working); recovery finishes it after a restart.
                    logger.error(
                        "cannot complete task",
                        extra={"task": outcome.job.claim.task_id, "error": str(exc)},
                    )

    def _complete(self, outcome: Outcome) -> None:
        claim = outcome.job.claim
        if outcome.status is OutcomeStatus.REQUEUE:
            claim.project.requeue(claim)
            self._bump("requeued")
            return
        done = outcome.status is OutcomeStatus.DONE
        details = tuple(("warning", w) for w in outcome.job.route.warnings) + outcome.details
        footer = taskfile.Footer(
            status="done" if done else "failed",
            executor=outcome.job.claim.record.executor or "local",
            target=outcome.target,
            account=outcome.account,
            started=outcome.job.started,
            finished=outcome.finished,
            attempts=claim.record.attempts,
            cost=outcome.cost,
            result=redact(outcome.result) if outcome.result else outcome.result,
            error=redact(outcome.error) if outcome.error else outcome.error,
            claim_id=claim.record.claim_id,
            details=tuple((k, redact(v)) for k, v in details),
        )
        path = claim.project.finish(
            claim, done, outcome.job.task.text.encode(), taskfile.footer_bytes(footer)
        )
        self._bump("done" if done else "failed")
        log = logger.info if done else logger.error
        log(
            "task %s",
            "done" if done else "failed",
            extra={"task": claim.task_id, "path": str(path)},
        )

    def _finish_early(
        self,
        claim: q.Claim,
        reason: str,
        task: taskfile.Task | None,
        started: datetime | None = None,
    ) -> None:
        now = utcnow()
        footer = taskfile.Footer(
            status="failed",
            executor=claim.record.executor or "queue",
            target=None,
            account=None,
            started=started or now,
            finished=now,
            attempts=claim.record.attempts,
            cost=None,
            result=None,
            error=reason,
            claim_id=claim.record.claim_id or None,
        )
        head = task.text.encode() if task is not None else None
        path = claim.project.finish(claim, False, head, taskfile.footer_bytes(footer))
        self._bump("failed")
        logger.error(
            "task failed", extra={"task": claim.task_id, "reason": reason, "path": str(path)}
        )

    # -- state ----------------------------------------------------------------------

    def _bump(self, counter: str, by: int = 1) -> None:
        counters = self.state.setdefault("counters", {})
        counters[counter] = counters.get(counter, 0) + by
        self._state_dirty = True

    def _save_state(self, force: bool = False) -> None:
        """Write ``state.json`` when anything in it changed (never on an idle pass)."""
        self.state["watches"] = self.watcher.summary()
        self.state["refused_projects"] = dict(self.refused_projects)
        self.state["projects"] = sorted(str(p) for p in self.projects)
        for key, executor in (("sessions", self.local), ("delegation", self.remote)):
            status = getattr(executor, "status", None)
            if callable(status):
                self.state[key] = status()
        snapshot = json.dumps(self.state, sort_keys=True, default=str)
        if not force and not self._state_dirty and snapshot == self._last_saved:
            return
        self.state_file.save(self.state)
        self._last_saved = snapshot
        self._state_dirty = False


def _parse_time(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return utcnow()


def _default_remote_executor(daemon: Daemon) -> tuple[Executor | None, frozenset[str], list[str]]:
    if not daemon.config.delegation.providers:
        return None, frozenset(), []
    try:
        from agentq.delegation.manager import build_delegation
    except ImportError:
        return None, frozenset(), ["delegation is not available in this build"]
    return build_delegation(daemon.config, daemon.env, wake=daemon.wake.set)


def _default_local_executor(daemon: Daemon) -> Executor:
    config = daemon.config
    if config.agent.profile == "instant":
        return InstantExecutor(daemon.state_dir / LEDGER_FILENAME, config.agent.answer)
    from agentq.agents.profiles import make_profile
    from agentq.sessions.executor import SessionExecutor
    from agentq.sessions.pool import PoolSpec
    from agentq.sessions.slots import SessionSettings
    from agentq.sessions.tmux import TmuxDriver

    profile = make_profile(
        config.agent.profile, config.agent.command, config.agent.args, config.agent.env
    )
    pool = PoolSpec(
        config.pool.prefix,
        config.pool.start_index,
        config.pool.min,
        config.pool.max,
        frozenset(d.name for d in config.pool.dedicated),
    )
    if config.accounts:
        account, home = config.accounts[0].name, config.accounts[0].home
    else:
        account, home = "default", Path(daemon.env.get("HOME", "~")).expanduser() / ".claude"
    projects = q.find_projects(config.projects.roots, config.projects.paths)
    settings = SessionSettings(
        account=account,
        account_home=home,
        default_cwd=projects[0] if projects else daemon.state_dir,
        delivery_timeout=config.dispatch.delivery_timeout,
        delivery_retries=config.dispatch.delivery_retries,
        idle_timeout=config.completion.idle_timeout,
        task_timeout=config.completion.task_timeout,
        permission_timeout=config.completion.permission_timeout,
        on_permission=config.agent.on_permission,
        permission_answer=config.agent.permission_answer,
        recycle=config.completion.recycle,
        timezone=config.quota.timezone,
        confirm_polls=config.quota.confirm_polls,
        cooldown=config.quota.cooldown,
    )
    driver = TmuxDriver(config.tmux.socket_name)
    return SessionExecutor(driver, profile, pool, settings, daemon.state_dir)
