"""Notifications (webhook / ntfy / Slack-compatible) for swaps, holds and failures.

Each event is logged and kept in ``state.json`` (the last 50); configured endpoints
get a small JSON document (ntfy: a plain text body via its JSON publish form).
Delivery failures are logged, never raised: a notification never stops the daemon.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from agentq.config.models import NotificationConfig
from agentq.core.errors import ProviderError
from agentq.delegation.http import post_json

logger = logging.getLogger(__name__)

KEEP = 50


class Notifier:
    """Sends event notifications to the configured endpoints."""

    def __init__(self, endpoints: Sequence[NotificationConfig], state: dict[str, Any]) -> None:
        self.endpoints = list(endpoints)
        self.state = state

    def __call__(self, event: str, message: str) -> None:
        """Record and send one event."""
        at = datetime.now(UTC).isoformat()
        history = self.state.setdefault("notifications", [])
        history.append({"at": at, "event": event, "message": message})
        del history[:-KEEP]
        logger.warning("notification: %s", message, extra={"event": event})
        for endpoint in self.endpoints:
            if event in endpoint.events:
                self._send(endpoint, event, message)

    def _send(self, endpoint: NotificationConfig, event: str, message: str) -> None:
        if endpoint.kind == "slack":
            body: dict[str, Any] = {"text": f"agentq {event}: {message}"}
        elif endpoint.kind == "ntfy":
            body = {
                "topic": endpoint.url.rstrip("/").rsplit("/", 1)[-1],
                "title": f"agentq {event}",
                "message": message,
            }
        else:
            body = {"event": event, "message": message}
        url = (
            endpoint.url.rstrip("/").rsplit("/", 1)[0] if endpoint.kind == "ntfy" else endpoint.url
        )
        try:
            status = post_json(url, body)
        except ProviderError as exc:
            logger.warning("notification not delivered", extra={"event": event, "error": str(exc)})
            return
        if status >= 400:
            logger.warning("notification refused", extra={"event": event, "status": status})
