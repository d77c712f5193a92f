"""The executor boundary: what runs a claimed task (local agent session, remote provider, …).

The daemon claims, parses and routes a task, hands it to an executor with
:meth:`Executor.start`, and collects :class:`Outcome` values from
:meth:`Executor.poll`. After a restart, :meth:`Executor.recover` decides what
happens to a task that was in flight (reliability R12).

This module also ships the built-in ``instant`` executor used by the crash
tests and the benchmarks: it completes each task at once with a fixed answer and
appends one line per execution to a ledger file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Protocol

from agentq import crashpoints
from agentq.queue import Claim
from agentq.router import RouteDecision
from agentq.taskfile import Task

#: A body line that makes the instant executor kill the daemon (the poison-task tests).
INSTANT_CRASH_LINE = "instant: crash"


class OutcomeStatus(Enum):
    """How an execution ended."""

    DONE = "done"
    FAILED = "failed"
    REQUEUE = "requeue"


@dataclass(frozen=True)
class Job:
    """A claimed, parsed and routed task handed to an executor."""

    claim: Claim
    task: Task
    route: RouteDecision
    started: datetime


@dataclass(frozen=True)
class Outcome:
    """The end of one execution, as the footer will tell it."""

    job: Job
    status: OutcomeStatus
    finished: datetime
    result: str | None = None
    error: str | None = None
    target: str | None = None
    account: str | None = None
    cost: str | None = None
    details: tuple[tuple[str, str], ...] = ()


class RecoveryKind(Enum):
    """What to do with a task found in flight at start-up."""

    REQUEUE = "requeue"
    FAIL = "fail"
    ADOPT = "adopt"


@dataclass(frozen=True)
class Recovery:
    """An executor's decision about one in-flight task after a restart."""

    kind: RecoveryKind
    reason: str = ""


class Executor(Protocol):
    """Runs claimed tasks; implementations: instant, local sessions, remote providers."""

    name: str

    def capacity(self) -> int:
        """How many more jobs can be started now."""
        ...

    def start(self, job: Job) -> None:
        """Begin executing ``job``; must not block for long."""
        ...

    def poll(self, now: datetime) -> Sequence[Outcome]:
        """Return the jobs that ended since the last call."""
        ...

    def recover(self, claim: Claim, task: Task | None, now: datetime) -> Recovery:
        """Decide the fate of a task that was in flight when the daemon stopped."""
        ...

    def adopt(self, job: Job) -> None:
        """Watch a job that was already running before a restart (after ``ADOPT``)."""
        ...

    def next_poll(self) -> float | None:
        """Seconds until :meth:`poll` should run again, or ``None`` to wait for events."""
        ...

    def close(self) -> None:
        """Release resources at shutdown (jobs in flight stay claimed)."""
        ...


@dataclass
class InstantExecutor:
    """Completes every task at once with a fixed answer; one ledger line per execution."""

    ledger: Path
    answer: str = "done"
    name: str = "instant"
    _finished: list[Outcome] = field(default_factory=list)

    def capacity(self) -> int:
        """Unlimited: every job finishes inside :meth:`start`."""
        return 1 << 30

    def start(self, job: Job) -> None:
        """Record the execution in the ledger and finish the job."""
        if any(line.strip() == INSTANT_CRASH_LINE for line in job.task.body.splitlines()):
            os._exit(3)  # the poison task of the crash tests: dies mid-execution every time
        record = {
            "task": job.claim.task_id,
            "attempt": job.claim.record.attempts,
            "claim": job.claim.record.claim_id,
            "at": job.started.isoformat(),
        }
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        fd = os.open(self.ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, line)  # one write(2) in O_APPEND: whole lines even if we die after it
        finally:
            os.close(fd)
        crashpoints.hit("after_execute")
        self._finished.append(
            Outcome(job, OutcomeStatus.DONE, job.started, result=self.answer, target="instant")
        )

    def poll(self, now: datetime) -> Sequence[Outcome]:
        """Hand back what :meth:`start` finished."""
        done, self._finished = self._finished, []
        return done

    def recover(self, claim: Claim, task: Task | None, now: datetime) -> Recovery:
        """Re-running is harmless for the instant executor: requeue."""
        return Recovery(RecoveryKind.REQUEUE)

    def adopt(self, job: Job) -> None:
        """Never asked: :meth:`recover` always requeues."""
        raise NotImplementedError

    def next_poll(self) -> float | None:
        """Everything finishes inside :meth:`start`: no polling needed."""
        return None

    def close(self) -> None:
        """Nothing to release."""
