"""Notifications against real HTTP servers on 127.0.0.1: webhook, Apprise, dead targets, daemon."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from agentq.cli.main import setup_logging
from agentq.config.models import NOTIFICATION_EVENTS
from agentq.core import events as ev
from agentq.core.clock import SystemClock
from agentq.daemon.notify.apprise_sender import AppriseSender
from agentq.daemon.notify.notifier import Notifier, Target
from agentq.daemon.notify.webhook import WebhookSender
from tests.support.daemon import Daemon, drop, inbox_left, make_projects, results, wait_until
from tests.support.webhook import Blackhole, WebhookSink, closed_port

pytestmark = pytest.mark.integration

ALL = frozenset(NOTIFICATION_EVENTS)


@pytest.fixture
def journal() -> Iterator[io.StringIO]:
    """The daemon's own log pipeline (JSON lines, redacting filter) at DEBUG, into a buffer.

    Records of the test's own fake servers are left out: they log the paths they serve.
    """
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    setup_logging("DEBUG", "json", stream)
    root.handlers[0].addFilter(lambda record: not record.name.startswith("tests."))
    yield stream
    root.handlers[:], root.level = saved


def _notifier(*targets: Target, buffer_size: int = 1000) -> tuple[ev.EventLog, Notifier]:
    clock = SystemClock()
    log = ev.EventLog(clock.now)
    notifier = Notifier(list(targets), clock, log, buffer_size=buffer_size)
    log.subscribe(notifier.offer)
    notifier.start()
    return log, notifier


def _fail(log: ev.EventLog, i: int) -> None:
    log.emit(ev.TASK, project="web", task=f"t{i:02d}.md", state="failed", reason="boom")


def _webhook(name: str, url: str, secret: str | None = None, timeout: float = 10.0) -> Target:
    sender = WebhookSender(name, url, host="test-host", timeout=timeout, secret=secret)
    return Target(sender, ALL, 60.0)


def test_thirty_failures_make_signed_messages_whose_counts_add_up_to_thirty() -> None:
    """30 failures: at most 2 signed messages (at once, then on stop) whose counts add up."""
    secret = f"secret-{uuid.uuid4().hex}"
    with WebhookSink() as sink:
        log, notifier = _notifier(_webhook("ops", f"{sink.url}/hook", secret))
        try:
            for i in range(30):
                _fail(log, i)
            wait_until(lambda: sink.received, 10, message="no first message")
        finally:
            notifier.stop()
        received = sink.received
    bodies = [r.json() for r in received]
    # What the worker took in at once goes out at once; the rest waits for the stop.
    assert 1 <= len(bodies) <= 2
    assert sum(b["count"] for b in bodies) == 30
    start = 0
    for body in bodies:
        assert body["event"] == "task_failed"
        listed = [(i["project"], i["task"], i["reason"]) for i in body["items"]]
        tasks = range(start, start + min(body["count"], 10))
        assert listed == [("web", f"t{i:02d}.md", "boom") for i in tasks]
        head = "task failed" if body["count"] == 1 else f"{body['count']} tasks failed"
        assert body["text"].startswith(f"{head}: web/t{start:02d}.md: boom")
        start += body["count"]
    assert all(b["host"] == "test-host" for b in bodies)
    assert all(r.signed_by(secret) for r in received)
    assert not any(r.signed_by("another secret") for r in received)
    history = notifier.history()
    assert [(h["target"], h["event"], h["count"], h["ok"]) for h in history] == [
        ("ops", "task_failed", b["count"], True) for b in bodies
    ]


def test_a_full_buffer_is_summarised_and_the_count_stays_exact() -> None:
    """With the target stalled and the buffer full, notices are counted, and the text says so."""
    with WebhookSink() as sink:
        log, notifier = _notifier(_webhook("ops", f"{sink.url}/hook"), buffer_size=5)
        try:
            sink.hold()
            _fail(log, 0)
            wait_until(lambda: sink.received, 10, message="the first message never arrived")
            for i in range(1, 100):
                _fail(log, i)
            sink.release()
        finally:
            notifier.stop()
        bodies = sink.bodies()
    assert [b["count"] for b in bodies] == [1, 99]
    assert len(bodies[1]["items"]) == 5
    assert "94 not listed: the notification buffer was full" in bodies[1]["text"]


def test_a_target_that_was_down_gets_the_kept_count_when_it_is_back() -> None:
    """Undelivered messages are kept: after the outage the counts still add up exactly."""
    with WebhookSink() as sink:
        sink.status = 503
        log, notifier = _notifier(_webhook("ops", f"{sink.url}/hook"))
        try:
            for i in range(3):
                _fail(log, i)
            wait_until(lambda: sink.received, 10, message="no attempt while down")
            sink.status = 200
            _fail(log, 3)
            wait_until(lambda: sink.bodies(200), 10, message="nothing after the outage")
        finally:
            notifier.stop()
        delivered = sink.bodies(200)
    assert sum(b["count"] for b in delivered) == 4
    assert [i["task"] for i in delivered[0]["items"]][:3] == ["t00.md", "t01.md", "t02.md"]
    failed = [h for h in notifier.history() if not h["ok"]]
    assert failed and all(h["error"] == "HTTP 503" for h in failed)


def test_a_reload_keeps_an_unchanged_targets_counts_and_flushes_a_removed_one() -> None:
    """kept: its waiting count goes out with the next message; removed: flushed at once; added:
    hears later events only."""
    with WebhookSink() as kept_sink, WebhookSink() as gone_sink, WebhookSink() as new_sink:
        kept = replace(_webhook("kept", f"{kept_sink.url}/k"), spec="kept")
        gone = replace(_webhook("gone", f"{gone_sink.url}/g"), spec="gone")
        log, notifier = _notifier(kept, gone)
        try:
            _fail(log, 0)
            wait_until(lambda: kept_sink.received and gone_sink.received, 10)
            _fail(log, 1)  # within min_interval: waits in both targets' coalescers
            _fail(log, 2)
            added = replace(_webhook("new", f"{new_sink.url}/n"), spec="new")
            notifier.reconfigure({"kept"}, [added])
            wait_until(lambda: len(gone_sink.received) == 2, 30, message="gone not flushed")
            assert len(kept_sink.received) == 1  # still waiting for its interval
            _fail(log, 3)
            wait_until(lambda: new_sink.received, 30, message="the new target heard nothing")
        finally:
            notifier.stop()
        counts = {
            name: [b["count"] for b in sink.bodies()]
            for name, sink in (("kept", kept_sink), ("gone", gone_sink), ("new", new_sink))
        }
    assert counts == {"kept": [1, 3], "gone": [1, 2], "new": [1]}
    assert notifier.targets == ["kept", "new"]


def test_apprise_delivers_to_a_local_json_target() -> None:
    """An Apprise json:// URL posts the message to our own HTTP server."""
    with WebhookSink() as sink:
        port = sink.url.rsplit(":", 1)[1]
        sender = AppriseSender("local-json", f"json://127.0.0.1:{port}/notify", timeout=10)
        log, notifier = _notifier(Target(sender, frozenset({"task_failed"}), 60.0))
        try:
            _fail(log, 7)
            log.emit(ev.SWAP, message="not wanted by this target")
            wait_until(lambda: sink.received, 10, message="Apprise sent nothing")
        finally:
            notifier.stop()
        received = sink.received
    assert len(received) == 1
    assert received[0].path == "/notify"
    body = received[0].json()
    assert body["title"] == "agentq: task failed"
    assert body["message"] == "web/t07.md: boom"
    assert body["type"] == "failure"
    assert notifier.history()[0]["ok"] is True


