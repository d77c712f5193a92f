"""A daemon subprocess with its API on a free loopback port, and a client for it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from tests.support.daemon import Daemon, make_projects
from tests.support.wait import wait_until

__all__ = ["ApiDaemon", "sim_config"]


def sim_config(root: Path, socket: str, **extra: Any) -> dict[str, Any]:
    """A sim pool of ``max`` sessions on a private tmux socket, the API on a free port."""
    config: dict[str, Any] = {
        "agent": {"profile": "sim"},
        "projects": {"roots": [str(root / "projects")]},
        "accounts": [{"name": "work", "home": str(root / "claude-work")}],
        "pool": {"prefix": "aq-", "min": 2, "max": 2},
        "tmux": {"socket_name": socket},
        # Two tasks of one project at once (plain tasks otherwise run one at a time).
        "dispatch": {
            "rescan_interval": "2s",
            "quiet_period": "0.2s",
            "delivery_timeout": "10s",
            "max_parallel": 2,
        },
        "completion": {"idle_timeout": "60s", "permission_timeout": "5s"},
    }
    for key, value in extra.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    return config


class ApiDaemon:
    """``agentq run`` with ``api.listen: 127.0.0.1:0``; ``url``/``token`` once it is ready."""

    def __init__(self, root: Path, config: dict[str, Any], projects: int = 2) -> None:
        self.root = root
        self.projects = make_projects(root / "projects", projects)
        self.token_file = root / "token"
        api = {"listen": "127.0.0.1:0", "token_file": str(self.token_file), **config.get("api", {})}
        config = {"projects": {"roots": [str(root / "projects")]}, **config}
        self.daemon = Daemon(root, {**config, "api": api})
        self.url = ""
        self.token = ""

    def start(self) -> ApiDaemon:
        """Start the daemon and wait until its API answers."""
        self.daemon.start()
        assert self.daemon.wait_ready(), self.daemon.log()
        state = self.daemon.state_dir / "state.json"
        self.url = wait_until(lambda: json.loads(state.read_text()).get("api", {}).get("url"), 10)
        self.token = self.token_file.read_text().strip()
        return self

    def client(self, token: bool = False, timeout: float = 10.0) -> httpx.Client:
        """An HTTP client for the API (with the bearer token when asked)."""
        headers = {"Authorization": f"Bearer {self.token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def get(self, path: str, token: bool = False) -> httpx.Response:
        """One GET."""
        with self.client(token) as client:
            return client.get(path)

    def post(self, path: str, doc: Any = None, token: bool = True) -> httpx.Response:
        """One POST with a JSON body."""
        with self.client(token, timeout=60) as client:
            return client.post(path, json=doc if doc is not None else {})

    def close(self) -> None:
        """Stop the daemon."""
        self.daemon.close()
