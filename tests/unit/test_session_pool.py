"""The pool's pure choices: which slot takes a task, which account a launch uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentq.sessions.model import Slot, SlotState
from agentq.sessions.pool import (
    PoolSpec,
    away_from_home,
    home_account,
    pick_account,
    pick_slot,
)

SPEC = PoolSpec("aq-", 0, 4, 4)
ORDER = ("a", "b")
CWD = Path("/code/proj")


def slots(*states: tuple[SlotState, str]) -> list[Slot]:
    """Slots aq-0… in the given states, each on the given account, in CWD."""
    return [Slot(f"aq-{i}", state, account, CWD) for i, (state, account) in enumerate(states)]


def test_each_slot_has_a_home_account_in_turn() -> None:
    """aq-0 on a, aq-1 on b, aq-2 on a, aq-3 on b."""
    assert [home_account(SPEC, f"aq-{i}", ORDER) for i in range(4)] == ["a", "b", "a", "b"]


IDLE, BUSY, EMPTY = SlotState.IDLE, SlotState.BUSY, SlotState.EMPTY


@pytest.mark.parametrize(
    ("pool", "index", "accounts", "expected"),
    [
        (slots((EMPTY, ""), (EMPTY, "")), 1, ("b",), "b"),
        (slots((EMPTY, ""), (EMPTY, "")), 1, ("a", "b"), "b"),
        (slots((IDLE, "b"), (BUSY, "b"), (BUSY, "b"), (EMPTY, "")), 0, ("a", "b"), "a"),
        (slots((IDLE, "b"), (BUSY, "b")), 0, ("b", "c"), "b"),
        (slots((EMPTY, "a"), (BUSY, "b"), (BUSY, "c"), (BUSY, "c")), 0, ("b", "c"), "b"),
        (slots((SlotState.PARKED, "a"), (BUSY, "b")), 0, ("b",), "b"),
    ],
    ids=[
        "one usable account: every launch uses it",
        "spread: a slot starts on its home account",
        "a borrowed slot goes home once its home is usable again",
        "a borrowed slot stays where it runs while its home is out",
        "a slot whose home is out starts on the least loaded usable account",
        "a parked task resumes on a usable account",
    ],
)
def test_pick_account(
    pool: list[Slot], index: int, accounts: tuple[str, ...], expected: str
) -> None:
    """The account of a slot's next launch."""
    order = ("a", "b", "c") if "c" in accounts else ORDER
    assert pick_account(SPEC, pool[index], pool, accounts, order) == expected


def test_an_idle_session_on_a_usable_account_takes_the_task_first() -> None:
    """With spread accounts, an idle session that can take the task as it is comes first."""
    pool = slots((IDLE, "a"), (IDLE, "b"))
    assert pick_slot(pool, CWD, None, ("b",)) == pool[1]
    assert pick_slot(pool, CWD, None) == pool[0]


@pytest.mark.parametrize(
    ("pool", "accounts", "expected"),
    [
        (slots((IDLE, "b"), (IDLE, "b"), (IDLE, "b"), (IDLE, "b")), ("a", "b"), ["aq-0", "aq-2"]),
        (slots((IDLE, "b"), (IDLE, "b"), (IDLE, "b"), (IDLE, "b")), ("b",), []),
        (slots((BUSY, "b"), (IDLE, "b"), (EMPTY, "b"), (IDLE, "b")), ("a", "b"), []),
        (slots((IDLE, "b"), (IDLE, "b")), ("b", "c"), []),
        (slots((IDLE, "a"), (IDLE, "b"), (IDLE, "a"), (IDLE, "b")), ("a", "b"), []),
    ],
    ids=[
        "idle sessions borrowed from a go home once a is usable again",
        "not while a is out (one usable account)",
        "a working session finishes its task first; an empty one launches at home anyway",
        "not while the home is out of the usable accounts",
        "every session at home: nothing moves",
    ],
)
def test_idle_sessions_away_from_a_usable_home_go_home(
    pool: list[Slot], accounts: tuple[str, ...], expected: list[str]
) -> None:
    """The slots relaunched at home: idle, away from home, and the home usable."""
    order = ("a", "b", "c") if "c" in accounts else ORDER
    assert away_from_home(SPEC, pool, accounts, order) == expected


def test_the_operators_sessions_never_go_anywhere() -> None:
    """A dedicated session in the pool's range is not the pool's to move."""
    spec = PoolSpec("aq-", 0, 4, 4, dedicated=frozenset({"aq-0"}))
    pool = slots((IDLE, "b"), (IDLE, "a"), (IDLE, "a"), (IDLE, "a"))
    assert away_from_home(spec, pool, ("a", "b"), ORDER) == ["aq-2"]
