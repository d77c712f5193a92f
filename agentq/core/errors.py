"""The exception tree of agentq.

::

    AgentqError
    ├── ConfigError          a configuration file is missing or invalid (lists every problem)
    ├── TaskFileError        a task file cannot be accepted (too big, bad YAML or frontmatter)
    ├── QueueError           a queue folder operation failed (I/O on inbox/done/failed)
    │   ├── RefusedEntryError  an inbox entry is not a plain regular file we may read
    │   └── ArchiveError       a janitor archive cannot be read or written (left untouched)
    ├── StateFileError       state.json cannot be written or read
    ├── LockError            another daemon holds the single-instance lock
    ├── TmuxError            a tmux command failed
    ├── AgentError           an agent session misbehaved (delivery not confirmed, died, timed out)
    ├── AccountError         an account home or its shared-state links are wrong
    ├── ProviderError        a remote AI provider failed (see ``agentq.delegation``)
    ├── ServiceFileError     a systemd unit cannot be rendered or installed
    ├── NotificationError    a notification target did not take a message (named, never its URL)
    ├── ClusterError         the fleet's workflow engine (Temporal) refused or lost a task
    └── WorkspaceError       a task's git worktree cannot be set up or inspected
        └── GitError         a git command failed (see ``agentq.workspace.git``)

Errors carry structured fields and build their one-line message in ``__init__`` so
the daemon can put ``str(exc)`` into a footer or a log line as it is.
"""

from __future__ import annotations

from pathlib import Path


class AgentqError(Exception):
    """Base class of every error agentq raises on purpose."""


class ConfigError(AgentqError):
    """A configuration problem; ``problems`` holds every one found, each a line."""

    def __init__(self, problems: list[str], path: Path | None = None) -> None:
        self.problems = list(problems)
        self.path = path
        where = f"{path}: " if path else ""
        if len(self.problems) == 1:
            super().__init__(f"{where}{self.problems[0]}")
        else:
            super().__init__(f"{where}{len(self.problems)} problems: " + "; ".join(self.problems))


class TaskFileError(AgentqError):
    """A task file that cannot be accepted; ``reason`` is one line for the footer."""

    def __init__(self, reason: str, path: Path | None = None) -> None:
        self.reason = reason
        self.path = path
        super().__init__(reason)


class QueueError(AgentqError):
    """A queue folder operation failed."""

    def __init__(self, message: str, path: Path | None = None) -> None:
        self.path = path
        super().__init__(message)


class RefusedEntryError(QueueError):
    """An inbox entry that is not a plain, single-linked regular file."""

    def __init__(self, reason: str, path: Path | None = None) -> None:
        self.reason = reason
        super().__init__(reason, path)


class ArchiveError(QueueError):
    """A janitor archive (``.agent-queue/archive/*.tar.gz``) cannot be read or written."""

    def __init__(self, reason: str, path: Path) -> None:
        self.reason = reason
        super().__init__(f"{path}: {reason}", path)


class StateFileError(AgentqError):
    """``state.json`` could not be read or written."""


class LockError(AgentqError):
    """Another daemon holds the single-instance lock."""

    def __init__(self, lock_path: Path, holder: str = "") -> None:
        self.lock_path = lock_path
        self.holder = holder
        detail = f" (pid {holder})" if holder else ""
        super().__init__(f"already running: {lock_path} is locked{detail}")


class TmuxError(AgentqError):
    """A tmux command failed."""

    def __init__(self, message: str, session: str | None = None) -> None:
        self.session = session
        super().__init__(message)


class AgentError(AgentqError):
    """An agent session did not do what it was asked."""

    def __init__(self, message: str, session: str | None = None) -> None:
        self.session = session
        super().__init__(message)


class AccountError(AgentqError):
    """An account home or its shared-state links are not as required."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class ProviderError(AgentqError):
    """A remote AI provider failed; ``terminal`` errors go down the fallback chain."""

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status: int | None = None,
        terminal: bool = False,
    ) -> None:
        self.provider = provider
        self.status = status
        self.terminal = terminal
        super().__init__(message)


class ServiceFileError(AgentqError):
    """A systemd unit cannot be rendered (a value it cannot carry) or installed."""

    def __init__(self, message: str, path: Path | None = None) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class NotificationError(AgentqError):
    """A notification target did not take a message; the message names the target, not its URL."""

    def __init__(self, target: str, reason: str) -> None:
        self.target = target
        self.reason = reason
        super().__init__(f"notification target {target!r}: {reason}")


class ClusterError(AgentqError):
    """The fleet (Temporal) failed; ``terminal`` errors end the task, others are retried."""

    def __init__(self, message: str, *, workflow_id: str = "", terminal: bool = False) -> None:
        self.workflow_id = workflow_id
        self.terminal = terminal
        super().__init__(message)


class WorkspaceError(AgentqError):
    """A task's workspace (its git worktree) cannot be set up; ``reason`` is one footer line."""

    def __init__(self, reason: str, path: Path | None = None) -> None:
        self.reason = reason
        self.path = path
        super().__init__(reason)


class GitError(WorkspaceError):
    """A git command failed; ``command`` is its argument list, ``stderr`` git's last words."""

    def __init__(self, command: list[str], stderr: str, path: Path | None = None) -> None:
        self.command = list(command)
        self.stderr = stderr
        detail = " ".join(stderr.split())[:300] or "no message"
        super().__init__(f"git {' '.join(command[:2])} failed: {detail}", path)
