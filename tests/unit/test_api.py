"""The API's pure parts: the task index, name checks, the Host allow-list, the token, SSE."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agentq.api import routes, sse
from agentq.api.security import allowed_hosts, load_or_create_token, token_matches
from agentq.core import events as ev
from agentq.core.errors import ConfigError
from agentq.daemon.index import TaskIndex
from agentq.queue import protocol as q

NOW = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def _project(root: Path, name: str = "web") -> q.Project:
    (root / name).mkdir()
    project = q.Project(root / name)
    project.ensure_dirs()
    return project


def _event(event_id: int, **fields: object) -> ev.Event:
    return ev.Event(event_id, NOW, ev.TASK, fields)


def test_the_index_loads_every_folder_once(tmp_path: Path) -> None:
    """Pending, working, delegated, done and failed files are counted from one listing each."""
    project = _project(tmp_path)
    for name in ("a.md", "b.md.working", "c.md.delegated", ".hidden.md", "notes.txt"):
        (project.inbox / name).write_text("---\ntitle: A title\npriority: 3\n---\nbody\n")
    for i in range(5):
        (project.done / f"d{i}.md").write_text("done")
    (project.failed / "f.md").write_text("failed")
    index = TaskIndex(NOW.timestamp)
    index.load(project)
    counts = index.counts()["web"]
    assert {k: counts[k] for k in ("pending", "working", "delegated", "done", "failed")} == {
        "pending": 1,
        "working": 1,
        "delegated": 1,
        "done": 5,
        "failed": 1,
    }
    page = index.page("web", "pending", 10, None)
    assert [(e.name, e.title, e.priority) for e in page.items] == [("a.md", "A title", 3)]


def test_pages_go_newest_first_and_the_cursor_continues(tmp_path: Path) -> None:
    """Pages of 2 over 5 done tasks: every task once, newest state change first."""
    project = _project(tmp_path)
    for i in range(5):
        path = project.done / f"d{i}.md"
        path.write_text("done")
        os.utime(path, (1000 + i, 1000 + i))
    index = TaskIndex(NOW.timestamp)
    index.load(project)
    seen, cursor = [], None
    while True:
        page = index.page(None, "done", 2, cursor)
        assert page.total == 5
        seen += [e.name for e in page.items]
        cursor = page.cursor
        if cursor is None:
            break
    assert seen == ["d4.md", "d3.md", "d2.md", "d1.md", "d0.md"]
    with pytest.raises(ValueError, match="cursor"):
        index.page(None, None, 2, "../etc")


def test_task_events_move_tasks_between_states(tmp_path: Path) -> None:
    """pending → working → failed (reason, attempts) → retried → pending again."""
    project = _project(tmp_path)
    index = TaskIndex(NOW.timestamp)
    index.load(project)
    index.apply(_event(1, project="web", task="x.md", state="pending"))
    index.apply(_event(2, project="web", task="x.md", state="working", attempts=1))
    index.note_session("web", "x.md", "agentq-1", "work")
    assert [e.state for e in index.page("web", None, 10, None).items] == ["working"]
    index.apply(_event(3, project="web", task="x.md", state="failed", result="x.md", reason="boom"))
    (failed,) = index.page("web", None, 10, None).items
    assert (failed.state, failed.reason, failed.attempts, failed.session) == (
        "failed",
        "boom",
        1,
        "agentq-1",
    )
    index.apply(_event(4, project="web", task="x.md", state="pending", retried_from="x.md"))
    assert [(e.name, e.state) for e in index.page("web", None, 10, None).items] == [
        ("x.md", "pending")
    ]


def test_the_oldest_pending_arrival_follows_tasks_coming_and_going(tmp_path: Path) -> None:
    """``oldest_pending`` is the earliest arrival among the tasks pending now, or None."""
    project = _project(tmp_path)
    index = TaskIndex(NOW.timestamp)
    index.load(project)
    assert index.counts()["web"]["oldest_pending"] is None
    for i, name in enumerate(("a.md", "b.md", "c.md")):
        index.apply(
            ev.Event(
                i,
                datetime.fromtimestamp(100 + i, UTC),
                ev.TASK,
                {"project": "web", "task": name, "state": "pending"},
            )
        )
        assert index.counts()["web"]["oldest_pending"] == 100
    index.apply(_event(10, project="web", task="b.md", state="working"))
    assert index.counts()["web"]["oldest_pending"] == 100
    index.apply(_event(11, project="web", task="a.md", state="working"))
    assert index.counts()["web"]["oldest_pending"] == 102
    index.apply(_event(12, project="web", task="a.md", state="pending", reason="requeued"))
    assert index.counts()["web"]["oldest_pending"] == 100  # it keeps its first arrival
    for i, name in enumerate(("a.md", "c.md")):
        index.apply(_event(13 + i, project="web", task=name, state="done", result=name))
    assert index.counts()["web"]["oldest_pending"] is None


def test_reconcile_forgets_files_removed_behind_its_back(tmp_path: Path) -> None:
    """A done file deleted by hand (or archived) leaves the index on the next reconcile."""
    project = _project(tmp_path)
    (project.done / "old.md").write_text("done")
    index = TaskIndex(NOW.timestamp)
    index.load(project)
    (project.done / "old.md").unlink()
    index.reconcile("web", "done")
    assert index.counts()["web"]["done"] == 0


@pytest.mark.parametrize(
    "name",
    [
        "..",
        "../x.md",
        "/etc/passwd",
        "x.md\x00",
        "x",
        ".x.md",
        "-x.md",
        "a b.md",
        "a/b.md",
        "x" * 250 + ".md",
    ],
    ids=[
        "dots",
        "traversal",
        "absolute",
        "NUL",
        "no .md",
        "dotfile",
        "dash",
        "space",
        "slash",
        "long",
    ],
)
def test_task_names_follow_the_queue_rule(name: str) -> None:
    """Only a plain task file name passes (400 otherwise)."""
    with pytest.raises(routes.BadRequest) as raised:
        routes.check_name(name)
    assert raised.value.status == 400


def test_projects_are_only_the_served_ones() -> None:
    """A project is a served project's folder name; anything else is 404."""
    assert routes.check_project("web", {"web": {}}) == "web"
    for name in ("..", "/home", "web/..", "other"):
        with pytest.raises(routes.BadRequest) as raised:
            routes.check_project(name, {"web": {}})
        assert raised.value.status == 404


