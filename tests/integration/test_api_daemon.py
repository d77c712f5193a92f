"""The API against a running daemon with a sim pool: metrics, documented shapes, retry, cancel,
the event stream, and the command line through the API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agentq.sessions.tmux import TmuxDriver
from tests.support.api import ApiDaemon, sim_config
from tests.support.apidocs import example, shape_problems
from tests.support.daemon import drop, results
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration

ALLOWED_LABELS = {"project", "state", "executor", "outcome", "account", "source", "kind"}
ALLOWED_LABELS |= {"event", "from_account", "to_account", "le"}


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiDaemon]:
    """A daemon with a sim pool of two sessions on a private tmux server, for the module."""
    root = tmp_path_factory.mktemp("pool")
    socket = f"agentq-api-{uuid.uuid4().hex[:8]}"
    daemon = ApiDaemon(root, sim_config(root, socket))
    try:
        yield daemon.start()
    finally:
        daemon.close()
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("TMUX_TMPDIR", str(root))
            TmuxDriver(socket).kill_server()


def _metrics(pool: ApiDaemon) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = pool.get("/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(metrics: dict[Any, float], name: str, **labels: str) -> float:
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


def _state_of(pool: ApiDaemon, project: str, name: str) -> str | None:
    for task in pool.get(f"/api/tasks?project={project}&limit=500").json()["tasks"]:
        if task["name"] == name:
            return str(task["state"])
    return None


def test_metrics_move_during_a_run_and_carry_no_task_label(pool: ApiDaemon) -> None:
    """Counters and depth gauges move as tasks run; every label is from a bounded set."""
    before = _metrics(pool)
    names = [f"m{i}-{uuid.uuid4().hex[:6]}.md" for i in range(3)]
    for name in names:
        drop(pool.projects[0], name, "sim: work 0.3s")
    drop(pool.projects[1], "m-fails.md", "sim: fail")
    wait_until(lambda: _state_of(pool, "proj01", "m-fails.md") == "failed", 60)
    wait_until(lambda: all(_state_of(pool, "proj00", n) == "done" for n in names), 60)
    after = wait_until(
        lambda: (
            (m := _metrics(pool))
            and _value(m, "agentq_tasks_finished_total", executor="local", outcome="done") >= 3
            and m
        ),
        10,
    )
    done_key = ("agentq_tasks_finished_total", {"executor": "local", "outcome": "done"})
    assert (
        _value(after, done_key[0], **done_key[1]) >= _value(before, done_key[0], **done_key[1]) + 3
    )
    assert _value(after, "agentq_tasks_finished_total", executor="local", outcome="failed") >= 1
    assert (
        _value(after, "agentq_queue_tasks", project="proj00", state="done")
        >= _value(before, "agentq_queue_tasks", project="proj00", state="done") + 3
    )
    assert _value(after, "agentq_pickup_latency_seconds_count", executor="local") >= 4
    assert _value(after, "agentq_delivery_latency_seconds_count") >= 3
    assert (
        _value(after, "agentq_task_duration_seconds_count", executor="local", outcome="done") >= 3
    )
    assert sum(v for (n, _), v in after.items() if n == "agentq_hook_signals_total") > 0
    assert _value(after, "agentq_sessions", state="empty") >= 0
    task_names = {n for p in pool.projects for n in os.listdir(p / ".agent-queue" / "done")}
    for (name, labels), _ in after.items():
        assert {k for k, _ in labels} <= ALLOWED_LABELS, (name, labels)
        assert not {v for _, v in labels} & task_names, (name, labels)


@pytest.mark.parametrize(
    ("path", "free"),
    [
        ("/healthz", frozenset()),
        ("/watchdog/status", frozenset({"$.watches.polling"})),
        ("/api/delegated/status", frozenset()),
        ("/api/tasks", frozenset()),
        ("/api/sessions", frozenset()),
        ("/api/accounts", frozenset()),
        ("/api/status", frozenset({"$.counters", "$.watches", "$.accounts"})),
    ],
)
def test_answers_have_the_documented_shapes(
    pool: ApiDaemon, path: str, free: frozenset[str]
) -> None:
    """Each GET answers with the shape of its example in docs/api.md."""
    drop(pool.projects[0], f"shape-{uuid.uuid4().hex[:6]}.md", "sim: work 0.1s")
    wait_until(lambda: pool.get("/api/tasks").json()["total"] > 0, 30)
    answer = pool.get(path)
    assert answer.status_code == 200
    assert shape_problems(example("GET", path), answer.json(), free=free) == []


def test_a_task_body_has_the_documented_shape(pool: ApiDaemon) -> None:
    """GET /api/tasks/{project}/{name} with the token: the documented shape, body and footer."""
    drop(pool.projects[0], "body-shape.md", "the body\nsim: work 0.1s", title="Body shape")
    wait_until(lambda: _state_of(pool, "proj00", "body-shape.md") == "done", 60)
    doc = pool.get("/api/tasks/proj00/body-shape.md", token=True).json()
    assert shape_problems(example("GET", "/api/tasks/{project}/{name}"), doc) == []
    assert doc["title"] == "Body shape" and "the body" in doc["body"]
    assert doc["footer"]["status"] == "done" and doc["session"].startswith("aq-")


def test_retry_moves_a_failed_task_back_to_the_inbox(pool: ApiDaemon) -> None:
    """A failed task (its reason listed) is retried: back in the inbox, no file clobbered."""
    drop(pool.projects[1], "flaky.md", "sim: fail")
    wait_until(lambda: _state_of(pool, "proj01", "flaky.md") == "failed", 60)
    listed = pool.get("/api/tasks?project=proj01&state=failed").json()["tasks"]
    assert next(t for t in listed if t["name"] == "flaky.md")["reason"]
    answer = pool.post("/api/tasks/proj01/flaky.md/retry")
    assert answer.status_code == 200, answer.text
    assert answer.json()["name"] == "flaky.md"
    assert not (pool.projects[1] / ".agent-queue/failed/flaky.md").exists() or _state_of(
        pool, "proj01", "flaky.md"
    ) in ("pending", "working", "failed")
    assert pool.post("/api/tasks/proj01/nothing.md/retry").status_code == 404


def test_cancel_a_pending_and_a_working_task(pool: ApiDaemon) -> None:
    """Pending → failed "cancelled"; working → the agent interrupted, then failed "cancelled"."""
    long = [f"long{i}.md" for i in range(2)]
    for name in long:
        drop(pool.projects[0], name, "sim: work 120s")
    wait_until(lambda: all(_state_of(pool, "proj00", n) == "working" for n in long), 60)
    drop(pool.projects[0], "waiting.md", "sim: work 0.1s")
    wait_until(lambda: _state_of(pool, "proj00", "waiting.md") == "pending", 30)
    assert pool.post("/api/tasks/proj00/waiting.md/cancel").status_code == 200
    for name in long:
        answer = pool.post(f"/api/tasks/proj00/{name}/cancel")
        assert answer.status_code == 200, answer.text
    for name in ("waiting.md", *long):
        wait_until(lambda n=name: _state_of(pool, "proj00", n) == "failed", 30)
    failed = {p.name: p.read_text() for p in results(pool.projects)["failed"]}
    for name in ("waiting.md", *long):
        assert "cancelled" in failed[name]


def _read_events(
    pool: ApiDaemon, headers: dict[str, str], count: int
) -> list[tuple[str, Any, str]]:
    out: list[tuple[str, Any, str]] = []
    event, data, ident = "message", "", ""
    with (
        httpx.Client(base_url=pool.url, timeout=10) as client,
        client.stream("GET", "/api/events", headers=headers) as response,
    ):
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
            elif line.startswith("id: "):
                ident = line[4:]
            elif not line and data:
                out.append((event, json.loads(data), ident))
                event, data = "message", ""
                if len(out) >= count:
                    break
    return out


def test_the_event_stream_resumes_and_asks_for_a_resync(pool: ApiDaemon) -> None:
    """A snapshot first; Last-Event-ID resumes after it; an id of another run → resync."""
    drop(pool.projects[0], "stream.md", "sim: work 0.1s")
    wait_until(lambda: _state_of(pool, "proj00", "stream.md") == "done", 60)
    first = _read_events(pool, {}, 3)
    assert first[0][0] == "snapshot" and "proj00" in first[0][1]["projects"]
    with_ids = [e for e in first if e[2]]
    resume_from = with_ids[0][2]
    later = _read_events(pool, {"Last-Event-ID": resume_from}, 2)
    later_ids = [int(e[2].rsplit("-", 1)[1]) for e in later if e[2]]
    assert all(i > int(resume_from.rsplit("-", 1)[1]) for i in later_ids)
    stale = _read_events(pool, {"Last-Event-ID": "0000dead-5"}, 2)
    assert [e[0] for e in stale][:2] == ["resync", "snapshot"]


def test_status_and_reload_commands_go_through_the_api(pool: ApiDaemon) -> None:
    """`agentq status --json` reads the API (sessions with accounts); `reload` gets its answer."""
    env = {**pool.daemon.env(), "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    config = str(pool.daemon.config_path)
    status = subprocess.run(
        [sys.executable, "-m", "agentq", "status", "--json", "--config", config],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    )
    doc = json.loads(status.stdout)
    assert doc["running"] and doc["sessions"] and doc["sessions"][0]["account"] == "work"
    reload = subprocess.run(
        [sys.executable, "-m", "agentq", "reload", "--config", config],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert reload.returncode == 0 and "nothing changed" in reload.stdout, reload
