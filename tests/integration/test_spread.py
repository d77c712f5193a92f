"""Accounts in parallel, preempt and background agents with the simulator in real tmux.

Spread: two accounts, a pool of four (two per account), account A out after its third
request (the sim's ``sim-limit``), ten tasks, ``completion.recycle: false``. A's cut tasks
resume on sessions running on B, with the same session id in the same folder; B's own
sessions are never restarted (their pane pids stay); after A's reset A's sessions take
tasks again. Preempt: a 92% warning with ``preempt_at: 90%`` sends new tasks to B while A's
running task finishes. Background: a task whose agent finishes later completes only then.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agentq.queue import taskfile
from agentq.sessions.delivery import CONTINUE_PROMPT
from agentq.sessions.tmux import TmuxDriver
from agentq.sim.rules import BACKGROUND_STARTED, default_answer
from tests.support.daemon import Daemon, drop, make_projects, results, wait_until

pytestmark = pytest.mark.integration

POOL = ("sp-0", "sp-1", "sp-2", "sp-3")


def _config(root: Path, socket: str, **pool: Any) -> dict[str, Any]:
    return {
        "agent": {"profile": "sim", "env": {"AGENTQ_SIM_LOG": str(root / "prompts.jsonl")}},
        "projects": {"roots": [str(root / "projects")]},
        "accounts": [
            {"name": "a", "home": str(root / "claude-a")},
            {"name": "b", "home": str(root / "claude-b")},
        ],
        "active_link": str(root / "home" / ".claude"),
        "shared": {"root": str(root / "claude-shared")},
        "pool": {"prefix": "sp-", "min": 4, "max": 4, **pool},
        "tmux": {"socket_name": socket},
        # The pool's sessions work on the one project at once (plain tasks otherwise run singly).
        "dispatch": {"rescan_interval": "2s", "quiet_period": "0.2s", "max_parallel": 4},
        "completion": {"idle_timeout": "60s", "recycle": False},
        "quota": {"cooldown": "1s", "confirm_polls": 1, "default_exhausted": "10m"},
    }


def _homes(root: Path) -> tuple[Path, Path]:
    homes = root / "claude-a", root / "claude-b"
    for home in homes:
        home.mkdir()
    return homes


def _state(daemon: Daemon) -> dict[str, Any]:
    path = daemon.state_dir / "state.json"
    try:
        return dict(json.loads(path.read_text()))
    except (FileNotFoundError, ValueError):
        return {}


def _footers(projects: list[Path], folder: str = "done") -> dict[str, taskfile.Footer]:
    found = {}
    for path in results(projects)[folder]:
        _, footer = taskfile.split_footer(path.read_text())
        assert footer is not None, path
        found[path.name] = footer
    return found


def _sessions(daemon: Daemon) -> dict[str, dict[str, Any]]:
    return {s["session"]: s for s in _state(daemon).get("sessions", [])}


def _pids(tmux: TmuxDriver, names: list[str]) -> dict[str, int]:
    panes = tmux.list_panes()
    return {name: panes[name].pid for name in names if name in panes}


def _wait(daemon: Daemon, fn: Callable[[], Any], timeout: float, what: str) -> Any:
    try:
        return wait_until(fn, timeout, interval=0.2, message=what)
    except TimeoutError as exc:
        state = {k: _state(daemon).get(k) for k in ("accounts", "swaps", "hold", "sessions")}
        pytest.fail(f"{exc}\nstate: {state}\nlog tail:\n{daemon.log()[-5000:]}")


def _next_minute(after: float) -> int:
    """A reset on a whole minute at least ``after`` seconds away (the limit line shows minutes)."""
    return int((time.time() + after) // 60 + 1) * 60


@pytest.mark.slow
def test_spread_stops_only_the_exhausted_account_and_it_rejoins_after_its_reset(
    tmp_path: Path, socket_name: str
) -> None:
    """A out after 3 requests: its cut tasks resume on B, B's sessions untouched, A rejoins."""
    home_a, _ = _homes(tmp_path)
    projects = make_projects(tmp_path / "projects", 1)
    daemon = Daemon(tmp_path, _config(tmp_path, socket_name, account_policy="spread"))
    tmux = TmuxDriver(socket_name)
    try:
        daemon.start()
        assert daemon.wait_ready()

        def all_home() -> bool:
            idle = [s["account"] for s in _sessions(daemon).values() if s["state"] == "idle"]
            return idle == ["a", "b", "a", "b"]

        ready = _wait(daemon, all_home, 60, "four idle sessions, two per account")
        assert ready
        on_b = [name for name, s in _sessions(daemon).items() if s["account"] == "b"]
        before = _pids(tmux, on_b)
        reset = _next_minute(40)
        (home_a / "sim-limit").write_text(f"3 {reset}")
        started = time.monotonic()
        for i in range(10):
            drop(projects[0], f"t{i}.md", f"task {i}\nsim: work 1s")
        _wait(daemon, lambda: len(results(projects)["done"]) == 10, 120, "ten tasks done")
        took = time.monotonic() - started
        first = _footers(projects)
        assert results(projects)["failed"] == []
        after_run = _pids(tmux, on_b)
        state = _state(daemon)
        _wait(daemon, lambda: time.time() > reset + 1, 120, "A's reset")
        # A's sessions that ran on B while A was out go home by themselves, no task needed.
        _wait(daemon, all_home, 60, "A's sessions idle on A again")
        for i in range(4):
            drop(projects[0], f"r{i}.md", f"after the reset {i}\nsim: work 1s")
        _wait(daemon, lambda: len(results(projects)["done"]) == 14, 120, "four more done")
        later = {n: f for n, f in _footers(projects).items() if n.startswith("r")}
        at_end = _pids(tmux, on_b)
    finally:
        daemon.close()
    resumed = {n: f for n, f in first.items() if "resumed" in dict(f.details)}
    placements = {n: (f.target, f.account) for n, f in sorted(first.items())}
    print(f"\nspread: ten tasks in {took:.1f}s; placements {placements}")
    print(f"B's pane pids before {before}, after the run {after_run}, at the end {at_end}")
    assert before == after_run == at_end and len(before) == 2  # B's sessions never restarted
    assert resumed, f"no cut task was resumed: {placements}"
    limited = []
    for name, footer in resumed.items():
        details = dict(footer.details)
        session_id = details["session_id"]
        assert details["resumed"] == f"{session_id} on account b" and footer.account == "b"
        files = list((tmp_path / "claude-shared" / "projects").rglob(f"{session_id}.jsonl"))
        assert len(files) == 1, (name, files)
        entries = [json.loads(line) for line in files[0].read_text().splitlines()]
        assert {e["sessionId"] for e in entries} == {session_id}
        assert {e["cwd"] for e in entries} == {str(projects[0])}
        users = [str(e["message"]["content"]) for e in entries if e["type"] == "user"]
        # With recycle off a session's transcript may hold earlier tasks too.
        asked = [i for i, text in enumerate(users) if text.startswith(f"[agentq task {name} ")]
        # Later tasks may follow in it: the prompt after the task's own is the continue.
        assert asked and asked[-1] < len(users) - 1, users
        assert users[asked[-1] + 1] == CONTINUE_PROMPT, users
        limited += [name] if any(e.get("isApiErrorMessage") for e in entries) else []
    assert limited, "no resumed transcript holds the limit (a task cut mid-turn only)"
    assert sum(f.account == "a" for f in first.values()) <= 3
    assert [(s["from"], s["to"]) for s in state["swaps"]] == [("a", "b")]  # the link moved
    assert {f.account for f in later.values()} >= {"a"}, later
    assert state["accounts"]["a"]["windows"]["five_hour"]["used"] == 100


