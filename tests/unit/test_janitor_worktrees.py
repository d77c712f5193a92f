"""The janitor and kept task worktrees, on real folders with a stand-in for git.

Which worktrees are candidates (``list_orphans``: never one whose task is in flight), which
the pass prunes (``keep_worktrees``), and that a failing lister or pruner is counted while
the rest of the pass goes on. The real git is in tests/integration/test_janitor.py.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agentq.config.load import config_from_dict
from agentq.config.models import Config
from agentq.core.errors import GitError, WorkspaceError
from agentq.core.lock import InstanceLock
from agentq.daemon.workspaces import build_janitor
from agentq.queue.isolation import Worktree
from agentq.queue.janitor.run import Janitor
from agentq.queue.protocol import Project
from agentq.queue.records import ControlRecord
from agentq.workspace.git import Git
from agentq.workspace.worktrees import Orphan, list_orphans

NOW = datetime(2026, 12, 15, 12, 0, tzinfo=UTC)
DAY = 86400.0
BASE = "0" * 40


class FakeGit(Git):
    """Answers ``git worktree list`` from a mapping and records the prunes; runs nothing."""

    def __init__(self, registered: dict[Path, str | None] | None = None) -> None:
        super().__init__(env={})
        self.registered = registered or {}
        self.asked = 0
        self.pruned: list[Path] = []

    def worktrees(self, repo: Path) -> dict[Path, str | None]:
        self.asked += 1
        return dict(self.registered)

    def worktree_remove(self, repo: Path, path: Path, force: bool = False) -> None:
        raise AssertionError("only registered worktrees are removed through git")

    def worktree_prune(self, repo: Path) -> None:
        self.pruned.append(repo)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """A project with its queue folders, under ``tmp_path/proj``."""
    made = Project(tmp_path / "proj")
    made.path.mkdir()
    made.ensure_dirs()
    return made


def config(tmp_path: Path, **janitor: Any) -> Config:
    """A configuration serving ``tmp_path/proj`` with the given janitor keys."""
    data = {
        "state_dir": str(tmp_path / "state"),
        "projects": {"paths": [str(tmp_path / "proj")]},
        "janitor": janitor,
    }
    return config_from_dict(data, {"HOME": str(tmp_path / "home")}, tmp_path)


def worktree(project: Project, name: str, days: float) -> Path:
    """A worktree folder last modified ``days`` before NOW, with a file in it."""
    path = project.queue / "worktrees" / name
    path.mkdir(parents=True)
    (path / "notes.txt").write_text("half done\n")
    when = NOW.timestamp() - days * DAY
    os.utime(path, (when, when))
    return path


def in_flight(project: Project, name: str, path: Path, suffix: str = ".working") -> None:
    """Task ``name`` claimed (``.working`` or ``.delegated``), its record naming ``path``."""
    (project.inbox / f"{name}{suffix}").write_text("the task\n")
    tree = Worktree(path, f"agentq/{path.name}", BASE, ready=True)
    project.save_record(ControlRecord(name=name, ino=1, attempts=1, claim_id="c", worktree=tree))


@pytest.mark.parametrize("suffix", [".working", ".delegated"], ids=["working", "delegated"])
def test_list_orphans_leaves_out_every_worktree_a_task_in_flight_names(
    project: Project, suffix: str
) -> None:
    """In flight = a ``.working``/``.delegated`` task whose record names the worktree."""
    busy = worktree(project, "busy", 30)
    finished = worktree(project, "finished", 30)
    requeued = worktree(project, "requeued", 30)
    in_flight(project, "busy.md", busy, suffix)
    in_flight(project, "requeued.md", requeued)
    (project.inbox / "requeued.md.working").rename(project.inbox / "requeued.md")  # pending
    (project.queue / "worktrees" / "stray-file").write_text("not a worktree")
    git = FakeGit({finished: "agentq/finished"})
    orphans = list_orphans(project, git)
    assert [(o.path, o.branch) for o in orphans] == [
        (finished, "agentq/finished"),
        (requeued, None),
    ]
    assert orphans[0].modified == NOW.timestamp() - 30 * DAY


def test_a_project_without_a_worktrees_folder_costs_no_git_call(project: Project) -> None:
    """No ``.agent-queue/worktrees/``: nothing listed, git never asked."""
    git = FakeGit()
    assert list_orphans(project, git) == [] and git.asked == 0


def test_a_pass_prunes_old_finished_worktrees_never_fresh_or_in_flight_ones(
    tmp_path: Path, project: Project
) -> None:
    """The daemon's janitor: an 8-day-old finished worktree goes; in-flight and fresh stay."""
    old = worktree(project, "old", 8)
    fresh = worktree(project, "fresh", 6)
    busy = worktree(project, "busy", 30)
    in_flight(project, "busy.md", busy)
    git = FakeGit()
    report = build_janitor(config(tmp_path), git).run([project], NOW)
    assert (report.pruned, report.errors) == (1, 0)
    assert not old.exists() and fresh.is_dir() and busy.is_dir()
    assert git.pruned == [project.path]  # git forgets the removed worktree
    assert report.counters()["janitor_pruned"] == 1


