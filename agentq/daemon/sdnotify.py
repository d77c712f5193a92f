"""The systemd notify protocol (``READY=1``, ``WATCHDOG=1``, ``STOPPING=1``, ``STATUS=``).

A few lines over an ``AF_UNIX`` datagram socket, as in systemd's own
self-contained example; a no-op when ``NOTIFY_SOCKET`` is unset.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping

logger = logging.getLogger(__name__)


class Notifier:
    """Send notify messages to the socket named in the environment, if any."""

    def __init__(self, env: Mapping[str, str]) -> None:
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]
        self._address = address
        usec = env.get("WATCHDOG_USEC", "")
        self.watchdog_interval = int(usec) / 2e6 if usec.isdigit() and int(usec) > 0 else None
        self._last_ping = 0.0

    def ping(self, now: float) -> None:
        """Send ``WATCHDOG=1`` when systemd asked for it and half its interval has passed."""
        if self.watchdog_interval is None or now - self._last_ping < self.watchdog_interval:
            return
        self._last_ping = now
        self.send("WATCHDOG=1")

    @property
    def enabled(self) -> bool:
        """Whether a notify socket was given."""
        return bool(self._address)

    def send(self, message: str) -> None:
        """Send one message; failures are logged, never raised."""
        if not self._address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # Never block the main loop on a reader that fell behind.
                sock.sendto(message.encode(), socket.MSG_DONTWAIT, self._address)
        except OSError as exc:
            logger.warning("sd_notify failed", extra={"error": str(exc)})
