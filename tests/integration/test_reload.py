"""Reloading the configuration of a running daemon (sim pool, private tmux server): SIGHUP,
``agentq reload`` and ``POST /api/reload``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from agentq.sessions.tmux import TmuxDriver
from tests.support.daemon import Daemon, drop, make_projects, results, wait_until
from tests.support.providers import FakeJobApi
from tests.support.webhook import WebhookSink

pytestmark = pytest.mark.integration

BAD_FRONTMATTER = "---\ntitle: [unclosed\n---\nbody"


@pytest.fixture
def sink() -> Iterator[WebhookSink]:
    """A webhook receiver for the notifications a reload adds."""
    with WebhookSink() as receiver:
        yield receiver


def _config(root: Path, socket: str, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "agent": {"profile": "sim"},
        "projects": {"paths": [str(root / "projects" / "proj00")]},
        "pool": {"prefix": "rl-", "min": 1, "max": 1},
        "tmux": {"socket_name": socket},
        "dispatch": {"rescan_interval": "30s", "quiet_period": "0.2s"},
        "completion": {"idle_timeout": "60s"},
    }
    for key, value in extra.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    return config


def _rewrite(daemon: Daemon, config: dict[str, Any]) -> None:
    """Write the daemon's configuration file anew (with the harness's own keys)."""
    doc = {"state_dir": str(daemon.state_dir), "api": {"listen": "127.0.0.1:0"}, **config}
    daemon.config_path.write_text(yaml.safe_dump(doc))


def _sighup(daemon: Daemon, marker: str, count: int = 1) -> None:
    """Send SIGHUP and wait until the log shows ``marker`` ``count`` times."""
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: daemon.log().count(marker) >= count, 30, message=f"no {marker!r} logged")


def _cli(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentq", *args, "--config", str(daemon.config_path)],
        env=daemon.env(),
        capture_output=True,
        text=True,
        timeout=90,
    )


def _api(daemon: Daemon) -> tuple[str, str]:
    state = json.loads((daemon.state_dir / "state.json").read_text())
    token = (daemon.home / ".config" / "agentq" / "token").read_text().strip()
    return str(state["api"]["url"]), token


def test_sighup_adds_a_project_and_a_webhook_target_without_a_restart(
    tmp_path: Path, socket_name: str, sink: WebhookSink
) -> None:
    """A project and a webhook added by SIGHUP work at once; the old project keeps working."""
    projects = make_projects(tmp_path / "projects", 2)
    daemon = Daemon(tmp_path, _config(tmp_path, socket_name))
    try:
        daemon.start()
        assert daemon.wait_ready()
        drop(projects[1], "early.md", "not served yet\nsim: work 0.1s")
        hook = {"kind": "webhook", "url": f"{sink.url}/hook", "events": ["task_failed"]}
        hook["min_interval"] = "0s"
        paths = [str(p) for p in projects]
        _rewrite(
            daemon,
            _config(tmp_path, socket_name, projects={"paths": paths}, notifications=[hook]),
        )
        _sighup(daemon, "configuration reloaded")
        wait_until(lambda: len(results(projects)["done"]) == 1, 60, message="new project idle")
        assert results(projects)["done"][0].parent.parent.parent == projects[1]
        drop(projects[1], "broken.md", BAD_FRONTMATTER)
        wait_until(lambda: sink.received, 30, message="the new target heard nothing")
        drop(projects[0], "old.md", "the first project still works\nsim: work 0.1s")
        wait_until(lambda: len(results(projects)["done"]) == 2, 60)
    finally:
        daemon.close()
    [body] = sink.bodies()
    assert body["event"] == "task_failed" and body["items"][0]["task"] == "broken.md"
    log = daemon.log()
    assert "applied=" in log and "notifications" in log and "projects.paths" in log


def test_agentq_reload_says_what_was_applied_and_what_needs_a_restart(
    tmp_path: Path, socket_name: str
) -> None:
    """The answer names the live keys and the restart keys; the latter keep their old value."""
    make_projects(tmp_path / "projects", 1)
    daemon = Daemon(tmp_path, _config(tmp_path, socket_name))
    try:
        daemon.start()
        assert daemon.wait_ready()
        changed = _config(
            tmp_path,
            socket_name,
            completion={"idle_timeout": "90s", "stale_after": "5m"},
            pool={"prefix": "zz-"},
        )
        _rewrite(daemon, changed)
        answer = _cli(daemon, "reload")
        sessions = TmuxDriver(socket_name).list_panes()
    finally:
        daemon.close()
    assert answer.returncode == 0, answer
    assert "applied: completion.idle_timeout, completion.stale_after" in answer.stdout
    assert "needs a restart (old value kept): pool.prefix" in answer.stdout
    assert "keys=pool.prefix" in daemon.log()
    assert not any(name.startswith("zz-") for name in sessions)


def test_a_broken_config_keeps_the_daemon_on_the_old_one_with_every_problem_logged(
    tmp_path: Path, socket_name: str
) -> None:
    """Two problems: both logged and answered; the daemon runs on, its old projects served."""
    projects = make_projects(tmp_path / "projects", 2)
    daemon = Daemon(tmp_path, _config(tmp_path, socket_name))
    try:
        daemon.start()
        assert daemon.wait_ready()
        broken = _config(tmp_path, socket_name, projects={"paths": [str(projects[1])]})
        broken["dispatch"]["rescan_intervall"] = "5s"  # an unknown key
        broken["pool"] = {"prefix": "rl-", "min": 3, "max": 1}  # max below min
        _rewrite(daemon, broken)
        cli = _cli(daemon, "reload")
        _sighup(daemon, "rescan_intervall")
        url, token = _api(daemon)
        answer = httpx.post(
            f"{url}/api/reload", headers={"Authorization": f"Bearer {token}"}, timeout=60
        )
        drop(projects[0], "still.md", "served by the old configuration\nsim: work 0.1s")
        drop(projects[1], "not-yet.md", "the broken file named this project\nsim: work 0.1s")
        wait_until(lambda: len(results(projects)["done"]) == 1, 60)
        log = daemon.log()
    finally:
        daemon.close()
    assert cli.returncode == 2 and "nothing was sent" in cli.stderr
    assert "rescan_intervall" in cli.stderr and "pool.max" in cli.stderr
    assert answer.status_code == 409
    message = answer.json()["message"]
    assert "2 problem(s)" in message and "rescan_intervall" in message and "pool.max" in message
    problems = [line for line in log.splitlines() if "keeps its running configuration" in line]
    assert any("rescan_intervall" in line for line in problems)
    assert any("pool.max" in line for line in problems)
    assert [p.name for p in results(projects)["done"]] == ["still.md"]
    assert (projects[1] / ".agent-queue" / "inbox" / "not-yet.md").exists()


def test_a_config_whose_target_cannot_be_built_is_not_applied_at_all(
    tmp_path: Path, socket_name: str
) -> None:
    """A file that parses but names a target no library can reach changes nothing else either."""
    projects = make_projects(tmp_path / "projects", 2)
    daemon = Daemon(tmp_path, _config(tmp_path, socket_name))
    try:
        daemon.start()
        assert daemon.wait_ready()
        target = {"kind": "apprise", "url": "nosuchscheme://example/topic", "name": "odd"}
        paths = [str(p) for p in projects]
        _rewrite(
            daemon,
            _config(tmp_path, socket_name, projects={"paths": paths}, notifications=[target]),
        )
        _sighup(daemon, "keeps its running configuration")
        drop(projects[1], "not-yet.md", "not served\nsim: work 0.1s")
        drop(projects[0], "still.md", "served\nsim: work 0.1s")
        wait_until(lambda: len(results(projects)["done"]) == 1, 60)
        state = json.loads((daemon.state_dir / "state.json").read_text())
    finally:
        daemon.close()
    assert state["projects"] == [str(projects[0])]
    assert [p.name for p in results(projects)["done"]] == ["still.md"]


def test_the_pool_grows_and_shrinks_busy_sessions_finishing_first(
    tmp_path: Path, socket_name: str
) -> None:
    """max 1 → 3: three sessions; → 1 with a task on rl-2: rl-1 goes, rl-2 after its task."""
    projects = make_projects(tmp_path / "projects", 1)
    daemon = Daemon(tmp_path, _config(tmp_path, socket_name))
    tmux = TmuxDriver(socket_name)
    try:
        daemon.start()
        assert daemon.wait_ready()
        wait_until(lambda: set(tmux.list_panes()) == {"rl-0"}, 30)
        _rewrite(daemon, _config(tmp_path, socket_name, pool={"min": 3, "max": 3}))
        _sighup(daemon, "configuration reloaded")
        wait_until(lambda: set(tmux.list_panes()) == {"rl-0", "rl-1", "rl-2"}, 30)
        wait_until(lambda: _session(daemon, "rl-2").get("state") == "idle", 30)
        drop(projects[0], "long.md", "pinned and slow\nsim: work 4s", session="rl-2")
        busy = wait_until(lambda: _session(daemon, "rl-2").get("state") == "busy", 30)
        assert busy
        _rewrite(daemon, _config(tmp_path, socket_name, pool={"min": 1, "max": 1}))
        _sighup(daemon, "configuration reloaded", count=2)
        wait_until(lambda: "rl-1" not in tmux.list_panes(), 30, message="idle rl-1 kept")
        assert "rl-2" in tmux.list_panes() and not results(projects)["done"]
        wait_until(lambda: len(results(projects)["done"]) == 1, 60)
        wait_until(lambda: set(tmux.list_panes()) == {"rl-0"}, 30, message="rl-2 not retired")
    finally:
        daemon.close()
    assert results(projects)["failed"] == []


def _session(daemon: Daemon, name: str) -> dict[str, Any]:
    path = daemon.state_dir / "state.json"
    state = json.loads(path.read_text()) if path.exists() else {}
    return next((s for s in state.get("sessions", []) if s.get("session") == name), {})


def test_a_removed_project_is_released_only_after_its_task_in_flight_finished(
    tmp_path: Path, socket_name: str
) -> None:
    """Its working task ends normally; a pending one is not claimed; then it is let go."""
    projects = make_projects(tmp_path / "projects", 2)
    paths = [str(p) for p in projects]
    daemon = Daemon(tmp_path, _config(tmp_path, socket_name, projects={"paths": paths}))
    try:
        daemon.start()
        assert daemon.wait_ready()
        drop(projects[1], "running.md", "in flight during the reload\nsim: work 4s")
        inbox = projects[1] / ".agent-queue" / "inbox"
        wait_until((inbox / "running.md.working").exists, 30)
        _rewrite(daemon, _config(tmp_path, socket_name, projects={"paths": paths[:1]}))
        _sighup(daemon, "configuration reloaded")
        drop(projects[1], "left.md", "dropped after the project was removed\nsim: work 0.1s")
        served = json.loads((daemon.state_dir / "state.json").read_text())["projects"]
        assert str(projects[1]) in served  # still held while its task runs
        wait_until(lambda: results(projects)["done"], 60, message="the task in flight was lost")
        wait_until(lambda: "project released" in daemon.log(), 30)
        wait_until(
            lambda: (
                json.loads((daemon.state_dir / "state.json").read_text())["projects"]
                == [str(projects[0])]
            ),
            30,
        )
        drop(projects[0], "kept.md", "the remaining project\nsim: work 0.1s")
        wait_until(lambda: len(results(projects)["done"]) == 2, 60)
    finally:
        daemon.close()
    assert sorted(p.name for p in results(projects)["done"]) == ["kept.md", "running.md"]
    assert (projects[1] / ".agent-queue" / "inbox" / "left.md").exists()


def test_a_job_in_flight_keeps_its_providers_client_while_new_tasks_use_the_new_one(
    tmp_path: Path,
) -> None:
    """Provider ``jobs`` moves to another URL: the running job ends where it started."""
    projects = make_projects(tmp_path / "projects", 1)

    def config(base_url: str) -> dict[str, Any]:
        provider = {"name": "jobs", "kind": "job-api", "base_url": base_url, "poll_interval": 0.1}
        return {
            "agent": {"profile": "instant"},
            "projects": {"paths": [str(projects[0])]},
            "dispatch": {"quiet_period": "0.2s"},
            "delegation": {"providers": [provider]},
        }

    with FakeJobApi(polls_to_complete=40) as old, FakeJobApi(polls_to_complete=2) as new:
        daemon = Daemon(tmp_path, config(old.base_url))
        try:
            daemon.start()
            assert daemon.wait_ready()
            drop(
                projects[0],
                "first.md",
                "on the old URL",
                allow_delegation=True,
                preferred_ai="jobs",
            )
            wait_until(lambda: old.jobs_created, 30)
            _rewrite(daemon, config(new.base_url))
            _sighup(daemon, "configuration reloaded")
            polls = len(old.requests_to("GET", "/jobs/"))
            drop(
                projects[0],
                "second.md",
                "on the new URL",
                allow_delegation=True,
                preferred_ai="jobs",
            )
            wait_until(lambda: len(results(projects)["done"]) == 2, 60)
        finally:
            daemon.close()
        assert (old.jobs_created, new.jobs_created) == (1, 1)
        assert len(old.requests_to("GET", "/jobs/")) > polls  # polled there after the reload
    assert results(projects)["failed"] == []
