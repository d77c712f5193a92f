"""The hook script in a real tmux pane: it finds its session's name when nobody told it."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentq.agents import hooks
from agentq.sessions.tmux import TmuxDriver
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration


def test_hook_script_without_agentq_session_asks_tmux(tmp_path: Path, socket_name: str) -> None:
    """In an operator's pane (no AGENTQ_SESSION) the script names the pane's session."""
    driver = TmuxDriver(socket_name)
    state = tmp_path / "state"
    state.mkdir()
    payload = tmp_path / "payload.json"
    payload.write_text('{"session_id": "0b0e9a5e-9f59-4b8e-8f0a-8c7a3c1f2d4e"}')
    command = f"{hooks.hook_command('SessionStart', state)} < {payload}; sleep 30"
    driver.new_session("ops", tmp_path, ["/bin/sh", "-c", command])
    (signal,) = wait_until(lambda: hooks.read_signals(state), 10)
    assert (signal.event, signal.session) == ("SessionStart", "ops")
    assert signal.session_id == "0b0e9a5e-9f59-4b8e-8f0a-8c7a3c1f2d4e"
