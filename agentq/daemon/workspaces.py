"""The daemon's side of task isolation: per-project task defaults and task worktrees.

:class:`ProjectSettings` owns each project's ``.agent-queue/config.yaml`` (task defaults:
``isolation``, ``max_parallel``, ``keep_worktree``): read again when the file changes,
every problem logged once and shown in status, the global defaults used meanwhile.
:class:`TaskWorkspaces` makes a task's worktree before the executor starts it, and
reports on and tidies it when the task ends or goes back to the inbox. :func:`build_janitor`
hands the janitor the worktrees kept after their task, to prune once ``keep_worktrees`` old.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from agentq.config.load import load_project_config
from agentq.config.models import Config, DispatchConfig, ProjectConfig
from agentq.core.errors import ConfigError, WorkspaceError
from agentq.queue import protocol as q
from agentq.queue.isolation import Isolation, Worktree
from agentq.queue.janitor.run import Janitor
from agentq.queue.taskfile import Task
from agentq.workspace.git import Git
from agentq.workspace.worktrees import Worktrees, list_orphans, prune_orphan, report_details

logger = logging.getLogger(__name__)

#: A project's own task defaults, beside its queue folders.
PROJECT_CONFIG = "config.yaml"

_Stamp = tuple[int, int, int]


class ProjectSettings:
    """Each project's task defaults: its ``config.yaml`` over the global ``dispatch`` ones."""

    def __init__(self, dispatch: DispatchConfig, env: Mapping[str, str]) -> None:
        self._dispatch = dispatch
        self._env = env
        self._cache: dict[Path, tuple[_Stamp | None, ProjectConfig]] = {}
        #: project path → its config file's path (asked on every pass: joined once).
        self._files: dict[Path, Path] = {}
        #: project path → every problem of its config file (status shows them).
        self.problems: dict[str, list[str]] = {}

    def get(self, project: Path) -> ProjectConfig:
        """The resolved task defaults of ``project`` (re-read when its file changed)."""
        path = self._files.get(project)
        if path is None:
            path = self._files[project] = project / q.QUEUE_DIRNAME / PROJECT_CONFIG
        stamp = _stamp(path)
        cached = self._cache.get(project)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        own: ProjectConfig | None = None
        if stamp is None:
            self.problems.pop(str(project), None)
        else:
            try:
                own = load_project_config(path, self._env)
                self.problems.pop(str(project), None)
            except ConfigError as exc:
                self.problems[str(project)] = exc.problems
                for problem in exc.problems:
                    logger.error(
                        "project config invalid; global defaults apply",
                        extra={"path": str(path), "problem": problem},
                    )
        resolved = self._dispatch.for_project(own)
        self._cache[project] = (stamp, resolved)
        return resolved

    def isolation(self, project: Path, asked: str | None) -> Isolation:
        """A task's isolation: its own ``isolation:``, else its project's default."""
        return Isolation(asked or self.get(project).isolation)


class TaskWorkspaces:
    """Worktrees around the executors: made before a start, concluded after the end."""

    def __init__(self, worktrees: Worktrees, settings: ProjectSettings) -> None:
        self._worktrees = worktrees
        self._settings = settings

    def prepare(self, claim: q.Claim, task: Task) -> Worktree | None:
        """The worktree ``task`` runs in (``None`` when it runs in the project folder).

        Raises:
            WorkspaceError: it needs a worktree that cannot be made (nothing is left).
        """
        project = claim.project
        if self._settings.isolation(project.path, task.meta.isolation) is Isolation.NONE:
            return None
        self.discard(claim)  # a worktree left recorded by an earlier attempt
        return self._worktrees.prepare(claim, task.meta.base)

    def conclude(self, claim: q.Claim, worktree: Worktree | None) -> tuple[tuple[str, str], ...]:
        """Footer rows for the ended task's worktree (removed when clean), if it had one."""
        worktree = worktree or claim.record.worktree
        if worktree is None:
            return ()
        if not worktree.ready:
            self.discard(claim)  # made (or half made) before a crash; nothing ran in it
            return ()
        keep = bool(self._settings.get(claim.project.path).keep_worktree)
        report = self._worktrees.conclude(claim.project, worktree, keep)
        logger.info(
            "worktree concluded",
            extra={"task": claim.task_id, "branch": worktree.branch, "kept": report.kept},
        )
        return report_details(report)

    def discard(self, claim: q.Claim) -> None:
        """Tidy the worktree of a claimed task that goes back unstarted, and forget it."""
        worktree = claim.record.worktree
        if worktree is None:
            return
        try:
            self._worktrees.discard(claim.project, worktree)
        except (WorkspaceError, OSError) as exc:
            # The task still goes back; the folder stays for list_orphans and the janitor.
            logger.warning(
                "cannot discard a worktree", extra={"path": str(worktree.path), "error": str(exc)}
            )
        claim.project.note_worktree(claim, None)


def build_janitor(config: Config, git: Git, out: Callable[[str], None] | None = None) -> Janitor:
    """The janitor of the daemon and of ``agentq janitor``, task worktrees included.

    It lists a project's worktrees whose task is not in flight (``list_orphans`` reads the
    control records; a project without ``.agent-queue/worktrees/`` costs one ``stat``, no
    git call) and prunes those older than ``janitor.keep_worktrees``; their branches stay.
    """
    return Janitor(
        config,
        out,
        prune=functools.partial(prune_orphan, git=git),
        orphans=functools.partial(list_orphans, git=git),
    )


def _stamp(path: Path) -> _Stamp | None:
    """(inode, size, mtime) of a file, or ``None`` when there is none."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError:
        return (0, 0, 0)
    return (st.st_ino, st.st_size, st.st_mtime_ns)
