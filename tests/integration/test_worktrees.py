"""Several tasks on one repository: worktrees, per-project concurrency and dependencies.

The daemon as a subprocess with a real tmux pool of the simulator and real git. Git runs
with an identity of its own and without the user's or the system's configuration.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from agentq.cli.status import collect_status, fetch_status, render_status
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
    overlaps = [(a, b) for a, b in itertools.pairwise(spans) if b[0] < a[1]]
    print(f"plain tasks running at once (measured): {_max_concurrent(spans)}")
    assert overlaps == [], "two tasks of one checkout ran at once"
    assert {p["cwd"] for p in _prompts(tmp_path)} == {str(project)}


# -- acceptance: dependencies --------------------------------------------------------------

DAG = {
    "a.md": [],
    "b.md": ["a.md"],
    "c.md": ["a.md"],
    "d.md": ["b.md", "c.md"],
    "e.md": ["d.md"],
    "f.md": ["a.md", "e.md"],
    "g.md": ["c.md"],
    "h.md": ["f.md", "g.md"],
}


def test_a_dag_of_eight_tasks_runs_in_a_valid_order(tmp_path: Path, socket_name: str) -> None:
    """Eight tasks with ``after:``, dropped last-first, three at a time: each after its deps."""
    project = make_projects(tmp_path / "projects", 1)[0]
    # The project's own defaults: three at a time (plain tasks, by choice of the project).
    (project / ".agent-queue" / "config.yaml").write_text("max_parallel: 3\n")
    for name in reversed(DAG):
        drop(project, name, f"node {name}\nsim: work 0.5s", after=DAG[name])
    daemon = Daemon(tmp_path, _config(tmp_path, socket_name))
    try:
        daemon.start()
        assert daemon.wait_ready()
        wait_until(lambda: not inbox_left([project]), 180, interval=0.5, message="tasks left")
    finally:
        daemon.close()
    found = results([project])
    assert found["failed"] == [], [_footer(p).error for p in found["failed"]]
    done = _by_name(found["done"])
    spans = _intervals(tmp_path, done)
    assert sorted(spans) == sorted(DAG)
    for name, deps in DAG.items():
        for dep in deps:
            assert spans[name][0] >= spans[dep][1], f"{name} started before {dep} finished"
    order = sorted(spans, key=lambda n: spans[n][0])
    print(
        f"DAG order (measured): {' '.join(order)}; at once: {_max_concurrent(list(spans.values()))}"
    )


def test_failed_unknown_and_circular_dependencies_fail_with_reasons(
    tmp_path: Path, socket_name: str
) -> None:
    """A failed dependency fails its dependents (transitively); a cycle and an unknown name too."""
    project = make_projects(tmp_path / "projects", 1)[0]
    drop(project, "x.md", "fails\nsim: fail")
    drop(project, "y.md", "after x", after=["x.md"])
    drop(project, "z.md", "after y", after=["y.md"])
    drop(project, "c1.md", "cycle one", after=["c2.md"])
    drop(project, "c2.md", "cycle two", after=["c1.md"])
    drop(project, "self.md", "waits on itself", after=["self.md"])
    drop(project, "u.md", "unknown", after=["nosuch.md"])
    drop(project, "ok.md", "independent\nsim: work 0.1s")
    daemon = Daemon(tmp_path, _config(tmp_path, socket_name))
    try:
        daemon.start()
        assert daemon.wait_ready()
        wait_until(lambda: not inbox_left([project]), 120, interval=0.5, message="tasks left")
        log = daemon.log()
    finally:
        daemon.close()
    found = results([project])
    assert [p.name for p in found["done"]] == ["ok.md"]
    errors = {name: footer.error for name, footer in _by_name(found["failed"]).items()}
    assert errors["y.md"] == "dependency failed: x.md"
    assert errors["z.md"] == "dependency failed: y.md"
    assert errors["c1.md"] == "dependency cycle: c1.md → c2.md → c1.md"
    assert errors["c2.md"] == "dependency cycle: c2.md → c1.md → c2.md"
    assert errors["self.md"] == "dependency cycle: self.md → self.md"
    assert errors["u.md"] == "unknown dependency: nosuch.md (no task of that name in this project)"
    typed = {_task_of(p) for p in _prompts(tmp_path)}
    assert typed == {"x.md", "ok.md"}, "a task with a broken dependency reached an agent"
    assert "Traceback" not in log


def test_a_waiting_task_shows_what_it_waits_for_in_status(tmp_path: Path, socket_name: str) -> None:
    """``agentq status`` and the task list say "waiting for slow.md" while the dependency runs."""
    project = make_projects(tmp_path / "projects", 1)[0]
    daemon = Daemon(tmp_path, _config(tmp_path, socket_name))
    config = load_config(daemon.config_path, {"HOME": str(daemon.home)})
    try:
        daemon.start()
        assert daemon.wait_ready()
        drop(project, "slow.md", "slow\nsim: work 4s")
        drop(project, "next.md", "next\nsim: work 0.1s", after=["slow.md"])

        def shown() -> str:
            # Through the daemon's API (what `agentq status` prints), and from state.json.
            text = render_status(fetch_status(config, 0.0))
            folders = render_status(collect_status(config, 0.0))
            wanted = "next.md: waiting for slow.md"
            return text if wanted in text and wanted in folders else ""

        wait_until(shown, 30, message="status never showed the wait")
        assert _listed_reason(daemon, "next.md") == "waiting for slow.md"
        wait_until(lambda: len(results([project])["done"]) == 2, 60)
        assert "waiting for" not in render_status(fetch_status(config, 0.0))
        assert _listed_reason(daemon, "next.md") is None
    finally:
        daemon.close()


def _listed_reason(daemon: Daemon, name: str) -> str | None:
    """The reason the API's task list gives for task ``name``."""
    state = daemon.state_dir / "state.json"
    url = wait_until(lambda: json.loads(state.read_text()).get("api", {}).get("url"), 10)
    tasks = httpx.get(f"{url}/api/tasks?limit=500", timeout=10).json()["tasks"]
    reason = next(t["reason"] for t in tasks if t["name"] == name)
    return str(reason) if reason is not None else None


