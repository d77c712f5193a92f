"""The worktree manager against real git, without a daemon: names, failures, tidying."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agentq.core.errors import WorkspaceError
from agentq.queue.protocol import Claim, ControlRecord, Project
from agentq.workspace.git import Git
from agentq.workspace.worktrees import Worktrees, list_orphans, prune_orphan
from tests.integration.test_worktrees import GIT_ENV, git, make_repo

pytestmark = pytest.mark.integration


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A project that is a repository with one commit, its queue folders made."""
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)
    project = Project(tmp_path / "proj")
    project.path.mkdir()
    make_repo(project.path)
    project.ensure_dirs()
    return project


def claim(project: Project, name: str) -> Claim:
    """A claim of ``name`` (its file need not exist: the manager only writes the record)."""
    return Claim(project, name, ControlRecord(name=name, ino=1, attempts=1, claim_id="c"))


def test_a_taken_name_gets_a_suffix_and_the_intent_is_recorded(repo: Project) -> None:
    """``agentq/x`` exists: the next is ``agentq/x-2``; the record names it before it exists."""
    git(repo.path, "branch", "agentq/x")
    manager = Worktrees(Git())
    first = claim(repo, "x.md")
    tree = manager.prepare(first, None)
    assert tree.branch == "agentq/x-2" and tree.path.name == "x-2" and tree.ready
    assert repo.load_record("x.md").worktree == tree  # type: ignore[union-attr]
    assert git(tree.path, "rev-parse", "--abbrev-ref", "HEAD") == "agentq/x-2"
    report = manager.conclude(repo, tree, keep=False)
    assert report.kept == "" and not tree.path.exists()
    assert "agentq/x-2" in git(repo.path, "branch", "--list", "agentq/*")


def test_a_project_inside_a_repository_works_in_the_same_subfolder(repo: Project) -> None:
    """A project in a subfolder of a repository: the agent starts in that subfolder."""
    sub = Project(repo.path / "src")
    sub.ensure_dirs()
    tree = Worktrees(Git()).prepare(claim(sub, "s.md"), "main")
    assert tree.prefix == "src" and tree.cwd == tree.path / "src"
    assert (tree.cwd / "app.py").is_file()


def test_a_linked_worktrees_folder_is_refused_and_nothing_is_made(
    repo: Project, tmp_path: Path
) -> None:
    """``.agent-queue/worktrees`` as a link elsewhere: refused before git runs."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, repo.queue / "worktrees")
    with pytest.raises(WorkspaceError, match="symbolic link"):
        Worktrees(Git()).prepare(claim(repo, "l.md"), None)
    assert list(elsewhere.iterdir()) == []
    assert git(repo.path, "branch", "--list", "agentq/*") == ""


def test_discard_removes_a_half_made_worktree_but_never_one_holding_work(repo: Project) -> None:
    """A worktree nothing ran in goes with its branch; one with a commit or a file stays."""
    manager = Worktrees(Git())
    idle = manager.prepare(claim(repo, "idle.md"), None)
    busy = manager.prepare(claim(repo, "busy.md"), None)
    (busy.path / "new.txt").write_text("work\n")
    assert manager.discard(repo, idle) and not idle.path.exists()
    assert not manager.discard(repo, busy) and (busy.path / "new.txt").exists()
    branches = git(repo.path, "branch", "--list", "agentq/*", "--format=%(refname:short)")
    assert branches.split() == ["agentq/busy"]
    half = repo.queue / "worktrees" / "half"
    half.mkdir()
    (half / "partial").write_text("")
    gone = manager.discard(repo, idle.__class__(half, "agentq/half", idle.base))
    assert gone and not half.exists()
    orphans = list_orphans(repo, Git())
    assert [(o.path.name, o.branch) for o in orphans] == [("busy", "agentq/busy")]
    prune_orphan(orphans[0].path)
    assert list_orphans(repo) == [] and not busy.path.exists()
    assert git(repo.path, "worktree", "list", "--porcelain").count("worktree ") == 1
    with pytest.raises(WorkspaceError, match="not a task worktree"):
        prune_orphan(repo.path / "src")


def test_a_kept_worktree_is_dated_when_its_task_ends(repo: Project) -> None:
    """Kept at the end of its task: its folder's mtime (what keep_worktrees counts from) is now."""
    manager = Worktrees(Git())
    tree = manager.prepare(claim(repo, "long.md"), None)
    (tree.path / "notes.txt").write_text("half done\n")
    os.utime(tree.path, (0, 0))  # as if the task had run since the epoch
    before = repo.path.parent / "before-conclude"
    before.write_text("")  # dated by the same file-system clock as the folder
    report = manager.conclude(repo, tree, keep=False)
    assert report.kept == "uncommitted changes"
    assert tree.path.stat().st_mtime_ns >= before.stat().st_mtime_ns
    assert [o.modified for o in list_orphans(repo, Git())] == [tree.path.stat().st_mtime]
