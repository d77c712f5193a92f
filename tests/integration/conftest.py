"""Fixtures for integration tests that run the daemon against a real tmux server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentq.sessions.tmux import TmuxDriver
from tests.support.fleet import TemporalServer


@pytest.fixture
def socket_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A private tmux socket under ``tmp_path`` (where the daemon harness points the daemon)."""
    monkeypatch.setenv("TMUX_TMPDIR", str(tmp_path))
    name = f"agentq-it-{uuid.uuid4().hex[:10]}"
    yield name
    TmuxDriver(name).kill_server()


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporalServer]:
    """A real Temporal server (``temporal server start-dev``, SQLite, free loopback ports).

    Shared by the session's fleet tests (each uses task queues of its own); stopped at the end.
    """
    server = TemporalServer(tmp_path_factory.mktemp("temporal"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
