"""The API's exposure (T32): loopback only, Host check, token, methods, caps, timeouts."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.api import ApiDaemon
from tests.support.daemon import drop
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration

MUTATIONS = [
    "/api/tasks",
    "/api/tasks/proj00/x.md/retry",
    "/api/tasks/proj00/x.md/cancel",
    "/api/swap",
    "/api/reload",
]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiDaemon]:
    """One instant-profile daemon serving its API for the whole module."""
    root = tmp_path_factory.mktemp("api")
    daemon = ApiDaemon(
        root, {"agent": {"profile": "instant"}, "api": {"allowed_hosts": ["agentq.lan"]}}
    )
    try:
        yield daemon.start()
    finally:
        daemon.close()


def _port(api: ApiDaemon) -> int:
    return int(api.url.rsplit(":", 1)[1])


def _raw(api: ApiDaemon, request: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, return everything the server answers until it closes or pauses."""
    with socket.create_connection(("127.0.0.1", _port(api)), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


def test_listens_only_on_loopback(api: ApiDaemon) -> None:
    """Every listening socket on the API's port is bound to 127.0.0.1 (from /proc/net/tcp*)."""
    port = f"{_port(api):04X}"
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, local_port = local.rpartition(":")
            if local_port == port and state == "0A":  # LISTEN
                found.append(address)
    assert found == ["0100007F"], found


@pytest.mark.parametrize(
    "host",
    ["evil.example", "evil.example:{port}", "127.0.0.1:1", "localhost.evil.example:{port}", ""],
    ids=["a foreign name", "a foreign name with our port", "another port", "a lookalike", "empty"],
)
def test_a_foreign_host_header_is_refused_with_421(api: ApiDaemon, host: str) -> None:
    """DNS rebinding: a Host that is not this listener gets 421 and no data."""
    with api.client() as client:
        response = client.get("/api/tasks", headers={"Host": host.format(port=_port(api))})
    assert response.status_code == 421
    assert "tasks" not in response.text


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:{port}",
        "localhost:{port}",
        "[::1]:{port}",
        "agentq.lan:{port}",
        "AGENTQ.lan:{port}",
    ],
)
def test_this_listener_and_configured_names_are_served(api: ApiDaemon, host: str) -> None:
    """The listener's address, its loopback equivalents and api.allowed_hosts are served."""
    with api.client() as client:
        response = client.get("/healthz", headers={"Host": host.format(port=_port(api))})
    assert response.status_code == 200


@pytest.mark.parametrize("path", MUTATIONS)
@pytest.mark.parametrize(
    "token", [None, "wrong", "Bearer x", "Basic abc"], ids=["none", "wrong", "short", "basic"]
)
def test_every_mutation_needs_the_token(api: ApiDaemon, path: str, token: str | None) -> None:
    """No token, or a wrong one → 401 on every mutation."""
    headers = (
        {} if token is None else {"Authorization": token if " " in token else f"Bearer {token}"}
    )
    with api.client() as client:
        response = client.post(path, json={"project": "proj00", "text": "x"}, headers=headers)
    assert response.status_code == 401


@pytest.mark.parametrize(
    "path", ["/api/tasks/proj00/a.md", "/api/sessions?pane=1"], ids=["a task body", "pane lines"]
)
def test_bodies_and_pane_lines_need_the_token(api: ApiDaemon, path: str) -> None:
    """Task bodies and pane lines → 401 without the token, 200/404 with it."""
    drop(api.projects[0], "a.md", "secret body text")
    wait_until(lambda: api.get("/api/tasks?state=done").json()["total"] >= 1, 10)
    assert api.get(path).status_code == 401
    with api.client() as client:
        assert client.get(path, headers={"Authorization": "Bearer nope"}).status_code == 401
    answer = api.get(path, token=True)
    assert answer.status_code == 200
    if "tasks" in path:
        assert "secret body text" in answer.json()["body"]


@pytest.mark.parametrize("path", MUTATIONS[1:])
def test_get_on_a_mutation_is_405(api: ApiDaemon, path: str) -> None:
    """A mutation asked for with GET → 405 (and nothing happens)."""
    assert api.get(path, token=True).status_code == 405


def test_post_on_a_read_only_route_is_405(api: ApiDaemon) -> None:
    """POST /healthz, /metrics → 405."""
    for path in ("/healthz", "/metrics", "/api/sessions"):
        assert api.post(path).status_code == 405


