"""Delegation counters for ``agentq status``, kept across restarts in ``delegation.json``.

Counts only: no task text, no keys. The file is a cache like ``state.json``: a missing or
unreadable one starts the counters from zero.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentq.core import durable

logger = logging.getLogger(__name__)

COUNTERS_FILENAME = "delegation.json"
COUNTER_NAMES = ("submitted", "completed", "failed", "fallbacks", "retried")


@dataclass
class DelegationCounters:
    """How many jobs were submitted, completed, failed, fell back or retried, and their cost."""

    submitted: int = 0
    completed: int = 0
    failed: int = 0
    fallbacks: int = 0
    retried: int = 0
    cost_total_usd: float = 0.0
    dirty: bool = field(default=False, compare=False)

    def add(self, name: str, amount: int | float = 1) -> None:
        """Increase one counter (``cost_total_usd`` or a name from ``COUNTER_NAMES``)."""
        if amount:
            setattr(self, name, getattr(self, name) + amount)
            self.dirty = True

    def as_dict(self) -> dict[str, Any]:
        """The counters as JSON-ready data."""
        body: dict[str, Any] = {name: getattr(self, name) for name in COUNTER_NAMES}
        body["cost_total_usd"] = round(self.cost_total_usd, 6)
        return body

    @classmethod
    def load(cls, state_dir: Path) -> DelegationCounters:
        """Read the saved counters; zeros when there are none or they are unreadable."""
        try:
            raw = json.loads((state_dir / COUNTERS_FILENAME).read_bytes())
            counters = cls(cost_total_usd=float(raw.get("cost_total_usd", 0.0)))
            for name in COUNTER_NAMES:
                setattr(counters, name, int(raw.get(name, 0)))
        except (OSError, ValueError, TypeError, AttributeError):
            return cls()
        return counters

    def save(self, state_dir: Path) -> None:
        """Write the counters atomically when they changed; a failure is only logged."""
        if not self.dirty:
            return
        data = json.dumps({"version": 1, **self.as_dict()}, sort_keys=True).encode()
        try:
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            durable.write_atomic(state_dir / COUNTERS_FILENAME, data, sync=False)
        except OSError as exc:
            logger.warning("cannot save delegation counters", extra={"error": str(exc)})
            return
        self.dirty = False
