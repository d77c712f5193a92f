"""The submitting daemon's executor: tasks that route to a local agent go to the fleet.

Per task, as the delegation manager does for a provider (reliability R13):

1. persist the *intent* in the task's control record (its delegation, provider ``cluster``,
   job id = the workflow id ``<project>/<name>/<claim id>``) before anything leaves the
   machine;
2. start the workflow with that id: a second start of the same id (after a restart, or a
   retry after a lost answer) returns the existing run, never a new one;
3. write ``inbox/<name>.md.delegated`` atomically with a ``delegation:`` block naming the
   workflow (provider ``cluster``, job id = the workflow id, idempotency key
   ``agentq-<claim id>``), so the task is found again even without its record;
4. wait for the workflow's report and hand it over exactly once as an
   :class:`~agentq.queue.jobs.Outcome`; the daemon writes ``done/`` or ``failed/``.

After a restart a marker or a persisted intent is adopted: the start is repeated with the
same id (idempotent) and the wait resumes. While Temporal is unreachable the calls are
retried with backoff and the tasks simply stay in flight. No Temporal import here: the
adapter (:mod:`agentq.cluster.temporal`) is handed in behind the small :class:`Fleet`
interface, so tests can give a fake one.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from agentq.cluster.messages import (
    MARKER_PROVIDER,
    TaskReport,
    TaskSpec,
    report_details,
    task_queue,
    workflow_id,
)
from agentq.core import crashpoints
from agentq.core.errors import ClusterError
from agentq.core.secrets import redact
from agentq.queue.jobs import Job, Outcome, OutcomeStatus, Recovery, RecoveryKind
from agentq.queue.marker import DelegationInfo, idempotency_key, read_info, with_delegation
from agentq.queue.protocol import Claim
from agentq.queue.records import DelegationIntent, DelegationPhase
from agentq.queue.taskfile import Task
from agentq.queue.vetting import DELEGATED_SUFFIX, WORKING_SUFFIX

logger = logging.getLogger(__name__)

EXECUTOR_NAME = "cluster"


class Fleet(Protocol):
    """What the executor needs of the workflow engine (the Temporal adapter implements it)."""

    def start_workflow(self, spec: TaskSpec, workflow_id: str, task_queue: str) -> Future[None]:
        """Start the workflow, or find the one with this id."""
        ...

    def result(self, workflow_id: str) -> Future[TaskReport]:
        """The workflow's report, once it ends."""
        ...

    def cancel(self, workflow_id: str) -> Future[None]:
        """Ask for the workflow to be cancelled."""
        ...

    def close(self) -> None:
        """Stop waiting (the workflows go on)."""
        ...


@dataclass(frozen=True)
class FleetSettings:
    """The submitter's part of ``cluster:``."""

    host: str
    prefix: str
    heartbeat_timeout: float
    max_in_flight: int = 256
    max_runs: int = 3


