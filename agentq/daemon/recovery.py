"""Start-up recovery of tasks that were in flight when the daemon stopped (R6, R12).

For each ``x.md.working`` and ``x.md.delegated``: a claim with no attempt begun is
requeued (nothing was done yet); one whose result already reached ``done/`` or
``failed/`` is dropped; otherwise the executor that ran it decides: adopt it
(still running, or a remote job to poll), requeue it (nothing irreversible
happened), or fail it ("abandoned after restart": keystrokes already typed into
an agent are never blindly typed again).
"""

from __future__ import annotations

import logging
from datetime import datetime

from agentq.core.clock import Clock
from agentq.core.errors import AgentqError, QueueError
from agentq.daemon.dispatch import Dispatcher
from agentq.daemon.state import Counters
from agentq.queue import protocol as q
from agentq.queue import taskfile
from agentq.queue.jobs import Job, RecoveryKind
from agentq.queue.records import ControlRecord
from agentq.queue.vetting import DELEGATED_SUFFIX, WORKING_SUFFIX

logger = logging.getLogger(__name__)


class Recovery:
    """Recovers one project's in-flight tasks through the dispatcher's executors."""

    def __init__(self, dispatcher: Dispatcher, counters: Counters, clock: Clock) -> None:
        self._dispatcher = dispatcher
        self._counters = counters
        self._clock = clock

    def recover(self, project: q.Project) -> None:
        """Recover every in-flight task of ``project``; one broken entry never stops the rest."""
        try:
            found = project.scan(int(self._clock.now().timestamp() * 1e9), 0)
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

    def _recover_one(self, project: q.Project, name: str, suffix: str) -> None:
        dispatcher = self._dispatcher
        record = project.load_record(name)
        claim = q.Claim(project, name, record or ControlRecord(name=name, ino=0), suffix)
        if suffix == DELEGATED_SUFFIX:
            stale = project.inbox / (name + WORKING_SUFFIX)
            if stale.exists():
                stale.unlink()  # the marker was written; the working copy is redundant
        if record is None and suffix == DELEGATED_SUFFIX:
            record = claim.record
            record.executor, record.claim_id = self._from_marker(claim)
        if record is None or not record.claim_id:
            dispatcher.requeue(claim)  # claimed but no attempt began: nothing was done yet
            return
        if project.find_result(name, record.claim_id) is not None:
            project.drop(claim)  # a completion finished its move before the crash
            self._counters.bump("recovered_completed")
            return
        if suffix == DELEGATED_SUFFIX:
            # The marker decides whatever its record says: a record rolled back by a power cut
            # (records are saved without fsync) may predate the handover. A fleet workflow
            # goes back to the fleet's executor, a provider's job to the provider executor.
            owner = self._from_marker(claim)[0]
            executor = dispatcher.executor_named(owner)
            if executor is None or executor.name != owner:
                dispatcher.fail(claim, _gone_reason(owner), None)
                return
            record.executor = owner
        else:
            executor = dispatcher.executor_named(record.executor)
            if executor is not None and record.executor not in (executor.name, ""):
                executor = None
        if executor is None:
            logger.warning(
                "no executor for an in-flight task; requeued", extra={"task": claim.task_id}
            )
            dispatcher.requeue(claim)
            return
        task = _parse_quietly(claim)
        decision = executor.recover(claim, task, self._clock.now())
        if decision.kind is RecoveryKind.ADOPT and task is not None:
            started = _parse_time(record.claimed_at, self._clock.now())
            job = Job(claim, task, dispatcher.route(task, record), started, record.worktree)
            dispatcher.adopt(executor, job)
            self._counters.bump("recovered_adopted")
        elif decision.kind is RecoveryKind.REQUEUE:
            dispatcher.requeue(claim)
            self._counters.bump("recovered_requeued")
        elif decision.kind is RecoveryKind.FAIL:
            dispatcher.fail(claim, decision.reason or "abandoned after restart", None)
            self._counters.bump("recovered_failed")
        logger.info(
            "in-flight task recovered", extra={"task": claim.task_id, "action": decision.kind.value}
        )

    @staticmethod
    def _from_marker(claim: q.Claim) -> tuple[str, str]:
        """The executor and claim id of a marker whose record was lost (from its block)."""
        from agentq.queue.marker import claim_id_of, read_info

        task = _parse_quietly(claim)
        info = read_info(task.meta.model_extra) if task is not None else None
        if info is None:
            return "provider", ""
        executor = "cluster" if info.provider == "cluster" else "provider"
        return executor, claim_id_of(info.idempotency_key)


def _gone_reason(executor: str) -> str:
    """Why a ``.delegated`` task fails when the executor that handed it away is not wired."""
    if executor == "cluster":
        return (
            "handed to the fleet, but this daemon no longer submits to it (cluster.submit); "
            "the workflow may still run (see the delegation block)"
        )
    return (
        "delegated to a provider, but delegation is no longer configured; the job may "
        "still run at the provider (see the delegation block)"
    )


def _parse_quietly(claim: q.Claim) -> taskfile.Task | None:
    try:
        return taskfile.parse_task(claim.project.read_claimed(claim), claim.name)
    except (AgentqError, OSError):
        return None


def _parse_time(text: str, default: datetime) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return default
