"""Queue crash consistency: SIGKILL soak, named crash points, poison tasks, one instance."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from agentq.core.crashpoints import POINTS
from tests.support.daemon import (
    Daemon,
    drop,
    footer_count,
    inbox_left,
    make_projects,
    results,
    wait_until,
)
from tests.support.launch import POISON_EXIT, POISON_LINE

pytestmark = pytest.mark.integration

INSTANT = {"agent": {"profile": "instant", "answer": "instant answer"}}


def _config(root: Path, **dispatch: object) -> dict[str, object]:
    return {
        **INSTANT,
        "projects": {"roots": [str(root / "projects")]},
        "dispatch": {"rescan_interval": "2s", "quiet_period": "0.2s", **dispatch},
    }


def _assert_exactly_once(projects: list[Path], names: set[str], ledger: Path) -> None:
    """The T1 invariants: every task once in done ∪ failed, nothing left, one footer, clean temp."""
    found = results(projects)
    all_files = found["done"] + found["failed"]
    seen = Counter(f"{f.parent.parent.parent.name}/{f.name}" for f in all_files)
    assert sorted(seen) == sorted(names), "a task is missing or has an unexpected name"
    assert max(seen.values()) == 1, f"duplicates: {[k for k, v in seen.items() if v > 1]}"
    assert inbox_left(projects) == []
    bad_footers = [str(f) for f in all_files if footer_count(f) != 1]
    assert bad_footers == []
    entries = (
        [json.loads(line) for line in ledger.read_text().splitlines()] if ledger.exists() else []
    )
    pairs = Counter((e["task"], e["attempt"]) for e in entries)
    assert all(n == 1 for n in pairs.values()), "an execution was recorded twice"
    stale = [
        p
        for proj in projects
        for p in (proj / ".agent-queue").rglob("*")
        if p.name.startswith(".agentq-tmp-") or p.parent.name == "tmp"
    ]
    assert stale == []


@pytest.mark.slow
def test_sigkill_soak_every_task_ends_exactly_once(tmp_path: Path) -> None:
    """1,000 tasks over 20 inboxes survive 25 SIGKILLs at random moments."""
    projects = make_projects(tmp_path / "projects", 20)
    daemon = Daemon(tmp_path, _config(tmp_path))
    rng = random.Random(20261121)
    names: set[str] = set()

    def producer() -> None:
        for i in range(1000):
            project = projects[i % 20]
            name = f"task-{i:04d}.md"
            drop(project, name, f"task number {i}")
            names.add(f"{project.name}/{name}")
            time.sleep(rng.uniform(0, 0.002))  # the producer's pace, not synchronisation

    try:
        daemon.start()
        thread = threading.Thread(target=producer)
        thread.start()
        for _ in range(25):
            time.sleep(rng.uniform(0.05, 0.4))  # random kill moments are the behaviour under test
            daemon.kill()
            daemon.start()
        thread.join()
        assert daemon.wait_ready()
        wait_until(lambda: not inbox_left(projects), 180, message="tasks still in inboxes")
        assert daemon.stop() == 0
        _assert_exactly_once(projects, names, daemon.state_dir / "instant-ledger.jsonl")
        assert all(f.read_text().count("instant answer") == 1 for f in results(projects)["done"])
    finally:
        daemon.close()


CRASH_POINTS = [
    "after_claim",
    "after_attempt_persist",
    "after_execute",
    "mid_footer_write",
    "after_move_before_dir_fsync",
    "after_move_before_cleanup",
    "mid_state_write",
]


def test_crash_point_list_is_offered_by_the_code() -> None:
    """Every crash point the sweep uses exists in the code base's list."""
    assert set(CRASH_POINTS) <= set(POINTS)