# -- acceptance: what cannot have a worktree fails cleanly -------------------------------


def test_worktree_tasks_that_cannot_get_one_fail_with_the_reason_and_leave_nothing(
    tmp_path: Path, socket_name: str
) -> None:
    """Not a repository, an unknown base, a repository without commits: failed/, daemon up."""
    plain, repo, empty = make_projects(tmp_path / "projects", 3)
    base = make_repo(repo)
    git(empty, "init", "--quiet")
    drop(plain, "nogit.md", "no repository", isolation="worktree")
    drop(repo, "nobase.md", "unknown base", isolation="worktree", base="no-such-branch")
    drop(repo, "option.md", "looks like an option", isolation="worktree", base="-x")
    drop(empty, "nocommit.md", "no commit yet", isolation="worktree")
    daemon = Daemon(tmp_path, _config(tmp_path, socket_name))
    try:
        daemon.start()
        assert daemon.wait_ready()
        wait_until(lambda: len(results([plain, repo, empty])["failed"]) == 4, 60)
        drop(plain, "after.md", "the daemon still works\nsim: work 0.1s", base="main")
        drop(repo, "good.md", "a good one\nsim: work 0.1s", isolation="worktree", base="main")
        wait_until(lambda: len(results([plain, repo])["done"]) == 2, 60)
        assert daemon.proc is not None and daemon.proc.poll() is None
    finally:
        daemon.close()
    errors = {
        n: f.error or "" for n, f in _by_name(results([plain, repo, empty])["failed"]).items()
    }
    assert "is not a git repository" in errors["nogit.md"]
    assert (
        errors["nobase.md"] == "unknown base: 'no-such-branch' is not a commit of this repository"
    )
    assert "invalid frontmatter: base" in errors["option.md"]
    assert "no commit yet" in errors["nocommit.md"]
    assert _branches(repo) == ["agentq/good"]
    assert _worktrees(repo) == [str(repo)]
    assert git(repo, "rev-parse", "HEAD") == base
    assert not (plain / ".git").exists()
    assert list((repo / ".agent-queue" / "worktrees").iterdir()) == []
    after = _footer(plain / ".agent-queue" / "done" / "after.md")
    assert ("warning", "base: ignored (it applies to isolation: worktree)") in after.details


