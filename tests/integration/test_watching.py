"""Inbox watching: pre-existing files, restarts, overflows, recreated inboxes, slow writers.

The daemon rescans every hour here (``NO_RESCAN``), so within a test only inotify can
deliver a task: these tests fail when the watch handlers do nothing. The one test of
run-time project discovery, which is the rescan's job, says so and uses a short one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.support.daemon import Daemon, drop, inbox_left, make_projects, results, wait_until

pytestmark = pytest.mark.integration

#: Longer than any test: no periodic rescan marks an inbox dirty behind inotify's back.
NO_RESCAN = "1h"


def _config(root: Path, **dispatch: object) -> dict[str, object]:
    return {
        "agent": {"profile": "instant"},
        "projects": {"roots": [str(root / "projects")]},
        "dispatch": {"rescan_interval": NO_RESCAN, "quiet_period": "0.3s", **dispatch},
    }


def _done_count(projects: list[Path]) -> int:
    return len(results(projects)["done"])


def _executions(daemon: Daemon) -> Counter[str]:
    """Executions per task (``project/name``) from the instant executor's ledger."""
    ledger = daemon.state_dir / "instant-ledger.jsonl"
    assert ledger.is_file(), "no execution ledger"
    return Counter(json.loads(line)["task"] for line in ledger.read_text().splitlines())


def test_tasks_present_before_start_are_all_processed(tmp_path: Path) -> None:
    """500 tasks in 10 inboxes before the daemon starts all reach done/."""
    projects = make_projects(tmp_path / "projects", 10)
    for i in range(500):
        drop(projects[i % 10], f"pre-{i:03d}.md")
    daemon = Daemon(tmp_path, _config(tmp_path))
    try:
        daemon.start()
        assert daemon.wait_ready()
        wait_until(lambda: _done_count(projects) == 500, 60)
        assert inbox_left(projects) == []
    finally:
        daemon.close()


def test_tasks_dropped_while_down_and_during_restart_run_once(tmp_path: Path) -> None:
    """200 tasks dropped while the daemon is down and 200 during its restart each run once."""
    projects = make_projects(tmp_path / "projects", 4)
    daemon = Daemon(tmp_path, _config(tmp_path))
    try:
        daemon.start()
        assert daemon.wait_ready()
        assert daemon.stop() == 0
        for i in range(200):
            drop(projects[i % 4], f"down-{i:03d}.md")
        daemon.start()
        for i in range(200):
            drop(projects[i % 4], f"restart-{i:03d}.md")
        assert daemon.wait_ready()
        wait_until(lambda: _done_count(projects) == 400, 60)
        assert daemon.counter("rescans") == 0
    finally:
        daemon.close()
    expected = {
        f"{projects[i % 4].name}/{kind}-{i:03d}.md"
        for kind in ("down", "restart")
        for i in range(200)
    }
    assert _executions(daemon) == Counter(dict.fromkeys(expected, 1))


def _max_queued_events() -> int:
    return int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())


