"""Shared fixtures: an isolated home for every test and a private tmux server per test."""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point HOME, CLAUDE_CONFIG_DIR and the XDG folders into tmp_path; forget any tmux."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(home / ".claude"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    # A test run from inside tmux must not reach the user's server through these.
    for name in ("TMUX", "TMUX_PANE", "AGENTQ_SESSION"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def tmux_socket() -> Iterator[str]:
    """A unique private tmux socket name (``tmux -L``); its server is killed at teardown."""
    name = f"agentq-test-{os.getpid()}-{secrets.token_hex(4)}"
    yield name
    subprocess.run(
        ["tmux", "-L", name, "kill-server"],
        capture_output=True,
        timeout=10,
        check=False,
    )
    # tmux 3.3 leaves the socket file behind; without this /tmp fills with them.
    folder = Path(os.environ.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}"
    socket = folder / name
    try:
        if stat.S_ISSOCK(socket.lstat().st_mode):
            socket.unlink()
    except FileNotFoundError:
        pass
