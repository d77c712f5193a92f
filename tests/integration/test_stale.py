"""The stale-task watchdog against a running daemon: a hung sim task is flagged once and left
running; a slow delegated job is judged by its own age, never as stale local work."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.daemon import Daemon, drop, make_projects, results, wait_until
from tests.support.providers import FakeJobApi
from tests.support.webhook import WebhookSink

pytestmark = pytest.mark.integration

STALE_AFTER = 2.0
JOB_STALE_AFTER = 3.0


@pytest.fixture
def sink() -> Iterator[WebhookSink]:
    """A webhook receiver for ``task_stale`` notifications."""
    with WebhookSink() as receiver:
        yield receiver


def _hook(sink: WebhookSink) -> dict[str, Any]:
    """A target that hears every ``task_stale`` at once (no coalescing interval)."""
    return {
        "kind": "webhook",
        "url": f"{sink.url}/hook",
        "events": ["task_stale"],
        "min_interval": "0s",
    }


def _url(daemon: Daemon) -> str:
    path = daemon.state_dir / "state.json"
    return str(wait_until(lambda: json.loads(path.read_text()).get("api", {}).get("url"), 10))


def _stale(url: str) -> list[dict[str, Any]]:
    doc = httpx.get(f"{url}/watchdog/status", timeout=10).json()
    stale: list[dict[str, Any]] = doc["stale_tasks"]
    return stale


def _stale_events(sink: WebhookSink) -> list[dict[str, Any]]:
    """Every task_stale the target was told of (a message lists what its count stands for)."""
    bodies = [b for b in sink.bodies() if b["event"] == "task_stale"]
    assert all(b["count"] == len(b["items"]) for b in bodies)
    return [item for b in bodies for item in b["items"]]


def _metric(url: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def test_a_hung_task_is_flagged_stale_once_and_never_failed(
    tmp_path: Path, socket_name: str, sink: WebhookSink
) -> None:
    """``sim: hang`` with stale_after 2s: one task_stale, shown everywhere; the task runs on."""
    projects = make_projects(tmp_path / "projects", 1)
    config = {
        "agent": {"profile": "sim"},
        "projects": {"roots": [str(tmp_path / "projects")]},
        "pool": {"prefix": "st-", "min": 1, "max": 1},
        "tmux": {"socket_name": socket_name},
        "dispatch": {"quiet_period": "0.2s"},
        "completion": {"stale_after": f"{STALE_AFTER}s", "idle_timeout": "10m"},
        "notifications": [_hook(sink)],
    }
    daemon = Daemon(tmp_path, config)
    try:
        daemon.start()
        assert daemon.wait_ready()
        url = _url(daemon)
        drop(projects[0], "hang.md", "never ends\nsim: hang")
        wait_until(lambda: _stale_events(sink), 30, message="no task_stale notification")
        # Let it stand still for several more rule periods: one standstill, one event.
        wait_until(
            lambda: [s for s in _stale(url) if s["idle_s"] >= 4 * STALE_AFTER], 30, interval=0.2
        )
        stale = _stale(url)
        gauge = _metric(url, "agentq_tasks_stale", executor="local")
        status = subprocess.run(
            [sys.executable, "-m", "agentq", "status", "--config", str(daemon.config_path)],
            env=daemon.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        events = _stale_events(sink)
        inbox = sorted(p.name for p in (projects[0] / ".agent-queue" / "inbox").iterdir())
    finally:
        daemon.close()
    [event] = events
    assert (event["project"], event["task"], event["session"]) == ("proj00", "hang.md", "st-0")
    assert event["idle_s"] >= STALE_AFTER and event["stale_after"] == STALE_AFTER
    [entry] = stale
    assert (entry["name"], entry["rule"], entry["session"]) == ("hang.md", "no progress", "st-0")
    assert gauge == 1.0
    assert "STALE proj00/hang.md (no progress, st-0)" in status.stdout
    assert "hang.md.working" in inbox and results(projects) == {"done": [], "failed": []}


def test_a_slow_delegated_job_is_judged_by_its_own_age_only(
    tmp_path: Path, sink: WebhookSink
) -> None:
    """A job running past completion.stale_after is never stale local work; past
    delegation.stale_after it is flagged once, by its age, and keeps running."""
    projects = make_projects(tmp_path / "projects", 1)
    with FakeJobApi(polls_to_complete=10**9) as jobs:
        provider = {
            "name": "jobs",
            "kind": "job-api",
            "base_url": jobs.base_url,
            "poll_interval": 0.1,
        }
        config = {
            "agent": {"profile": "instant"},
            "projects": {"roots": [str(tmp_path / "projects")]},
            "dispatch": {"quiet_period": "0.2s"},
            "completion": {"stale_after": "0.5s"},
            "delegation": {"providers": [provider], "stale_after": f"{JOB_STALE_AFTER}s"},
            "notifications": [_hook(sink)],
        }
        daemon = Daemon(tmp_path, config)
        seen: list[list[dict[str, Any]]] = []
        try:
            daemon.start()
            assert daemon.wait_ready()
            url = _url(daemon)
            drop(projects[0], "remote.md", "slow", allow_delegation=True, preferred_ai="jobs")
            wait_until(lambda: jobs.jobs_created, 30, message="the job was never submitted")

            def flagged_long_enough() -> bool:
                seen.append(_stale(url))
                return any(s["idle_s"] >= 2 * JOB_STALE_AFTER for s in seen[-1])

            wait_until(flagged_long_enough, 60, interval=0.2)
            events = _stale_events(sink) or wait_until(lambda: _stale_events(sink), 10)
            gauge = _metric(url, "agentq_tasks_stale", executor="delegated")
            local = _metric(url, "agentq_tasks_stale", executor="local")
            inbox = sorted(p.name for p in (projects[0] / ".agent-queue" / "inbox").iterdir())
        finally:
            daemon.close()
    rules = {s["rule"] for sample in seen for s in sample}
    assert rules == {"job age"}, seen
    [event] = events
    assert (event["task"], event["provider"]) == ("remote.md", "jobs")
    assert event["job_id"] == "job-000001"
    assert "session" not in event and event["stale_after"] == JOB_STALE_AFTER
    assert (gauge, local) == (1.0, 0.0)
    assert "remote.md.delegated" in inbox and results(projects) == {"done": [], "failed": []}
