"""The built-in ``instant`` executor: no agent, every task completes at once.

Used by the crash tests and the benchmarks: it completes each task with a fixed
answer and appends one line per execution to a ledger file, so a test can count
executions.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from agentq.core import crashpoints
from agentq.queue.jobs import Job, Outcome, OutcomeStatus, Recovery, RecoveryKind
from agentq.queue.protocol import Claim
from agentq.queue.taskfile import Task


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
