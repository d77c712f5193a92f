"""The executor boundary: what runs a claimed task (local agent session, remote provider, …).

The daemon claims, parses and routes a task, hands it to an executor with
:meth:`Executor.start`, and collects :class:`Outcome` values from
:meth:`Executor.poll`. After a restart, :meth:`Executor.recover` decides what
happens to a task that was in flight (reliability R12).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Protocol

from agentq.queue.isolation import Worktree
from agentq.queue.protocol import Claim
from agentq.queue.router import RouteDecision
from agentq.queue.taskfile import Task


class OutcomeStatus(Enum):
    """How an execution ended."""

    DONE = "done"
    FAILED = "failed"
    REQUEUE = "requeue"


@dataclass(frozen=True)
class Job:
    """A claimed, parsed and routed task handed to an executor.

    ``worktree`` is set when the task runs in a git worktree of its own (the daemon makes
    it before :meth:`Executor.start`); the agent then works in :attr:`cwd`, never in the
    project's own checkout.
    """

    claim: Claim
    task: Task
    route: RouteDecision
    started: datetime
    worktree: Worktree | None = None

    @property
    def cwd(self) -> Path:
        """The folder the task's agent works in: its worktree, else the project folder."""
        return self.worktree.cwd if self.worktree is not None else self.claim.project.path


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
