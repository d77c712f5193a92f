"""Run ``python -m agentq run`` as a subprocess against a temp root, the way systemd would."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

import tests
from agentq.queue import taskfile
from tests.support.wait import wait_until

#: The folder holding the ``tests`` package: the launcher's subprocess imports it from there.
_REPO_ROOT = Path(tests.__file__).resolve().parent.parent

__all__ = ["Daemon", "drop", "footer_count", "inbox_left", "make_projects", "results", "wait_until"]


class Daemon:
    """One daemon process under test: config in ``root``, HOME in ``root/home``, notify socket.

    ``tweaks`` start it through :mod:`tests.support.launch` with those collaborators
    replaced (e.g. ``["poison-instant"]``); without, it is ``python -m agentq run``.
    """

    #: The ``agentq`` sub-command this harness runs (``worker`` for a fleet host).
    subcommand = "run"

    def __init__(
        self,
        root: Path,
        config: dict[str, Any],
        env: dict[str, str] | None = None,
        tweaks: Sequence[str] = (),
    ) -> None:
        self.root = root
        self.home = root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.state_dir = root / "state"
        # A free port: several test daemons run at once, and 8377 may be taken.
        config = {"state_dir": str(self.state_dir), "api": {"listen": "127.0.0.1:0"}, **config}
        self.config_path = root / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.extra_env = env or {}
        self.tweaks = tuple(tweaks)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = root / "daemon.log"
        self.starts = 0
        self._sock: socket.socket | None = None

    def env(self, crash_at: str | None = None) -> dict[str, str]:
        """The daemon's environment: private HOME and TMUX_TMPDIR, optional crash point."""
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("AGENTQ_", "TMUX", "NOTIFY_"))
        }
        env.update({"HOME": str(self.home), "TMUX_TMPDIR": str(self.root), **self.extra_env})
        if crash_at:
            env["AGENTQ_CRASH_AT"] = crash_at
        if self.tweaks:
            path = env.get("PYTHONPATH", "")
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO_ROOT), path) if p)
        return env

    def command(self) -> list[str]:
        """The daemon's command line (through the test launcher when tweaks are asked for)."""
        args = [self.subcommand, "--config", str(self.config_path)]
        if self.tweaks:
            launch = ["-m", "tests.support.launch", ",".join(self.tweaks), "--"]
            return [sys.executable, *launch, *args]
        return [sys.executable, "-m", "agentq", *args]

    def start(self, crash_at: str | None = None, notify: bool = True) -> None:
        """Start the daemon (does not wait for READY)."""
        env = self.env(crash_at)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if notify:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock_path = self.root / f"notify-{self.starts}.sock"
            sock_path.unlink(missing_ok=True)
            self._sock.bind(str(sock_path))
            env["NOTIFY_SOCKET"] = str(sock_path)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command(),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        self.starts += 1

    def wait_ready(self, timeout: float = 60) -> bool:
        """Wait for ``READY=1`` on the notify socket; False if the process died first."""
        assert self._sock is not None and self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._sock.settimeout(0.2)
            try:
                msg = self._sock.recv(4096).decode()
            except TimeoutError:
                if self.proc.poll() is not None:
                    return False
                continue
            if "READY=1" in msg:
                return True
        raise AssertionError(f"daemon not ready within {timeout}s; log:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL the daemon and reap it."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
        if self.proc:
            self.proc.wait(timeout=30)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM the daemon and return its exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout=timeout)

    def wait_exit(self, timeout: float = 60) -> int:
        """Wait for the daemon to exit on its own."""
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def status(self) -> dict[str, Any]:
        """``agentq status --json`` for this daemon's configuration."""
        out = subprocess.run(
            [sys.executable, "-m", "agentq", "status", "--json", "--config", str(self.config_path)],
            env=self.env(),
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        doc: dict[str, Any] = json.loads(out.stdout)
        return doc

    def state(self) -> dict[str, Any]:
        """The daemon's ``state.json`` (empty before the first save)."""
        path = self.state_dir / "state.json"
        doc: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        return doc

    def counter(self, name: str) -> int:
        """One of the daemon's cumulative counters from ``state.json`` (0 when unset)."""
        return int(self.state().get("counters", {}).get(name, 0))

    def log(self) -> str:
        """The daemon's combined output so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self) -> None:
        """Stop everything this harness started."""
        self.kill()
        if self._sock:
            self._sock.close()
            self._sock = None


def make_projects(root: Path, count: int) -> list[Path]:
    """Create ``count`` projects with empty queues under ``root``."""
    projects = []
    for i in range(count):
        p = root / f"proj{i:02d}"
        for sub in ("inbox", "tmp", "done", "failed"):
            (p / ".agent-queue" / sub).mkdir(parents=True, exist_ok=True)
        projects.append(p)
    return projects


def drop(project: Path, name: str, body: str = "do the thing", **meta: Any) -> Path:
    """Drop a task the Maildir way (write in tmp/, rename into inbox/)."""
    front = f"---\n{yaml.safe_dump(meta)}---\n" if meta else ""
    tmp = project / ".agent-queue" / "tmp" / f"{name}.{os.getpid()}.tmp"
    tmp.write_text(f"{front}{body}\n")
    final = project / ".agent-queue" / "inbox" / name
    os.rename(tmp, final)
    return final


def results(projects: list[Path]) -> dict[str, list[Path]]:
    """Every file in done/ and failed/ (dotfiles excluded), keyed by folder name."""
    out: dict[str, list[Path]] = {"done": [], "failed": []}
    for p in projects:
        for folder in ("done", "failed"):
            d = p / ".agent-queue" / folder
            out[folder] += [f for f in d.iterdir() if not f.name.startswith(".")]
    return out


def inbox_left(projects: list[Path]) -> list[Path]:
    """Task files (pending or in flight) still in any inbox."""
    return [
        f
        for p in projects
        for f in (p / ".agent-queue" / "inbox").iterdir()
        if not f.name.startswith(".")
    ]


def footer_count(path: Path) -> int:
    """How many agentq footers a result file carries."""
    return taskfile.count_footers(path.read_bytes().decode(errors="replace"))