def test_dead_targets_are_logged_by_name_and_never_by_url_or_secret(journal: io.StringIO) -> None:
    """Refused, silent and Apprise targets fail by name; no URL token or secret is logged."""
    token = f"TOKEN{uuid.uuid4().hex}"
    secret = f"SECRET{uuid.uuid4().hex}"
    refused = f"http://127.0.0.1:{closed_port()}/hooks/{token}"
    with Blackhole() as hole, WebhookSink() as sink:
        port = sink.url.rsplit(":", 1)[1]
        targets = [
            _webhook("refused", refused, secret),
            _webhook("silent", f"{hole.url}/hooks/{token}", secret, timeout=1.0),
            Target(
                AppriseSender("push", f"json://127.0.0.1:{closed_port()}/{token}", timeout=2),
                ALL,
                60.0,
            ),
            _webhook("working", f"{sink.url}/hooks/{token}", secret),
            Target(
                AppriseSender("push-ok", f"json://127.0.0.1:{port}/{token}", timeout=5), ALL, 60
            ),
        ]
        log, notifier = _notifier(*targets)
        try:
            for i in range(20):
                _fail(log, i)
            wait_until(lambda: len(notifier.history()) >= 5, 20, message="deliveries missing")
        finally:
            notifier.stop()
        webhook = [b for b in sink.bodies() if "count" in b]
        assert sum(b["count"] for b in webhook) == 20
    outcomes = {(h["target"], h["ok"], h["error"]) for h in notifier.history()}
    assert outcomes == {
        ("refused", False, "cannot connect"),
        ("silent", False, "timed out after 1 s"),
        ("push", False, "Apprise: failure"),
        ("working", True, None),
        ("push-ok", True, None),
    }
    text = journal.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    undelivered = {
        d["target"] for d in lines if d["message"].startswith("notification not delivered")
    }
    assert undelivered == {"refused", "silent", "push"}
    assert any(d["message"].startswith("HTTP Request: POST ***") for d in lines)  # httpx's own
    assert not any(d["logger"].startswith(("apprise", "urllib3")) for d in lines)
    assert token not in text
    assert secret not in text


