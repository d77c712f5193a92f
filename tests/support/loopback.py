"""A threaded HTTP server on 127.0.0.1 that the test fakes (Anthropic mock, providers) share."""

from __future__ import annotations

import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, TypeVar, cast

T = TypeVar("T")

logger = logging.getLogger(__name__)


class Servable(Protocol):
    """A fake server's request logic: answers one request on the handler it is given."""

    def serve(self, handler: BaseHTTPRequestHandler) -> None:
        """Read the request from ``handler`` and write the answer."""


class LoopbackServer(ThreadingHTTPServer):
    """A threaded HTTP server on 127.0.0.1 (a free port) that hands each request to ``target``.

    ``join_threads`` joins handler threads on close, so a stopped fake leaves nothing
    running; otherwise they are daemon threads (a slow, held reply never blocks close).
    """

    # The default backlog of 5 drops SYNs under concurrent clients (a 1 s retransmit stall).
    request_queue_size = 128

    def __init__(self, target: Servable, *, handler_timeout: float, join_threads: bool) -> None:
        self.daemon_threads = not join_threads
        self.block_on_close = join_threads
        self.target = target
        handler = type("LoopbackHandler", (_LoopbackHandler,), {"timeout": handler_timeout})
        super().__init__(("127.0.0.1", 0), handler)

    def handle_error(self, request: object, client_address: object) -> None:
        logger.debug("fake server handler error", exc_info=True)


class _LoopbackHandler(BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:
        cast("LoopbackServer", self.server).target.serve(self)

    def do_GET(self) -> None:
        cast("LoopbackServer", self.server).target.serve(self)

    def do_POST(self) -> None:
        cast("LoopbackServer", self.server).target.serve(self)

    def log_message(self, format: str, *args: Any) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("fake server: %s", format % args)
