"""Inbox watching: pre-existing files, restarts, bursts, recreated inboxes, slow writers."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from tests.support.daemon import Daemon, drop, inbox_left, make_projects, results, wait_until

pytestmark = pytest.mark.integration


def _config(root: Path, **dispatch: object) -> dict[str, object]:
    return {
        "agent": {"profile": "instant"},
        "projects": {"roots": [str(root / "projects")]},
        "dispatch": {"rescan_interval": "2s", "quiet_period": "0.3s", **dispatch},
    }


def _done_count(projects: list[Path]) -> int:
    return len(results(projects)["done"])


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
        names = [f.name for f in results(projects)["done"]]
        assert len(names) == len(set(names)) == 400
    finally:
        daemon.close()


@pytest.mark.slow
def test_burst_of_20000_files_is_fully_processed_and_rescans_counted(tmp_path: Path) -> None:
    """A 20,000-file burst (beyond inotify's queue) is processed; status counts the rescans."""
    projects = make_projects(tmp_path / "projects", 4)
    daemon = Daemon(tmp_path, _config(tmp_path, rescan_interval="1s"))
    try:
        daemon.start()
        assert daemon.wait_ready()
        for i in range(20000):
            drop(projects[i % 4], f"b{i:05d}.md", "x")
        wait_until(lambda: _done_count(projects) == 20000, 600, interval=1)
        status = _status_json(daemon)
        assert status["counters"]["rescans"] >= 1
        assert status["totals"]["done"] == 20000
    finally:
        daemon.close()


def _status_json(daemon: Daemon) -> dict[str, object]:
    import json
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "agentq", "status", "--json", "--config", str(daemon.config_path)],
        env=daemon.env(),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_inbox_deleted_and_recreated_keeps_working(tmp_path: Path) -> None:
    """rm -rf inbox && mkdir inbox, then drop 10 tasks: all processed."""
    projects = make_projects(tmp_path / "projects", 1)
    daemon = Daemon(tmp_path, _config(tmp_path))
    try:
        daemon.start()
        assert daemon.wait_ready()
        inbox = projects[0] / ".agent-queue" / "inbox"
        shutil.rmtree(inbox)
        inbox.mkdir()
        for i in range(10):
            drop(projects[0], f"again-{i}.md")
        wait_until(lambda: _done_count(projects) == 10, 2 + 10)
    finally:
        daemon.close()


def test_project_created_at_run_time_is_picked_up_within_a_rescan(tmp_path: Path) -> None:
    """mkdir -p newproj/.agent-queue/inbox plus a task: processed within the rescan interval."""
    make_projects(tmp_path / "projects", 1)
    daemon = Daemon(tmp_path, _config(tmp_path))
    try:
        daemon.start()
        assert daemon.wait_ready()
        new = tmp_path / "projects" / "newproj"
        (new / ".agent-queue" / "inbox").mkdir(parents=True)
        (new / ".agent-queue" / "tmp").mkdir()
        drop(new, "first.md")
        wait_until((new / ".agent-queue" / "done" / "first.md").exists, 2 + 5)
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
            wait_until(lambda: _status_json(daemon).get("incomplete"), 10)
            assert target.exists()
        wait_until((projects[0] / ".agent-queue" / "done" / "open.md").exists, 10)
    finally:
        daemon.close()


def test_inbox_whose_watch_cannot_be_added_is_polled(tmp_path: Path) -> None:
    """inotify refusing every watch (ENOSPC) degrades to polling, reported in status."""
    projects = make_projects(tmp_path / "projects", 2)
    daemon = Daemon(tmp_path, _config(tmp_path, rescan_interval="1h"), tweaks=["watch-enospc"])
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