@pytest.mark.slow
def test_the_daemon_notifies_thirty_failures_and_its_start(tmp_path: Path) -> None:
    """The daemon: 30 bad tasks → at most 3 signed task_failed messages counting 30, one start."""
    secret = f"secret-{uuid.uuid4().hex}"
    secret_file = tmp_path / "webhook.secret"
    secret_file.write_text(secret + "\n")
    secret_file.chmod(0o600)
    projects = make_projects(tmp_path / "projects", 1)
    token = f"TOKEN{uuid.uuid4().hex}"
    with WebhookSink() as sink:
        config = {
            "agent": {"profile": "instant"},
            "projects": {"roots": [str(tmp_path / "projects")]},
            "logging": {"level": "DEBUG"},
            "notifications": [
                {
                    "kind": "webhook",
                    "name": "ops",
                    "url": f"{sink.url}/hooks/{token}",
                    "secret_file": str(secret_file),
                    "events": ["task_failed", "daemon_started"],
                }
            ],
        }
        daemon = Daemon(tmp_path, config)
        try:
            daemon.start()
            assert daemon.wait_ready()
            for i in range(30):
                drop(projects[0], f"bad-{i:02d}.md", "---\ntitle: [unclosed\n---\nbody")
            wait_until(lambda: len(results(projects)["failed"]) == 30, 30, message="not failed")
            assert not inbox_left(projects)
            wait_until(lambda: len(sink.received) >= 2, 10, message="no message before stop")
            assert daemon.stop() == 0
            received = sink.received
            state = json.loads((daemon.state_dir / "state.json").read_text())
            log_text = daemon.log()
        finally:
            daemon.close()
    bodies = [r.json() for r in received]
    started = [b for b in bodies if b["event"] == "daemon_started"]
    failed = [b for b in bodies if b["event"] == "task_failed"]
    assert [b["count"] for b in started] == [1]
    assert 1 <= len(failed) <= 3
    assert sum(b["count"] for b in failed) == 30
    assert all(r.signed_by(secret) for r in received)
    history = state["notifications"]
    assert sum(h["count"] for h in history if h["event"] == "task_failed") == 30
    assert all(h["target"] == "ops" and h["ok"] for h in history)
    assert "notification sent" in log_text
    assert token not in log_text
    assert secret not in log_text


def test_a_watch_fallback_to_polling_is_notified_once_as_daemon_degraded(tmp_path: Path) -> None:
    """inotify refuses every watch: one daemon_degraded naming the condition, tasks still flow."""
    projects = make_projects(tmp_path / "projects", 2)
    with WebhookSink() as sink:
        config = {
            "agent": {"profile": "instant"},
            "projects": {"roots": [str(tmp_path / "projects")]},
            "dispatch": {"rescan_interval": "0.5s", "quiet_period": "0.1s"},
            "notifications": [
                {
                    "kind": "webhook",
                    "url": f"{sink.url}/hook",
                    "events": ["daemon_degraded"],
                    "min_interval": "0s",
                }
            ],
        }
        daemon = Daemon(tmp_path, config, tweaks=["watch-enospc"])
        try:
            daemon.start()
            assert daemon.wait_ready()
            wait_until(lambda: sink.received, 30, message="the fallback was not notified")
            rescans = daemon.counter("rescans")
            # Several more checks (one per pass, at most every 5 s) while it stays degraded.
            drop(projects[0], "still.md", "polled inboxes still work")
            wait_until(lambda: daemon.counter("rescans") >= rescans + 20, 120)
            wait_until(lambda: len(results(projects)["done"]) == 1, 30)
            bodies = sink.bodies()
        finally:
            daemon.close()
    assert [(b["event"], b["count"]) for b in bodies] == [("daemon_degraded", 1)]
    [item] = bodies[0]["items"]
    assert item["condition"] == "watch_polling" and "No space left" in item["reason"]
