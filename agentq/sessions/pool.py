"""The session pool: our own range of tmux sessions, and the operator's we never touch.

Names are ``prefix + i`` for ``i`` in ``[start_index, start_index + max)``. Only
those are created, typed into, exited or killed. Dedicated (operator) sessions
are known so status can show them and a swap can resume them, nothing more.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class PoolSpec:
    """The pool's configuration, as data."""

    prefix: str
    start_index: int
    min: int
    max: int
    dedicated: frozenset[str] = frozenset()

    def names(self) -> list[str]:
        """Every name in our range, in order."""
        return [f"{self.prefix}{i}" for i in range(self.start_index, self.start_index + self.max)]

    def owns(self, session: str) -> bool:
        """Whether ``session`` is in our range (and so ours to create, use and kill)."""
        return session in set(self.names()) and session not in self.dedicated


def plan_launches(spec: PoolSpec, alive: Iterable[str], wanted: int) -> list[str]:
    """Names to launch so that ``max(spec.min, wanted)`` (capped at ``max``) of ours are alive."""
    ours = [n for n in spec.names() if n not in spec.dedicated]
    live = set(alive) & set(ours)
    target = min(len(ours), max(spec.min, wanted))
    missing = [n for n in ours if n not in live]
    return missing[: max(0, target - len(live))]