def test_the_host_allow_list_names_this_listener() -> None:
    """Loopback names with the port, IPv6 in brackets, configured names with or without a port."""
    hosts = allowed_hosts(("127.0.0.1", 8377), ["agentq.lan", "Proxy.Local:9000"])
    assert {"127.0.0.1:8377", "localhost:8377", "[::1]:8377", "agentq.lan:8377"} <= hosts
    assert "proxy.local:9000" in hosts
    assert not {"127.0.0.1", "evil.example:8377", "127.0.0.1:8378", ""} & hosts


def test_the_token_is_compared_as_a_bearer_token() -> None:
    """Only ``Bearer <token>`` matches."""
    token = "a" * 43
    assert token_matches(f"Bearer {token}", token)
    assert token_matches(f"bearer {token}", token)
    for header in (None, "", token, f"Basic {token}", f"Bearer {token}x", "Bearer a"):
        assert not token_matches(header, token)


def test_the_token_file_is_created_0600_and_kept(tmp_path: Path) -> None:
    """First start creates a 0600 file; later starts read the same token."""
    path = tmp_path / "config" / "token"
    token = load_or_create_token(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(token) >= 40 and load_or_create_token(path) == token


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_a_token_file_others_may_read_is_refused(tmp_path: Path, mode: int) -> None:
    """Group or world access to the token file stops start-up with the reason."""
    path = tmp_path / "token"
    path.write_text("t" * 43)
    path.chmod(mode)
    with pytest.raises(ConfigError, match="others may read it"):
        load_or_create_token(path)


def test_a_symlinked_token_file_is_refused(tmp_path: Path) -> None:
    """The token file is never read through a link."""
    (tmp_path / "real").write_text("t" * 43)
    (tmp_path / "real").chmod(0o600)
    (tmp_path / "token").symlink_to(tmp_path / "real")
    with pytest.raises(ConfigError):
        load_or_create_token(tmp_path / "token")


def test_sse_frames_and_resume_ids() -> None:
    """A frame carries id, event and one JSON data line; ids of another epoch ask for a resync."""
    assert sse.frame("task", {"a": 1}, "ep-3") == 'id: ep-3\nevent: task\ndata: {"a":1}\n\n'
    assert sse.parse_last_id(None, "ep") is None
    assert sse.parse_last_id("ep-12", "ep") == 12
    assert sse.parse_last_id("other-12", "ep") == -1
    assert sse.parse_last_id("garbage", "ep") == -1
