"""``agentq doctor``: the checks on data, and a broken and a good setup end to end."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
import yaml

from agentq.agents.hooks import merge_hooks
from agentq.cli.doctor import (
    Check,
    Level,
    PathFacts,
    Probes,
    check_agent,
    check_api,
    check_inotify,
    check_state_dir,
    check_tmux,
    run_command,
    run_doctor,
)
from agentq.core.lock import InstanceLock

UID = os.getuid()


@pytest.mark.parametrize(
    ("text", "level"),
    [
        (None, Level.FAIL),
        ("tmux 3.1c", Level.FAIL),
        ("tmux 3.2", Level.OK),
        ("tmux 3.3a", Level.OK),
        ("tmux next-3.6", Level.OK),
        ("tmux master", Level.WARN),
    ],
)
def test_tmux_needs_3_2(text: str | None, level: Level) -> None:
    """Missing or older than 3.2 fails; an unreadable version only warns."""
    assert check_tmux(text).level is level


@pytest.mark.parametrize(
    ("text", "level"),
    [
        (None, Level.FAIL),
        ("2.1.100 (Claude Code)", Level.FAIL),
        ("2.1.197 (Claude Code)", Level.OK),
        ("2.1.250 (Claude Code)", Level.OK),
        ("2.1.332 (Claude Code)", Level.OK),
        ("2.1.333 (Claude Code)", Level.WARN),
        ("2.2.0 (Claude Code)", Level.WARN),
        ("1.0.84 (Claude Code)", Level.FAIL),
    ],
)
def test_the_agent_version_against_the_tested_range(text: str | None, level: Level) -> None:
    """Older than 2.1.197 fails, newer than 2.1.332 warns "untested", missing fails."""
    check = check_agent("claude-code", "claude", text)
    assert check.level is level
    if level is Level.WARN:
        assert "untested" in check.detail
    assert check_agent("sim", "claude", None).level is Level.OK


def test_inotify_limits_need_one_per_inbox_and_a_margin() -> None:
    """Both limits are compared with the inbox count plus the spare margin."""
    ok, low = check_inotify(2000, 100, 10)
    assert (ok.level, low.level) == (Level.OK, Level.OK)
    watches, instances = check_inotify(1000, 20, 10)
    assert (watches.level, instances.level) == (Level.FAIL, Level.FAIL)
    assert watches.fix is not None and "fs.inotify.max_user_watches=1034" in watches.fix
    assert [c.level for c in check_inotify(None, None, 1)] == [Level.WARN, Level.WARN]


@pytest.mark.parametrize(
    ("facts", "level"),
    [
        (PathFacts(True, True, 0o40700, UID), Level.OK),
        (PathFacts(True, True, 0o40755, UID), Level.FAIL),
        (PathFacts(True, True, 0o40700, UID + 1), Level.FAIL),
        (PathFacts(True, False, 0o100600, UID), Level.FAIL),
        (PathFacts(False), Level.WARN),
    ],
    ids=["0700 and ours", "0755", "someone else's", "a file", "not there yet"],
)
def test_the_state_dir_is_ours_and_private(facts: PathFacts, level: Level) -> None:
    """The state folder must be a 0700 directory owned by us."""
    assert check_state_dir(Path("/s"), facts, UID).level is level


def test_the_api_is_checked_only_while_the_daemon_runs() -> None:
    """Off, not running, answering, failing, unreachable."""
    assert check_api(None, True, None, None).level is Level.OK
    assert check_api("127.0.0.1:8377", False, None, None).level is Level.OK
    assert check_api("127.0.0.1:8377", True, (200, "{}"), None).level is Level.OK
    assert check_api("127.0.0.1:8377", True, (503, "stuck"), None).level is Level.FAIL
    refused = check_api("127.0.0.1:8377", True, None, "Connection refused")
    assert (refused.level, "Connection refused" in refused.detail) == (Level.FAIL, True)


def test_a_check_prints_as_one_line() -> None:
    """``<level> <check>: <detail>[ — fix: <how>]``."""
    assert Check(Level.OK, "tmux", "tmux 3.3a").line() == "ok tmux: tmux 3.3a"
    assert (
        Check(Level.FAIL, "state dir", "/s has mode 0755", "chmod 700 /s").line()
        == "fail state dir: /s has mode 0755 — fix: chmod 700 /s"
    )


# -- whole setups ---------------------------------------------------------------------------


class FakeMachine:
    """Probes for a test: tmux answers 3.3a, other commands really run; limits and API faked."""

    def __init__(self, watches: int, instances: int = 8192) -> None:
        self.sysctl = {"max_user_watches": str(watches), "max_user_instances": str(instances)}
        self.health: list[tuple[str, int]] = []

    def run(self, argv: Sequence[str], env: Mapping[str, str]) -> tuple[int, str] | None:
        if list(argv) == ["tmux", "-V"]:
            return 0, "tmux 3.3a"
        return run_command(argv, env)

    def get_health(self, host: str, port: int) -> tuple[int, str]:
        self.health.append((host, port))
        return 200, '{"ok": true, "status": "ok"}'

    def probes(self) -> Probes:
        return Probes(self.run, self.sysctl.get, self.get_health, UID)


def fake_claude(folder: Path, version: str) -> Path:
    """A ``claude`` script that only prints its version."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "claude"
    script.write_text(f'#!/bin/sh\necho "{version} (Claude Code)"\n')
    script.chmod(0o755)
    return script


