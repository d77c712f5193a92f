"""The local-session executor end to end: the daemon, a real tmux pool and the bundled simulator."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from agentq.queue import taskfile
from agentq.sessions.tmux import TmuxDriver
from tests.support.daemon import Daemon, drop, inbox_left, make_projects, results, wait_until

pytestmark = pytest.mark.integration

TRICKY = "quotes ' \" and $(touch /tmp/agentq-pwn) and `backticks` and \\backslash"


def _config(root: Path, socket: str, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        # The sim logs every prompt it receives (the session environment carries the path).
        "agent": {"profile": "sim", "env": {"AGENTQ_SIM_LOG": str(root / "prompts.jsonl")}},
        "projects": {"roots": [str(root / "projects")]},
        "accounts": [{"name": "a", "home": str(root / "claude-a")}],
        "pool": {"prefix": "aq-", "min": 1, "max": 4, "dedicated": [{"name": "ops"}]},
        "tmux": {"socket_name": socket},
        "dispatch": {"rescan_interval": "2s", "quiet_period": "0.2s", "delivery_timeout": "10s"},
        "completion": {"idle_timeout": "60s", "permission_timeout": "2s"},
    }
    for key, value in extra.items():
        config[key] = {**config.get(key, {}), **value}
    return config


def _prompts(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def _footer(path: Path) -> taskfile.Footer:
    _, footer = taskfile.split_footer(path.read_text())
    assert footer is not None
    return footer


@pytest.mark.slow
def test_200_tasks_through_a_pool_of_4_each_delivered_once_byte_exact(
    tmp_path: Path, socket_name: str
) -> None:
    """200 tasks over 3 projects: all done with the answer, each prompt received exactly once."""
    projects = make_projects(tmp_path / "projects", 3)
    log = tmp_path / "prompts.jsonl"
    bodies: dict[str, str] = {}
    for i in range(200):
        body = f"task {i}\nsecond line {TRICKY}\nsim: work 0.1s"
        if i == 7:
            body = "big body\n" + ("0123456789abcdef" * 1280) + "\nsim: work 0.1s"  # 20 KiB
        name = f"t{i:03d}.md"
        bodies[name] = body
        drop(projects[i % 3], name, body)
    tmux = TmuxDriver(socket_name)
    tmux.new_session("foreign", tmp_path, ["sleep", "600"])
    tmux.new_session("ops", tmp_path, ["sleep", "600"])
    daemon = Daemon(tmp_path, _config(tmp_path, socket_name))
    try:
        daemon.start()
        assert daemon.wait_ready()
        wait_until(lambda: not inbox_left(projects), 600, interval=0.5, message="tasks left")
        done = results(projects)["done"]
        assert len(done) == 200, [str(f) for f in results(projects)["failed"]]
        for path in done:
            footer = _footer(path)
            assert footer.result and footer.result.startswith("Done: [agentq task")
            assert footer.target and footer.target.startswith("aq-")
        received = _prompts(log)
        names = Counter(p["prompt"].split(" ", 3)[2] for p in received)
        assert len(received) == 200 and set(names.values()) == {1}
        for prompt in received:
            name = prompt["prompt"].split(" ", 3)[2]
            assert prompt["prompt"].endswith("\n\n" + bodies[name])
        assert {"foreign", "ops"} <= set(tmux.list_sessions())
        assert not any(p["session"] in ("foreign", "ops") for p in received)
        assert not Path("/tmp/agentq-pwn").exists()
    finally:
        daemon.close()


def test_a_task_waiting_for_a_full_pool_starts_when_the_session_frees(
    tmp_path: Path, socket_name: str
) -> None:
    """A pool of one, no rescan due: the second task starts once the first one's agent exits.

    Nothing wakes the daemon when the session goes (no file changes); the pass that sees it
    gone must dispatch what waits, or the task would wait for the next rescan.
    """
    projects = make_projects(tmp_path / "projects", 2)
    pool = {"prefix": "aq-", "min": 0, "max": 1, "dedicated": []}
    config = _config(tmp_path, socket_name, pool=pool, dispatch={"rescan_interval": "1h"})
    daemon = Daemon(tmp_path, config)
    try:
        daemon.start()
        assert daemon.wait_ready()
        drop(projects[0], "first.md", "first\nsim: work 0.3s")
        drop(projects[1], "second.md", "second\nsim: work 0s")
        wait_until(lambda: len(results(projects)["done"]) == 2, 60, message="both done")
    finally:
        daemon.close()
    assert results(projects)["failed"] == []


def test_session_killed_from_outside_mid_task_fails_the_task_with_the_reason(
    tmp_path: Path, socket_name: str
) -> None:
    """A pool session killed while working: its task fails saying the session ended."""
    projects = make_projects(tmp_path / "projects", 1)
    log = tmp_path / "prompts.jsonl"
    daemon = Daemon(tmp_path, _config(tmp_path, socket_name))
    try:
        daemon.start()
        assert daemon.wait_ready()
        drop(projects[0], "victim.md", "sim: work 60s")
        wait_until(lambda: _prompts(log), 30, message="the task was never delivered")
        TmuxDriver(socket_name).kill_session(_prompts(log)[0]["session"])
        failed = wait_until(lambda: results(projects)["failed"], 30)
        assert "ended while working" in (_footer(failed[0]).error or "")
        drop(projects[0], "after.md", "sim: work 0.1s")
        wait_until(lambda: results(projects)["done"], 30, message="the pool did not recover")
    finally:
        daemon.close()


def test_task_timeout_on_a_hanging_agent_fails_with_timed_out(
    tmp_path: Path, socket_name: str
) -> None:
    """``timeout: 2s`` on an agent that hangs: the task fails with "timed out"."""
    projects = make_projects(tmp_path / "projects", 1)
    daemon = Daemon(tmp_path, _config(tmp_path, socket_name))
    try:
        daemon.start()
        assert daemon.wait_ready()
        drop(projects[0], "hang.md", "sim: hang", timeout="2s")
        failed = wait_until(lambda: results(projects)["failed"], 40)
        footer = _footer(failed[0])
        assert footer.error and "timed out" in footer.error
    finally:
        daemon.close()


def test_permission_dialog_is_reported_in_status_and_footer(
    tmp_path: Path, socket_name: str
) -> None:
    """The sim's permission dialog: reported while waiting, then the task fails naming it."""
    projects = make_projects(tmp_path / "projects", 1)
    daemon = Daemon(tmp_path, _config(tmp_path, socket_name))
    state = tmp_path / "state" / "state.json"

    def waiting_reported() -> bool:
        if not state.exists():
            return False
        sessions = json.loads(state.read_text()).get("sessions", [])
        return any("waiting_on_permission_s" in s for s in sessions)

    try:
        daemon.start()
        assert daemon.wait_ready()
        drop(projects[0], "perm.md", "sim: permission")
        wait_until(waiting_reported, 30, message="status never showed the permission wait")
        failed = wait_until(lambda: results(projects)["failed"], 30)
        error = _footer(failed[0]).error or ""
        assert "permission dialog" in error and "Do you want to proceed?" in error
    finally:
        daemon.close()


