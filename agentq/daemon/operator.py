"""Operator requests, answered on the main loop: swap, clear, reload, retry, cancel, pane lines.

They arrive from the API (a queue the loop drains each pass) or as request files
from ``agentq swap``/``agentq reload`` when the API is off. Each is answered on
the main loop's thread, so nothing here races the scanner or the executors.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from agentq.api.view import Answer, Request
from agentq.core import durable
from agentq.core import events as ev
from agentq.core.errors import AgentqError
from agentq.core.secrets import redact
from agentq.daemon.index import TaskIndex
from agentq.queue import protocol as q
from agentq.queue.taskfile import split_footer
from agentq.queue.vetting import DELEGATED_SUFFIX, WORKING_SUFFIX, refusal_reason

if TYPE_CHECKING:
    from agentq.daemon.loop import Daemon

PANE_LINES = 20
CANCELLED = "cancelled"


@runtime_checkable
class Cancels(Protocol):
    """An executor that can interrupt the agent working on a task."""

    def cancel(self, task_id: str) -> bool: ...


@runtime_checkable
class ShowsPanes(Protocol):
    """An executor whose sessions have panes to show."""

    def pane_lines(self, name: str, count: int) -> list[str] | None: ...


class Operator:
    """Answers operator requests; runs on the main loop only."""

    def __init__(self, daemon: Daemon, index: TaskIndex) -> None:
        self._daemon = daemon
        self._index = index

    def answer(self, request: Request) -> Answer:
        """Carry out ``request`` and say what happened."""
        handlers = {
            "swap": self._swap,
            "clear": self._clear,
            "reload": self._reload,
            "retry": self._retry,
            "cancel": self._cancel,
            "panes": self._panes,
        }
        try:
            return handlers[request.action](request)
        except AgentqError as exc:
            return Answer(False, f"failed: {exc}", 500)
        except OSError as exc:
            return Answer(False, f"failed: {exc.strerror or exc}", 500)

    # -- accounts -----------------------------------------------------------------------

    def _swap(self, request: Request) -> Answer:
        switcher = self._daemon.switcher
        if switcher is None:
            return Answer(False, "account swaps need an agent session pool", 409)
        outcome = switcher.swap("manual (agentq swap)", request.to, self._daemon.clock.now())
        return Answer(outcome.swapped, outcome.message, 200 if outcome.swapped else 409)

    def _clear(self, request: Request) -> Answer:
        switcher = self._daemon.switcher
        if switcher is None:
            return Answer(False, "account swaps need an agent session pool", 409)
        outcome = switcher.clear_partial()
        return Answer(outcome.swapped, outcome.message, 200 if outcome.swapped else 409)

    def _reload(self, request: Request) -> Answer:
        ok, message = self._daemon.reload()
        return Answer(ok, message, 200 if ok else 409)

    # -- tasks --------------------------------------------------------------------------

    def _project(self, name: str | None) -> q.Project | None:
        return self._index.projects().get(name or "")

    def _retry(self, request: Request) -> Answer:
        """``failed/<name>`` back to the inbox under a free name (never over another task)."""
        project, name = self._project(request.project), request.name or ""
        if project is None:
            return Answer(False, f"no served project named {request.project!r}", 404)
        src = project.failed / name
        try:
            st = os.lstat(src)
        except FileNotFoundError:
            return Answer(False, f"no failed task {name!r} in {request.project}", 404)
        reason = refusal_reason(st, os.getuid())
        if reason:
            return Answer(False, f"not retried: {reason}", 409)
        if _is_refusal_stub(src):
            return Answer(False, "not retried: a refused entry's stub (see quarantine/)", 409)
        dest = _link_free(src, project.inbox, name)
        src.unlink()
        durable.fsync_dir(project.inbox)
        durable.fsync_dir(project.failed)
        self._daemon.events.emit(
            ev.TASK,
            project=request.project,
            task=dest.name,
            state="pending",
            reason="retried",
            retried_from=name,
        )
        self._daemon.watcher.mark(project.inbox)
        message = f"{name} is pending again as inbox/{dest.name}"
        return Answer(True, message, 200, {"project": request.project, "name": dest.name})

    def _cancel(self, request: Request) -> Answer:
        """Pending → ``failed/`` ("cancelled"); working → the agent is interrupted first."""
        project, name = self._project(request.project), request.name or ""
        dispatcher = self._daemon.dispatcher
        if project is None or dispatcher is None:
            return Answer(False, f"no served project named {request.project!r}", 404)
        if os.path.lexists(project.inbox / name):
            claim = project.claim(name)
            if claim is None:
                return Answer(False, f"{name} is no longer pending", 409)
            dispatcher.fail(claim, CANCELLED, None)
            return Answer(True, f"{name} cancelled: moved to failed/", 200)
        if os.path.lexists(project.inbox / (name + WORKING_SUFFIX)):
            local = dispatcher.local
            task_id = f"{request.project}/{name}"
            if not isinstance(local, Cancels) or not local.cancel(task_id):
                return Answer(False, f"{name} cannot be cancelled by its executor", 409)
            return Answer(True, f"{name} cancelled: the agent was interrupted", 200)
        if os.path.lexists(project.inbox / (name + DELEGATED_SUFFIX)):
            task_id = f"{request.project}/{name}"
            for executor in dispatcher.executors():
                # The fleet cancels its workflow (the agent on its host is interrupted).
                if isinstance(executor, Cancels) and executor.cancel(task_id):
                    return Answer(True, f"{name} cancellation requested from the fleet", 200)
            return Answer(False, "cancelling a delegated task is not supported yet", 409)
        return Answer(False, f"no pending or working task {name!r} in {request.project}", 404)

    def _panes(self, request: Request) -> Answer:
        """The last pane lines of every pool session (secrets redacted)."""
        dispatcher = self._daemon.dispatcher
        local = dispatcher.local if dispatcher is not None else None
        panes: dict[str, list[str] | None] = {}
        if isinstance(local, ShowsPanes):
            for session in self._daemon.view.snapshot().sessions:
                name = str(session.get("name"))
                lines = local.pane_lines(name, PANE_LINES)
                panes[name] = [redact(line) for line in lines] if lines is not None else None
        return Answer(True, "", 200, {"panes": panes})


def _link_free(src: Path, folder: Path, name: str) -> Path:
    """Hard-link ``src`` into the inbox under ``name`` or ``stem.N.md``, never beside a claim."""
    stem = name[:-3]
    for i in range(1000):
        candidate = name if i == 0 else f"{stem}.{i}.md"
        if any(
            os.path.lexists(folder / (candidate + s)) for s in (WORKING_SUFFIX, DELEGATED_SUFFIX)
        ):
            continue
        try:
            os.link(src, folder / candidate, follow_symlinks=False)
        except FileExistsError:
            continue
        return folder / candidate
    raise FileExistsError(f"no free name for {name} in the inbox")


def _is_refusal_stub(path: Path) -> bool:
    """Whether a failed file is a refused entry's stub (its footer names the original)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, os.fstat(handle.fileno()).st_size - 16384))
            tail = handle.read().decode("utf-8", "replace")
    except OSError:
        return False
    _, footer = split_footer(tail)
    return footer is not None and any(key == "original name" for key, _ in footer.details)