@pytest.mark.slow
def test_a_preempted_account_takes_no_new_task_and_its_running_task_finishes(
    tmp_path: Path, socket_name: str
) -> None:
    """92% used with preempt_at 90%: new tasks go to B; A's running task completes on A."""
    _homes(tmp_path)
    projects = make_projects(tmp_path / "projects", 1)
    config = _config(tmp_path, socket_name, min=1, max=2)
    config["completion"] = {"idle_timeout": "60s"}
    config["quota"] = {**config["quota"], "preempt_at": "90%"}
    daemon = Daemon(tmp_path, config)
    try:
        daemon.start()
        assert daemon.wait_ready()
        drop(projects[0], "long.md", "the long one\nsim: warning 92%\nsim: work 6s")
        _wait(daemon, lambda: _state(daemon).get("swaps"), 60, "the preempt swap")
        busy = [s for s in _sessions(daemon).values() if s.get("task")]
        for i in range(3):
            drop(projects[0], f"q{i}.md", f"quick {i}\nsim: work 0.3s")
        _wait(daemon, lambda: len(results(projects)["done"]) == 4, 90, "four tasks done")
        state = _state(daemon)
    finally:
        daemon.close()
    done = _footers(projects)
    assert results(projects)["failed"] == []
    assert [s["account"] for s in busy] == ["a"]
    assert done["long.md"].account == "a" and "resumed" not in dict(done["long.md"].details)
    assert {done[f"q{i}.md"].account for i in range(3)} == {"b"}
    (swap,) = state["swaps"]
    assert (swap["from"], swap["to"]) == ("a", "b") and swap["trigger"].startswith("preempt: ")
    assert state["accounts"]["a"]["preempted"].startswith("five_hour window 92% used")


def test_a_task_completes_only_when_its_background_agent_finished(
    tmp_path: Path, socket_name: str
) -> None:
    """The first Stop lists a running agent: the answer is the final Stop's, with tokens."""
    _homes(tmp_path)
    projects = make_projects(tmp_path / "projects", 1)
    config = _config(tmp_path, socket_name, min=1, max=1)
    daemon = Daemon(tmp_path, config)
    try:
        daemon.start()
        assert daemon.wait_ready()
        started = time.monotonic()
        drop(projects[0], "bg.md", "research it\nsim: work 0.2s\nsim: background 3s")
        _wait(daemon, lambda: results(projects)["done"], 60, "the task done")
        took = time.monotonic() - started
    finally:
        daemon.close()
    footer = _footers(projects)["bg.md"]
    details = dict(footer.details)
    assert footer.result == default_answer("[agentq task bg.md · project proj00 · attempt 1]")
    assert footer.result != BACKGROUND_STARTED and took >= 3
    assert footer.cost is not None and footer.cost.endswith("(API-equivalent)")
    assert footer.cost.startswith("$") and "1 agent transcript(s) included" in details["tokens"]
    assert details["model"] == "claude-sonnet-4-5-20250929, claude-haiku-4-5-20251001"
