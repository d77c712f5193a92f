"""Signals for a main loop: no Python code runs in the handler; a relay thread acts.

A Python signal handler runs on the main thread between two bytecodes, wherever that
thread is, so it must not take a lock the main thread may hold. Setting the loop's
``threading.Event`` takes the event's lock, which the loop itself holds for a few
bytecodes inside ``Event.wait`` and ``Event.clear``: a SIGTERM landing there left the
main thread waiting for itself for ever, and the daemon never stopped.

So the interpreter's own C handler carries the signal: it writes the signal's number
to a pipe (``signal.set_wakeup_fd``), and :class:`SignalRelay`'s thread reads it and
runs the action (``stop``, ``request_reload``) there, where taking a lock is safe.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Collection, Mapping
from types import FrameType, TracebackType
from typing import Any

logger = logging.getLogger(__name__)

#: How long :meth:`SignalRelay.close` waits for an action in progress to return.
CLOSE_TIMEOUT = 5.0


def _noted(signum: int, frame: FrameType | None) -> None:
    """Nothing to do: the interpreter has written ``signum`` to the relay's pipe already."""


class SignalRelay:
    """Owns the process's signal dispositions while a main loop runs.

    ``actions`` run on the relay's thread when their signal arrives; ``ignored``
    signals are ignored. Install and close on the main thread (Python's rule for
    signal handlers); :meth:`close` puts back what was there before.
    """

    def __init__(
        self,
        actions: Mapping[signal.Signals, Callable[[], None]],
        ignored: Collection[signal.Signals] = (),
    ) -> None:
        self._actions = {int(signum): action for signum, action in actions.items()}
        self._ignored = tuple(ignored)
        self._previous: dict[signal.Signals, Any] = {}
        self._previous_fd = -1
        self._write_fd = -1
        self._thread: threading.Thread | None = None

    def __enter__(self) -> SignalRelay:
        self.install()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def install(self) -> None:
        """Route the signals to the relay thread (main thread only)."""
        read_fd, self._write_fd = os.pipe()
        # The C handler must never block; a full pipe (never in practice) drops the byte.
        os.set_blocking(self._write_fd, False)
        # First, as it raises off the main thread; what arrives meanwhile waits in the pipe.
        self._previous_fd = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        self._thread = threading.Thread(
            target=self._relay, args=(read_fd,), name="agentq-signals", daemon=True
        )
        self._thread.start()
        for signum in self._actions:
            sig = signal.Signals(signum)
            self._previous[sig] = signal.signal(sig, _noted)
        for sig in self._ignored:
            self._previous[sig] = signal.signal(sig, signal.SIG_IGN)

    def close(self) -> None:
        """Put the previous handlers back and end the relay thread."""
        for sig, handler in self._previous.items():
            if handler is not None:  # None: set outside Python; nothing to put back
                signal.signal(sig, handler)
        self._previous.clear()
        if self._thread is None:
            return
        signal.set_wakeup_fd(self._previous_fd)
        os.close(self._write_fd)  # the relay reads end-of-file and ends
        self._thread.join(CLOSE_TIMEOUT)
        if self._thread.is_alive():
            logger.warning("signal relay did not end in time")
        self._thread = None

    def _relay(self, read_fd: int) -> None:
        try:
            while chunk := os.read(read_fd, 64):
                for signum in chunk:
                    self._act(signum)
        finally:
            os.close(read_fd)

    def _act(self, signum: int) -> None:
        action = self._actions.get(signum)
        if action is None:
            return  # another handler's signal (the wakeup pipe carries every one)
        name = signal.Signals(signum).name
        logger.info("signal received", extra={"signal": name})
        try:
            action()
        except Exception:  # the relay must outlive a failing action, or later signals go unheard
            logger.exception("signal action failed", extra={"signal": name})
