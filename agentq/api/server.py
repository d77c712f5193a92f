"""The HTTP server: uvicorn in a thread of the daemon, on a loopback socket we bind ourselves.

The only module that imports uvicorn. The daemon calls :meth:`ApiServer.start`
after its first scan and :meth:`ApiServer.stop` when it stops. The socket is
bound here, on the daemon's thread, so a bind error is reported at once and the
actual port (``listen: 127.0.0.1:0``) is known before anyone asks.

uvicorn keeps a connection that never sends a request open forever, and answers
503 to everyone once ``limit_concurrency`` connections are open. So the protocol
class here adds what an API on a shared machine needs: a header timeout (a
client must finish its request headers within :data:`HEADER_TIMEOUT`, also for
the next request on a kept-alive connection), and, when more than
:data:`MAX_CONNECTIONS` are open, the oldest connection that is not in the middle
of a request is closed to make room. Idle or slow clients can thus hold at most
what they are given for a few seconds, and never lock out a new request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from agentq.api.app import Api, build_app
from agentq.api.metrics import Metrics
from agentq.api.view import DaemonView
from agentq.config.models import ApiConfig

logger = logging.getLogger(__name__)

#: A client has this long to send a request's headers (from connect, or after a response).
HEADER_TIMEOUT = 10.0
#: Open connections beyond this make the server close its oldest idle one.
MAX_CONNECTIONS = 64
#: uvicorn's own cap, above ours: it only bites when that many requests run at once.
LIMIT_CONCURRENCY = MAX_CONNECTIONS + 16
#: How long an idle keep-alive connection stays open after a response.
KEEP_ALIVE = 5
#: Request line plus headers, at most (h11 answers 400 beyond it).
MAX_HEADER_BYTES = 16 * 1024
#: How long stopping waits for open requests (event streams are cut after it).
SHUTDOWN_GRACE = 2
#: How often the server's housekeeping runs (uvicorn's own is ten times a second: 0.27 % of
#: a core for an idle daemon). stop() wakes it at once.
TICK = 1.0


class _GuardedProtocol(H11Protocol):
    """uvicorn's h11 protocol with a header timeout and idle-first eviction."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self.opened = time.monotonic()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()
        if len(self.connections) > MAX_CONNECTIONS:
            idle = [
                c
                for c in self.connections
                if isinstance(c, _GuardedProtocol)
                and c is not self
                and c.idle
                and not c.transport.is_closing()  # already evicted, not yet gone
            ]
            if idle:
                oldest = min(idle, key=lambda c: c.opened)
                oldest.transport.close()  # its client must reconnect; a new one is never refused

    @property
    def idle(self) -> bool:
        """No request in progress on this connection."""
        return self.cycle is None or self.cycle.response_complete

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self.idle:
            self._disarm()  # the headers are complete; the app bounds the body's time

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(HEADER_TIMEOUT, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        if self.idle and not self.transport.is_closing():
            self.transport.close()


class ApiServer:
    """The API and dashboard, served from a daemon thread."""

    def __init__(self, config: ApiConfig, view: DaemonView, token: str) -> None:
        self._config = config
        self._view = view
        self._token = token
        self._server: _QuietServer | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._api: Api | None = None
        self.url = ""

    def start(self) -> str:
        """Bind the listening socket, start serving in a thread; returns the base URL.

        Raises:
            OSError: the address cannot be bound (in use, not a local address).
        """
        host, port = self._config.address()
        self._sock = _bind(host, port)
        bound_host, bound_port = self._sock.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.url = f"http://{shown}:{bound_port}"
        metrics = Metrics(self._view, self._view.loop_lag)
        app, self._api = build_app(
            self._view,
            self._token,
            metrics,
            listen=(bound_host, bound_port),
            allowed_hosts_extra=self._config.allowed_hosts,
        )
        config = uvicorn.Config(
            app,
            lifespan="off",  # the daemon owns start-up and shutdown
            log_config=None,  # our handlers stay as the CLI set them up
            access_log=False,  # an access log would hold task names and query strings
            server_header=False,
            proxy_headers=False,  # nothing sits in front of a loopback API
            http=_GuardedProtocol,
            limit_concurrency=LIMIT_CONCURRENCY,
            timeout_keep_alive=KEEP_ALIVE,
            h11_max_incomplete_event_size=MAX_HEADER_BYTES,
            timeout_graceful_shutdown=SHUTDOWN_GRACE,
            backlog=MAX_CONNECTIONS,
        )
        # uvicorn's start-up chatter (and its colour codes) stays out of the daemon's log.
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
        self._server = _QuietServer(config)
        sock = self._sock
        self._thread = threading.Thread(
            target=self._serve, args=(self._server, sock), name="agentq-api", daemon=True
        )
        self._thread.start()
        logger.info("API listening", extra={"url": self.url})
        return self.url

    @staticmethod
    def _serve(server: uvicorn.Server, sock: socket.socket) -> None:
        try:
            server.run(sockets=[sock])
        except Exception:
            # The API is an auxiliary surface: the daemon keeps running without it.
            logger.exception("API server stopped with an error")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving: close the socket, end open requests after a short grace."""
        if self._api is not None:
            self._api.stopping.set()  # event streams end within a second
        if self._server is not None:
            self._server.request_exit()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("API server did not stop in time")
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = self._api = None


class _QuietServer(uvicorn.Server):
    """uvicorn's server, its housekeeping once a :data:`TICK` instead of ten times a second."""

    _loop: asyncio.AbstractEventLoop | None = None
    _wake: asyncio.Event | None = None

    async def main_loop(self) -> None:
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            # uvicorn counts tenths of a second: its once-a-second work runs on every tick.
            counter = (counter + 10) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK)
            should_exit = await self.on_tick(counter)

    def request_exit(self) -> None:
        """Ask the server to stop, now rather than at its next tick (any thread)."""
        self.should_exit = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed already
                loop.call_soon_threadsafe(wake.set)


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on a loopback address (``localhost`` resolves to IPv4 first)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    infos.sort(key=lambda i: i[0] != socket.AF_INET)
    error: OSError | None = None
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            if not _is_loopback(sock.getsockname()[0]):
                raise OSError(f"{host} is not a loopback address")
            sock.listen(MAX_CONNECTIONS)
            sock.set_inheritable(False)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        return sock
    raise error or OSError(f"cannot bind {host}:{port}")


def _is_loopback(address: str) -> bool:
    return address == "::1" or address.startswith("127.")
