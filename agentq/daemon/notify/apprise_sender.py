"""Notifications through Apprise (ntfy, Slack, Discord, Telegram, Pushover, email, …).

The only module importing apprise. A target is one Apprise URL; the shorthands
``kind: ntfy`` and ``kind: slack`` become Apprise URLs here (:func:`apprise_url`):
an ntfy topic URL ``https://host/topic`` is ``ntfys://host/topic`` (``http`` →
``ntfy://``), and a Slack incoming-webhook URL is one Apprise reads as it is.

Apprise, and requests and urllib3 beneath it, log URLs and request paths (which carry
the tokens) at debug level and host names in warnings. Their loggers are kept out of
the daemon's log; a failure is reported by target name and Apprise's verdict only.
"""

from __future__ import annotations

import logging
from datetime import datetime

import apprise

from agentq.config.models import NotificationEvent
from agentq.core.errors import ConfigError, NotificationError
from agentq.core.secrets import register_secret
from agentq.daemon.notify import message as msg
from agentq.daemon.notify.rules import Message

logger = logging.getLogger(__name__)

#: Loggers that would print a target's URL or its path.
QUIET_LOGGERS = ("apprise", "urllib3")

_TYPES: dict[NotificationEvent, apprise.NotifyType] = {
    "swap": apprise.NotifyType.WARNING,
    "partial_swap": apprise.NotifyType.FAILURE,
    "accounts_exhausted": apprise.NotifyType.FAILURE,
    "accounts_available": apprise.NotifyType.SUCCESS,
    "task_failed": apprise.NotifyType.FAILURE,
    "task_stale": apprise.NotifyType.WARNING,
    "daemon_degraded": apprise.NotifyType.WARNING,
    "daemon_started": apprise.NotifyType.INFO,
}


class AppriseSender:
    """Sends each message to one Apprise URL."""

    def __init__(self, name: str, url: str, *, timeout: float) -> None:
        """Prepare the target.

        Raises:
            ConfigError: Apprise does not recognise the URL (named by target and scheme).
        """
        _quiet_libraries()
        register_secret(url)
        self.name = name
        asset = apprise.AppriseAsset(storage_mode="memory", service_timeout=timeout)
        self._apprise = apprise.Apprise(asset=asset)
        if not self._apprise.add(url):
            raise ConfigError([_unsupported(name, url)])

    def send(self, message: Message, at: datetime, timeout: float | None = None) -> None:
        """Send one message; ``timeout`` (seconds) caps the whole call.

        Raises:
            NotificationError: not delivered (Apprise's verdict, never the URL).
        """
        body = "\n".join(msg.lines(message)) or msg.summary(message)
        result = self._apprise.notify(
            body=body,
            title=msg.title(message),
            notify_type=_TYPES[message.event],
            timeout=max(0.01, timeout) if timeout is not None else 0,
        )
        if not result:
            raise NotificationError(self.name, f"Apprise: {result.status.name.lower()}")

    def close(self) -> None:
        """Nothing to release (Apprise opens a connection per message)."""


def apprise_url(kind: str, url: str) -> str:
    """The Apprise URL of a target: ``ntfy`` topic URLs are rewritten, others kept."""
    if kind == "ntfy":
        scheme, _, rest = url.partition("://")
        return ("ntfys" if scheme.lower() == "https" else "ntfy") + "://" + rest
    return url


def unsupported_url(name: str, url: str) -> str | None:
    """A problem line when Apprise does not recognise ``url``; ``None`` when it does."""
    _quiet_libraries()
    if apprise.Apprise.instantiate(url) is None:
        return _unsupported(name, url)
    return None


def _unsupported(name: str, url: str) -> str:
    scheme = url.partition("://")[0][:20]
    return f"notification target {name!r}: Apprise does not recognise a {scheme}:// URL"


def _quiet_libraries() -> None:
    # Their records would carry the target's URL or path (its token) into the journal.
    for name in QUIET_LOGGERS:
        quiet = logging.getLogger(name)
        quiet.propagate = False
        if not any(isinstance(h, logging.NullHandler) for h in quiet.handlers):
            quiet.addHandler(logging.NullHandler())
