"""The API's guards: the token file, the ``Host`` allow-list, the bearer check, body caps.

:class:`Guard` is plain ASGI middleware (no web framework), applied before any
route runs: a ``Host`` header that names neither this listener (with its
loopback equivalents) nor a configured name → 421 (DNS rebinding); a body
larger than :data:`MAX_BODY_BYTES` → 413, decided from ``Content-Length`` before
anything is read and enforced again while the body streams in; a body that
trickles in slower than :data:`BODY_TIMEOUT` → 408. Every response gets a strict
Content-Security-Policy and no CORS header ever.

The token is ``secrets.token_urlsafe(32)`` in a 0600 file, created on first start;
a file that others may read stops the daemon. It is compared with
:func:`hmac.compare_digest` and registered for redaction from every log line.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import secrets
import stat
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from pathlib import Path
from typing import Any

from agentq.core.errors import ConfigError
from agentq.core.secrets import register_secret

MAX_BODY_BYTES = 1024 * 1024
#: The whole body must arrive within this many seconds.
BODY_TIMEOUT = 10.0
TOKEN_BYTES = 32
_MAX_TOKEN_FILE = 4096
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
#: The dashboard loads only its own files; nothing inline, nothing from elsewhere.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


# -- the token ----------------------------------------------------------------------------


def load_or_create_token(path: Path) -> str:
    """The API token from ``path``; a new one (0600) when the file does not exist.

    Raises:
        ConfigError: the file is readable or writable by others, not ours, not a plain
            file, or empty.
    """
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
    except FileExistsError:
        token = _read_token(path)
    except OSError as exc:
        raise ConfigError([f"cannot create the API token file: {exc.strerror}"], path) from exc
    else:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        with os.fdopen(fd, "w") as out:
            out.write(token + "\n")
            out.flush()
            os.fsync(out.fileno())
    register_secret(token)
    return token


def _read_token(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError([f"cannot read the API token file: {exc.strerror}"], path) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(["the API token file is not a plain file"], path)
        if st.st_uid != os.getuid():
            raise ConfigError([f"the API token file belongs to uid {st.st_uid}, not to us"], path)
        if st.st_mode & 0o077:
            mode = stat.S_IMODE(st.st_mode)
            raise ConfigError(
                [f"the API token file is mode {mode:04o}: others may read it; chmod 600 it"], path
            )
        token = os.read(fd, _MAX_TOKEN_FILE).decode("utf-8", "replace").strip()
    finally:
        os.close(fd)
    if len(token) < 16:
        raise ConfigError(["the API token file holds no token (16 characters or more)"], path)
    return token


def token_matches(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <token>`` (constant time)."""
    if not header:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


# -- the Host allow-list ------------------------------------------------------------------


def allowed_hosts(listen: tuple[str, int], extra: Iterable[str]) -> frozenset[str]:
    """Every ``Host`` header value that names this listener (lower case)."""
    host, port = listen
    names = {*LOOPBACK_NAMES, f"[{host}]" if ":" in host else host}
    allowed = {f"{n}:{port}" for n in names}
    if port == 80:
        allowed |= names
    for name in extra:
        allowed.add(name.lower() if ":" in name else f"{name.lower()}:{port}")
    return frozenset(allowed)


# -- the ASGI guard -----------------------------------------------------------------------


class BodyTooLarge(Exception):
    """Raised inside ``receive`` once a body passes the cap."""


class Guard:
    """ASGI middleware: Host check, body cap and timeout, security headers."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str], max_body: int = MAX_BODY_BYTES) -> None:
        self._app = app
        self._hosts = hosts
        self._max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is off and websockets are not served
        send = _with_headers(send)
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        host = headers.get(b"host", b"").decode("latin-1").lower()
        if host not in self._hosts:
            await _answer(send, 421, "misdirected request: this Host is not served here")
            return
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self._max_body):
            await _answer(send, 413, f"request body larger than {self._max_body} bytes")
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._app(scope, _capped(receive, self._max_body), tracking_send)
        except BodyTooLarge:
            if not started:
                await _answer(send, 413, f"request body larger than {self._max_body} bytes")
        except TimeoutError:
            if not started:
                await _answer(send, 408, "request body too slow")


def _capped(receive: Receive, limit: int) -> Receive:
    """Count the body as it streams in; bound the time it may take (not the wait after it)."""
    seen = 0
    complete = False
    deadline: float | None = None

    async def wrapped() -> Message:
        nonlocal seen, complete, deadline
        if complete:
            return await receive()  # e.g. an event stream waiting for the client to leave
        loop = asyncio.get_running_loop()
        deadline = deadline or loop.time() + BODY_TIMEOUT
        message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge
            complete = not message.get("more_body", False)
        else:
            complete = True
        return message

    return wrapped


def _with_headers(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [
                (k, v)
                for k, v in message.get("headers", [])
                if not k.lower().startswith(b"access-control-")
            ]
            message["headers"] = headers + list(SECURITY_HEADERS)
        await send(message)

    return wrapped


async def _answer(send: Send, status: int, message: str) -> None:
    body = json.dumps({"ok": False, "message": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