def test_keep_worktrees_null_never_lists_them(tmp_path: Path, project: Project) -> None:
    """``keep_worktrees: null``: no worktree is pruned, and no git runs to list them."""
    old = worktree(project, "old", 400)
    git = FakeGit()
    report = build_janitor(config(tmp_path, keep_worktrees=None), git).run([project], NOW)
    assert report.pruned == 0 and old.is_dir() and git.asked == 0


def test_a_dry_run_says_what_it_would_prune_and_prunes_nothing(
    tmp_path: Path, project: Project
) -> None:
    """``agentq janitor --dry-run``: one line per worktree, the folder untouched."""
    old = worktree(project, "old", 8)
    lines: list[str] = []
    git = FakeGit()
    report = build_janitor(config(tmp_path), git, lines.append).run([project], NOW, dry_run=True)
    assert report.pruned == 1 and old.is_dir() and git.pruned == []
    assert f"would prune worktree {old} (older than keep_worktrees, 7d)" in lines


def test_a_failing_prune_is_counted_and_the_pass_goes_on(
    tmp_path: Path, project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    """One prune raises: counted and logged; the other worktree and the old result still go."""
    first, second = worktree(project, "a", 9), worktree(project, "b", 8)
    result = project.done / "t.md"
    result.write_text("done\n")
    os.utime(result, (NOW.timestamp() - 40 * DAY,) * 2)
    pruned: list[Path] = []

    def prune(path: Path) -> None:
        if path == first:
            raise GitError(["worktree", "remove"], "fatal: cannot remove", path)
        pruned.append(path)

    janitor = Janitor(config(tmp_path), prune=prune, orphans=lambda p: listed(first, second))
    with caplog.at_level(logging.WARNING):
        report = janitor.run([project], NOW)
    assert (report.pruned, report.errors, report.archived) == (1, 1, 1)
    assert pruned == [second] and not result.exists()
    warning = next(r for r in caplog.records if r.getMessage() == "janitor action failed")
    assert warning.__dict__["path"] == str(first)


def test_a_failing_lister_is_counted_and_the_projects_other_work_goes_on(
    tmp_path: Path, project: Project
) -> None:
    """Worktrees cannot be listed: one error; the project's old results are archived anyway."""
    result = project.done / "t.md"
    result.write_text("done\n")
    os.utime(result, (NOW.timestamp() - 40 * DAY,) * 2)

    def broken(p: Project) -> list[Orphan]:
        raise WorkspaceError("cannot list", p.path)

    report = Janitor(config(tmp_path), prune=never, orphans=broken).run([project], NOW)
    assert (report.errors, report.archived, report.pruned) == (1, 1, 0)


def test_a_project_another_janitor_holds_is_not_listed(tmp_path: Path, project: Project) -> None:
    """The worktrees are listed under the project's janitor lock, like everything else."""
    worktree(project, "old", 8)
    asked: list[Project] = []

    def lister(p: Project) -> list[Orphan]:
        asked.append(p)
        return []

    lock = InstanceLock(project.control / "janitor.lock")
    lock.acquire()
    try:
        report = Janitor(config(tmp_path), prune=never, orphans=lister).run([project], NOW)
    finally:
        lock.release()
    assert report.skipped == 1 and asked == []


def listed(*paths: Path) -> list[Orphan]:
    """What ``list_orphans`` reports for these folders (their mtimes)."""
    return [Orphan(path, f"agentq/{path.name}", path.stat().st_mtime) for path in paths]


def never(path: Path) -> None:
    """A pruner the test does not expect to be called."""
    raise AssertionError(f"pruned {path}")
