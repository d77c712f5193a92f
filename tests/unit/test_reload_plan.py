"""What a reload applies live and what needs a restart: the pure planner, one row per change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agentq.config.changes import LIVE_KEYS, flatten, plan_reload
from agentq.config.load import config_from_dict
from agentq.config.models import Config

ROOT = Path("/srv/agentq")


def config(**changes: Any) -> Config:
    """The base configuration with ``changes`` merged into its sections."""
    data: dict[str, Any] = {
        "state_dir": str(ROOT / "state"),
        "projects": {"roots": [str(ROOT / "code")]},
        "accounts": [
            {"name": "a", "home": str(ROOT / "a")},
            {"name": "b", "home": str(ROOT / "b")},
        ],
        "pool": {"prefix": "aq-", "min": 1, "max": 2, "dedicated": [{"name": "aq-3"}]},
        "tmux": {"socket_name": "agentq"},
        "notifications": [{"kind": "webhook", "url": "http://127.0.0.1:9/a", "name": "a"}],
    }
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return config_from_dict(data, {"HOME": str(ROOT)}, ROOT)


HOOK_B = {"kind": "webhook", "url": "http://127.0.0.1:9/b", "name": "b"}

ROWS = [
    pytest.param({}, (), (), id="nothing changed applies nothing and needs no restart"),
    pytest.param(
        {"projects": {"roots": [str(ROOT / "code"), str(ROOT / "more")]}},
        ("projects.roots",),
        (),
        id="a new project root applies live",
    ),
    pytest.param(
        {"projects": {"paths": [str(ROOT / "one")]}},
        ("projects.paths",),
        (),
        id="a new project path applies live",
    ),
    pytest.param(
        {
            "notifications": [
                {"kind": "webhook", "url": "http://127.0.0.1:9/a", "name": "a"},
                HOOK_B,
            ]
        },
        ("notifications",),
        (),
        id="a notification target added applies live",
    ),
    pytest.param(
        {"dispatch": {"rescan_interval": "5s", "quiet_period": "2s", "max_attempts": 5}},
        ("dispatch.max_attempts", "dispatch.quiet_period", "dispatch.rescan_interval"),
        (),
        id="dispatch settings apply live",
    ),
    pytest.param(
        {"completion": {"idle_timeout": "1h", "recycle": False, "stale_after": "5m"}},
        ("completion.idle_timeout", "completion.recycle", "completion.stale_after"),
        (),
        id="completion timeouts and recycling apply live",
    ),
    pytest.param(
        {"quota": {"cooldown": "1m", "confirm_polls": 3}},
        ("quota.confirm_polls", "quota.cooldown"),
        (),
        id="quota rules apply live",
    ),
    pytest.param(
        {"janitor": {"keep_done": "7d", "interval": "10m"}},
        ("janitor.interval", "janitor.keep_done"),
        (),
        id="janitor settings apply live",
    ),
    pytest.param(
        {"janitor": {"keep_worktrees": None}},
        ("janitor.keep_worktrees",),
        (),
        id="keeping worktrees forever applies live",
    ),
    pytest.param(
        {
            "delegation": {
                "providers": [
                    {"name": "jobs", "kind": "job-api", "base_url": "http://127.0.0.1:9/"}
                ],
                "stale_after": "1h",
            }
        },
        ("delegation.providers", "delegation.stale_after"),
        (),
        id="providers and the delegated stale rule apply live",
    ),
    pytest.param({"pool": {"max": 3}}, ("pool.max",), (), id="a larger pool applies live"),
    pytest.param(
        {"pool": {"min": 0, "max": 1}}, ("pool.max", "pool.min"), (), id="a smaller pool too"
    ),
    pytest.param(
        {"pool": {"prefix": "pq-"}}, (), ("pool.prefix",), id="the pool's prefix needs a restart"
    ),
    pytest.param(
        {"pool": {"start_index": 5}},
        (),
        ("pool.start_index",),
        id="its start index needs a restart",
    ),
    pytest.param(
        {"pool": {"max": 4, "prefix": "pq-"}},
        (),
        ("pool.max", "pool.prefix"),
        id="a pool that would grow over a dedicated session under the kept prefix waits too",
    ),
    pytest.param(
        {"accounts": [{"name": "a", "home": str(ROOT / "a")}]},
        (),
        ("accounts",),
        id="the accounts need a restart",
    ),
    pytest.param(
        {"active_link": str(ROOT / "claude")},
        (),
        ("active_link",),
        id="the active link needs a restart",
    ),
    pytest.param(
        {"shared": {"root": str(ROOT / "shared2")}},
        (),
        ("shared.root",),
        id="the shared root needs a restart",
    ),
    pytest.param(
        {"tmux": {"socket_name": "other"}},
        (),
        ("tmux.socket_name",),
        id="the tmux socket needs a restart",
    ),
    pytest.param(
        {"state_dir": str(ROOT / "state2")}, (), ("state_dir",), id="the state dir needs a restart"
    ),
    pytest.param(
        {"api": {"listen": "127.0.0.1:9999"}},
        (),
        ("api.listen",),
        id="the API's address needs a restart",
    ),
    pytest.param(
        {"agent": {"profile": "sim", "command": "claude2"}},
        (),
        ("agent.command", "agent.profile"),
        id="the agent's profile and command need a restart",
    ),
    pytest.param(
        {"agent": {"on_permission": "answer"}},
        ("agent.on_permission",),
        (),
        id="how a permission dialog is answered applies live",
    ),
    pytest.param(
        {"completion": {"stale_after": "1m"}, "tmux": {"socket_name": "other"}},
        ("completion.stale_after",),
        ("tmux.socket_name",),
        id="a mixed change applies one part and keeps the other",
    ),
]


@pytest.mark.parametrize(("changes", "applied", "restart"), ROWS)
def test_plan(changes: dict[str, Any], applied: tuple[str, ...], restart: tuple[str, ...]) -> None:
    """Each change lands in its list; the config to run on keeps every restart key's old value."""
    old, new = config(), config(**changes)
    plan = plan_reload(old, new)
    assert (plan.applied, plan.restart) == (applied, restart)
    running, before, wanted = flatten(plan.config), flatten(old), flatten(new)
    for key in running:
        expected = before[key] if key in restart else wanted[key]
        assert running[key] == expected, key


def test_the_summary_names_what_was_applied_and_what_waits() -> None:
    """The operator's answer: one line for each list."""
    changes = {"pool": {"max": 3, "prefix": "pq-"}, "api": {"listen": "127.0.0.1:1"}}
    summary = plan_reload(config(), config(**changes)).summary()
    assert summary.splitlines() == [
        "configuration reloaded",
        "applied: pool.max",
        "needs a restart (old value kept): api.listen, pool.prefix",
    ]
    assert plan_reload(config(), config()).summary().endswith("nothing changed")


def test_every_live_key_exists() -> None:
    """The live list names real keys (a renamed key would silently need a restart)."""
    assert set(LIVE_KEYS) <= set(flatten(config()))


def test_touches_reads_sections() -> None:
    """``touches("pool")`` is any applied pool key."""
    plan = plan_reload(config(), config(pool={"max": 3}))
    assert plan.touches("pool") and not plan.touches("delegation", "projects")