@pytest.mark.slow
@pytest.mark.parametrize("nth", [1, 3])
@pytest.mark.parametrize("point", CRASH_POINTS)
def test_crash_point_then_restart_loses_and_duplicates_nothing(
    tmp_path: Path, point: str, nth: int
) -> None:
    """A crash at a named point, then a restart: the T1 invariants hold."""
    projects = make_projects(tmp_path / "projects", 3)
    names = set()
    for i in range(60):
        project = projects[i % 3]
        drop(project, f"t{i:02d}.md", f"body {i}")
        names.add(f"{project.name}/t{i:02d}.md")
    daemon = Daemon(tmp_path, _config(tmp_path))
    try:
        daemon.start(crash_at=f"{point}:{nth}")
        assert daemon.wait_exit(60) == 137, daemon.log()
        daemon.start()
        assert daemon.wait_ready()
        wait_until(lambda: not inbox_left(projects), 60, message="tasks still in inboxes")
        assert daemon.stop() == 0
        _assert_exactly_once(projects, names, daemon.state_dir / "instant-ledger.jsonl")
        assert results(projects)["failed"] == []
    finally:
        daemon.close()


@pytest.mark.slow
def test_poison_task_fails_after_max_attempts_and_others_complete(tmp_path: Path) -> None:
    """A task that kills the daemon every time ends in failed/ after max_attempts restarts."""
    projects = make_projects(tmp_path / "projects", 2)
    names = {f"{projects[i % 2].name}/n{i:03d}.md" for i in range(200)}
    for i in range(200):
        drop(projects[i % 2], f"n{i:03d}.md", f"normal {i}")
    drop(projects[0], "poison.md", POISON_LINE, priority=10)
    daemon = Daemon(tmp_path, _config(tmp_path, max_attempts=3), tweaks=["poison-instant"])
    deaths: list[int] = []
    try:
        # The poison task is first (priority) in the start-up pass, before READY: each
        # start either dies of it or, once its attempts are spent, becomes ready.
        daemon.start()
        while not daemon.wait_ready():
            deaths.append(daemon.wait_exit())
            assert len(deaths) <= 10, "the poison task keeps killing the daemon"
            daemon.start()
        wait_until(lambda: not inbox_left(projects), 60)
        assert daemon.stop() == 0
    finally:
        daemon.close()
    assert deaths == [POISON_EXIT] * 3, daemon.log()
    failed = results(projects)["failed"]
    assert [f.name for f in failed] == ["poison.md"]
    assert "attempts exceeded (3 of 3)" in failed[0].read_text()
    _assert_exactly_once(
        projects,
        names | {f"{projects[0].name}/poison.md"},
        daemon.state_dir / "instant-ledger.jsonl",
    )


def test_second_daemon_on_same_state_dir_exits_2_already_running(tmp_path: Path) -> None:
    """Two daemons on one state folder: the second exits 2 saying 'already running'."""
    make_projects(tmp_path / "projects", 1)
    first = Daemon(tmp_path, _config(tmp_path))
    try:
        first.start()
        assert first.wait_ready()
        second = subprocess.run(
            [sys.executable, "-m", "agentq", "run", "--config", str(first.config_path)],
            env=first.env(),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert second.returncode == 2
        assert "already running" in second.stderr
        assert first.proc is not None and first.proc.poll() is None
    finally:
        first.close()


def test_sigterm_stops_cleanly_and_loses_nothing(tmp_path: Path) -> None:
    """SIGTERM during a burst: exit 0, and a restart finishes every task."""
    projects = make_projects(tmp_path / "projects", 2)
    names = set()
    daemon = Daemon(tmp_path, _config(tmp_path))
    try:
        daemon.start()
        assert daemon.wait_ready()
        for i in range(200):
            drop(projects[i % 2], f"s{i:03d}.md")
            names.add(f"{projects[i % 2].name}/s{i:03d}.md")
        assert daemon.stop() == 0
        daemon.start()
        assert daemon.wait_ready()
        wait_until(lambda: not inbox_left(projects), 60)
        assert daemon.stop() == 0
        _assert_exactly_once(projects, names, daemon.state_dir / "instant-ledger.jsonl")
    finally:
        daemon.close()
