"""Queue crash consistency: SIGKILL soak, named crash points, poison tasks, one instance."""

from __future__ import annotations

import contextlib
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


def _ledger(path: Path) -> list[dict[str, object]]:
    """The instant executor's executions; the file must exist (a run that executed nothing
    or lost its ledger proves nothing)."""
    assert path.is_file(), f"no execution ledger at {path.name}"
    return [json.loads(line) for line in path.read_text().splitlines()]


def _executed_unfinished(projects: list[Path], ledger: Path) -> set[tuple[str, str]]:
    """Claims a dead daemon left executed but not completed: ``(task, claim id)`` pairs.

    Checked between a kill and the restart. Such a task is ``.md.working`` in its
    inbox, the claim in its control record has a ledger line, and no result carries
    its name yet. Only these run once more: recovery re-runs an instant task that was
    executed; a claimed task not yet executed runs once after its requeue, and one
    whose result is in done/ is only dropped. A claim found by two kills in a row
    (the second struck before recovery got to it) owes one re-run, not two.
    """
    claims = {str(e["claim"]) for e in _ledger(ledger)} if ledger.exists() else set()
    hit = set()
    for project in projects:
        queue = project / ".agent-queue"
        for working in (queue / "inbox").glob("*.md.working"):
            name = working.name.removesuffix(".working")
            record_path = queue / ".agentq" / f"{name}.json"
            if not record_path.exists():
                continue
            claim = json.loads(record_path.read_text()).get("claim_id")
            finished = any((queue / folder / name).exists() for folder in ("done", "failed"))
            if claim in claims and not finished:
                hit.add((f"{project.name}/{name}", str(claim)))
    return hit


def _in_flight(projects: list[Path]) -> set[tuple[str, str]]:
    """Claimed, unfinished tasks (``inbox/*.md.working``) with their claim ids ('' if none yet)."""
    found = set()
    for project in projects:
        queue = project / ".agent-queue"
        for working in (queue / "inbox").glob("*.md.working"):
            name = working.name.removesuffix(".working")
            try:
                record = json.loads((queue / ".agentq" / f"{name}.json").read_text())
            except FileNotFoundError:
                record = {}
            found.add((f"{project.name}/{name}", str(record.get("claim_id", ""))))
    return found


def _assert_exactly_once(
    projects: list[Path],
    names: set[str],
    ledger: Path,
    reruns: Counter[str] | None = None,
    never_run: frozenset[str] = frozenset(),
) -> None:
    """The T1 invariants: every task once in done ∪ failed, nothing left, one footer, clean temp.

    Executions are counted per task from the ledger: each task in ``names`` ran exactly
    once, plus once more for every crash that caught it executed but not completed
    (``reruns``, measured with :func:`_executed_unfinished`); ``never_run`` tasks never
    got as far as executing (the poison task dies first).
    """
    found = results(projects)
    all_files = found["done"] + found["failed"]
    seen = Counter(f"{f.parent.parent.parent.name}/{f.name}" for f in all_files)
    assert sorted(seen) == sorted(names), "a task is missing or has an unexpected name"
    assert max(seen.values()) == 1, f"duplicates: {[k for k, v in seen.items() if v > 1]}"
    assert inbox_left(projects) == []
    bad_footers = [str(f) for f in all_files if footer_count(f) != 1]
    assert bad_footers == []
    executions = Counter(str(e["task"]) for e in _ledger(ledger))
    expected = Counter({n: 1 + (reruns or Counter())[n] for n in names - never_run})
    extra = {
        t: (executions[t], expected[t])
        for t in expected | executions
        if executions[t] != expected[t]
    }
    assert extra == {}, f"task: (executions, expected): {extra}"
    stale = [
        p
        for proj in projects
        for p in (proj / ".agent-queue").rglob("*")
        if p.name.startswith(".agentq-tmp-") or p.parent.name == "tmp"
    ]
    assert stale == []


#: Tasks in the soak, inboxes they are spread over, and kills.
SOAK_TASKS, SOAK_INBOXES, SOAK_KILLS = 1000, 20, 25
#: The kills that must catch a task in flight (the rest may land between tasks).
SOAK_MIN_INTERRUPTED = 20


