"""The daemon (a subprocess) delegating to real HTTP fakes on 127.0.0.1.

The local agent is the built-in ``instant`` executor, so these tests need no tmux and no
Claude Code: they exercise the daemon's delegation wiring under random faults, the
fallback to local, and secret hygiene. The daemon crashed at every delegation crash
point, for every provider kind, is in ``tests/integration/test_delegation.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentq.queue import taskfile
from tests.support.daemon import (
    Daemon,
    drop,
    inbox_left,
    make_projects,
    results,
    wait_until,
)
from tests.support.providers import (
    FakeAnthropic,
    FakeJobApi,
    FakeOpenAI,
    Faults,
    Reply,
    openai_error,
)

pytestmark = pytest.mark.e2e

PROVIDERS = ("jobs", "openai", "claude")
LOCAL_ANSWER = "instant answer"


@pytest.fixture
def canary() -> str:
    """The secret canary used as every provider's key."""
    return f"sk-CANARY-{uuid.uuid4()}"


@pytest.fixture
def fakes(canary: str) -> Iterator[dict[str, Any]]:
    """The three fake providers (10 % random faults), requiring the canary key."""
    faults = Faults(rate=0.1, seed=11, retry_after=0.01, slow_seconds=1.0)
    found: dict[str, Any] = {
        "jobs": FakeJobApi(faults=faults, api_key=canary, polls_to_complete=2),
        "openai": FakeOpenAI(faults=faults, api_key=canary),
        "claude": FakeAnthropic(faults=faults, api_key=canary),
    }
    for fake in found.values():
        fake.start()
    yield found
    for fake in found.values():
        fake.stop()


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    """Daemons to kill at teardown."""
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.close()


def _config(
    root: Path, fakes: dict[str, Any], canary: str, fallbacks: dict[str, list[str]] | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    kinds = {"jobs": "job-api", "openai": "openai-compatible", "claude": "anthropic"}
    models = {"openai": "gpt-4.1", "claude": "claude-sonnet-4-5"}
    providers = []
    for name, kind in kinds.items():
        entry: dict[str, Any] = {
            "name": name,
            "kind": kind,
            "base_url": fakes[name].base_url,
            "api_key_env": f"{name.upper()}_KEY",
            "timeout": 0.5,
            "max_retries": 5,
            "poll_interval": 0.05,
        }
        if name in models:
            entry["model"] = models[name]
        providers.append(entry)
    config = {
        "agent": {"profile": "instant", "answer": LOCAL_ANSWER},
        "projects": {"roots": [str(root / "projects")]},
        "dispatch": {"rescan_interval": "2s", "quiet_period": "0.2s"},
        "delegation": {"providers": providers, "fallbacks": fallbacks or {}},
    }
    env = {f"{name.upper()}_KEY": canary for name in kinds}
    return config, env


def _footers(paths: list[Path]) -> dict[str, taskfile.Footer]:
    found = {}
    for path in paths:
        text = path.read_text()
        assert taskfile.count_footers(text) == 1, path
        footer = taskfile.split_footer(text)[1]
        assert footer is not None
        found[path.name] = footer
    return found


def _drop_delegated(project: Path, count: int, prefix: str = "d") -> dict[str, str]:
    expected = {}
    for i in range(count):
        provider = PROVIDERS[i % 3]
        name = f"{prefix}{i:03d}.md"
        drop(project, name, f"delegated task {i}", preferred_ai=provider, allow_delegation=True)
        expected[name] = provider
    return expected


def _all_finished(projects: list[Path], count: int) -> bool:
    found = results(projects)
    return len(found["done"]) + len(found["failed"]) >= count and not inbox_left(projects)


def test_daemon_delegates_and_keeps_local_tasks_local(
    tmp_path: Path, fakes: dict[str, Any], canary: str, daemons: list[Daemon]
) -> None:
    """30 delegated tasks over 3 providers end in done/; tasks without keys run locally."""
    projects = make_projects(tmp_path / "projects", 2)
    config, env = _config(tmp_path, fakes, canary)
    daemon = Daemon(tmp_path, config, env)
    daemons.append(daemon)
    daemon.start()
    assert daemon.wait_ready()
    expected = _drop_delegated(projects[0], 30)
    for i in range(5):
        drop(projects[1], f"local{i}.md", f"plain local task {i}")
    wait_until(lambda: _all_finished(projects, 35), timeout=120, message=daemon.log())
    found = results(projects)
    assert found["failed"] == [], [p.read_text() for p in found["failed"]]
    footers = _footers(found["done"])
    assert sorted(footers) == sorted([*expected, *(f"local{i}.md" for i in range(5))])
    for name, provider in expected.items():
        assert (footers[name].executor, footers[name].target) == ("provider", provider)
        assert dict(footers[name].details)["job id"]
    for i in range(5):
        footer = footers[f"local{i}.md"]
        assert footer.executor != "provider" and footer.result == LOCAL_ANSWER
    assert fakes["jobs"].jobs_created == fakes["jobs"].distinct_keys == 10

    def settled_state() -> dict[str, Any] | None:
        """state.json once it counts every job (it is rewritten at most once a second)."""
        state = json.loads((daemon.state_dir / "state.json").read_text())
        done = state["delegation"]["completed"] + state["delegation"]["failed"] == 30
        return state if done else None

    state = wait_until(settled_state, 10)
    counters = state["delegation"]
    assert counters["completed"] == 30 and counters["active"] == 0
    assert counters["cost_total_usd"] > 0
    status = subprocess.run(
        [sys.executable, "-m", "agentq", "status", "--json", "--config", str(daemon.config_path)],
        capture_output=True,
        text=True,
        env=daemon.env(),
        timeout=60,
        check=True,
    ).stdout
    assert daemon.stop() == 0
    shown = json.loads(status).get("delegation", {})
    assert {k: shown.get(k) for k in ("completed", "failed", "active")} == {
        "completed": 30,
        "failed": 0,
        "active": 0,
    }, "agentq status --json shows the delegation counters"
    everything = [daemon.log(), status, json.dumps(state)] + [p.read_text() for p in found["done"]]
    assert not any(canary in text for text in everything)


def test_daemon_falls_back_on_401_down_to_local(
    tmp_path: Path, fakes: dict[str, Any], canary: str, daemons: list[Daemon]
) -> None:
    """jobs answers 401: the task goes to openai; when openai refuses too, to the local agent."""
    deny = openai_error("Incorrect API key provided.", "authentication_error")
    fakes["jobs"].script(Reply(401, deny))
    fakes["openai"].script(Reply(401, deny, when=lambda r: "LOCAL" in json.dumps(r.body)))
    projects = make_projects(tmp_path / "projects", 1)
    config, env = _config(tmp_path, fakes, canary, fallbacks={"jobs": ["openai", "local"]})
    daemon = Daemon(tmp_path, config, env)
    daemons.append(daemon)
    daemon.start()
    assert daemon.wait_ready()
    drop(projects[0], "hop.md", "answer remotely", preferred_ai="jobs", allow_delegation=True)
    drop(projects[0], "home.md", "LOCAL please", preferred_ai="jobs", allow_delegation=True)
    wait_until(lambda: _all_finished(projects, 2), timeout=120, message=daemon.log())
    found = results(projects)
    assert found["failed"] == [], [p.read_text() for p in found["failed"]]
    footers = _footers(found["done"])
    assert (footers["hop.md"].executor, footers["hop.md"].target) == ("provider", "openai")
    assert footers["home.md"].executor != "provider"
    assert footers["home.md"].result == LOCAL_ANSWER
    assert fakes["jobs"].jobs_created == 0