@pytest.mark.slow
def test_sigkill_soak_with_the_sim_pool_ends_every_task_exactly_once(
    tmp_path: Path, socket_name: str
) -> None:
    """SIGKILLs during sim work: every task ends once; no prompt is ever typed twice."""
    projects = make_projects(tmp_path / "projects", 2)
    log = tmp_path / "prompts.jsonl"
    names = set()
    for i in range(40):
        drop(projects[i % 2], f"k{i:02d}.md", f"soak {i}\nsim: work 0.3s")
        names.add(f"{projects[i % 2].name}/k{i:02d}.md")
    daemon = Daemon(tmp_path, _config(tmp_path, socket_name))
    rng = random.Random(7)
    try:
        for _ in range(6):
            daemon.start()
            daemon.wait_ready()
            time.sleep(rng.uniform(0.5, 2.0))  # random kill moments are the behaviour under test
            daemon.kill()
        daemon.start()
        assert daemon.wait_ready()
        wait_until(lambda: not inbox_left(projects), 180, interval=0.5)
    finally:
        daemon.close()
    found = results(projects)
    seen = Counter(
        f"{f.parent.parent.parent.name}/{f.name}" for f in found["done"] + found["failed"]
    )
    assert set(seen) == names and set(seen.values()) == {1}
    prompts = Counter(p["prompt"].split(" ", 3)[2] for p in _prompts(log))
    assert all(n == 1 for n in prompts.values()), "a prompt was typed twice"
    for path in found["failed"]:
        assert "abandoned after restart" in (_footer(path).error or "")


def test_the_delivery_phase_is_on_disk_before_a_key_is_typed(
    tmp_path: Path, socket_name: str
) -> None:
    """A crash just before the paste: the record already says delivering to that session.

    Nothing reached the agent, yet recovery cannot know that: the task fails as abandoned
    rather than risk typing a prompt twice.
    """
    projects = make_projects(tmp_path / "projects", 1)
    log = tmp_path / "prompts.jsonl"
    daemon = Daemon(tmp_path, _config(tmp_path, socket_name))
    try:
        daemon.start(crash_at="before_tmux_send")
        assert daemon.wait_ready()
        drop(projects[0], "crash.md", "sim: work 0.1s")
        assert daemon.wait_exit() == 137
        record_path = projects[0] / ".agent-queue" / ".agentq" / "crash.md.json"
        record = json.loads(record_path.read_text())
        assert record["phase"] == "delivering" and record["session"].startswith("aq-")
        assert _prompts(log) == []
        daemon.start()
        assert daemon.wait_ready()
        failed = wait_until(lambda: results(projects)["failed"], 30)
        assert "abandoned after restart" in (_footer(failed[0]).error or "")
        assert _prompts(log) == []
    finally:
        daemon.close()
