"""Waiting for a condition with a deadline: the one place a test sleeps."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: How much of the last polled value a timeout message shows.
_SHOWN_CHARS = 2000


def wait_until(
    fn: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "",
) -> T:
    """Call ``fn`` until it returns something truthy and return that; raise on timeout.

    This is the one place a test's waiting sleeps: between polls of a condition
    with a deadline, never as synchronisation by itself.

    Raises:
        TimeoutError: the deadline passed; the message shows ``message`` and the
            last value ``fn`` returned (truncated).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() >= deadline:
            shown = repr(value)
            if len(shown) > _SHOWN_CHARS:
                shown = shown[:_SHOWN_CHARS] + "…"
            what = f"{message}: " if message else ""
            raise TimeoutError(f"{what}condition not met within {timeout}s; last value {shown}")
        time.sleep(interval)