def setup(tmp_path: Path, version: str) -> tuple[Path, dict[str, object]]:
    """Two accounts sharing state, three projects, hooks merged, a 0700 state dir."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    shared = tmp_path / "shared"
    homes = {name: tmp_path / f"claude-{name}" for name in ("a", "b")}
    for home in homes.values():
        home.mkdir()
        for link in ("projects", "file-history", "session-env"):
            (shared / link).mkdir(parents=True, exist_ok=True)
            (home / link).symlink_to(shared / link)
        merge_hooks(home / "settings.json", state)
    for name in ("alpha", "beta", "gamma"):
        (tmp_path / "projects" / name / ".agent-queue" / "inbox").mkdir(parents=True)
    token = tmp_path / "token"
    token.write_text("secret\n")
    token.chmod(0o600)
    config: dict[str, object] = {
        "state_dir": str(state),
        "projects": {"roots": [str(tmp_path / "projects")]},
        "agent": {"command": str(fake_claude(tmp_path / "bin", version))},
        "accounts": [{"name": name, "home": str(home)} for name, home in homes.items()],
        "shared": {"root": str(shared)},
        "api": {"listen": "127.0.0.1:18377", "token_file": str(token)},
    }
    return state, config


def doctor(tmp_path: Path, config: Mapping[str, object], machine: FakeMachine) -> tuple[int, str]:
    """Write the config, run the doctor, return its exit code and output."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(dict(config)))
    out = io.StringIO()
    code = run_doctor(path, dict(os.environ), out, probes=machine.probes())
    return code, out.getvalue()


def test_a_good_setup_passes_every_check(tmp_path: Path) -> None:
    """Everything in place, the daemon running with its API: every line ok, exit 0."""
    state, config = setup(tmp_path, "2.1.332")
    machine = FakeMachine(watches=8192)
    lock = InstanceLock(state / "lock")
    lock.acquire()  # the daemon "runs": the API gets checked
    try:
        code, out = doctor(tmp_path, config, machine)
    finally:
        lock.release()
    lines = out.splitlines()
    assert code == 0, out
    assert all(line.startswith("ok ") for line in lines), out
    names = [line.split(":")[0].removeprefix("ok ") for line in lines]
    assert names == [
        "config",
        "tmux",
        "agent",
        "hooks a",
        "hooks b",
        "links",
        "state dir",
        "inotify max_user_watches",
        "inotify max_user_instances",
        "api",
        "token file",
    ]
    assert machine.health == [("127.0.0.1", 18377)]
    assert "Claude Code 2.1.332" in out


def test_a_broken_setup_lists_every_problem_and_exits_1(tmp_path: Path) -> None:
    """Bad hook file, wrong link, 0755 state dir, an old claude, a low watch limit: all listed."""
    state, config = setup(tmp_path, "2.1.100")
    state.chmod(0o755)
    home_a, home_b = tmp_path / "claude-a", tmp_path / "claude-b"
    (home_a / "settings.json").write_text("{not json")
    settings_b = json.loads((home_b / "settings.json").read_text())
    del settings_b["hooks"]["StopFailure"]
    (home_b / "settings.json").write_text(json.dumps(settings_b))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (home_b / "projects").unlink()
    (home_b / "projects").symlink_to(elsewhere)
    (tmp_path / "token").chmod(0o644)

    code, out = doctor(tmp_path, config, FakeMachine(watches=100))

    assert code == 1
    failures = [line for line in out.splitlines() if line.startswith("fail ")]
    expected = [
        "fail agent: Claude Code 2.1.100 is too old",
        f"fail hooks a: {home_a / 'settings.json'}: not valid JSON",
        f"fail hooks b: {home_b / 'settings.json'}: no agentq hook for StopFailure",
        f"fail links: account b: {home_b / 'projects'} points to {elsewhere}",
        f"fail state dir: {state} has mode 0755 — fix: chmod 700 {state}",
        "fail inotify max_user_watches: 100 is below 1027 (3 inboxes + 1024 spare)",
        f"fail token file: {tmp_path / 'token'} has mode 0644 — fix: chmod 600",
    ]
    assert len(failures) == len(expected), out
    for line, start in zip(failures, expected, strict=True):
        assert line.startswith(start), (line, start)


def test_hooks_of_another_state_dir_and_an_invalid_config(tmp_path: Path) -> None:
    """Hooks writing elsewhere fail; an invalid config fails once per problem, rest not run."""
    _, config = setup(tmp_path, "2.1.197")
    merge_hooks(tmp_path / "claude-a" / "settings.json", tmp_path / "other-state")
    code, out = doctor(tmp_path, config, FakeMachine(watches=8192))
    assert code == 1
    assert "fail hooks a:" in out and "another state folder" in out
    assert "ok hooks b:" in out
    broken = {**config, "pool": {"min": 3, "max": 2}, "quota": {"confirm_pols": 2}}
    code, out = doctor(tmp_path, broken, FakeMachine(watches=8192))
    lines = out.splitlines()
    assert code == 1
    assert [line.split(":")[0] for line in lines if line.startswith("fail")] == [
        "fail config",
        "fail config",
    ]
    assert lines[-1].startswith("warn other checks: not run")


def test_json_output_has_the_same_checks(tmp_path: Path) -> None:
    """``--json``: ``ok`` and the list of checks with level, name, detail and fix."""
    _, config = setup(tmp_path, "2.1.400")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    out = io.StringIO()
    code = run_doctor(path, dict(os.environ), out, as_json=True, probes=FakeMachine(8192).probes())
    doc = json.loads(out.getvalue())
    assert code == 0 and doc["ok"] is True
    agent = next(check for check in doc["checks"] if check["check"] == "agent")
    assert agent["level"] == "warn" and "untested" in agent["detail"]
    assert set(agent) == {"level", "check", "detail", "fix"}