@pytest.mark.slow
def test_sigkill_soak_every_task_ends_exactly_once(tmp_path: Path) -> None:
    """1,000 tasks over 20 inboxes survive 25 SIGKILLs, each while a task is in flight.

    A kill *interrupted work* when, with the daemon dead, a task is claimed and not
    finished (``inbox/*.md.working``) under a claim made in the life it ended. The
    producer and the killer draw from their own seeded generators, so a seed
    reproduces the drop order, the gaps and the kill delays (not the thread
    interleaving).
    """
    seed = 20261121
    produce_rng, kill_rng = random.Random(seed), random.Random(seed + 1)
    projects = make_projects(tmp_path / "projects", SOAK_INBOXES)
    # Kills land mostly in start-up passes, which re-run the last kill's victims first: a
    # task may be caught several times. No attempt cap may turn that bad luck into a failure.
    daemon = Daemon(tmp_path, _config(tmp_path, max_attempts=SOAK_KILLS + 1))
    ledger = daemon.state_dir / "instant-ledger.jsonl"
    names: set[str] = set()

    def producer() -> None:
        order = list(range(SOAK_TASKS))
        produce_rng.shuffle(order)
        for i in order:
            project = projects[i % SOAK_INBOXES]
            drop(project, f"task-{i:04d}.md", f"task number {i}")
            names.add(f"{project.name}/task-{i:04d}.md")
            # The producer's pace (about 25 s for all tasks, as long as the kills take),
            # not synchronisation.
            time.sleep(produce_rng.uniform(0, 0.05))

    owed: set[tuple[str, str]] = set()
    interrupted = 0
    thread = threading.Thread(target=producer)
    try:
        thread.start()
        for _ in range(SOAK_KILLS):
            size = ledger.stat().st_size if ledger.exists() else 0
            left = _in_flight(projects)  # the last kill's victims, not this life's work
            daemon.start()

            def working_now(size: int = size, left: set[tuple[str, str]] = left) -> bool:
                grown = ledger.exists() and ledger.stat().st_size > size
                return grown or bool(_in_flight(projects) - left)

            with contextlib.suppress(TimeoutError):  # then this kill may catch nothing
                wait_until(working_now, 10, interval=0.001)
            time.sleep(kill_rng.uniform(0, 0.01))  # the kill moment is the behaviour under test
            daemon.kill()
            interrupted += bool(_in_flight(projects) - left)
            owed |= _executed_unfinished(projects, ledger)
        thread.join()
        daemon.start()
        assert daemon.wait_ready()
        wait_until(lambda: not inbox_left(projects), 180, message="tasks still in inboxes")
        assert daemon.stop() == 0
    finally:
        daemon.close()
        thread.join()
    print(
        f"soak: {interrupted} of {SOAK_KILLS} kills interrupted work; "
        f"{len(owed)} executed-unfinished claims owed a re-run"
    )
    assert interrupted >= SOAK_MIN_INTERRUPTED, f"only {interrupted} kills caught work in flight"
    _assert_exactly_once(projects, names, ledger, Counter(task for task, _ in owed))
    assert results(projects)["failed"] == []
    assert all(f.read_text().count("instant answer") == 1 for f in results(projects)["done"])


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
        ledger = daemon.state_dir / "instant-ledger.jsonl"
        daemon.start(crash_at=f"{point}:{nth}")
        assert daemon.wait_exit(60) == 137, daemon.log()
        owed = _executed_unfinished(projects, ledger)
        daemon.start()
        assert daemon.wait_ready()
        wait_until(lambda: not inbox_left(projects), 60, message="tasks still in inboxes")
        assert daemon.stop() == 0
        _assert_exactly_once(projects, names, ledger, Counter(task for task, _ in owed))
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
    ledger = daemon.state_dir / "instant-ledger.jsonl"
    deaths: list[int] = []
    owed: set[tuple[str, str]] = set()
    try:
        # The poison task is first (priority) in the start-up pass, before READY: each
        # start either dies of it or, once its attempts are spent, becomes ready.
        daemon.start()
        while not daemon.wait_ready():
            deaths.append(daemon.wait_exit())
            owed |= _executed_unfinished(projects, ledger)
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
        ledger,
        Counter(task for task, _ in owed),
        never_run=frozenset({f"{projects[0].name}/poison.md"}),
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