def test_uncommitted_changes_keep_the_worktree_and_the_footer_says_where(
    tmp_path: Path, socket_name: str
) -> None:
    """A task that leaves a file uncommitted: the worktree is kept, and listed as an orphan."""
    from agentq.queue.protocol import Project
    from agentq.workspace.git import Git
    from agentq.workspace.worktrees import list_orphans

    repo = make_projects(tmp_path / "projects", 1)[0]
    make_repo(repo)
    drop(repo, "dirty.md", "sim: write notes.txt half done\nsim: work 0.1s", isolation="worktree")
    daemon = Daemon(tmp_path, _config(tmp_path, socket_name))
    try:
        daemon.start()
        assert daemon.wait_ready()
        done = wait_until(lambda: results([repo])["done"], 60)
        # The result is in done/ a moment before the claimed file leaves the inbox; killed
        # in between, the worktree would still count as in flight (recovery's business).
        wait_until(lambda: not inbox_left([repo]), 30, message="the claimed file dropped")
    finally:
        daemon.close()
    rows = dict(_footer(done[0]).details)
    kept = repo / ".agent-queue" / "worktrees" / "dirty"
    assert rows["uncommitted"] == "1: notes.txt"
    assert rows["worktree"] == f"kept at {kept} (uncommitted changes)"
    assert (kept / "notes.txt").read_text() == "half done\n"
    assert rows["commits"] == "0"
    orphans = list_orphans(Project(repo), Git())
    assert [(o.path, o.branch) for o in orphans] == [(kept, "agentq/dirty")]


# -- acceptance: crash between worktree add and delivery ----------------------------------


@pytest.mark.parametrize("point", ["after_worktree_intent", "after_worktree_add"])
def test_sigkill_between_worktree_add_and_delivery_leaves_one_branch_and_no_orphan(
    tmp_path: Path, socket_name: str, point: str
) -> None:
    """SIGKILL at the crash point, restart: the task is done once, one branch, no orphan."""
    repo = make_projects(tmp_path / "projects", 1)[0]
    base = make_repo(repo)
    drop(
        repo, "crash.md", "sim: work 0.2s\nsim: write c.txt c\nsim: commit c", isolation="worktree"
    )
    daemon = Daemon(tmp_path, _config(tmp_path, socket_name))
    try:
        daemon.start(crash_at=point)
        assert daemon.wait_exit() == 137
        record = json.loads((repo / ".agent-queue" / ".agentq" / "crash.md.json").read_text())
        assert record["worktree"]["branch"] == "agentq/crash"
        assert _prompts(tmp_path) == []
        daemon.start()
        assert daemon.wait_ready()
        done = wait_until(lambda: results([repo])["done"], 60, message="not done after restart")
    finally:
        daemon.close()
    assert [p.name for p in done] == ["crash.md"] and results([repo])["failed"] == []
    assert [_task_of(p) for p in _prompts(tmp_path)] == ["crash.md"]
    assert _branches(repo) == ["agentq/crash"]
    assert git(repo, "rev-list", "--count", f"{base}..agentq/crash") == "1"
    assert _worktrees(repo) == [str(repo)]
    assert list((repo / ".agent-queue" / "worktrees").iterdir()) == []
    assert git(repo, "rev-parse", "HEAD") == base


# -- acceptance: an account swap mid-task inside a worktree -------------------------------


