"""Signed JSON POSTs to webhook targets: the notifications' own small httpx adapter.

Why not :mod:`agentq.delegation.http`: that adapter is a provider client (JSON answers,
a provider error taxonomy, tenacity retries that may sleep for minutes). A webhook needs
one POST of bytes prepared in advance (the signature covers exactly those bytes), takes
any 2xx as delivered, retries nothing (the next coalesced message follows within
``min_interval``) and must finish within the stop deadline. Sharing it would also tie
notifications to the delegation package. So httpx has two adapters, each with one job;
nothing else in agentq imports it.

Errors become :class:`~agentq.core.errors.NotificationError` with a fixed description
(``cannot connect``, ``timed out``, ``HTTP 500``): never the URL, which often carries a
token, and never httpx's own message, which may quote it. The URL is registered as a
secret too, so httpx's own request log line is redacted by the daemon's log filter.
"""

from __future__ import annotations

import logging
from datetime import datetime

import httpx

from agentq import __version__
from agentq.core.errors import NotificationError
from agentq.core.secrets import register_secret
from agentq.daemon.notify import message as msg
from agentq.daemon.notify.rules import Message

logger = logging.getLogger(__name__)

Transport = httpx.BaseTransport


class WebhookSender:
    """POSTs each message as JSON to one URL, signed when a secret is given."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        host: str,
        timeout: float,
        secret: str | None = None,
        transport: Transport | None = None,
    ) -> None:
        self.name = name
        self._url = url
        self._host = host
        self._secret = secret
        self._timeout = timeout
        for text in _url_forms(url):
            register_secret(text)
        if secret:
            register_secret(secret)
        self._client = httpx.Client(
            headers={"User-Agent": f"agentq/{__version__}"},
            transport=transport,
            follow_redirects=False,
        )

    def send(self, message: Message, at: datetime, timeout: float | None = None) -> None:
        """POST one message; ``timeout`` (seconds) caps the configured one.

        Raises:
            NotificationError: not delivered (named by target, never by URL).
        """
        body = msg.webhook_body(message, self._host, at)
        headers = {"Content-Type": "application/json"}
        if self._secret:
            headers[msg.SIGNATURE_HEADER] = msg.signature(body, self._secret)
        limit = self._timeout if timeout is None else max(0.01, min(timeout, self._timeout))
        try:
            response = self._client.post(
                self._url, content=body, headers=headers, timeout=httpx.Timeout(limit)
            )
        except httpx.HTTPError as exc:
            raise NotificationError(self.name, _describe(exc, limit)) from None
        logger.debug(
            "webhook answered", extra={"target": self.name, "status": response.status_code}
        )
        if not 200 <= response.status_code < 300:
            raise NotificationError(self.name, f"HTTP {response.status_code}")

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


def _describe(exc: httpx.HTTPError, timeout: float) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, httpx.ConnectError):
        return "cannot connect"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "connection closed without a valid response"
    if isinstance(exc, httpx.ReadError | httpx.WriteError):
        return "connection reset"
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return "invalid URL"
    return type(exc).__name__


def _url_forms(url: str) -> list[str]:
    """The URL as written and as httpx prints it in its request log line."""
    try:
        return [url, str(httpx.URL(url))]
    except httpx.InvalidURL:
        return [url]
