"""Which fresh inbox files a scan takes as complete at once (real folders, no daemon)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from agentq.queue.protocol import Project
from agentq.queue.vetting import LINK_RELOOK_MAX_NS, LINK_RELOOK_MIN_NS

pytestmark = pytest.mark.integration

QUIET_NS = 3600 * 10**9  # an hour: nothing fresh becomes quiet during a test


def _project(root: Path) -> Project:
    (root / "proj").mkdir()
    project = Project(root / "proj")
    project.ensure_dirs()
    return project


def _identity(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_ino, st.st_mtime_ns


def _renamed_in(project: Project, name: str) -> tuple[int, int]:
    """Write in tmp/, rename in; the identity the watcher notes for the rename."""
    tmp = project.tmp / name
    tmp.write_text("---\ntitle: t\n---\nbody\n")
    os.rename(tmp, project.inbox / name)
    return _identity(project.inbox / name)


def test_a_file_that_arrived_whole_is_ready_at_once(tmp_path: Path) -> None:
    """Fresh, but known to have arrived by rename with this inode: ready now."""
    project = _project(tmp_path)
    seen = _renamed_in(project, "a.md")
    found = project.scan(time.time_ns(), QUIET_NS, {"a.md": seen})
    assert [p.name for p in found.ready] == ["a.md"] and found.waiting == {}


def test_without_word_of_a_rename_a_fresh_file_waits_for_quiet(tmp_path: Path) -> None:
    """No rename seen (a poll, an overflow, a write in place): the quiet period applies."""
    project = _project(tmp_path)
    _renamed_in(project, "a.md")
    found = project.scan(time.time_ns(), QUIET_NS)
    assert found.ready == [] and list(found.waiting) == ["a.md"]


def test_another_file_under_the_name_that_arrived_waits(tmp_path: Path) -> None:
    """The rename is trusted for the inode that arrived, not for one put in its place."""
    project = _project(tmp_path)
    seen = _renamed_in(project, "a.md")
    (project.inbox / ".other").write_text("another file\n")
    os.replace(project.inbox / ".other", project.inbox / "a.md")
    found = project.scan(time.time_ns(), QUIET_NS, {"a.md": seen})
    assert found.ready == [] and list(found.waiting) == ["a.md"]


def test_a_file_written_to_after_it_arrived_waits(tmp_path: Path) -> None:
    """A write in place after the rename puts the file back under the quiet period."""
    project = _project(tmp_path)
    seen = _renamed_in(project, "a.md")
    st = os.lstat(project.inbox / "a.md")
    with (project.inbox / "a.md").open("a") as fh:
        fh.write("more\n")
    os.utime(project.inbox / "a.md", ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # a later write
    found = project.scan(time.time_ns(), QUIET_NS, {"a.md": seen})
    assert found.ready == [] and list(found.waiting) == ["a.md"]


def test_a_symlink_that_arrived_by_rename_is_still_refused(tmp_path: Path) -> None:
    """Arriving whole skips the quiet period only: a symlink is refused as ever."""
    project = _project(tmp_path)
    canary = tmp_path / "canary"
    canary.write_text("secret")
    os.symlink(canary, project.tmp / "evil.md")
    os.rename(project.tmp / "evil.md", project.inbox / "evil.md")
    found = project.scan(
        time.time_ns(), QUIET_NS, {"evil.md": _identity(project.inbox / "evil.md")}
    )
    assert found.ready == [] and [n for n, _ in found.refused] == ["evil.md"]


def test_a_file_still_open_for_writing_is_incomplete_even_when_renamed(tmp_path: Path) -> None:
    """A writer holding a renamed-in file open keeps it from being claimed."""
    project = _project(tmp_path)
    seen = _renamed_in(project, "a.md")
    with (project.inbox / "a.md").open("a"):
        found = project.scan(time.time_ns(), QUIET_NS, {"a.md": seen})
    assert found.ready == [] and found.incomplete == ["a.md"]


def test_a_linked_file_is_looked_at_again_in_milliseconds_then_taken_whole(
    tmp_path: Path,
) -> None:
    """Link from tmp/: noted, looked at again soon; once unlinked from tmp/ it is whole."""
    project = _project(tmp_path)
    (project.tmp / "l").write_text("linked\n")
    os.link(project.tmp / "l", project.inbox / "l.md")
    now = time.time_ns()
    found = project.scan(now, QUIET_NS)
    assert found.ready == [] and found.linked == {"l.md": _identity(project.inbox / "l.md")}
    assert now + LINK_RELOOK_MIN_NS <= found.waiting["l.md"] <= now + LINK_RELOOK_MAX_NS
    os.unlink(project.tmp / "l")
    found = project.scan(time.time_ns(), QUIET_NS, found.linked)
    assert [p.name for p in found.ready] == ["l.md"]


def test_a_hard_link_that_stays_is_refused_once_quiet(tmp_path: Path) -> None:
    """A second link that is never undone: refused when the quiet period is over, unread."""
    project = _project(tmp_path)
    canary = tmp_path / "canary.md"
    canary.write_text("CANARY\n")
    os.link(canary, project.inbox / "h.md")
    later = time.time_ns() + QUIET_NS + 10**9
    found = project.scan(later, QUIET_NS, {"h.md": _identity(canary)})
    assert found.ready == [] and [n for n, _ in found.refused] == ["h.md"]


def test_a_ready_file_is_read_once_per_version_and_checked_on_every_scan(tmp_path: Path) -> None:
    """Unchanged: the same task from its first read. Rewritten: read again. Held open: not ready."""
    project = _project(tmp_path)
    path = project.inbox / "a.md"
    path.write_text("---\npriority: 1\n---\nbody\n")
    past = time.time_ns() - QUIET_NS - 10**9
    os.utime(path, ns=(past, past))  # quiet long since
    (first,) = project.scan(time.time_ns(), QUIET_NS).ready
    (again,) = project.scan(time.time_ns(), QUIET_NS).ready
    assert again is first and first.priority == 1
    with path.open("a") as writer:
        found = project.scan(time.time_ns(), QUIET_NS)
        assert found.ready == [] and found.incomplete == ["a.md"]
        writer.write("more\n")
    path.write_text("---\npriority: 5\n---\nrewritten\n")
    os.utime(path, ns=(past + 1, past + 1))
    (rewritten,) = project.scan(time.time_ns(), QUIET_NS).ready
    assert rewritten.priority == 5
