"""Fixtures for the e2e tests: the real Claude Code CLI, the mock Anthropic API, the daemon.

Every test that takes ``claude_bin`` runs once per Claude Code version of the tested range
(:data:`CLAUDE_VERSIONS`, test ids ``cc2.1.197``, ``cc2.1.332``). The binaries come from
``$AGENTQ_CLAUDE_BINS`` (``2.1.197=/path/to/claude:2.1.332=/path/to/claude``; ``.ci/run``
installs both versions and exports it), else from ``$AGENTQ_CLAUDE_BIN`` or ``claude`` on PATH
when that binary is the version wanted. A version without its binary fails its tests, never
skips them. Every account home, project and tmux server lives under the test's ``tmp_path`` or
on a private ``-L`` socket.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentq.agents.profiles import TESTED_CLAUDE_CODE
from tests.support.anthropic_mock import MockAnthropic
from tests.support.wait import wait_until

#: The Claude Code versions agentq is tested against (oldest first; .ci/run installs them).
CLAUDE_VERSIONS = TESTED_CLAUDE_CODE
BINS_VARIABLE = "AGENTQ_CLAUDE_BINS"
YEAR_MS = 365 * 24 * 3600 * 1000


@dataclass(frozen=True)
class ClaudeHome:
    """One subscriber account's config dir (``CLAUDE_CONFIG_DIR``) and what runs it."""

    name: str
    path: Path
    token: str
    env: dict[str, str]


def claude_bins(value: str) -> dict[str, str]:
    """``$AGENTQ_CLAUDE_BINS`` as {version: path}: ``version=path`` items joined by ``:``."""
    bins = {}
    for item in value.split(":"):
        version, sep, path = item.partition("=")
        if sep and version.strip() and path.strip():
            bins[version.strip()] = path.strip()
    return bins


def claude_version_of(path: str, home: Path) -> str | None:
    """What ``claude --version`` says (``2.1.332``), run offline with a throwaway home."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "CLAUDE_CONFIG_DIR": str(home / ".claude"),
        "DISABLE_AUTOUPDATER": "1",
    }
    try:
        done = subprocess.run(
            [path, "--version"], env=env, capture_output=True, text=True, timeout=60, check=False
        )
    except OSError:
        return None
    words = done.stdout.split()
    return words[0] if done.returncode == 0 and words else None


@pytest.fixture(
    scope="session", params=CLAUDE_VERSIONS, ids=[f"cc{version}" for version in CLAUDE_VERSIONS]
)
def claude_version(request: pytest.FixtureRequest) -> str:
    """The Claude Code version this test runs against (one run per tested version)."""
    return str(request.param)


@pytest.fixture(scope="session")
def claude_bin(claude_version: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The Claude Code executable of ``claude_version``; the test fails (never skips) without."""
    home = tmp_path_factory.mktemp(f"claude-version-{claude_version}")
    listed = claude_bins(os.environ.get(BINS_VARIABLE, "")).get(claude_version)
    candidates = [listed] if listed else []
    candidates += [os.environ.get("AGENTQ_CLAUDE_BIN") or "", shutil.which("claude") or ""]
    seen = {}
    for path in filter(None, candidates):
        if os.access(path, os.X_OK):
            seen[path] = claude_version_of(path, home)
            if seen[path] == claude_version:
                return path
    pytest.fail(
        f"Claude Code {claude_version} is required for the e2e tests: set {BINS_VARIABLE} to"
        f" 'VERSION=/path/to/claude' items joined by ':' (.ci/run installs every tested version"
        f" and exports it); found {seen or 'no claude binary'}"
        f" ({BINS_VARIABLE}={os.environ.get(BINS_VARIABLE)!r})"
    )


@pytest.fixture
def mock_api() -> Iterator[MockAnthropic]:
    """A running mock of the Anthropic Messages API on 127.0.0.1."""
    with MockAnthropic() as api:
        yield api


@pytest.fixture
def agent_env(mock_api: MockAnthropic) -> dict[str, str]:
    """The environment the agent runs with: the mock's URL, no updater, UTC, few retries."""
    return {
        "ANTHROPIC_BASE_URL": mock_api.url,
        "DISABLE_AUTOUPDATER": "1",
        "TZ": "UTC",
        "IS_SANDBOX": "1",
        "CLAUDE_CODE_MAX_RETRIES": "2",
    }


def write_claude_home(
    root: Path,
    name: str,
    token: str,
    trusted: Sequence[Path],
    env: dict[str, str],
    version: str = CLAUDE_VERSIONS[0],
) -> ClaudeHome:
    """Write a ready-to-run subscriber config dir: onboarded (for ``version``), trusted
    folders, bypass accepted."""
    home = root / f"claude-{name}"
    home.mkdir(parents=True, exist_ok=True)
    projects = {
        str(p.resolve()): {"hasTrustDialogAccepted": True, "allowedTools": []} for p in trusted
    }
    state = {
        "hasCompletedOnboarding": True,
        "lastOnboardingVersion": version,
        "theme": "dark",
        "projects": projects,
    }
    (home / ".claude.json").write_text(json.dumps(state, indent=2))
    oauth = {
        "accessToken": token,
        "refreshToken": "x",
        "expiresAt": int(time.time() * 1000) + YEAR_MS,
        "scopes": ["user:inference", "user:profile"],
        "subscriptionType": "pro",
    }
    credentials = home / ".credentials.json"
    fd = os.open(credentials, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"claudeAiOauth": oauth}, out)
    settings = {"skipDangerousModePermissionPrompt": True}
    (home / "settings.json").write_text(json.dumps(settings, indent=2))
    return ClaudeHome(name, home, token, dict(env))


