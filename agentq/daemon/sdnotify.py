"""The systemd notify protocol: ``READY``, ``RELOADING``, ``STOPPING``, ``STATUS``, ``WATCHDOG``.

One datagram per message over the ``AF_UNIX`` socket named by ``$NOTIFY_SOCKET``
(a path, or ``@name`` for the abstract namespace), as sd_notify(3) defines it and
as systemd's self-contained example implements it without libsystemd. Without
the variable every call is a no-op, so the daemon runs the same in a terminal.

The notifier only speaks the protocol. When to ping is the main loop's decision
(:meth:`agentq.daemon.loop.Daemon`): ``WATCHDOG=1`` is sent from the loop, after a
pass, and only while the daemon is healthy.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Mapping, MutableMapping

logger = logging.getLogger(__name__)

#: The variables systemd hands the service for this protocol. Children (the tmux
#: server, every agent pane) must not inherit them: their messages would be
#: refused (``NotifyAccess=main``) and logged by systemd as noise.
NOTIFY_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def forget_environment(environ: MutableMapping[str, str]) -> None:
    """Remove the notify variables from ``environ`` (sd_notify's ``unset_environment``)."""
    for name in NOTIFY_VARIABLES:
        environ.pop(name, None)


def watchdog_bound(env: Mapping[str, str], pid: int) -> float | None:
    """The longest allowed gap between two pings: half of ``WATCHDOG_USEC``, in seconds.

    None when systemd asked for no watchdog, or asked another process
    (``WATCHDOG_PID`` names a PID that is not ``pid``), as sd_watchdog_enabled(3) reads it.
    """
    usec = env.get("WATCHDOG_USEC", "").strip()
    if not usec.isdigit() or int(usec) == 0:
        return None
    owner = env.get("WATCHDOG_PID", "").strip()
    if owner and owner != str(pid):
        return None
    return int(usec) / 2e6


def _address(env: Mapping[str, str]) -> str:
    address = env.get("NOTIFY_SOCKET", "")
    if address.startswith("@"):
        return "\0" + address[1:]
    if address.startswith("/"):
        return address
    if address:
        logger.warning(
            "unsupported NOTIFY_SOCKET; notifications disabled", extra={"address": address}
        )
    return ""


class Notifier:
    """Send notify messages to the socket named in the environment, if any."""

    def __init__(self, env: Mapping[str, str], pid: int) -> None:
        self._address = _address(env)
        #: Half of ``WATCHDOG_USEC`` (sd_watchdog_enabled(3)'s advice): the loop pings at least
        #: this often while healthy. None: no watchdog.
        self.watchdog_bound = watchdog_bound(env, pid) if self._address else None
        self._status = ""
        self._failing = False

    @property
    def enabled(self) -> bool:
        """Whether a notify socket was given."""
        return bool(self._address)

    def ready(self, status: str | None = None) -> None:
        """``READY=1``: start-up (or a reload) is complete; optionally with a new ``STATUS=``."""
        if status is None:
            self.send("READY=1")
            return
        self._status = _one_line(status)
        self.send(f"READY=1\nSTATUS={self._status}")

    def reloading(self) -> None:
        """``RELOADING=1`` with ``MONOTONIC_USEC=`` (what ``Type=notify-reload`` expects)."""
        # CLOCK_MONOTONIC itself, not an injected clock: systemd compares it with its own.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send(f"RELOADING=1\nMONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        """``STOPPING=1``: shutting down."""
        self.send("STOPPING=1\nSTATUS=stopping")

    def watchdog(self) -> None:
        """``WATCHDOG=1``: the caller vouches that the daemon is healthy."""
        self.send("WATCHDOG=1")

    def status(self, text: str) -> None:
        """``STATUS=``: a one-line summary, sent only when it changed."""
        line = _one_line(text)
        if line == self._status:
            return
        self._status = line
        self.send(f"STATUS={line}")

    def send(self, message: str) -> bool:
        """Send one message; failures are logged (once per run of failures), never raised."""
        if not self._address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # Never block the main loop on a manager that fell behind.
                sock.sendto(message.encode(), socket.MSG_DONTWAIT, self._address)
        except OSError as exc:
            if not self._failing:
                logger.warning("sd_notify failed", extra={"error": str(exc)})
            self._failing = True
            return False
        self._failing = False
        return True


def _one_line(text: str) -> str:
    return " ".join(text.split())
