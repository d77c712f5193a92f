"""``agentq demo``: the bundled simulated agent working through the sample queues in real tmux.

Copies the sample projects into a throwaway workspace, makes one of them (``webapp``)
a git repository whose tasks run in worktrees of their own, starts the daemon with the
``sim`` profile and a small pool on a private tmux server, prints progress as tasks
move, stops when every inbox is empty, and lists each task's branch and diffstat.
Every git command runs with the demo's own identity and without the user's git
configuration.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from agentq.config.load import config_from_dict
from agentq.daemon.loop import Daemon
from agentq.queue import protocol as q
from agentq.queue import taskfile
from agentq.sessions.tmux import TmuxDriver
from agentq.workspace.git import Git

PACKAGED_FIXTURES = Path(__file__).parent.parent / "demo_fixtures"
SOURCE_FIXTURES = Path(__file__).parent.parent.parent / "fixtures" / "queues"
#: The sample project that becomes a git repository (its tasks use worktrees).
GIT_PROJECT = "webapp"
#: The demo's git identity; the user's global and system git configuration are not read.
GIT_ENV = {
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "agentq demo",
    "GIT_AUTHOR_EMAIL": "demo@agentq.invalid",
    "GIT_COMMITTER_NAME": "agentq demo",
    "GIT_COMMITTER_EMAIL": "demo@agentq.invalid",
}


def fixtures_dir() -> Path:
    """The sample projects: inside the installed package, or in the source tree."""
    for candidate in (PACKAGED_FIXTURES, SOURCE_FIXTURES):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("the demo's sample projects (fixtures/queues) are missing")


def prepare_workspace(target: Path | None) -> Path:
    """Copy the sample projects into ``target`` (or a new temp folder) and return it."""
    workspace = target or Path(tempfile.mkdtemp(prefix="agentq-demo-"))
    projects = workspace / "projects"
    projects.mkdir(parents=True, exist_ok=True)
    for project in sorted(fixtures_dir().iterdir()):
        if project.is_dir():
            shutil.copytree(project, projects / project.name, dirs_exist_ok=True)
    repo = projects / GIT_PROJECT
    if repo.is_dir() and not (repo / ".git").exists():
        init_repository(repo)
    return workspace


def init_repository(project: Path) -> None:
    """Make ``project`` a git repository with a first commit (its queue folder left out)."""
    git = Git({**os.environ, **GIT_ENV})
    git.init(project)
    exclude = project / ".git" / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    exclude.write_text(f"{q.QUEUE_DIRNAME}/\n")
    git.commit_all(project, f"The {project.name} sample before agentq")


def demo_config(workspace: Path, pool: int) -> dict[str, Any]:
    """The daemon configuration the demo runs with."""
    return {
        "state_dir": str(workspace / "state"),
        "projects": {"roots": [str(workspace / "projects")]},
        "agent": {"profile": "sim", "env": dict(GIT_ENV)},
        "accounts": [{"name": "demo", "home": str(workspace / "claude-home")}],
        "pool": {"prefix": "demo-", "min": 1, "max": pool},
        "tmux": {"socket_name": f"agentq-demo-{os.getpid()}"},
        "dispatch": {"rescan_interval": "5s", "quiet_period": "0.2s"},
        "completion": {"idle_timeout": "2m", "task_timeout": "5m"},
        # The dashboard on a free port, with a token of the demo's own.
        "api": {"listen": "127.0.0.1:0", "token_file": str(workspace / "state" / "api-token")},
    }


def _totals(projects: list[q.Project]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for project in projects:
        for key, value in project.counts().items():
            totals[key] = totals.get(key, 0) + value
    return totals


def _watch(daemon: Daemon, projects: list[q.Project], out: TextIO, deadline: float) -> None:
    """Print progress; stop the daemon when every inbox is empty (or at the deadline)."""
    last = None
    shown = False
    while not daemon.stopping:
        if not shown and daemon.api is not None:
            print(f"  dashboard: {daemon.api.url}/", file=out, flush=True)
            shown = True
        totals = _totals(projects)
        line = (
            f"pending {totals['pending']:>2}  working {totals['working']:>2}  "
            f"done {totals['done']:>2}  failed {totals['failed']:>2}"
        )
        if line != last:
            print(line, file=out, flush=True)
            last = line
        if (
            totals["pending"] == totals["working"] == totals["delegated"] == 0
            or time.monotonic() > deadline
        ):
            daemon.stop()
            return
        time.sleep(0.5)  # the progress display's refresh rate


def branch_summary(projects: list[q.Project]) -> list[str]:
    """One line per finished task that ran in a worktree: its branch and diffstat."""
    lines = []
    for project in projects:
        for folder in (project.done, project.failed):
            for path in sorted(folder.glob("*.md")):
                _, footer = taskfile.split_footer(path.read_text(errors="replace"))
                rows = dict(footer.details) if footer is not None else {}
                if "branch" in rows:
                    lines.append(
                        f"  {project.path.name}/{path.name}: branch {rows['branch']}, "
                        f"{rows.get('diffstat', '')}"
                    )
    if lines:
        lines.insert(0, "branches (see them with git -C <project> log --all --oneline):")
    return lines


def run_demo(target: Path | None, pool: int, out: TextIO = sys.stdout, timeout: float = 600) -> int:
    """Run the demo and return the exit code (0 when every task reached done/)."""
    if shutil.which("tmux") is None:
        print("agentq demo needs tmux: install it (e.g. apt-get install tmux)", file=sys.stderr)
        return 1
    workspace = prepare_workspace(target)
    raw = demo_config(workspace, pool)
    config = config_from_dict(raw, dict(os.environ), workspace)
    projects = [q.Project(p) for p in q.find_projects(config.projects.roots, [])]
    print(f"agentq demo: workspace {workspace}", file=out)
    print(
        f"  {sum(p.counts()['pending'] for p in projects)} tasks in {len(projects)} projects, "
        f"a pool of {pool} simulated agents on tmux socket {raw['tmux']['socket_name']}",
        file=out,
    )
    print(f"  watch them: tmux -L {raw['tmux']['socket_name']} attach", file=out, flush=True)
    daemon = Daemon(config, {**os.environ, **GIT_ENV})
    watcher = threading.Thread(
        target=_watch, args=(daemon, projects, out, time.monotonic() + timeout)
    )
    watcher.start()
    try:
        daemon.run()
    finally:
        daemon.stop()
        watcher.join()
        TmuxDriver(raw["tmux"]["socket_name"]).kill_server()
    totals = _totals(projects)
    print(f"finished: {totals['done']} done, {totals['failed']} failed", file=out)
    for project in projects:
        print(f"  results: {project.done}", file=out)
        if project.counts()["failed"]:
            print(f"  failures: {project.failed}", file=out)
    for line in branch_summary(projects):
        print(line, file=out)
    return 0 if totals["failed"] == 0 and totals["pending"] == 0 else 1
