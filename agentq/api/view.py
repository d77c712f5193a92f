"""What the API sees of the daemon: read-only snapshots, a task index and a request queue.

The API runs in threads of its own and never touches the daemon's objects. The
daemon hands it a :class:`DaemonView`: immutable :class:`Snapshot` objects that
the main loop publishes after each pass, a thread-safe task index, the event
log, and :meth:`DaemonView.request`, which queues an operator request for the
main loop and returns a future the loop answers. Everything here is plain data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

#: Task states as the API names them (the folder plus the inbox suffix).
TASK_STATES: tuple[str, ...] = ("pending", "working", "delegated", "done", "failed")
#: The states whose file sits in ``inbox/``.
INBOX_STATES = frozenset({"pending", "working", "delegated"})

Action = Literal["swap", "clear", "reload", "retry", "cancel", "panes"]


@dataclass(frozen=True, slots=True)
class TaskEntry:
    """One task as the index knows it; ``None`` means "not known (yet)"."""

    project: str
    name: str
    state: str
    created: float
    changed: float
    title: str | None = None
    priority: int | None = None
    attempts: int | None = None
    session: str | None = None
    account: str | None = None
    reason: str | None = None

    def to_dict(self, now: float) -> dict[str, Any]:
        """The JSON form of ``GET /api/tasks`` (ages in seconds at ``now``)."""
        return {
            "project": self.project,
            "name": self.name,
            "state": self.state,
            "title": self.title,
            "priority": self.priority,
            "attempts": self.attempts,
            "session": self.session,
            "account": self.account,
            "reason": self.reason,
            "created": iso(self.created),
            "changed": iso(self.changed),
            "age_s": round(max(0.0, now - self.created), 3),
            "in_state_s": round(max(0.0, now - self.changed), 3),
        }


@dataclass(frozen=True)
class TaskPage:
    """One page of a task listing; ``cursor`` fetches the next one (``None`` at the end)."""

    items: Sequence[TaskEntry]
    cursor: str | None
    total: int


@dataclass(frozen=True)
class TaskDetail:
    """A task with its text (frontmatter and body, without the footer) and its footer."""

    entry: TaskEntry
    text: str
    footer: Mapping[str, Any] | None


@dataclass(frozen=True)
class Snapshot:
    """What the main loop published after its last pass; never changed afterwards.

    Times are epoch seconds (ages are computed when a request reads them).
    """

    version: int
    taken_at: float
    started_at: float
    #: project name → counts by state and ``oldest_pending`` (epoch seconds or None).
    projects: Mapping[str, Mapping[str, Any]]
    #: one entry per pool session: session, state, task, account, session_id, last_activity.
    sessions: Sequence[Mapping[str, Any]]
    #: active, per-account exhausted_until, hold, partial_swap, the last swaps.
    accounts: Mapping[str, Any]
    #: delegation counters and active jobs (empty without providers).
    delegation: Mapping[str, Any]
    #: the daemon's counters (rescans, refused, started, done, failed …).
    counters: Mapping[str, int]
    #: inbox → watch mode (inotify or polling, with a reason).
    watches: Mapping[str, Mapping[str, Any]]
    #: last pass start/end, pass duration, whether a pass is running.
    loop: Mapping[str, Any]
    #: in-flight tasks that should have ended by now.
    stale: Sequence[Mapping[str, Any]]
    #: counters the executors keep: ("delivery_retries",), ("signal", event), ("reading", …).
    tallies: Mapping[tuple[str, ...], int] = field(default_factory=dict)
    #: the daemon's pid, refused projects, files still being written.
    health: Mapping[str, Any] = field(default_factory=dict)
    #: the pool's session names, and the configured account names (bounded label values).
    pool: Sequence[str] = ()
    account_names: Sequence[str] = ()

    def public(self) -> dict[str, Any]:
        """The part of the snapshot the event stream and the dashboard show (no secrets)."""
        return {
            "version": self.version,
            "taken_at": iso(self.taken_at),
            "projects": {k: dict(v) for k, v in self.projects.items()},
            "sessions": [dict(s) for s in self.sessions],
            "accounts": dict(self.accounts),
            "delegation": dict(self.delegation),
            "loop": dict(self.loop),
        }


@dataclass(frozen=True)
class Request:
    """An operator request for the main loop."""

    action: Action
    project: str | None = None
    name: str | None = None
    to: str | None = None


@dataclass(frozen=True)
class Answer:
    """The main loop's answer; ``status`` is the HTTP status the API should send."""

    ok: bool
    message: str
    status: int = 200
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON body: ``{"ok", "message", **data}``."""
        return {"ok": self.ok, "message": self.message, **self.data}


class EventBatch(Protocol):
    """What :meth:`EventSource.after` returns (see :class:`agentq.core.events.Batch`)."""

    @property
    def events(self) -> Sequence[Any]: ...
    @property
    def gap(self) -> bool: ...
    @property
    def last_id(self) -> int: ...


class EventSource(Protocol):
    """The read side of the daemon's event log."""

    @property
    def last_id(self) -> int: ...
    def after(self, last_id: int, limit: int = 500) -> EventBatch: ...
    def subscribe(self, listener: Any) -> None: ...


class DaemonView(Protocol):
    """Everything the API may know about and ask of the daemon (thread-safe)."""

    @property
    def events(self) -> EventSource:
        """The event log (task state changes, swaps, holds, notifications)."""
        ...

    @property
    def epoch(self) -> str:
        """Changes with every daemon start: event ids are only comparable within one epoch."""
        ...

    def snapshot(self) -> Snapshot:
        """The latest published snapshot."""
        ...

    def loop_lag(self) -> float:
        """How long the main loop's current pass has been running (0 between passes)."""
        ...

    def tasks(
        self, project: str | None, state: str | None, limit: int, cursor: str | None
    ) -> TaskPage:
        """A page of the task index, most recent state change first."""
        ...

    def task(self, project: str, name: str) -> TaskDetail | None:
        """One task with its text and footer (an in-flight one before failed/, done/)."""
        ...

    def submit(self, project: str, text: str, name: str | None) -> TaskEntry:
        """Write a task into a served project's inbox through ``tmp/`` (like ``agentq submit``)."""
        ...

    def request(self, request: Request) -> Future[Answer]:
        """Queue ``request`` for the main loop (which is woken); the loop answers the future."""
        ...


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="milliseconds")
