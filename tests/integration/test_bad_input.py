"""Hostile and broken inbox entries end in failed/ with a one-line reason; the daemon stays up."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from agentq.queue import taskfile
from tests.support.daemon import Daemon, drop, inbox_left, make_projects, results, wait_until

pytestmark = pytest.mark.integration

CANARY = "CANARY-SECRET-7f3a"


def _error_of(path: Path) -> str:
    _, footer = taskfile.split_footer(path.read_bytes().decode(errors="replace"))
    assert footer is not None, f"{path} has no footer"
    assert footer.error is not None
    return footer.error


def _original_name(path: Path) -> str:
    """The inbox name a failed/ file stands for: a refusal stub says it, else its own name."""
    _, footer = taskfile.split_footer(path.read_bytes().decode(errors="replace"))
    assert footer is not None, f"{path} has no footer"
    return dict(footer.details).get("original name", path.name)


def _bad_entries(inbox: Path, canary: Path, outside: Path) -> dict[str, str]:
    """Create every kind of bad entry; return name → expected fragment of the reason."""
    os.symlink(canary, inbox / "evil.md")
    os.link(canary, inbox / "hardlink.md")
    os.mkfifo(inbox / "fifo.md")
    (inbox / "dir.md").mkdir()
    (inbox / "badutf8.md").write_bytes(b"---\ntitle: x\n---\n\xff\xfe broken")
    (inbox / "badyaml.md").write_text("---\ntitle: [unclosed\n---\nbody\n")
    (inbox / "pytag.md").write_text(
        f"---\nx: !!python/object/apply:os.system ['touch {outside}']\n---\nbody\n"
    )
    bomb = (
        "---\na: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
        "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n---\n"
    )
    (inbox / "bomb.md").write_text(bomb)
    (inbox / "bigfront.md").write_text("---\nx: '" + "y" * (10 * 1024 * 1024) + "'\n---\nbody\n")
    (inbox / "nested.md").write_text("---\nx: " + "[" * 10000 + "]" * 10000 + "\n---\nbody\n")
    (inbox / "with space.md").write_text("spaces in the name")
    (inbox / "$(touch pwn).md").write_text("shell syntax in the name")
    (inbox / "-rf.md").write_text("leading dash")
    (inbox / ("n" * 240 + ".md")).write_text("very long name")
    return {
        "evil.md": "symbolic link",
        "hardlink.md": "hard link",
        "fifo.md": "FIFO",
        "dir.md": "directory",
        "badutf8.md": "invalid UTF-8",
        "badyaml.md": "invalid frontmatter",
        "pytag.md": "invalid frontmatter",
        "bomb.md": "aliases",
        "bigfront.md": "too large",
        "nested.md": "invalid frontmatter",
        "with space.md": "invalid name",
        "$(touch pwn).md": "invalid name",
        "-rf.md": "invalid name",
        "n" * 240 + ".md": "invalid name",
    }


def test_bad_entries_fail_with_one_line_reasons_and_normal_tasks_complete(tmp_path: Path) -> None:
    """Every bad entry lands in failed/ with its reason; 50 normal tasks still complete."""
    projects = make_projects(tmp_path / "projects", 1)
    inbox = projects[0] / ".agent-queue" / "inbox"
    canary = tmp_path / "canary.txt"
    canary.write_text(CANARY)
    canary_stat = canary.stat()
    outside = tmp_path / "pwned"
    expected = _bad_entries(inbox, canary, outside)
    config = {
        "agent": {"profile": "instant"},
        "projects": {"roots": [str(tmp_path / "projects")]},
        # No rescan is due during the test: the normal tasks arrive through inotify, so
        # the watch survived every bad entry (T19).
        "dispatch": {"rescan_interval": "1h", "quiet_period": "0.2s"},
    }
    daemon = Daemon(tmp_path, config)
    try:
        daemon.start()
        assert daemon.wait_ready()
        for i in range(50):
            drop(projects[0], f"ok-{i:02d}.md")
        wait_until(lambda: not inbox_left(projects), 30, message="entries left in inbox")
        assert daemon.proc is not None and daemon.proc.poll() is None, "the daemon died"
        status = json.dumps(daemon.status())
    finally:
        daemon.close()
    found = results(projects)
    assert sorted(f.name for f in found["done"]) == [f"ok-{i:02d}.md" for i in range(50)]
    reasons = {_original_name(f): _error_of(f) for f in found["failed"]}
    assert sorted(reasons) == sorted(expected), "not exactly one failure per bad entry"
    assert [n for n, e in reasons.items() if "\n" in e] == []
    wrong = {n: reasons[n] for n, fragment in expected.items() if fragment not in reasons[n]}
    assert wrong == {}, f"entries whose own reason lacks the expected words: {wrong}"
    # Nothing hostile ran, nothing leaked, the canary is intact.
    assert not outside.exists()
    assert not (tmp_path / "pwn").exists() and not Path("pwn").exists()
    assert canary.read_text() == CANARY
    assert canary.stat().st_mtime_ns == canary_stat.st_mtime_ns
    queue = projects[0] / ".agent-queue"
    for path in [
        *found["done"],
        *found["failed"],
        *(p for p in queue.rglob("*") if p.is_file() and "quarantine" not in p.parts),
        daemon.state_dir / "state.json",
        daemon.log_path,
    ]:
        assert CANARY not in path.read_text(errors="replace"), f"canary leaked into {path}"
    assert CANARY not in status
    # Refused entries are moved untouched to quarantine: the link still a link to the
    # canary, the hard link still the canary's own inode, and no copy of it anywhere.
    quarantine = {p.name: p for p in (queue / "quarantine").iterdir()}
    assert {"evil.md", "hardlink.md", "fifo.md", "dir.md"} <= set(quarantine)
    assert os.readlink(quarantine["evil.md"]) == str(canary)
    assert quarantine["hardlink.md"].stat().st_ino == canary_stat.st_ino
    holding = {
        name
        for name, p in quarantine.items()
        if p.is_file() and not p.is_symlink() and CANARY in p.read_text(errors="replace")
    }
    copies = {n for n in holding if quarantine[n].stat().st_ino != canary_stat.st_ino}
    assert copies == set(), f"the canary was copied into quarantine: {copies}"
    assert not any(re.match(r"^-", f.name) for f in found["failed"])


def test_name_colliding_with_done_file_keeps_the_old_one_byte_identical(tmp_path: Path) -> None:
    """A finished name reused: the old done/ file is untouched, the new one gets a suffix."""
    projects = make_projects(tmp_path / "projects", 1)
    old = projects[0] / ".agent-queue" / "done" / "same.md"
    old.write_bytes(b"the original result\n")
    config = {"agent": {"profile": "instant"}, "projects": {"roots": [str(tmp_path / "projects")]}}
    daemon = Daemon(tmp_path, config)
    try:
        daemon.start()
        assert daemon.wait_ready()
        drop(projects[0], "same.md", "new task with the same name")
        wait_until(lambda: len(results(projects)["done"]) == 2, 10)
        assert old.read_bytes() == b"the original result\n"
        new = [f for f in results(projects)["done"] if f != old]
        assert "new task with the same name" in new[0].read_text()
    finally:
        daemon.close()


def test_corrupt_state_file_is_moved_aside_and_the_daemon_starts(tmp_path: Path) -> None:
    """A garbage state.json: moved aside, rebuilt, READY still sent."""
    make_projects(tmp_path / "projects", 1)
    config = {"agent": {"profile": "instant"}, "projects": {"roots": [str(tmp_path / "projects")]}}
    daemon = Daemon(tmp_path, config)
    daemon.state_dir.mkdir(parents=True)
    (daemon.state_dir / "state.json").write_bytes(b"\x00garbage{")
    try:
        daemon.start()
        assert daemon.wait_ready()
        assert list(daemon.state_dir.glob("state.json.corrupt-*"))
    finally:
        daemon.close()


def test_stale_temp_files_are_swept_at_start_and_young_ones_kept(tmp_path: Path) -> None:
    """An old producer temp file is swept at start-up, a young one kept, neither claimed."""
    projects = make_projects(tmp_path / "projects", 1)
    tmp = projects[0] / ".agent-queue" / "tmp"
    old, young = tmp / "old.md", tmp / "young.md"
    old.write_text("old")
    young.write_text("young")
    past = os.stat(old).st_mtime - 40 * 3600
    os.utime(old, (past, past))
    config = {"agent": {"profile": "instant"}, "projects": {"roots": [str(tmp_path / "projects")]}}
    daemon = Daemon(tmp_path, config)
    try:
        daemon.start()
        assert daemon.wait_ready()
        assert not old.exists() and young.exists()
        assert results(projects) == {"done": [], "failed": []}
    finally:
        daemon.close()
