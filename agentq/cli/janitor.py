"""``agentq janitor [--dry-run]``: one janitor pass by hand, one line per action."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from agentq.config.models import Config
from agentq.daemon.workspaces import build_janitor
from agentq.queue.protocol import Project, find_projects
from agentq.workspace.git import Git


def run_janitor(config: Config, dry_run: bool, now: datetime, out: Callable[[str], None]) -> int:
    """Make one unbounded pass over every configured project; 1 when anything failed.

    Task worktrees kept longer than ``janitor.keep_worktrees`` are pruned too (their
    branches stay); a dry run lists them.
    """
    projects = [
        Project(path) for path in find_projects(config.projects.roots, config.projects.paths)
    ]
    report = build_janitor(config, Git(), out).run(projects, now, dry_run=dry_run)
    out(f"janitor{' (dry run)' if dry_run else ''}: {report.summary()}")
    return 1 if report.errors else 0
