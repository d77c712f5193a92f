"""The one clock: wall time for records and footers, monotonic time for timeouts.

Everything that needs the time is handed a :class:`Clock` (the daemon builds one
:class:`SystemClock` and passes it down); nothing below the daemon reads
``time.time()``, ``time.monotonic()`` or ``datetime.now()`` directly, so tests can
drive time with :class:`ManualClock`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Wall and monotonic time."""

    def now(self) -> datetime:
        """The current wall time, timezone-aware (UTC)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for timeouts and intervals)."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        """``datetime.now(UTC)``."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told to (tests, simulations)."""

    def __init__(self, start: datetime | None = None, monotonic: float = 1000.0) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._mono = monotonic

    def now(self) -> datetime:
        """The current manual wall time."""
        return self._now

    def monotonic(self) -> float:
        """The current manual monotonic time."""
        return self._mono

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by ``seconds``."""
        self._now += timedelta(seconds=seconds)
        self._mono += seconds
