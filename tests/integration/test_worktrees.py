"""Several tasks on one repository: worktrees, per-project concurrency and dependencies.

The daemon as a subprocess with a real tmux pool of the simulator and real git. Git runs
with an identity of its own and without the user's or the system's configuration.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentq.cli.status import collect_status, render_status
from agentq.config.load import load_config
from agentq.queue import taskfile
from tests.support.daemon import Daemon, drop, inbox_left, make_projects, results, wait_until

pytestmark = pytest.mark.integration

GIT_ENV = {
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "agentq test",
    "GIT_AUTHOR_EMAIL": "test@agentq.invalid",
    "GIT_COMMITTER_NAME": "agentq test",
    "GIT_COMMITTER_EMAIL": "test@agentq.invalid",
}
HEADER_RE = re.compile(r"^\[agentq task (\S+) ·")


@pytest.fixture(autouse=True)
def _git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every git command of the test, the daemon and the simulator uses the test's identity."""
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` (the test's own checks) and return its output."""
    done = subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True, timeout=30
    )
    return done.stdout.strip()


def make_repo(project: Path) -> str:
    """Turn a project folder into a repository with one commit; return that commit."""
    git(project, "init", "--quiet", "--initial-branch=main")
    (project / ".git" / "info").mkdir(parents=True, exist_ok=True)
    (project / ".git" / "info" / "exclude").write_text(".agent-queue/\n")
    (project / "README.md").write_text("the checkout's own file\n")
    (project / "src").mkdir()
    (project / "src" / "app.py").write_text("print('hello')\n")
    git(project, "add", "-A")
    git(project, "commit", "--quiet", "-m", "first")
    return git(project, "rev-parse", "HEAD")


def checkout_snapshot(project: Path) -> dict[str, bytes]:
    """Every file of the checkout outside ``.git`` and ``.agent-queue``, with its bytes."""
    found = {}
    for path in project.rglob("*"):
        rel = path.relative_to(project)
        if rel.parts[0] in (".git", ".agent-queue") or not path.is_file():
            continue
        found[str(rel)] = path.read_bytes()
    return found


def _config(root: Path, socket: str, pool: int = 3, **dispatch: Any) -> dict[str, Any]:
    return {
        "agent": {
            "profile": "sim",
            "env": {"AGENTQ_SIM_LOG": str(root / "prompts.jsonl"), **GIT_ENV},
        },
        "projects": {"roots": [str(root / "projects")]},
        "accounts": [{"name": "a", "home": str(root / "claude-a")}],
        "pool": {"prefix": "wt-", "min": 1, "max": pool},
        "tmux": {"socket_name": socket},
        "dispatch": {
            "rescan_interval": "2s",
            "quiet_period": "0.2s",
            "delivery_timeout": "10s",
            **dispatch,
        },
        "completion": {"idle_timeout": "60s"},
    }


def _prompts(root: Path) -> list[dict[str, Any]]:
    log = root / "prompts.jsonl"
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def _task_of(prompt: dict[str, Any]) -> str:
    match = HEADER_RE.match(prompt["prompt"])
    return match.group(1) if match else ""


def _footer(path: Path) -> taskfile.Footer:
    _, footer = taskfile.split_footer(path.read_text())
    assert footer is not None
    return footer


def _by_name(paths: list[Path]) -> dict[str, taskfile.Footer]:
    return {p.name: _footer(p) for p in paths}


def _intervals(root: Path, done: dict[str, taskfile.Footer]) -> dict[str, tuple[float, float]]:
    """Task → (when the agent received its prompt, when the daemon saw it finish)."""
    spans = {}
    for prompt in _prompts(root):
        name = _task_of(prompt)
        finished = done[name].finished
        assert finished is not None
        spans[name] = (float(prompt["at"]), finished.timestamp())
    return spans


def _max_concurrent(spans: list[tuple[float, float]]) -> int:
    """The most tasks running at one moment (an end before a start at the same instant)."""
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def _branches(repo: Path) -> list[str]:
    return git(repo, "branch", "--list", "agentq/*", "--format=%(refname:short)").split()


def _worktrees(repo: Path) -> list[str]:
    return [
        line.split(" ", 1)[1]
        for line in git(repo, "worktree", "list", "--porcelain").splitlines()
        if line.startswith("worktree ")
    ]


# -- acceptance: six worktree tasks, six plain tasks --------------------------------------


def test_six_worktree_tasks_run_side_by_side_each_on_its_own_branch(
    tmp_path: Path, socket_name: str
) -> None:
    """Six worktree tasks, three sims: six branches of one commit each; the checkout untouched."""
    repo = make_projects(tmp_path / "projects", 1)[0]
    base = make_repo(repo)
    before = checkout_snapshot(repo)
    for i in range(6):
        body = f"task {i}\nsim: work 3s\nsim: write w{i}.txt made by w{i}\nsim: commit add w{i}.txt"
        drop(repo, f"w{i}.md", body, isolation="worktree")
    daemon = Daemon(tmp_path, _config(tmp_path, socket_name))
    try:
        daemon.start()
        assert daemon.wait_ready()
        wait_until(lambda: not inbox_left([repo]), 180, interval=0.5, message="tasks left")
    finally:
        daemon.close()
    found = results([repo])
    assert found["failed"] == [], [_footer(p).error for p in found["failed"]]
    done = _by_name(found["done"])
    assert sorted(done) == [f"w{i}.md" for i in range(6)]
    assert sorted(_branches(repo)) == [f"agentq/w{i}" for i in range(6)]
    for i in range(6):
        branch = f"agentq/w{i}"
        assert git(repo, "rev-parse", f"{branch}^") == base
        assert git(repo, "diff", "--name-only", base, branch) == f"w{i}.txt"
        assert git(repo, "show", f"{branch}:w{i}.txt") == f"made by w{i}"
        rows = dict(done[f"w{i}.md"].details)
        assert rows["branch"] == branch and rows["base"].startswith(base[:12])
        assert rows["commits"].startswith("1: ") and rows["commits"].endswith(f"add w{i}.txt")
        assert rows["diffstat"] == "1 file(s) changed, 1 insertion(s)(+), 0 deletion(s)(-)"
        assert rows["uncommitted"] == "none" and rows["worktree"] == "removed"
    assert git(repo, "rev-parse", "HEAD") == base
    assert git(repo, "symbolic-ref", "HEAD") == "refs/heads/main"
    assert git(repo, "status", "--porcelain") == ""
    assert checkout_snapshot(repo) == before
    assert _worktrees(repo) == [str(repo)]
    assert list((repo / ".agent-queue" / "worktrees").iterdir()) == []
    worktrees = repo / ".agent-queue" / "worktrees"
    assert {p["cwd"] for p in _prompts(tmp_path)} == {str(worktrees / f"w{i}") for i in range(6)}
    peak = _max_concurrent(list(_intervals(tmp_path, done).values()))
    print(f"worktree tasks running at once (measured): {peak}")
    assert peak >= 2, "worktree tasks of one project never ran side by side"


def test_six_plain_tasks_of_one_project_never_run_two_at_once(
    tmp_path: Path, socket_name: str
) -> None:
    """Six tasks without isolation, three sims: one at a time (prompt times vs. finish times)."""
    project = make_projects(tmp_path / "projects", 1)[0]
    for i in range(6):
        drop(project, f"p{i}.md", f"plain {i}\nsim: work 1s")
    daemon = Daemon(tmp_path, _config(tmp_path, socket_name))
    try:
        daemon.start()
        assert daemon.wait_ready()
        wait_until(lambda: not inbox_left([project]), 180, interval=0.5, message="tasks left")
    finally:
        daemon.close()
    found = results([project])
    assert found["failed"] == [] and len(found["done"]) == 6
    spans = sorted(_intervals(tmp_path, _by_name(found["done"])).values())
    assert len(spans) == 6, "a prompt was typed twice or never"
    overlaps = [(a, b) for a, b in zip(spans, spans[1:], strict=False) if b[0] < a[1]]
    print(f"plain tasks running at once (measured): {_max_concurrent(spans)}")
    assert overlaps == [], "two tasks of one checkout ran at once"
    assert {p["cwd"] for p in _prompts(tmp_path)} == {str(project)}
