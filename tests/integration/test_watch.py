"""``agentq status --watch`` in a real 80×24 tmux pane, fed by a running sim pool."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentq.sessions.tmux import TmuxDriver
from tests.support.api import ApiDaemon, sim_config
from tests.support.daemon import drop
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def pool(tmp_path: Path, socket_name: str) -> Iterator[ApiDaemon]:
    """A sim pool of two sessions."""
    daemon = ApiDaemon(tmp_path, sim_config(tmp_path, socket_name))
    try:
        yield daemon.start()
    finally:
        daemon.close()
        TmuxDriver(socket_name).kill_server()


def _tmux(socket: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["tmux", "-L", socket, *args], capture_output=True, text=True, timeout=10, check=False
    )


def test_watch_shows_sessions_and_updates_in_80x24(
    pool: ApiDaemon, tmux_socket: str, tmp_path: Path
) -> None:
    """The pool's sessions are on screen, a new task's events appear, Ctrl-C exits with 0."""
    command = [sys.executable, "-m", "agentq", "status", "--watch"]
    command += ["--config", str(pool.daemon.config_path)]
    env = {**pool.daemon.env(), "PYTHONPATH": os.environ.get("PYTHONPATH", ""), "TERM": "xterm"}
    started = subprocess.run(
        [
            "tmux",
            "-L",
            tmux_socket,
            "new-session",
            "-d",
            "-s",
            "watch",
            "-x",
            "80",
            "-y",
            "24",
            shlex.join(command),
            ";",
            "set-option",
            "-t",
            "watch",
            "remain-on-exit",
            "on",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert started.returncode == 0, started.stderr

    def screen() -> str:
        return _tmux(tmux_socket, "capture-pane", "-p", "-t", "watch").stdout

    wait_until(lambda: "aq-0" in screen() and "aq-1" in screen(), 30, message="no sessions")
    shown = screen()
    assert "proj00" in shown and "work (active)" in shown
    assert all(len(line) <= 80 for line in shown.splitlines())
    drop(pool.projects[0], "watched.md", "sim: work 0.5s")
    wait_until(lambda: "proj00/watched.md → done" in screen(), 60, message=screen())
    _tmux(tmux_socket, "send-keys", "-t", "watch", "C-c")

    def exit_code() -> tuple[int] | None:
        """The watch's exit code once its pane is dead: tmux's, or its unreaped process's.

        Under load tmux can leave the exited process a zombie for seconds before it reaps it
        and learns the status; the zombie's ``/proc/PID/stat`` holds it meanwhile.
        """
        shown = _tmux(
            tmux_socket,
            "display",
            "-p",
            "-t",
            "watch",
            "#{pane_dead}:#{pane_dead_status}:#{pane_pid}",
        ).stdout.strip()
        dead, status, pid = shown.split(":")
        if dead != "1":
            return None
        if status:
            return (int(status),)
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            return None  # reaped between the two reads: tmux has the status now
        if fields[0] != "Z":
            return None
        raw = int(fields[49])  # field 52, exit_code, in waitpid's encoding
        return (raw >> 8,) if raw & 0x7F == 0 else (-(raw & 0x7F),)

    assert wait_until(exit_code, 10) == (0,)


def test_watch_says_when_the_daemon_is_not_running(tmp_path: Path) -> None:
    """No daemon: one clear line and exit status 1."""
    config = tmp_path / "config.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\nagent: {{profile: instant}}\n")
    run = subprocess.run(
        [sys.executable, "-m", "agentq", "status", "--watch", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 1
    assert "the daemon is not running" in run.stdout + run.stderr