def _process_state(pid: int) -> str:
    """The state letter of a process (``T`` once SIGSTOP has taken effect)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


@pytest.mark.slow
def test_burst_beyond_the_inotify_queue_overflows_and_is_fully_processed(tmp_path: Path) -> None:
    """More events than the kernel queues: the overflow is noticed, the lost events rescanned.

    The daemon is stopped (SIGSTOP) during the burst, so its inotify queue fills to
    ``fs.inotify.max_queued_events`` with the first inbox's drops; every event of the
    second inbox's drops is lost. Only the overflow says so: no rescan is due.
    """
    projects = make_projects(tmp_path / "projects", 2)
    filling, lost = _max_queued_events(), 1000
    daemon = Daemon(tmp_path, _config(tmp_path))
    try:
        daemon.start()
        assert daemon.wait_ready()
        assert daemon.proc is not None
        pid = daemon.proc.pid
        os.kill(pid, signal.SIGSTOP)  # a reader that reads nothing: the queue fills
        try:
            wait_until(lambda: _process_state(pid) == "T", 10, message="daemon not stopped")
            for i in range(filling):
                drop(projects[0], f"fill-{i:05d}.md", "x")
            for i in range(lost):
                drop(projects[1], f"lost-{i:04d}.md", "x")
        finally:
            os.kill(pid, signal.SIGCONT)
        began = time.monotonic()
        wait_until(lambda: _done_count(projects) == filling + lost, 500, interval=1)
        took = time.monotonic() - began
        counters = daemon.status()["counters"]
    finally:
        daemon.close()
    print(f"overflow: burst {filling + lost} files, processed in {took:.1f}s, counters {counters}")
    assert counters.get("overflows", 0) >= 1
    assert counters.get("rescans", 0) == 0


def test_inbox_deleted_and_recreated_is_watched_again_at_once(tmp_path: Path) -> None:
    """rm -rf inbox && mkdir inbox: tasks dropped at once and later are all processed.

    No rescan is due: the queue folder's watch sees the inbox come back and the daemon
    watches the new one, then lists it (the tasks dropped in between).
    """
    projects = make_projects(tmp_path / "projects", 1)
    inbox = projects[0] / ".agent-queue" / "inbox"
    daemon = Daemon(tmp_path, _config(tmp_path))
    try:
        daemon.start()
        assert daemon.wait_ready()
        drop(projects[0], "before.md")
        wait_until(lambda: _done_count(projects) == 1, 10)
        shutil.rmtree(inbox)
        inbox.mkdir()
        for i in range(5):
            drop(projects[0], f"at-once-{i}.md")
        wait_until(lambda: _done_count(projects) == 6, 10, message="dropped right after mkdir")

        def rewatched() -> bool:
            watch = daemon.status()["watches"].get(str(inbox), {})
            return bool(watch.get("mode") == "inotify" and watch.get("rewatched", 0) >= 1)

        wait_until(rewatched, 10, message="status does not show the inbox watched again")
        for i in range(5):
            drop(projects[0], f"later-{i}.md")
        wait_until(lambda: _done_count(projects) == 11, 10, message="dropped into the new inbox")
        assert daemon.counter("rescans") == 0
    finally:
        daemon.close()


def test_project_created_at_run_time_is_picked_up_within_a_rescan(tmp_path: Path) -> None:
    """mkdir -p newproj/.agent-queue/inbox plus a task: processed within the rescan interval.

    Finding new projects is the periodic rescan's job (project roots are not watched),
    so this test, unlike the others here, runs with a short rescan.
    """
    make_projects(tmp_path / "projects", 1)
    daemon = Daemon(tmp_path, _config(tmp_path, rescan_interval="2s"))
    try:
        daemon.start()
        assert daemon.wait_ready()
        new = tmp_path / "projects" / "newproj"
        (new / ".agent-queue" / "inbox").mkdir(parents=True)
        (new / ".agent-queue" / "tmp").mkdir()
        drop(new, "first.md")
        wait_until((new / ".agent-queue" / "done" / "first.md").exists, 2 + 5)
        # state.json carries counters at most once a second: the rescan is counted by then.
        assert wait_until(lambda: daemon.counter("rescans") >= 1, 5)
    finally:
        daemon.close()


def test_file_written_slowly_in_place_is_claimed_only_when_complete(tmp_path: Path) -> None:
    """A writer that pauses mid-file: the daemon claims the complete content, after close."""
    projects = make_projects(tmp_path / "projects", 1)
    daemon = Daemon(tmp_path, _config(tmp_path))
    target = projects[0] / ".agent-queue" / "inbox" / "slow.md"
    try:
        daemon.start()
        assert daemon.wait_ready()
        with target.open("w") as fh:
            fh.write("---\ntitle: slow\n---\nfirst half\n")
            fh.flush()
            os.fsync(fh.fileno())
            time.sleep(2)  # the pause mid-write is the behaviour under test
            assert target.exists(), "claimed while still open for writing"
            fh.write("second half\n")
        done = projects[0] / ".agent-queue" / "done" / "slow.md"
        wait_until(done.exists, 10)
        text = done.read_text()
        assert "first half\nsecond half\n" in text
    finally:
        daemon.close()


def test_writer_that_never_closes_is_reported_incomplete(tmp_path: Path) -> None:
    """A file held open for writing is not claimed and status lists it as still being written."""
    projects = make_projects(tmp_path / "projects", 1)
    daemon = Daemon(tmp_path, _config(tmp_path))
    target = projects[0] / ".agent-queue" / "inbox" / "open.md"
    try:
        daemon.start()
        assert daemon.wait_ready()
        with target.open("w") as fh:
            fh.write("never closed\n")
            fh.flush()
            wait_until(lambda: daemon.status().get("incomplete"), 10)
            assert target.exists()
        wait_until((projects[0] / ".agent-queue" / "done" / "open.md").exists, 10)
    finally:
        daemon.close()


def test_inbox_whose_watch_cannot_be_added_is_polled(tmp_path: Path) -> None:
    """inotify refusing every watch (ENOSPC) degrades to polling, reported in status."""
    projects = make_projects(tmp_path / "projects", 2)
    daemon = Daemon(tmp_path, _config(tmp_path), tweaks=["watch-enospc"])
    try:
        daemon.start()
        assert daemon.wait_ready()
        drop(projects[1], "polled.md")
        wait_until(lambda: _done_count(projects) == 1, 10)
        watches = daemon.status()["watches"]
        inboxes = {str(p / ".agent-queue" / "inbox") for p in projects}
        assert {k: w["mode"] for k, w in watches.items() if k in inboxes} == dict.fromkeys(
            inboxes, "polling"
        )
        assert all("No space left on device" in w["reason"] for w in watches.values())
        assert daemon.counter("rescans") == 0
    finally:
        daemon.close()


def test_a_task_renamed_in_is_complete_at_once_one_written_in_place_waits(
    tmp_path: Path,
) -> None:
    """With an hour's quiet period, renamed-in tasks run; one written in place still waits.

    A file renamed in (the Maildir way) is complete by construction; only a file written
    in place waits for the quiet period after its writer closed it.
    """
    projects = make_projects(tmp_path / "projects", 1)
    inbox = projects[0] / ".agent-queue" / "inbox"
    daemon = Daemon(tmp_path, _config(tmp_path, quiet_period="1h"))
    try:
        daemon.start()
        assert daemon.wait_ready()
        (inbox / "in-place.md").write_text("written where it lies\n")
        drop(projects[0], "first.md")
        wait_until(lambda: _done_count(projects) == 1, 30, message="the renamed task")
        drop(projects[0], "second.md")
        wait_until(lambda: _done_count(projects) == 2, 30, message="the second renamed task")
        assert (inbox / "in-place.md").exists(), "a file written in place skipped its quiet period"
    finally:
        daemon.close()
    name = projects[0].name
    assert _executions(daemon) == Counter({f"{name}/first.md": 1, f"{name}/second.md": 1})


def test_a_producers_link_from_tmp_is_taken_once_undone_a_hard_link_never(tmp_path: Path) -> None:
    """Link from tmp/ then unlink (a Maildir producer): taken at once; a link that stays: never."""
    projects = make_projects(tmp_path / "projects", 1)
    queue = projects[0] / ".agent-queue"
    canary = tmp_path / "canary.md"
    canary.write_text("CANARY\n")
    daemon = Daemon(tmp_path, _config(tmp_path, quiet_period="1h"))
    try:
        daemon.start()
        assert daemon.wait_ready()
        os.link(canary, queue / "inbox" / "hardlink.md")
        (queue / "tmp" / "linked").write_text("linked in\n")
        os.link(queue / "tmp" / "linked", queue / "inbox" / "linked.md")
        time.sleep(0.05)  # the producer's moment between its link and its unlink
        os.unlink(queue / "tmp" / "linked")
        wait_until(lambda: _done_count(projects) == 1, 30, message="the linked task")
        assert (queue / "inbox" / "hardlink.md").exists()
    finally:
        daemon.close()
    assert [p.name for p in results(projects)["done"]] == ["linked.md"]
    assert canary.read_text() == "CANARY\n" and canary.stat().st_nlink == 2


def test_rename_in_and_editor_saves_are_processed_once_and_temps_ignored(tmp_path: Path) -> None:
    """Rename-in from tmp/, a vim-like save and a dotfile: each task once, no temp claimed."""
    projects = make_projects(tmp_path / "projects", 1)
    inbox = projects[0] / ".agent-queue" / "inbox"
    daemon = Daemon(tmp_path, _config(tmp_path))
    try:
        daemon.start()
        assert daemon.wait_ready()
        drop(projects[0], "renamed.md")
        (inbox / ".edit.md.swp").write_text("swap file")
        (inbox / "edit.md~").write_text("backup")
        (inbox / ".hidden.md").write_text("dotfile")
        swap = inbox / ".edit.md.tmp"
        swap.write_text("edited task")
        swap.rename(inbox / "edit.md")
        wait_until(lambda: _done_count(projects) == 2, 10)
        assert sorted(p.name for p in inbox.iterdir()) == [".edit.md.swp", ".hidden.md", "edit.md~"]
    finally:
        daemon.close()
    name = projects[0].name
    assert _executions(daemon) == Counter({f"{name}/renamed.md": 1, f"{name}/edit.md": 1})
