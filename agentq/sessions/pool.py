"""The session pool: our own range of tmux sessions, and the operator's we never touch.

Names are ``prefix + i`` for ``i`` in ``[start_index, start_index + max)``. Only
those are created, typed into, exited or killed. Dedicated (operator) sessions
are known so status can show them and a swap can resume them, nothing more.
Which slot takes a task, which empty slots to warm up and which account a launch
uses are pure choices here.

Accounts (``pool.account_policy: spread``): each slot has a home account, the
configured accounts in turn (``agentq-0`` on the first, ``agentq-1`` on the
second, …). A launch uses the home account while it is one the pool may use; else
the account the slot ran on, if still usable (a borrowed session is not moved
needlessly); else the usable account with the fewest sessions. A slot launched
elsewhere goes home once its home is usable again: an idle one is relaunched there
at once (:func:`away_from_home`), a working one when its task is over (a running
session is never restarted for it). With one usable account (failover), every
launch uses it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from agentq.sessions.model import Slot, SlotState

#: States of a slot that can take a task now (by the machine's invariant, without one).
FREE_STATES = frozenset({SlotState.IDLE, SlotState.EMPTY})


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


def plan_launches(
    spec: PoolSpec, live: Iterable[str], ready: Iterable[str], wanted: int = 0
) -> list[str]:
    """Names to launch so that ``max(spec.min, wanted)`` (capped at ``max``) of ours are live.

    Args:
        live: our sessions that are not empty (starting, working or exiting).
        ready: empty slots that may be launched now (not backing off after failures).
        wanted: sessions the caller would like warm beyond the minimum.
    """
    ours = [n for n in spec.names() if n not in spec.dedicated]
    alive = set(live) & set(ours)
    target = min(len(ours), max(spec.min, wanted))
    launchable = set(ready)
    missing = [n for n in ours if n not in alive and n in launchable]
    return missing[: max(0, target - len(alive))]


def pick_slot(
    slots: Iterable[Slot], cwd: Path, pinned: str | None, accounts: Sequence[str] = ()
) -> Slot | None:
    """The free slot for a task in ``cwd``: the pinned one, an idle one in ``cwd``, an empty one.

    A pin to a busy session falls back to any free slot (the footer says so). With
    ``accounts`` (those the pool may use), an idle session on one of them comes before one
    that would have to be relaunched elsewhere.
    """
    free = [s for s in slots if s.state in FREE_STATES]
    if pinned:
        free = [s for s in free if s.name == pinned] or free
    same = [s for s in free if s.state is SlotState.IDLE and s.cwd == cwd]
    if accounts:
        same.sort(key=lambda s: s.account not in accounts)
    empty = [s for s in free if s.state is SlotState.EMPTY]
    candidates = same or empty or free
    return candidates[0] if candidates else None


def home_account(spec: PoolSpec, name: str, order: Sequence[str]) -> str:
    """The account slot ``name`` belongs to: the configured accounts in turn along the pool."""
    names = [n for n in spec.names() if n not in spec.dedicated]
    index = names.index(name) if name in names else 0
    return order[index % len(order)] if order else ""


def pick_account(
    spec: PoolSpec, slot: Slot, slots: Iterable[Slot], accounts: Sequence[str], order: Sequence[str]
) -> str:
    """The account the next launch of ``slot`` uses (see the module docstring).

    Args:
        accounts: the accounts the pool may launch on now (one in failover), in order.
        order: every configured account, in order (the homes go round it).
    """
    if len(accounts) <= 1:
        return accounts[0] if accounts else slot.account
    home = home_account(spec, slot.name, order)
    if home in accounts:
        return home
    if slot.account in accounts and slot.state is not SlotState.EMPTY:
        return slot.account
    load = dict.fromkeys(accounts, 0)
    for other in slots:
        if other.name != slot.name and other.state is not SlotState.EMPTY:
            load[other.account] = load.get(other.account, 0) + 1
    return min(accounts, key=lambda account: load[account])


def away_from_home(
    spec: PoolSpec, slots: Iterable[Slot], accounts: Sequence[str], order: Sequence[str]
) -> list[str]:
    """Spread: idle slots on another account while their home is one the pool may use.

    They are relaunched at home, so an account that rejoins after its reset gets its
    sessions back even when no task comes to move them. Empty with one usable account.
    """
    if len(accounts) <= 1:
        return []
    names = set(spec.names()) - spec.dedicated
    idle = [s for s in slots if s.name in names and s.state is SlotState.IDLE]
    homes = {s.name: home_account(spec, s.name, order) for s in idle}
    return [s.name for s in idle if s.account != homes[s.name] and homes[s.name] in accounts]
