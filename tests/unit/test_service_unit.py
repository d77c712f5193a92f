"""The systemd units ``agentq install-service`` renders: contents, paths, escaping, examples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agentq.cli.service import (
    Scope,
    UnitSpec,
    agentq_command,
    render,
    unit_spec,
    writable_paths,
)
from agentq.config.load import config_from_dict
from agentq.config.models import Config
from agentq.core.errors import ServiceFileError
from tests.support.units import EXAMPLE_HOME, EXAMPLES, example_spec

HOME = Path("/home/bob")
ENV = {"HOME": str(HOME)}


def settings(text: str) -> dict[str, list[str]]:
    """Every ``Key=value`` of a unit file, in order, per key (comments and sections skipped)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key, []).append(value)
    return out


def config(**data: Any) -> Config:
    return config_from_dict(data, ENV, HOME)


@pytest.mark.parametrize("scope", list(Scope), ids=lambda s: f"the {s.value} unit")
def test_the_committed_example_is_what_the_renderer_makes(scope: Scope) -> None:
    """``systemd/`` holds the rendered example (regenerate: python -m tests.support.units)."""
    assert EXAMPLES[scope].read_text() == render(example_spec(scope))


@pytest.mark.parametrize("scope", list(Scope), ids=lambda s: f"the {s.value} unit")
def test_the_unit_speaks_notify_restarts_and_never_kills_the_tmux_server(scope: Scope) -> None:
    """Type=notify with the watchdog, restarts, reload by SIGHUP, and KillMode=process."""
    unit = settings(render(example_spec(scope)))
    assert unit["Type"] == ["notify"]
    assert unit["NotifyAccess"] == ["main"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["RestartSec"] == ["5s"]
    assert unit["WatchdogSec"] == ["30s"]
    assert unit["TimeoutStopSec"] == ["2min"]
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    # Only the daemon is signalled on stop: the tmux server and every pane survive.
    assert unit["KillMode"] == ["process"]
    assert unit["ExecStart"] == [
        "/usr/local/bin/agentq run --config /home/alice/.config/agentq/config.yaml"
    ]


@pytest.mark.parametrize("scope", list(Scope), ids=lambda s: f"the {s.value} unit")
def test_the_sandbox_keeps_tmux_the_homes_and_the_jit_working(scope: Scope) -> None:
    """No PrivateTmp/ProtectHome (tmux socket, homes), no W^X (JIT), no RemoveIPC (sessions)."""
    unit = settings(render(example_spec(scope)))
    for absent in ("PrivateTmp", "ProtectHome", "MemoryDenyWriteExecute", "RemoveIPC"):
        assert absent not in unit, absent
    assert unit.get("ProcSubset", ["all"]) == ["all"]  # ps, free and Node read /proc/stat …
    assert unit["NoNewPrivileges"] == ["yes"]
    assert unit["ProtectSystem"] == ["strict"]
    assert unit["UMask"] == ["0077"]
    assert unit["SystemCallFilter"] == ["@system-service"]
    assert unit["CapabilityBoundingSet"] == [""]
    rw = unit["ReadWritePaths"]
    for path in ("/tmp", ".local/state/agentq", "code", ".claude-work", ".claude-shared"):
        assert f"-{EXAMPLE_HOME / path}" in rw or f"-{path}" in rw, path


def test_the_system_unit_runs_as_its_user_and_the_user_unit_has_no_user() -> None:
    """``User=`` only in the system unit; ProtectProc only where the manager supports it."""
    system = settings(render(example_spec(Scope.SYSTEM)))
    user = settings(render(example_spec(Scope.USER)))
    assert system["User"] == ["alice"]
    assert system["ProtectProc"] == ["invisible"]
    assert system["WantedBy"] == ["multi-user.target"]
    assert "User" not in user
    assert "ProtectProc" not in user
    assert "DevicePolicy" not in user
    assert user["WantedBy"] == ["default.target"]


def test_writable_paths_follow_the_configuration() -> None:
    """State dir, /tmp, projects, homes, shared root, the link's folder, the token's folder."""
    cfg = config(
        state_dir="~/st",
        projects={"roots": ["~/code"], "paths": ["/srv/p"]},
        accounts=[{"name": "a", "home": "~/.ca"}, {"name": "b", "home": "~/.cb"}],
        active_link="~/links/.claude",
        shared={"root": "~/.cs"},
        api={"token_file": "~/.config/agentq/token"},
    )
    assert writable_paths(cfg, HOME, "/run/tmux") == tuple(
        Path(p)
        for p in (
            "/home/bob/st",
            "/tmp",
            "/run/tmux",
            "/home/bob/code",
            "/srv/p",
            "/home/bob/.ca",
            "/home/bob/.cb",
            "/home/bob/.cs",
            "/home/bob/links",
            "/home/bob/.config/agentq",
        )
    )


@pytest.mark.parametrize(
    ("data", "present", "absent"),
    [
        ({}, ["/home/bob/.claude"], ["/home/bob/.claude-shared"]),
        ({"agent": {"profile": "instant"}}, [], ["/home/bob/.claude"]),
        (
            {"accounts": [{"name": "a", "home": "~/.ca"}]},
            ["/home/bob/.ca"],
            ["/home/bob/.claude", "/home/bob/.claude-shared"],
        ),
        ({"api": {"listen": None}}, [], ["/home/bob/.config/agentq"]),
    ],
    ids=[
        "without accounts the default agent home is writable",
        "the instant profile needs no agent home",
        "one account shares nothing",
        "a disabled API needs no token folder",
    ],
)
def test_writable_paths_cases(data: dict[str, Any], present: list[str], absent: list[str]) -> None:
    """Each folder is writable exactly when the configuration uses it."""
    paths = {str(p) for p in writable_paths(config(**data), HOME)}
    assert set(present) <= paths
    assert not set(absent) & paths
    assert "/tmp" in paths


def test_tmux_tmpdir_goes_into_the_environment_and_the_writable_paths() -> None:
    """A ``$TMUX_TMPDIR`` at install time: the daemon must reach the same tmux server."""
    spec = unit_spec(
        config(), Scope.USER, ["/opt/aq/bin/agentq", "run"], HOME, {"TMUX_TMPDIR": "/run/t"}, _no
    )
    assert ("TMUX_TMPDIR", "/run/t") in spec.environment
    assert Path("/run/t") in spec.writable
    path = dict(spec.environment)["PATH"].split(":")
    assert path[0] == "/opt/aq/bin" and "/usr/bin" in path


def test_the_path_starts_with_the_folders_of_tmux_git_and_the_agent() -> None:
    """Programs found at install time are found by the service too."""
    where = {"tmux": "/opt/tmux/bin/tmux", "claude": "/home/bob/.local/bin/claude"}
    spec = unit_spec(config(), Scope.USER, ["/usr/bin/agentq"], HOME, {}, where.get)
    path = dict(spec.environment)["PATH"].split(":")
    assert path[:3] == ["/usr/bin", "/opt/tmux/bin", "/home/bob/.local/bin"]
    assert len(path) == len(set(path))


def _no(_name: str) -> str | None:
    return None


def _spec(command: tuple[str, ...], writable: tuple[Path, ...], user: str = "bob") -> UnitSpec:
    return UnitSpec(Scope.SYSTEM, command, writable, (("PATH", "/usr/bin"),), user)


def test_values_with_spaces_percent_and_dollar_are_escaped() -> None:
    """Spaces are quoted, '%' doubled (specifiers), '$' doubled in ExecStart (variables)."""
    text = render(
        _spec(
            ("/opt/a b/agentq", "run", "--config", "/c/100%/$HOME.yaml"),
            (Path("/srv/my projects"), Path("/srv/50%")),
        )
    )
    unit = settings(text)
    assert unit["ExecStart"] == ['"/opt/a b/agentq" run --config /c/100%%/$$HOME.yaml']
    assert '"-/srv/my projects"' in unit["ReadWritePaths"]
    assert "-/srv/50%%" in unit["ReadWritePaths"]


@pytest.mark.parametrize(
    "spec",
    [
        _spec(("agentq", "run"), ()),
        _spec(("/bin/agentq", 'a"b'), ()),
        _spec(("/bin/agentq",), (Path("/srv/a\nb"),)),
        _spec(("/bin/agentq",), (Path("/srv/a\\b"),)),
        _spec(("/bin/agentq",), (), user="bob smith"),
    ],
    ids=[
        "a relative executable",
        "a double quote",
        "a line break in a path",
        "a backslash in a path",
        "a user name with a space",
    ],
)
def test_values_a_unit_cannot_carry_are_refused(spec: UnitSpec) -> None:
    """Refused with one line instead of a unit that means something else."""
    with pytest.raises(ServiceFileError):
        render(spec)


def test_the_executable_is_argv0_when_it_is_the_agentq_script(tmp_path: Path) -> None:
    """The console script as run; else the one on PATH; else ``python -m agentq``."""
    script = tmp_path / "bin" / "agentq"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert agentq_command(str(script), "/py", _no) == [str(script)]
    main = str(tmp_path / "agentq" / "__main__.py")
    assert agentq_command(main, "/py", lambda _n: str(script)) == [str(script)]
    assert agentq_command(main, "/py", _no) == ["/py", "-m", "agentq"]
