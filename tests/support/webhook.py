"""Notification targets for tests: a recording webhook receiver and targets that never answer.

- :class:`WebhookSink`: a real HTTP server on 127.0.0.1 that records every POST (path,
  headers, raw body, the status it answered) and answers :attr:`WebhookSink.status` (200);
  :meth:`WebhookSink.hold` makes it stall until :meth:`WebhookSink.release`, to fill a
  notifier's buffer.
- :class:`Blackhole`: a listening socket that accepts connections and never answers.
- :func:`closed_port`: a port on 127.0.0.1 that nothing listens on.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any, Self

from tests.support.loopback import LoopbackServer


@dataclass(frozen=True)
class Received:
    """One POST as the receiver saw it; header names are lower case."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 200

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)

    def signed_by(self, secret: str) -> bool:
        """True when ``X-Agentq-Signature`` is the HMAC-SHA256 of the body under ``secret``."""
        expected = "sha256=" + hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(self.headers.get("x-agentq-signature", ""), expected)


class WebhookSink:
    """Records the POSTs it receives; a context manager that stops the server."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._open = threading.Event()
        self._open.set()
        #: The status every answer has (set it to 503 to play a target that is down).
        self.status = 200
        self._server = LoopbackServer(self, handler_timeout=10.0, join_threads=False)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The receiver's base URL (any path is accepted)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def received(self) -> list[Received]:
        """Every request so far, in arrival order."""
        with self._lock:
            return list(self._received)

    def bodies(self, status: int | None = None) -> list[Any]:
        """Every request body parsed as JSON (only those answered ``status``, if given)."""
        return [r.json() for r in self.received if status is None or r.status == status]

    def hold(self) -> None:
        """Stall every answer until :meth:`release`."""
        self._open.clear()

    def release(self) -> None:
        """Answer again (held requests too)."""
        self._open.set()

    def serve(self, handler: BaseHTTPRequestHandler) -> None:
        """Record the request, then answer 200 (once not held)."""
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length)
        headers = {k.lower(): v for k, v in handler.headers.items()}
        status = self.status
        with self._lock:
            self._received.append(Received(handler.path, headers, body, status))
        self._open.wait(30)
        handler.send_response(status)
        handler.send_header("Content-Length", "2")
        handler.end_headers()
        handler.wfile.write(b"ok")

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


class Blackhole:
    """Accepts connections on 127.0.0.1 and never answers; a context manager."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)

    @property
    def url(self) -> str:
        """A URL whose requests hang until the client gives up."""
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._sock.close()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
