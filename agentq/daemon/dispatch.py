"""Dispatch and completion: ready tasks to executors, outcomes to ``done/`` and ``failed/``.

Which ready tasks start is decided by :func:`agentq.queue.schedule.plan` (dependencies
and per-project concurrency); tasks it fails (a failed, unknown or circular dependency)
are claimed and failed at once. A task that starts is claimed (one rename), its attempt
counted before anything else happens (R11), parsed, routed, given its worktree when it
asks for isolation, and handed to the executor the route names. What an executor
returns from ``poll`` becomes a footer and one no-clobber move. Every footer the daemon
writes is built here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from agentq.core import events as ev
from agentq.core.clock import Clock
from agentq.core.errors import AgentqError, RefusedEntryError, TaskFileError, WorkspaceError
from agentq.core.secrets import redact
from agentq.daemon.planning import Part, Planner
from agentq.daemon.state import Counters
from agentq.daemon.workspaces import ProjectSettings, TaskWorkspaces
from agentq.queue import protocol as q
from agentq.queue import schedule, taskfile
from agentq.queue.isolation import Isolation, Worktree
from agentq.queue.jobs import Executor, Job, Outcome, OutcomeStatus
from agentq.queue.records import ControlRecord
from agentq.queue.router import RouteDecision, RoutingPolicy, route
from agentq.queue.scan import Pending

logger = logging.getLogger(__name__)


class Dispatcher:
    """Starts ready tasks on the executors and finishes what they return."""

    def __init__(
        self,
        local: Executor,
        remote: Executor | None,
        policy: RoutingPolicy,
        max_attempts: int,
        counters: Counters,
        clock: Clock,
        events: ev.EventLog,
        settings: ProjectSettings,
        workspaces: TaskWorkspaces,
        pool_size: int = 1,
        folderless_local: bool = False,
    ) -> None:
        self.local = local
        self.remote = remote
        self.policy = policy
        self._max_attempts = max_attempts
        self._counters = counters
        self._clock = clock
        self._events = events
        self._settings = settings
        self._workspaces = workspaces
        self._pool_size = pool_size
        #: The local executor edits no project folder here (the instant executor, or the
        #: fleet, whose workers run tasks in their own checkouts): no worktree, no checkout rule.
        self._folderless_local = folderless_local
        #: Tasks routed to an executor that was full: not claimed again until it has room.
        self._full_skips: dict[tuple[Path, str], Executor] = {}
        #: project folder → task name → where it works, for every task started and not ended.
        self._running: dict[Path, dict[str, schedule.Place]] = {}
        #: project folder → task name → why it waits (status shows it).
        self.waiting: dict[str, dict[str, str]] = {}
        self._planner = Planner(settings, pool_size, self._place_of)
        #: project → (its ``waiting`` entry, the rows :meth:`waits` made of it): read every pass.
        self._wait_rows: dict[str, tuple[dict[str, str], list[dict[str, str]]]] = {}

    def reconfigure(
        self, policy: RoutingPolicy, max_attempts: int, remote: Executor | None
    ) -> None:
        """Route by ``policy`` and count up to ``max_attempts`` from the next claim (a reload).

        ``remote`` is the provider executor now (a reload may add the first one); the one
        it replaces, if any, is the same object reconfigured, never a second executor.
        """
        self.policy = policy
        self._max_attempts = max_attempts
        self.remote = remote

    def executors(self) -> list[Executor]:
        """The executors in use (local first)."""
        return [e for e in (self.local, self.remote) if e is not None]

    def executor_named(self, name: str) -> Executor | None:
        """The executor a control record names (the local one for anything else)."""
        if self.remote is not None and name == self.remote.name:
            return self.remote
        return self.local

    def has_room(self) -> bool:
        """Whether any executor can take a job now."""
        return any(e.capacity() > 0 for e in self.executors())

    # -- dispatch ---------------------------------------------------------------------

    def dispatch(
        self,
        pending: dict[Path, list[Pending]],
        project_of: dict[Path, q.Project],
        stopping: bool = False,
        not_ready: dict[Path, set[str]] | None = None,
    ) -> None:
        """Plan (dependencies, per-project limits), fail what must fail, start what may start.

        ``not_ready`` names, per inbox, the tasks that cannot be claimed yet (still being
        written): a dependency on one of them waits.
        """
        if stopping:
            return
        self._full_skips = {k: e for k, e in self._full_skips.items() if e.capacity() <= 0}
        skipped: dict[Path, set[str]] = {}
        for inbox, name in self._full_skips:
            skipped.setdefault(inbox, set()).add(name)
        parts = self._planner.plan(
            pending,
            project_of,
            not_ready or {},
            {inbox: frozenset(names) for inbox, names in skipped.items()},
            self._running,
            (self.policy, self.remote),
        )
        self._note_waiting(parts)
        for part, _ in parts:  # best project first, as one plan over every project fails them
            for (folder, name), reason in part.plan.failing.items():
                self._apply(pending, project_of, Path(folder), name, reason)
        for candidate in schedule.merge_starts(part.plan for part, _ in parts):
            if not self.has_room():
                break
            self._apply(pending, project_of, Path(candidate.project), candidate.name, None)

    def _note_waiting(self, parts: list[tuple[Part, bool]]) -> None:
        """Remember why tasks wait (``state.json``); tell the event log when a reason changes.

        A ``pending`` event carries the reason (``''`` once a task waits no more), so the
        task list shows "waiting for a.md" too. A part that is not new waits as it did.
        """
        before = self.waiting
        now: dict[str, dict[str, str]] = {}
        for part, new in parts:
            if part.waits:
                now[part.project] = part.waits
            if not new:
                continue
            old = before.get(part.project, {})
            for name, reason in part.waits.items():
                if old.get(name) != reason:
                    logger.info("task waits", extra={"task": name, "reason": reason})
                    self._emit_pending(part.project, name, reason)
            if any(name not in part.waits for name in old):
                current = {p.name for p in part.items}
                for name in old:
                    if name not in part.waits and name in current:
                        self._emit_pending(part.project, name, "")
        self.waiting = now

    def waits(self) -> list[dict[str, str]]:
        """Every waiting task with its reason, for ``state.json`` and the status document.

        The rows of a project whose waits did not change are the same objects as last time.
        """
        rows: list[dict[str, str]] = []
        made: dict[str, tuple[dict[str, str], list[dict[str, str]]]] = {}
        for project, names in sorted(self.waiting.items()):
            known = self._wait_rows.get(project)
            if known is None or known[0] is not names:  # a project's entry is never changed
                known = (names, [_wait_row(project, n, r) for n, r in sorted(names.items())])
            made[project] = known
            rows += known[1]
        self._wait_rows = made
        return rows

    def _emit_pending(self, project: str, name: str, reason: str) -> None:
        self._events.emit(
            ev.TASK, project=Path(project).name, task=name, state="pending", reason=reason
        )

    def _apply(
        self,
        pending: dict[Path, list[Pending]],
        project_of: dict[Path, q.Project],
        folder: Path,
        name: str,
        failure: str | None,
    ) -> None:
        """Start one planned task, or claim and fail it with ``failure``."""
        project = project_of.get(folder)
        if project is None:
            return
        items = pending.get(project.inbox, [])
        pending[project.inbox] = [p for p in items if p.name != name]
        try:
            if failure is None:
                self._start_task(project, name)
            else:
                self._fail_unstarted(project, name, failure)
        except OSError as exc:
            logger.error("cannot start task", extra={"task": name, "error": str(exc)})

    def _fail_unstarted(self, project: q.Project, name: str, reason: str) -> None:
        """Fail a pending task the plan refuses (its dependencies), keeping its text."""
        claim = project.claim(name)
        if claim is None:
            return
        try:
            task: taskfile.Task | None = taskfile.parse_task(project.read_claimed(claim), name)
        except (TaskFileError, RefusedEntryError):
            task = None
        self.fail(claim, reason, task)

    def _start_task(self, project: q.Project, name: str) -> None:
        claim = project.claim(name)
        if claim is None:
            return
        started = self._clock.now()
        if claim.record.attempts >= self._max_attempts:
            limit = self._max_attempts
            self.fail(claim, f"attempts exceeded ({claim.record.attempts} of {limit})", None)
            return
        project.begin_attempt(claim, "", started.isoformat())
        try:
            task = taskfile.parse_task(project.read_claimed(claim), name)
        except (TaskFileError, RefusedEntryError) as exc:
            self.fail(claim, getattr(exc, "reason", str(exc)), None, started)
            return
        decision = self.route(task, claim.record)
        executor = self.remote if decision.executor == "provider" else self.local
        if executor is None:  # route() never names a provider without a remote executor
            return
        if executor.capacity() <= 0:
            project.release(claim)  # nothing was done: give the attempt back
            self._full_skips[(project.inbox, name)] = executor
            return
        claim.record.executor = executor.name
        worktree: Worktree | None = None
        try:
            if executor is self.local and not self._folderless_local:
                worktree = self._workspaces.prepare(claim, task)
            elif self._settings.isolation(project.path, task.meta.isolation) is Isolation.WORKTREE:
                where = "at a provider" if executor is self.remote else "where this task runs"
                decision = _warn(decision, f"isolation: worktree does not apply {where}")
            if task.meta.base and worktree is None:
                decision = _warn(decision, "base: ignored (it applies to isolation: worktree)")
            executor.start(Job(claim, task, decision, started, worktree))
        except WorkspaceError as exc:
            self.fail(claim, exc.reason, task, started)
            return
        except AgentqError as exc:
            self.fail(claim, str(exc), task, started)
            return
        default = self._settings.get(project.path).isolation
        self._running.setdefault(project.path, {})[name] = self._place(
            default, task.meta, decision, worktree
        )
        self._counters.bump("started")
        state = "delegated" if executor is self.remote else "working"
        # The rename's own time (the file's ctime): what the pickup latency ends with.
        self._emit(claim, state, claimed=(claim.claimed_ns or started.timestamp() * 1e9) / 1e9)
        logger.info("task started", extra={"task": claim.task_id, "attempt": claim.record.attempts})

    def route(self, task: taskfile.Task, record: ControlRecord) -> RouteDecision:
        """Where ``task`` runs now (providers that failed it terminally are skipped)."""
        unavailable = frozenset(record.unavailable)
        return self._route_meta(task.meta, unavailable)

    def _route_meta(
        self, meta: taskfile.TaskMeta, unavailable: frozenset[str] = frozenset()
    ) -> RouteDecision:
        decision = route(meta, self.policy, unavailable)
        if decision.executor == "provider" and self.remote is None:
            # Delegation is not wired to an executor here: run it locally, and say so.
            warning = f"provider {decision.provider!r} is not available; ran locally"
            return RouteDecision("local", None, decision.reason, (*decision.warnings, warning))
        return decision

    def _place_of(self, default_isolation: str | None, meta: taskfile.TaskMeta) -> schedule.Place:
        """Where a pending task would work, as routed now."""
        return self._place(default_isolation, meta, self._route_meta(meta))

    def _place(
        self,
        default_isolation: str | None,
        meta: taskfile.TaskMeta,
        decision: RouteDecision,
        worktree: Worktree | None = None,
    ) -> schedule.Place:
        """Where a task works: at a provider, in a worktree, or in the project's checkout."""
        if decision.executor == "provider" and self.remote is not None:
            return schedule.Place.ELSEWHERE
        if worktree is not None:
            return schedule.Place.WORKTREE
        if self._folderless_local:
            return schedule.Place.ELSEWHERE
        if (meta.isolation or default_isolation) == Isolation.WORKTREE.value:
            return schedule.Place.WORKTREE  # before the claim: it will get one
        return schedule.Place.CHECKOUT

    def adopt(self, executor: Executor, job: Job) -> None:
        """Hand a task that was running before a restart back to its executor."""
        executor.adopt(job)
        project = job.claim.project.path
        default = self._settings.get(project).isolation
        place = self._place(default, job.task.meta, job.route, job.worktree)
        if job.worktree is None and place is schedule.Place.WORKTREE:
            place = schedule.Place.CHECKOUT  # it started before isolation was asked for
        self._running.setdefault(project, {})[job.claim.name] = place

    def requeue(self, claim: q.Claim) -> None:
        """Give a claimed task back to the inbox; a worktree it never worked in goes."""
        self._forget(claim)
        self._workspaces.discard(claim)
        claim.project.requeue(claim)

    def _forget(self, claim: q.Claim) -> None:
        self._running.get(claim.project.path, {}).pop(claim.name, None)

    # -- completion -------------------------------------------------------------------

    def collect(self) -> None:
        """Finish every job the executors report as ended."""
        for executor in self.executors():
            for outcome in executor.poll(self._clock.now()):
                try:
                    self.complete(outcome)
                except OSError as exc:
                    # The task stays claimed (.working); recovery finishes it after a restart.
                    logger.error(
                        "cannot complete task",
                        extra={"task": outcome.job.claim.task_id, "error": str(exc)},
                    )

    def complete(self, outcome: Outcome) -> None:
        """Write an executor's outcome: requeue, or ``done/``/``failed/`` with its footer."""
        claim = outcome.job.claim
        if outcome.status is OutcomeStatus.REQUEUE:
            self.requeue(claim)
            self._counters.bump("requeued")
            self._emit(claim, "pending", reason="requeued")
            return
        self._forget(claim)
        done = outcome.status is OutcomeStatus.DONE
        details = tuple(("warning", w) for w in outcome.job.route.warnings) + outcome.details
        details += self._workspaces.conclude(claim, outcome.job.worktree)
        footer = taskfile.Footer(
            status="done" if done else "failed",
            executor=claim.record.executor or "local",
            target=outcome.target,
            account=outcome.account,
            started=outcome.job.started,
            finished=outcome.finished,
            attempts=claim.record.attempts,
            cost=outcome.cost,
            result=redact(outcome.result) if outcome.result else outcome.result,
            error=redact(outcome.error) if outcome.error else outcome.error,
            claim_id=claim.record.claim_id,
            details=_redacted(details),
        )
        self._finish(claim, done, outcome.job.task.text.encode(), footer)

    def fail(
        self,
        claim: q.Claim,
        reason: str,
        task: taskfile.Task | None,
        started: datetime | None = None,
    ) -> None:
        """Fail a claimed task that no executor ran (or whose run cannot be observed)."""
        self._forget(claim)
        details = _redacted(self._workspaces.conclude(claim, None))
        now = self._clock.now()
        footer = taskfile.Footer.failure(
            redact(reason),
            executor=claim.record.executor or "queue",
            started=started or now,
            finished=now,
            attempts=claim.record.attempts,
            claim_id=claim.record.claim_id or None,
            details=details,
        )
        self._finish(claim, False, task.text.encode() if task is not None else None, footer)

    def _finish(
        self, claim: q.Claim, done: bool, head: bytes | None, footer: taskfile.Footer
    ) -> None:
        path = claim.project.finish(claim, done, head, taskfile.footer_bytes(footer))
        self._counters.bump("done" if done else "failed")
        extra = {} if done else {"reason": footer.error or ""}
        self._emit(claim, "done" if done else "failed", result=path.name, **extra)
        if done:
            logger.info("task done", extra={"task": claim.task_id, "path": str(path)})
        else:
            logger.error(
                "task failed",
                extra={"task": claim.task_id, "reason": footer.error, "path": str(path)},
            )

    def _emit(self, claim: q.Claim, state: str, **fields: str | float) -> None:
        project = claim.project.path.name
        attempts = claim.record.attempts
        self._events.emit(
            ev.TASK, project=project, task=claim.name, state=state, attempts=attempts, **fields
        )


def _wait_row(project: str, name: str, reason: str) -> dict[str, str]:
    return {"project": project, "task": name, "reason": reason}


def _redacted(details: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple((k, redact(v)) for k, v in details)


def _warn(decision: RouteDecision, note: str) -> RouteDecision:
    """The decision with one more warning for the footer."""
    warnings = (*decision.warnings, note)
    return RouteDecision(decision.executor, decision.provider, decision.reason, warnings)
