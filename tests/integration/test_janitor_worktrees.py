"""The janitor and kept task worktrees, with real git: ``agentq janitor`` and the daemon's passes.

A worktree kept after its task (uncommitted changes, ``keep_worktree: true``) is pruned once
its folder is older than ``janitor.keep_worktrees``; its branch stays. A fresh one, and one
whose task is in flight, stay.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agentq.queue.isolation import Worktree
from agentq.queue.protocol import Project
from agentq.queue.records import ControlRecord
from tests.integration.test_janitor import age, janitor, snapshot, summary, write_config
from tests.integration.test_worktrees import GIT_ENV, _config, _prompts, git, make_repo
from tests.support.daemon import Daemon, drop, make_projects, results, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every git command of the test, the daemon and the simulator uses the test's identity."""
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)


def listed_worktrees(repo: Path) -> list[str]:
    """The folders ``git worktree list`` names, the checkout first."""
    lines = git(repo, "worktree", "list", "--porcelain").splitlines()
    return [line.removeprefix("worktree ") for line in lines if line.startswith("worktree ")]


def branches(repo: Path) -> list[str]:
    """The ``agentq/*`` branches of ``repo``."""
    return git(repo, "branch", "--list", "agentq/*", "--format=%(refname:short)").split()


def test_agentq_janitor_prunes_kept_worktrees_past_keep_worktrees_and_nothing_else(
    tmp_path: Path,
) -> None:
    """An 8-day-old kept worktree goes (its branch stays); fresh and in-flight ones stay."""
    repo = make_projects(tmp_path / "projects", 1)[0]
    base = make_repo(repo)
    trees = repo / ".agent-queue" / "worktrees"
    for name in ("old", "fresh", "busy"):
        git(repo, "worktree", "add", "--quiet", "-b", f"agentq/{name}", str(trees / name), base)
        (trees / name / "notes.txt").write_text("uncommitted\n")
    age(trees / "old", 8)
    age(trees / "fresh", 6)
    age(trees / "busy", 30)
    project = Project(repo)
    project.ensure_dirs()
    (project.inbox / "busy.md.working").write_text("in flight\n")
    busy = Worktree(trees / "busy", "agentq/busy", base, ready=True)
    project.save_record(
        ControlRecord(name="busy.md", ino=1, attempts=1, claim_id="c", worktree=busy)
    )
    config = write_config(tmp_path)

    before = snapshot(tmp_path / "projects")
    dry = janitor(config, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert snapshot(tmp_path / "projects") == before
    assert f"would prune worktree {trees / 'old'} (older than keep_worktrees, 7d)" in dry.stdout
    assert summary(dry)["pruned"] == 1

    out = janitor(config)
    assert out.returncode == 0, out.stderr
    assert summary(out)["pruned"] == 1 and summary(out)["errors"] == 0
    assert f"pruned worktree {trees / 'old'}" in out.stdout
    assert sorted(p.name for p in trees.iterdir()) == ["busy", "fresh"]
    assert listed_worktrees(repo) == [str(repo), str(trees / "busy"), str(trees / "fresh")]
    assert branches(repo) == ["agentq/busy", "agentq/fresh", "agentq/old"]
    assert git(repo, "rev-parse", "agentq/old") == base
    assert summary(janitor(config))["pruned"] == 0


def test_the_daemon_prunes_a_finished_tasks_kept_worktree_once_it_is_keep_worktrees_old(
    tmp_path: Path, socket_name: str
) -> None:
    """Two tasks leave uncommitted files (kept), one runs on; the one aged 8 days goes."""
    repo = make_projects(tmp_path / "projects", 1)[0]
    make_repo(repo)
    trees = repo / ".agent-queue" / "worktrees"
    for name in ("old", "new"):
        drop(
            repo,
            f"{name}.md",
            "sim: write notes.txt half done\nsim: work 0.1s",
            isolation="worktree",
        )
    drop(repo, "busy.md", "sim: work 300s", isolation="worktree")
    config = _config(tmp_path, socket_name)
    config["janitor"] = {"interval": "0.5s"}  # keep_worktrees: the default 7d
    daemon = Daemon(tmp_path, config)
    try:
        daemon.start()
        assert daemon.wait_ready()
        wait_until(lambda: len(results([repo])["done"]) == 2, 90, message="not done")
        wait_until(lambda: str(trees / "busy") in {p["cwd"] for p in _prompts(tmp_path)}, 60)
        assert sorted(p.name for p in trees.iterdir()) == ["busy", "new", "old"]
        age(trees / "old", 8)
        age(trees / "busy", 8)  # in flight: its age does not matter
        wait_until(lambda: not (trees / "old").exists(), 30, message="old worktree not pruned")
        passes = wait_until(
            lambda: daemon.counter("janitor_pruned") and daemon.counter("janitor_passes"), 10
        )
        wait_until(lambda: daemon.counter("janitor_passes") >= passes + 2, 30)
        assert sorted(p.name for p in trees.iterdir()) == ["busy", "new"]
        assert (repo / ".agent-queue" / "inbox" / "busy.md.working").exists()
        assert daemon.counter("janitor_pruned") == 1 and daemon.counter("janitor_errors") == 0
    finally:
        daemon.close()
    assert listed_worktrees(repo) == [str(repo), str(trees / "busy"), str(trees / "new")]
    assert branches(repo) == ["agentq/busy", "agentq/new", "agentq/old"]
    assert "Traceback" not in daemon.log()
