"""What the submitter, the workflow and the workers tell each other; pure data and names.

One claim of one task is one workflow, id ``<project>/<task name>/<claim id>``, on the task
queue ``<prefix>.<project>``. Its single activity carries a :class:`TaskSpec` to a worker
and returns a :class:`TaskReport`. While it runs, the activity heartbeats a
:class:`Progress`; Temporal hands the last one to the next attempt, which is how a run on
another host learns which hosts ran this claim before (and were lost).

No Temporal import here: the workflow, the adapter and the worker loop share these types,
and the default data converter turns dataclasses into JSON and back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

#: The workflow type and the activity type, as registered with Temporal.
WORKFLOW_NAME = "agentq.task"
ACTIVITY_NAME = "agentq.run_task"
#: The error type of an activity a host hands back without running it (no run is counted).
HOST_UNAVAILABLE = "HostUnavailable"
#: The ``provider`` of a fleet task's ``delegation:`` marker block.
MARKER_PROVIDER = "cluster"
#: How long an activity may run when its task sets no ``timeout:`` (a held host keeps its
#: parked task until the earliest reset, which may be days away).
DEFAULT_RUN_LIMIT = 7 * 86400.0
#: Added to a task's own ``timeout:`` before Temporal gives up on the activity.
RUN_LIMIT_MARGIN = 600.0


def workflow_id(project: str, name: str, claim_id: str) -> str:
    """The workflow id of one claim of one task: a restart starts the same id again."""
    return f"{project}/{name}/{claim_id}"


def parse_workflow_id(text: str) -> tuple[str, str, str] | None:
    """``(project, name, claim id)`` of a workflow id agentq made, or None."""
    parts = text.split("/")
    if len(parts) != 3 or not all(parts):
        return None
    return parts[0], parts[1], parts[2]


def task_queue(prefix: str, project: str) -> str:
    """The task queue of a project's workflows and activities."""
    return f"{prefix}.{project}"


@dataclass
class TaskSpec:
    """One claim of a task, as the fleet needs it (the workflow's and the activity's input)."""

    project: str
    name: str
    claim_id: str
    #: The submitter's attempt count for this task (this claim included).
    attempt: int
    #: The whole task file as the submitter read it.
    text: str
    submitter: str
    max_runs: int
    heartbeat_timeout: float
    #: The task's own ``timeout:`` in seconds, if it has one.
    timeout: float | None = None

    @property
    def task_id(self) -> str:
        """``<project>/<name>``, as the daemon names tasks in logs and the API."""
        return f"{self.project}/{self.name}"

    def run_limit(self) -> float:
        """Seconds Temporal lets one activity attempt run (the task's own limit comes first)."""
        if self.timeout is None or not math.isfinite(self.timeout):
            return DEFAULT_RUN_LIMIT
        return self.timeout + RUN_LIMIT_MARGIN


Phase = Literal["accepted", "starting", "working", "parked", "ending"]


@dataclass
class Progress:
    """An activity's heartbeat: which hosts ran this claim so far, and how this run goes."""

    #: Every host that started a run of this claim, in order; the current one last.
    hosts: list[str] = field(default_factory=list)
    phase: str = "accepted"
    session: str | None = None
    account: str | None = None
    #: Wall time (epoch seconds) of the agent's last visible activity.
    last_activity: float | None = None
    held_until: str | None = None

    @property
    def runs(self) -> int:
        """How many runs started (one per host entry)."""
        return len(self.hosts)


def previous_progress(details: list[Any]) -> Progress:
    """The progress an earlier attempt heartbeat last (empty for a first attempt)."""
    if not details:
        return Progress()
    last = details[-1]
    if isinstance(last, Progress):
        return last
    if isinstance(last, dict):
        hosts = last.get("hosts")
        if isinstance(hosts, list):
            return Progress(hosts=[str(h) for h in hosts])
    return Progress()


@dataclass
class TaskReport:
    """How one claim ended on the fleet (the activity's and the workflow's result)."""

    status: Literal["done", "failed"]
    host: str
    hosts: list[str] = field(default_factory=list)
    result: str | None = None
    error: str | None = None
    session: str | None = None
    account: str | None = None
    cost: str | None = None
    #: Footer rows from the host's executor (``[name, value]`` pairs).
    details: list[list[str]] = field(default_factory=list)


def exhausted_runs(spec: TaskSpec, before: Progress, host: str) -> TaskReport | None:
    """A failed report when this claim already started ``max_runs`` times; None otherwise."""
    if before.runs < spec.max_runs:
        return None
    hosts = ", ".join(before.hosts)
    return TaskReport(
        status="failed",
        host=host,
        hosts=list(before.hosts),
        error=(
            f"no host finished the task: it started {before.runs} time(s) (on {hosts}) and "
            f"each run was lost; the fleet tries at most {spec.max_runs} (cluster.max_runs)"
        ),
    )


def report_details(report: TaskReport, workflow: str) -> tuple[tuple[str, str], ...]:
    """The footer rows of a fleet task (the host is the footer's target): the session, the
    hosts lost before, the workflow id, and the rows of the host's executor."""
    rows: list[tuple[str, str]] = []
    if report.session:
        rows.append(("session", report.session))
    runs = report.hosts or [report.host]
    if len(runs) > 1:
        lost = ", ".join(runs[:-1])
        rows.append(("hosts", " → ".join(runs)))
        rows.append(
            (
                "retried",
                f"run {len(runs)} of this claim; the run(s) on {lost} ended without a result "
                "(host lost or stopped)",
            )
        )
    rows.append(("workflow id", workflow))
    rows.extend((str(pair[0]), str(pair[1])) for pair in report.details if len(pair) == 2)
    return tuple(rows)
