"""A private workspace per measurement: a temp root, HOME inside it, a private tmux server,
the real daemon (``python -m agentq run``) as a subprocess, and cleanup that always runs.

Everything a row creates lives under one temp folder: the projects, the state dir, the
account homes, the config, the daemon's log, and tmux's socket folder (``TMUX_TMPDIR``).
:meth:`Workspace.close` stops the daemon (SIGTERM, then SIGKILL), kills the private tmux
server and removes the folder; :func:`close_all` does it for every workspace still open
(the entry point calls it on Ctrl-C and SIGTERM).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench import procstat

#: The repository this bench belongs to: the daemon runs from here, so ``python -m agentq``
#: imports the agentq beside it (the current folder comes first on a ``-m`` module's path).
REPO = Path(__file__).resolve().parent.parent
#: Workspaces not closed yet (closed on interrupt by :func:`close_all`).
_OPEN: list[Workspace] = []
READY_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0


class BenchError(Exception):
    """A row could not be measured (the daemon died, a deadline passed)."""


class Workspace:
    """One temp root with projects, a config, the daemon and a private tmux server."""

    def __init__(self, label: str) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=f"agentq-bench-{label}-"))
        self.home = self.root / "home"
        self.home.mkdir()
        self.projects_root = self.root / "projects"
        self.projects_root.mkdir()
        self.state_dir = self.root / "state"
        self.token_file = self.root / "token"
        self.socket_name = f"bench-{secrets.token_hex(4)}"
        self.log_path = self.root / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_s: float | None = None
        self._notify: socket.socket | None = None
        self.extra_env: dict[str, str] = {}
        _OPEN.append(self)

    # -- layout -----------------------------------------------------------------------

    def projects(self, count: int) -> list[Path]:
        """Create ``count`` projects with empty queues (``p0000``, ``p0001``, …)."""
        made = []
        for i in range(count):
            project = self.projects_root / f"p{i:04d}"
            for sub in ("inbox", "tmp", "done", "failed"):
                (project / ".agent-queue" / sub).mkdir(parents=True, exist_ok=True)
            made.append(project)
        return made

    def config(self, **sections: Any) -> dict[str, Any]:
        """The base config (state dir, API on a free port, projects, private tmux), + sections."""
        base: dict[str, Any] = {
            "state_dir": str(self.state_dir),
            "api": {"listen": "127.0.0.1:0", "token_file": str(self.token_file)},
            "projects": {"roots": [str(self.projects_root)]},
            "tmux": {"socket_name": self.socket_name},
            "janitor": {"interval": "1h"},
        }
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                base[key] = {**base[key], **value}
            else:
                base[key] = value
        return base

    def env(self) -> dict[str, str]:
        """The daemon's environment: HOME and tmux's socket folder inside the workspace."""
        skip = ("AGENTQ_", "TMUX", "NOTIFY_", "WATCHDOG_")
        env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
        env.update({"HOME": str(self.home), "TMUX_TMPDIR": str(self.root), **self.extra_env})
        return env

    # -- the daemon -------------------------------------------------------------------

    def start(self, config: dict[str, Any], wait: bool = True) -> float:
        """Start ``python -m agentq run`` with ``config``; return seconds until ``READY=1``."""
        path = self.root / "config.yaml"
        path.write_text(json.dumps(config, indent=1))  # JSON is YAML
        self._close_notify()
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify_path = self.root / "notify.sock"
        notify_path.unlink(missing_ok=True)
        self._notify.bind(str(notify_path))
        env = {**self.env(), "NOTIFY_SOCKET": str(notify_path)}
        with self.log_path.open("ab") as log:
            began = time.monotonic()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agentq", "run", "--config", str(path)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=REPO,
                start_new_session=True,  # Ctrl-C in the terminal reaches the bench, not it
            )
        if not wait:
            return 0.0
        self.ready_s = self.wait_ready(began)
        self._drain_notify()
        return self.ready_s

    def _close_notify(self) -> None:
        if self._notify is not None:
            with contextlib.suppress(OSError):
                self._notify.shutdown(socket.SHUT_RDWR)  # wakes the draining thread
            self._notify.close()
            self._notify = None

    def _drain_notify(self) -> None:
        """Read (and drop) the daemon's later notify messages, so its socket never fills."""
        sock = self._notify

        def drain() -> None:
            while sock is not None:
                try:
                    sock.settimeout(None)
                    if not sock.recv(4096):
                        return
                except OSError:  # closed by close()
                    return

        threading.Thread(target=drain, name="notify-drain", daemon=True).start()

    def wait_ready(self, began: float, timeout: float = READY_TIMEOUT) -> float:
        """Block until the daemon sends ``READY=1``; seconds since ``began``."""
        assert self._notify is not None and self.proc is not None
        deadline = began + timeout
        while time.monotonic() < deadline:
            self._notify.settimeout(0.05)
            try:
                message = self._notify.recv(4096).decode()
            except TimeoutError:
                if self.proc.poll() is not None:
                    code = self.proc.returncode
                    raise BenchError(f"daemon exited ({code}):\n{self.tail()}") from None
                continue
            if "READY=1" in message:
                return time.monotonic() - began
        raise BenchError(f"daemon not ready within {timeout:.0f}s:\n{self.tail()}")

    @property
    def pid(self) -> int:
        """The daemon's pid."""
        assert self.proc is not None
        return self.proc.pid

    def tail(self, lines: int = 30) -> str:
        """The last lines of the daemon's log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM the daemon and wait for it (SIGKILL after a deadline)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def kill_tmux(self) -> None:
        """Kill the private tmux server (and every session in it)."""
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                ["tmux", "-L", self.socket_name, "kill-server"],
                env=self.env(),
                capture_output=True,
                timeout=10,
                check=False,
            )

    def anchor_tmux(self) -> None:
        """Start the private tmux server with a session of the bench's own.

        tmux exits with its last session; with one that never ends, the server (and its
        pid, whose CPU time the bench reads) lasts as long as the workspace, as a user's
        server with other sessions in it would.
        """
        subprocess.run(
            [
                *("tmux", "-L", self.socket_name, "-f", os.devnull),
                *("new-session", "-d", "-s", "bench-anchor", "sleep 86400"),
            ],
            env=self.env(),
            capture_output=True,
            timeout=10,
            check=True,
        )

    def tmux_pid(self) -> int | None:
        """The private tmux server's pid, or None when it does not run."""
        try:
            out = subprocess.run(
                ["tmux", "-L", self.socket_name, "display-message", "-p", "#{pid}"],
                env=self.env(),
                capture_output=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        text = out.stdout.decode().strip()
        return int(text) if out.returncode == 0 and text.isdigit() else None

    def close(self) -> None:
        """Stop everything this workspace started and remove its folder."""
        self.stop()
        self.kill_tmux()
        self._close_notify()
        shutil.rmtree(self.root, ignore_errors=True)
        if self in _OPEN:
            _OPEN.remove(self)

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the API ----------------------------------------------------------------------

    def api_url(self, timeout: float = 20.0) -> str:
        """The API's base URL (from ``state.json``, where the daemon writes its port)."""
        state = self.state_dir / "state.json"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                url = json.loads(state.read_text()).get("api", {}).get("url")
                if url:
                    return str(url)
            time.sleep(0.05)
        raise BenchError("the daemon's API did not come up")

    def get(self, path: str, token: bool = True, timeout: float = 30.0) -> bytes:
        """GET ``path`` from the API (with the bearer token) and return the body."""
        request = urllib.request.Request(self.api_url() + path)  # noqa: S310 (http, loopback)
        if token:
            request.add_header("Authorization", f"Bearer {self.token_file.read_text().strip()}")
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            body: bytes = response.read()
            return body

    def get_json(self, path: str) -> Any:
        """GET ``path`` and parse the JSON answer."""
        return json.loads(self.get(path))

    def metrics(self) -> str:
        """The ``/metrics`` exposition text."""
        return self.get("/metrics").decode()

    @contextlib.contextmanager
    def profiled(self, folder: Path | None, name: str) -> Iterator[None]:
        """Record a py-spy profile of the daemon meanwhile (collapsed stacks), if asked."""
        if folder is None:
            yield
            return
        out = folder / f"{name}.txt"
        argv = ["py-spy", "record", "--pid", str(self.pid), "--format", "raw", "--gil"]
        spy = subprocess.Popen(
            [*argv, "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            yield
        finally:
            spy.send_signal(signal.SIGINT)
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()

    def cpu(self) -> float:
        """The daemon's CPU seconds so far (user + system, from ``/proc``)."""
        return procstat.cpu_seconds(self.pid)


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    """Poll ``check`` until it returns something true; raise :class:`BenchError` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def drop(project: Path, name: str, body: str) -> Path:
    """Write a task in ``tmp/`` and rename it into ``inbox/`` (the Maildir way)."""
    queue = project / ".agent-queue"
    tmp = queue / "tmp" / f"{name}.{os.getpid()}.tmp"
    tmp.write_text(body)
    final = queue / "inbox" / name
    os.rename(tmp, final)
    return final


def done_count(projects: list[Path]) -> int:
    """Files in every project's ``done/`` and ``failed/``."""
    return sum(
        sum(1 for e in os.scandir(p / ".agent-queue" / folder) if not e.name.startswith("."))
        for p in projects
        for folder in ("done", "failed")
    )


def failed_count(projects: list[Path]) -> int:
    """Files in every project's ``failed/``."""
    return sum(1 for p in projects for _ in (p / ".agent-queue" / "failed").glob("*.md"))


def burst(
    ws: Workspace, projects: list[Path], count: int, prefix: str, body: str, per_task: float
) -> float:
    """Drop ``count`` tasks over ``projects`` at once; seconds until every one has a result.

    The deadline is ``per_task`` seconds a task, at least two minutes.
    """
    began = time.monotonic()
    for i in range(count):
        drop(projects[i % len(projects)], f"{prefix}{i:05d}.md", body)
    deadline = began + max(120.0, count * per_task)
    while (finished := done_count(projects)) < count:
        if time.monotonic() > deadline:
            raise BenchError(f"{finished} of {count} tasks finished:\n{ws.tail()}")
        time.sleep(0.02)
    return time.monotonic() - began


@contextlib.contextmanager
def workspace(label: str) -> Iterator[Workspace]:
    """A :class:`Workspace` that is closed whatever happens."""
    ws = Workspace(label)
    try:
        yield ws
    finally:
        ws.close()


def close_all() -> None:
    """Close every workspace still open (on interrupt)."""
    for ws in list(_OPEN):
        ws.close()