@pytest.fixture
def claude_home(agent_env: dict[str, str], claude_version: str) -> Callable[..., ClaudeHome]:
    """A factory ``claude_home(root, name, token=None, trusted=())`` for account homes.

    The token defaults to the subscriber OAuth token ``sk-ant-oat01-<name>``; the home is
    onboarded for the version under test.
    """

    def make(
        root: Path, name: str, token: str | None = None, trusted: Sequence[Path] = ()
    ) -> ClaudeHome:
        token = token or f"sk-ant-oat01-{name}"
        return write_claude_home(root, name, token, trusted, agent_env, claude_version)

    return make


class DaemonProcess:
    """``python -m agentq run`` as a subprocess, with a systemd notify socket for READY."""

    def __init__(self, root: Path, config: dict[str, Any], env: dict[str, str]) -> None:
        self.root = root
        self.state_dir = root / "state"
        self.config_path = root / "config.yaml"
        self.config_path.write_text(
            yaml.safe_dump(
                {"state_dir": str(self.state_dir), "api": {"listen": "127.0.0.1:0"}, **config}
            )
        )
        self.log_path = root / "daemon.log"
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None

    def start(self) -> None:
        """Start the daemon; :meth:`wait_ready` waits for it."""
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock_path = self.root / "notify.sock"
        self._sock.bind(str(sock_path))
        env = {**self.env, "NOTIFY_SOCKET": str(sock_path)}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agentq", "run", "--config", str(self.config_path)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.root,
            )

    def wait_ready(self, timeout: float = 60) -> None:
        """Wait for ``READY=1``; fail with the log if the daemon dies or takes too long."""
        assert self._sock is not None and self.proc is not None
        self._sock.settimeout(0.2)

        def ready() -> bool:
            try:
                message = self._sock.recv(4096).decode() if self._sock else ""
            except TimeoutError:
                message = ""
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"the daemon exited ({self.proc.returncode}); log:\n{self.log()}")
            return "READY=1" in message

        wait_until(ready, timeout, interval=0, message=f"daemon READY; log:\n{self.log()}")

    def log(self) -> str:
        """The daemon's output so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> int | None:
        """SIGTERM (then SIGKILL) the daemon; return its exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        return self.proc.returncode


@pytest.fixture
def run_daemon(tmp_path: Path, tmux_socket: str) -> Iterator[Callable[..., DaemonProcess]]:
    """A factory that starts the daemon with a config dict and waits for READY.

    The daemon gets the test's private tmux socket. At teardown it is stopped before that
    tmux server is killed (this fixture depends on ``tmux_socket``, so it is torn down
    first): a daemon still running would relaunch the sessions it lost.
    """
    started: list[DaemonProcess] = []

    def start(config: dict[str, Any]) -> DaemonProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTQ_", "NOTIFY_"))}
        config = {**config, "tmux": {"socket_name": tmux_socket}}
        daemon = DaemonProcess(tmp_path, config, env)
        started.append(daemon)
        daemon.start()
        daemon.wait_ready()
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


def add_stop_recorder(
    settings_path: Path, record_dir: Path, events: Sequence[str] = ("Stop", "StopFailure")
) -> None:
    """Add user hooks for ``events`` (``Stop``/``StopFailure``) recording into ``record_dir``.

    They run ``python -m agentq.agents.hooks`` (not ``-m agentq hook``, the marker the daemon
    replaces as its own), so they are a second, independent witness of the hook calls.
    """
    settings = json.loads(settings_path.read_text())
    hooks = settings.setdefault("hooks", {})
    for event in events:
        argv = [sys.executable, "-m", "agentq.agents.hooks", event, "--state-dir", str(record_dir)]
        entry = {"type": "command", "command": shlex.join(argv)}
        hooks.setdefault(event, []).append({"hooks": [entry]})
    settings_path.write_text(json.dumps(settings, indent=2))


@dataclass(frozen=True)
class AgentqRun:
    """A running daemon on one subscriber account (``a``) and the projects it serves."""

    daemon: DaemonProcess
    home: ClaudeHome
    projects: list[Path]
    recorder: Path


@pytest.fixture
def agentq_run(
    tmp_path: Path,
    claude_bin: str,
    claude_home: Callable[..., ClaudeHome],
    run_daemon: Callable[..., DaemonProcess],
) -> Callable[[Sequence[str]], AgentqRun]:
    """A factory: projects by name under one root, account ``a``, ``agentq run`` started.

    The account also gets the test's own Stop/StopFailure recorder (see
    :func:`add_stop_recorder`) writing into ``AgentqRun.recorder``.
    """

    def start(names: Sequence[str]) -> AgentqRun:
        root = tmp_path / "projects"
        projects = []
        for name in names:
            for sub in ("inbox", "tmp", "done", "failed"):
                (root / name / ".agent-queue" / sub).mkdir(parents=True, exist_ok=True)
            projects.append(root / name)
        home = claude_home(tmp_path, "a", trusted=projects)
        recorder = tmp_path / "recorder"
        add_stop_recorder(home.path / "settings.json", recorder)
        config = {
            "projects": {"roots": [str(root)]},
            "agent": {
                "profile": "claude-code",
                "command": claude_bin,
                "args": ["--dangerously-skip-permissions"],
                "env": home.env,
            },
            "accounts": [{"name": "a", "home": str(home.path)}],
            "pool": {"prefix": "e2e-", "min": 1, "max": 2},
            "dispatch": {"rescan_interval": "2s", "quiet_period": "0.2s"},
            "completion": {"idle_timeout": "2m", "task_timeout": "3m"},
        }
        return AgentqRun(run_daemon(config), home, projects, recorder)

    return start
