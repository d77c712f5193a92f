"""The fleet's workflow: one claim of one task is one activity on the project's task queue.

Deterministic and tiny, as Temporal's samples keep them: it schedules the activity with
a heartbeat timeout (a worker silent that long is taken for lost, and Temporal runs the
activity again on whichever host polls next), retries without a limit of its own (the
activity counts the runs that really started, in its heartbeat, and fails the task past
``max_runs``; a host that hands an activity back unrun does not count), and waits for a
cancelled activity to finish cancelling, so a cancelled task still reports where it ran.

This module is imported inside Temporal's workflow sandbox: it imports nothing but the
SDK and :mod:`agentq.cluster.messages` (passed through, pure dataclasses).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from agentq.cluster.messages import ACTIVITY_NAME, WORKFLOW_NAME, TaskReport, TaskSpec

#: Unlimited attempts (0): a lost host's run is counted by the activity itself.
RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=0,
)


@workflow.defn(name=WORKFLOW_NAME)
class TaskWorkflow:
    """Runs one claim of one task on some host of the fleet and returns its report."""

    @workflow.run
    async def run(self, spec: TaskSpec) -> TaskReport:
        """Run the task's activity; an activity that cannot end normally becomes a failure."""
        try:
            report: TaskReport = await workflow.execute_activity(
                ACTIVITY_NAME,
                spec,
                result_type=TaskReport,
                start_to_close_timeout=timedelta(seconds=spec.run_limit()),
                heartbeat_timeout=timedelta(seconds=spec.heartbeat_timeout),
                retry_policy=RETRY_POLICY,
                cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
        except ActivityError as err:
            cause = err.cause if err.cause is not None else err
            return TaskReport(
                status="failed", host="", error=f"the fleet could not run the task: {cause}"
            )
        return report