@pytest.mark.slow
def test_a_task_cut_by_the_usage_limit_resumes_in_its_worktree_on_the_next_account(
    tmp_path: Path, socket_name: str
) -> None:
    """Account A at its limit: swap to B, ``--resume`` in the same worktree, done on B."""
    from tests.integration.test_failover import _config as failover_config
    from tests.integration.test_failover import _homes

    home_a, _ = _homes(tmp_path)
    repo = make_projects(tmp_path / "projects", 1)[0]
    base = make_repo(repo)
    (repo / ".agent-queue" / "config.yaml").write_text("isolation: worktree\n")
    config = failover_config(tmp_path, socket_name)
    config["agent"]["env"].update(GIT_ENV)
    daemon = Daemon(tmp_path, config)
    try:
        daemon.start()
        assert daemon.wait_ready()
        (home_a / "sim-quota").write_text("resets 11pm (UTC)")
        drop(
            repo, "cut.md", "cut by the limit\nsim: work 0.5s\nsim: write cut.txt x\nsim: commit x"
        )
        done = wait_until(lambda: results([repo])["done"], 120, interval=0.5, message="not done")
    finally:
        daemon.close()
    assert results([repo])["failed"] == []
    footer = _footer(done[0])
    rows = dict(footer.details)
    assert footer.account == "b" and rows.get("resumed", "").endswith("on account b")
    assert rows["branch"] == "agentq/cut" and rows["worktree"] == "removed"
    worktree = str(repo / ".agent-queue" / "worktrees" / "cut")
    prompts = _prompts(tmp_path)
    assert len(prompts) == 2, "expected the task's prompt, then the prompt that continues it"
    assert {p["cwd"] for p in prompts} == {worktree}
    assert len({p["session_id"] for p in prompts}) == 1, "the resumed session is another one"
    assert git(repo, "rev-parse", "HEAD") == base and _worktrees(repo) == [str(repo)]


# -- the command line ----------------------------------------------------------------------


def _agentq(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTQ_", "TMUX"))}
    return subprocess.run(
        [sys.executable, "-m", "agentq", *args],
        env={**env, "HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_submit_sets_isolation_after_and_base_and_refuses_bad_ones(tmp_path: Path) -> None:
    """``agentq submit --isolation --after --base``: the keys in the file; bad values refused."""
    project = tmp_path / "proj"
    project.mkdir()
    out = _agentq(
        "submit", "--project", str(project), "--text", "# Deploy", "--isolation", "worktree",
        "--after", "a.md,b.md", "--after", "c.md", "--base", "release/2.0", home=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    meta = taskfile.parse_task(Path(out.stdout.strip()).read_bytes(), "x.md").meta
    assert (meta.isolation, meta.base) == ("worktree", "release/2.0")
    assert meta.after == ("a.md", "b.md", "c.md")
    bad = _agentq("submit", "--project", str(project), "--text", "x", "--after", "../etc.md",
                  home=tmp_path)  # fmt: skip
    assert bad.returncode == 1 and "after" in bad.stderr and "Traceback" not in bad.stderr
    wrong = _agentq("submit", "--project", str(project), "--text", "x", "--isolation", "vm",
                    home=tmp_path)  # fmt: skip
    assert wrong.returncode == 2
    assert len(list((project / ".agent-queue" / "inbox").iterdir())) == 1


def test_validate_lists_every_problem_of_a_projects_config(tmp_path: Path) -> None:
    """``agentq validate`` reads each project's config.yaml too, each problem with its line."""
    project = make_projects(tmp_path / "projects", 1)[0]
    (project / ".agent-queue" / "config.yaml").write_text("isolation: vm\nmax_parallel: 0\n")
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {"state_dir": str(tmp_path / "state"), "projects": {"roots": [str(project.parent)]}}
        )
    )
    out = _agentq("validate", "--config", str(config), home=tmp_path)
    assert out.returncode == 2
    assert "config.yaml: line 1: isolation" in out.stderr
    assert "config.yaml: line 2: max_parallel" in out.stderr
