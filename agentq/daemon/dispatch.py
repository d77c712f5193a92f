"""Dispatch and completion: ready tasks to executors, outcomes to ``done/`` and ``failed/``.

A ready task is claimed (one rename), its attempt counted before anything else
happens (R11), parsed, routed and handed to the executor the route names. What
an executor returns from ``poll`` becomes a footer and one no-clobber move. Every
footer the daemon writes is built here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from agentq.core import events as ev
from agentq.core.clock import Clock
from agentq.core.errors import AgentqError, RefusedEntryError, TaskFileError
from agentq.core.secrets import redact
from agentq.daemon.state import Counters
from agentq.queue import protocol as q
from agentq.queue import taskfile
from agentq.queue.jobs import Executor, Job, Outcome, OutcomeStatus
from agentq.queue.records import ControlRecord
from agentq.queue.router import RouteDecision, RoutingPolicy, route

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
    ) -> None:
        self.local = local
        self.remote = remote
        self.policy = policy
        self._max_attempts = max_attempts
        self._counters = counters
        self._clock = clock
        self._events = events
        #: Tasks routed to an executor that was full: not claimed again until it has room.
        self._full_skips: dict[tuple[Path, str], Executor] = {}

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
        pending: dict[Path, list[q.Pending]],
        project_of: dict[Path, q.Project],
        stopping: bool = False,
    ) -> None:
        """Start the best ready tasks while an executor has room."""
        self._full_skips = {k: e for k, e in self._full_skips.items() if e.capacity() <= 0}
        if stopping or not self.has_room():
            return  # a full pool: no need to sort a backlog only to take nothing from it
        candidates = [(p, inbox) for inbox, items in pending.items() for p in items]
        candidates.sort(key=lambda c: (-c[0].priority, c[0].arrival_ns, c[0].name))
        for item, inbox in candidates:
            if stopping or not self.has_room():
                break
            if (inbox, item.name) in self._full_skips:
                continue
            pending[inbox].remove(item)
            project = project_of.get(inbox.parent.parent)
            if project is None:
                continue
            try:
                self._start_task(project, item.name)
            except OSError as exc:
                logger.error("cannot start task", extra={"task": item.name, "error": str(exc)})

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
        try:
            executor.start(Job(claim, task, decision, started))
        except AgentqError as exc:
            self.fail(claim, str(exc), task, started)
            return
        self._counters.bump("started")
        state = "delegated" if executor is self.remote else "working"
        # The rename's own time (the file's ctime): what the pickup latency ends with.
        self._emit(claim, state, claimed=(claim.claimed_ns or started.timestamp() * 1e9) / 1e9)
        logger.info("task started", extra={"task": claim.task_id, "attempt": claim.record.attempts})

    def route(self, task: taskfile.Task, record: ControlRecord) -> RouteDecision:
        """Where ``task`` runs now (providers that failed it terminally are skipped)."""
        unavailable = frozenset(record.unavailable)
        decision = route(task.meta, self.policy, unavailable)
        if decision.executor == "provider" and self.remote is None:
            # Delegation is not wired to an executor here: run it locally, and say so.
            warning = f"provider {decision.provider!r} is not available; ran locally"
            return RouteDecision("local", None, decision.reason, (*decision.warnings, warning))
        return decision

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
            claim.project.requeue(claim)
            self._counters.bump("requeued")
            self._emit(claim, "pending", reason="requeued")
            return
        done = outcome.status is OutcomeStatus.DONE
        details = tuple(("warning", w) for w in outcome.job.route.warnings) + outcome.details
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
        now = self._clock.now()
        footer = taskfile.Footer.failure(
            redact(reason),
            executor=claim.record.executor or "queue",
            started=started or now,
            finished=now,
            attempts=claim.record.attempts,
            claim_id=claim.record.claim_id or None,
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


def _redacted(details: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple((k, redact(v)) for k, v in details)