@dataclass
class _Entry:
    """One task on the fleet."""

    job: Job
    workflow_id: str
    queue: str
    stage: str = "start"
    future: Future[Any] | None = None


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ClusterExecutor:
    """Runs routed tasks on the fleet; the submitting daemon's local executor."""

    name = EXECUTOR_NAME

    def __init__(
        self,
        fleet: Fleet,
        settings: FleetSettings,
        utcnow: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._fleet = fleet
        self._settings = settings
        self._utcnow = utcnow
        self._entries: dict[str, _Entry] = {}
        self._ready: list[Outcome] = []
        self._counts = {"submitted": 0, "reattached": 0, "completed": 0, "failed": 0}

    # -- the executor protocol ----------------------------------------------------------

    def capacity(self) -> int:
        """How many more tasks may go to the fleet now."""
        return max(0, self._settings.max_in_flight - len(self._entries))

    def start(self, job: Job) -> None:
        """Persist the intent, then start the workflow in the background."""
        claim = job.claim
        wid, queue = self._names(claim)
        claim.record.executor = self.name
        claim.record.delegation = self._intent(claim, wid)
        claim.record.delegation.intent_at = self._utcnow().isoformat()
        try:
            claim.project.save_record(claim.record)
        except OSError as exc:
            reason = f"cannot persist the fleet intent: {exc.strerror or exc}"
            self._ready.append(self._failed(job, reason, wid))
            return
        crashpoints.hit("after_intent")
        logger.info("task handed to the fleet", extra={"task": claim.task_id, "workflow_id": wid})
        self._counts["submitted"] += 1
        self._track(_Entry(job, wid, queue))

    def poll(self, now: datetime) -> Sequence[Outcome]:
        """Move every entry whose call finished one step on; return what ended."""
        for entry in list(self._entries.values()):
            future = entry.future
            if future is None or not future.done():
                continue
            entry.future = None
            if entry.stage == "start":
                self._after_start(entry, future)
            else:
                self._after_wait(entry, future, now)
        outcomes, self._ready = self._ready, []
        return outcomes

    def recover(self, claim: Claim, task: Task | None, now: datetime) -> Recovery:
        """A marker or a persisted intent is adopted (the start is idempotent); else requeue."""
        intent = claim.record.delegation
        ours = intent is not None and intent.provider == MARKER_PROVIDER
        if claim.suffix == DELEGATED_SUFFIX:
            info = read_info(task.meta.model_extra) if task is not None else None
            if task is None or not (ours or info):
                return Recovery(RecoveryKind.FAIL, "fleet marker unreadable: no workflow id")
            return Recovery(RecoveryKind.ADOPT)
        if task is not None and ours:
            return Recovery(RecoveryKind.ADOPT)
        return Recovery(RecoveryKind.REQUEUE, "nothing was handed to the fleet")

    def adopt(self, job: Job) -> None:
        """Re-attach to a task's workflow after a restart (starting it again is idempotent).

        The workflow id is computed again from the task and its claim, never taken from
        storage alone: the same claim always means the same workflow.
        """
        claim = job.claim
        if not claim.record.claim_id:
            logger.error("fleet task without a claim id", extra={"task": claim.task_id})
            return
        wid, queue = self._names(claim)
        if wid in self._entries:
            return
        if claim.project.find_result(claim.name, claim.record.claim_id) is not None:
            claim.project.drop(claim)  # finished before the crash: only the marker goes
            logger.info("stale fleet marker removed", extra={"task": claim.task_id})
            return
        intent = claim.record.delegation
        if intent is None or intent.provider != MARKER_PROVIDER or intent.job_id != wid:
            claim.record.executor = self.name
            claim.record.delegation = self._intent(claim, wid)
            claim.project.save_record(claim.record)
        logger.info("fleet task re-attached", extra={"task": claim.task_id, "workflow_id": wid})
        self._counts["reattached"] += 1
        self._track(_Entry(job, wid, queue))

    def next_poll(self) -> float | None:
        """0 when a call finished (its callback also wakes the loop), else nothing to do."""
        if self._ready or any(
            e.future is not None and e.future.done() for e in self._entries.values()
        ):
            return 0.0
        return None

    def close(self) -> None:
        """Stop waiting: the workflows go on in Temporal and are re-attached after a restart."""
        self._fleet.close()

    def cancel(self, task_id: str) -> bool:
        """Ask Temporal to cancel ``task_id``'s workflow; its report then says "cancelled"."""
        for entry in self._entries.values():
            if entry.job.claim.task_id == task_id:
                self._fleet.cancel(entry.workflow_id)
                logger.info("fleet task cancellation requested", extra={"task": task_id})
                return True
        return False

    def status(self) -> list[dict[str, object]]:
        """No local sessions: the fleet's hosts report in their own state."""
        return []

    def fleet_status(self) -> dict[str, Any]:
        """Counters and the tasks in flight, for ``state.json``."""
        return {
            "in_flight": len(self._entries),
            **self._counts,
            "tasks": sorted(e.workflow_id for e in self._entries.values()),
        }

    # -- steps ----------------------------------------------------------------------------

    def _track(self, entry: _Entry) -> None:
        self._entries[entry.workflow_id] = entry
        entry.stage = "start"
        spec = self._spec(entry.job)
        entry.future = self._fleet.start_workflow(spec, entry.workflow_id, entry.queue)

    def _spec(self, job: Job) -> TaskSpec:
        claim = job.claim
        return TaskSpec(
            project=claim.project.path.name,
            name=claim.name,
            claim_id=claim.record.claim_id,
            attempt=claim.record.attempts,
            text=job.task.text,
            submitter=self._settings.host,
            max_runs=self._settings.max_runs,
            heartbeat_timeout=self._settings.heartbeat_timeout,
            timeout=job.task.meta.timeout,
        )

    def _after_start(self, entry: _Entry, future: Future[Any]) -> None:
        failure = future.exception()
        if failure is not None:
            self._finish(entry, self._failed(entry.job, _describe(failure), entry.workflow_id))
            return
        crashpoints.hit("after_submit_before_marker")
        try:
            entry.job = self._mark(entry)
        except (OSError, ValueError) as exc:
            # The workflow runs; the task stays .working with its intent, adopted on restart.
            logger.error(
                "cannot write the fleet marker",
                extra={"task": entry.job.claim.task_id, "error": str(exc)},
            )
        entry.stage = "wait"
        entry.future = self._fleet.result(entry.workflow_id)

    def _mark(self, entry: _Entry) -> Job:
        """Record the workflow in the control record and as the ``.delegated`` marker."""
        job = entry.job
        claim, task = job.claim, job.task
        intent = claim.record.delegation or self._intent(claim, entry.workflow_id)
        submitted_at = intent.submitted_at or self._utcnow().isoformat()
        if intent.phase is not DelegationPhase.SUBMITTED:
            intent.phase, intent.submitted_at = DelegationPhase.SUBMITTED, submitted_at
            claim.record.delegation = intent
            claim.project.save_record(claim.record)
        if claim.suffix != WORKING_SUFFIX:
            return job
        info = DelegationInfo(
            MARKER_PROVIDER,
            entry.workflow_id,
            submitted_at,
            idempotency_key(claim.record.claim_id),
        )
        text = with_delegation(task.text, info)
        marked = claim.project.mark_delegated(claim, text.encode("utf-8", "surrogatepass"))
        return dataclasses.replace(job, claim=marked, task=dataclasses.replace(task, text=text))

    def _after_wait(self, entry: _Entry, future: Future[TaskReport], now: datetime) -> None:
        failure = future.exception()
        if failure is not None:
            self._finish(entry, self._failed(entry.job, _describe(failure), entry.workflow_id))
            return
        report = future.result()
        self._count_runs(entry.job, report)
        status = OutcomeStatus.DONE if report.status == "done" else OutcomeStatus.FAILED
        outcome = Outcome(
            entry.job,
            status,
            now,
            result=report.result,
            error=report.error,
            target=report.host or None,
            account=report.account,
            cost=report.cost,
            details=report_details(report, entry.workflow_id),
        )
        crashpoints.hit("mid_reap")
        self._finish(entry, outcome)

    @staticmethod
    def _count_runs(job: Job, report: TaskReport) -> None:
        """Each run on the fleet is an attempt: a lost host's run counts, as a claim does."""
        extra = len(report.hosts) - 1
        if extra > 0:
            job.claim.record.attempts += extra
            try:
                job.claim.project.save_record(job.claim.record)
            except OSError as exc:  # the footer still shows them; a restart may count fewer
                logger.warning("cannot persist the fleet's runs", extra={"error": str(exc)})

    def _finish(self, entry: _Entry, outcome: Outcome) -> None:
        self._entries.pop(entry.workflow_id, None)
        self._counts["completed" if outcome.status is OutcomeStatus.DONE else "failed"] += 1
        self._ready.append(outcome)

    def _failed(self, job: Job, reason: str, wid: str) -> Outcome:
        logger.error(
            "fleet task failed", extra={"task": job.claim.task_id, "reason": redact(reason)}
        )
        return Outcome(
            job,
            OutcomeStatus.FAILED,
            self._utcnow(),
            error=redact(reason),
            details=(("workflow id", wid),),
        )

    @staticmethod
    def _intent(claim: Claim, wid: str) -> DelegationIntent:
        """The record's delegation intent for a fleet task: the job id is the workflow id."""
        key = idempotency_key(claim.record.claim_id)
        return DelegationIntent(provider=MARKER_PROVIDER, key=key, job_id=wid)

    def _names(self, claim: Claim) -> tuple[str, str]:
        """The workflow id of this claim and its project's task queue."""
        project = claim.project.path.name
        return (
            workflow_id(project, claim.name, claim.record.claim_id),
            task_queue(self._settings.prefix, project),
        )


def _describe(failure: BaseException) -> str:
    if isinstance(failure, ClusterError):
        return str(failure)
    return f"the fleet failed: {type(failure).__name__}: {failure}"