def test_a_10_mib_body_is_413_and_the_server_still_answers(api: ApiDaemon) -> None:
    """A declared 10 MiB body → 413 before it is read; the server answers the next request."""
    head = (
        f"POST /api/tasks HTTP/1.1\r\nHost: 127.0.0.1:{_port(api)}\r\n"
        f"Authorization: Bearer {api.token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {10 * 1024 * 1024}\r\n\r\n"
    ).encode()
    answer = _raw(api, head + b"x" * 65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert api.get("/healthz").status_code == 200


def test_a_streamed_body_is_cut_at_the_cap(api: ApiDaemon) -> None:
    """A chunked body without Content-Length is counted as it arrives: 413 past 1 MiB."""

    def chunks() -> Iterator[bytes]:
        for _ in range(160):  # 10 MiB in 64 KiB chunks; the server stops reading early
            yield b"x" * 65536

    with api.client(token=True) as client:
        try:
            response = client.post("/api/tasks", content=chunks())
        except httpx.TransportError:
            pytest.fail("the server dropped the connection instead of answering 413")
    assert response.status_code == 413
    assert api.get("/healthz").status_code == 200


def test_200_idle_connections_do_not_stop_healthz(api: ApiDaemon) -> None:
    """200 connections held open (idle or mid-header) → /healthz still answers within 1 s."""
    idle = []
    try:
        for i in range(200):
            sock = socket.create_connection(("127.0.0.1", _port(api)), timeout=5)
            if i % 2:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127")  # a slowloris, mid-header
            idle.append(sock)
        started = time.monotonic()
        with httpx.Client(base_url=api.url, timeout=1.0) as client:
            response = client.get("/healthz")
        assert response.status_code == 200
        assert time.monotonic() - started < 1.0
    finally:
        for sock in idle:
            sock.close()


def test_an_idle_connection_is_closed_after_the_header_timeout(api: ApiDaemon) -> None:
    """A connection that never finishes its headers is closed by the server (slowloris)."""
    with socket.create_connection(("127.0.0.1", _port(api)), timeout=20) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        started = time.monotonic()
        assert sock.recv(1) == b""  # closed by the server
        assert time.monotonic() - started < 15


def test_the_token_file_is_0600(api: ApiDaemon) -> None:
    """The token file created on first start is mode 0600 and holds a long random token."""
    mode = stat.S_IMODE(api.token_file.stat().st_mode)
    assert mode == 0o600
    assert len(api.token) >= 40


def test_a_token_file_others_can_read_stops_the_daemon(tmp_path: Path) -> None:
    """A token file with group/world access: the daemon refuses to start, saying why."""
    token = tmp_path / "token"
    token.write_text("x" * 43 + "\n")
    token.chmod(0o640)
    config = tmp_path / "config.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\nagent: {{profile: instant}}\n"
        f"api: {{listen: '127.0.0.1:0', token_file: {token}}}\n"
    )
    env = {**os.environ, "HOME": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-m", "agentq", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert run.returncode == 2
    assert "mode 0640" in run.stderr and "chmod 600" in run.stderr


@pytest.mark.parametrize(
    "path",
    [
        "/api/tasks/proj00/..%2f..%2f..%2fcanary.md",
        "/api/tasks/proj00/%2e%2e",
        "/api/tasks/proj00/%2e%2e%2fcanary.md",
        "/api/tasks/proj00/%2Fetc%2Fpasswd",
        "/api/tasks/..%2f..%2fcanary/canary.md",
        "/api/tasks/%2e%2e/canary.md",
        "/api/tasks/proj00/canary.md%00",
        "/api/tasks/proj00/%00",
        "/api/tasks/proj00/.agent-queue",
    ],
)
def test_traversal_names_are_refused_and_nothing_is_read(api: ApiDaemon, path: str) -> None:
    """Traversal, absolute and NUL names → 400/404; a canary outside the queue stays unread."""
    canary = api.root / "canary.md"
    canary.write_text("canary")
    st = canary.stat()
    os.utime(canary, ns=(st.st_mtime_ns - 10**12, st.st_mtime_ns))  # relatime bumps it on a read
    before = canary.stat().st_atime_ns
    for method in ("GET", "POST"):
        with api.client(token=True) as client:
            suffix = "/retry" if method == "POST" and path.count("/") == 4 else ""
            response = client.request(method, path + suffix)
        assert response.status_code in (400, 404, 405), (path, response.status_code)
    assert canary.stat().st_atime_ns == before


def test_no_cors_headers_and_a_strict_csp(api: ApiDaemon) -> None:
    """No Access-Control-* header on any answer, even to a cross-origin preflight; CSP set."""
    with api.client() as client:
        for method, path in (("GET", "/"), ("GET", "/api/tasks"), ("OPTIONS", "/api/swap")):
            headers = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
            response = client.request(method, path, headers=headers)
            assert not [h for h in response.headers if h.lower().startswith("access-control-")]
        page = client.get("/")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp


def test_the_token_and_task_bodies_never_reach_the_log(api: ApiDaemon) -> None:
    """After authenticated requests and a submission, the daemon's log holds neither."""
    body = "a very private task body 7d1f"
    answer = api.post("/api/tasks", {"project": "proj00", "text": body, "name": "private.md"})
    assert answer.status_code == 201, answer.text
    wait_until((api.projects[0] / ".agent-queue/done/private.md").exists, 10)
    api.get("/api/tasks/proj00/private.md", token=True)
    log = api.daemon.log()
    assert api.token not in log
    assert body not in log
