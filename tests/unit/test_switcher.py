"""Unit tests for agentq.accounts.switcher: a swap carried out through the pool and the links.

The pool and the account links are fakes that record what they are asked; nothing here
starts tmux or touches a real link.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agentq.accounts.book import AccountBook, PartialSwap
from agentq.accounts.switcher import RETRY_AFTER_FAILED_SWAP, Switcher
from agentq.agents.readings import Reading
from agentq.config.load import config_from_dict
from agentq.config.models import Config
from agentq.core.errors import AccountError

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RESET = T0 + timedelta(hours=5)
SID = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"


class FakePool:
    """A session pool that records every call (in order) and parks two tasks."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.operators: dict[str, str] = {"ops": SID}

    def pause_dispatch(self) -> None:
        self.calls.append(("pause",))

    def resume_dispatch(self) -> None:
        self.calls.append(("resume dispatch",))

    def park(self, account: str | None = None) -> int:
        self.calls.append(("park",))
        return 2

    def use_account(self, name: str) -> None:
        self.calls.append(("use", name))

    def resume_parked(self) -> int:
        self.calls.append(("resume parked",))
        return 2

    def operator_sessions(self) -> Mapping[str, str]:
        return dict(self.operators)

    def resume_operator_session(self, name: str, session_id: str) -> bool:
        self.calls.append(("resume operator", name, session_id))
        return True

    def names(self) -> list[str]:
        """The calls' names only."""
        return [call[0] for call in self.calls]


class FakeLinks:
    """Account links that remember where the active link points; either step may fail."""

    def __init__(
        self, points_to: Path, *, ensure_fails: bool = False, flip_back_fails: bool = False
    ):
        self.points_to = points_to
        self.ensure_fails = ensure_fails
        self.flip_back_fails = flip_back_fails
        self.flips = 0

    def flip(self, link: Path, home: Path) -> None:
        self.flips += 1
        if self.flip_back_fails and self.flips % 2 == 0:
            raise AccountError([f"cannot flip {link} back"])
        self.points_to = home

    def ensure(self, home: Path) -> None:
        if self.ensure_fails:
            raise AccountError([f"{home}/projects is a real folder"])


def make_config(root: Path, cooldown: str = "5m") -> Config:
    data = {
        "state_dir": str(root / "state"),
        "accounts": [
            {"name": "a", "home": str(root / "a")},
            {"name": "b", "home": str(root / "b")},
        ],
        "active_link": str(root / "claude"),
        "shared": {"root": str(root / "shared")},
        "quota": {"cooldown": cooldown, "confirm_polls": 2, "default_exhausted": "1h"},
    }
    return config_from_dict(data, {"HOME": str(root)}, root)


class Events:
    """Records what the switcher emits: ``(kind, fields)`` in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, kind: str, /, **fields: Any) -> None:
        self.seen.append((kind, fields))

    def kinds(self) -> list[str]:
        """The kinds only."""
        return [kind for kind, _ in self.seen]


class Rig:
    """A switcher over a fake pool and fake links, with the events it emitted."""

    def __init__(self, root: Path, book: AccountBook | None = None, **links: bool) -> None:
        self.config = make_config(root)
        self.pool = FakePool()
        self.links = FakeLinks(root / "a", **links)
        self.events = Events()
        book = book or AccountBook.fresh(["a", "b"])
        self.switcher = Switcher(self.config, self.pool, book, self.events, links=self.links)
        self.pool.calls.clear()

    def limit(self, at: datetime = T0, reset: datetime | None = RESET) -> None:
        """The pool's session agentq-0 hit its limit (a hook reading)."""
        reading = Reading("agentq-0", "hook", "quota", reset, "You've hit your limit", at, "a")
        self.switcher.observe([reading], at)

    @property
    def book(self) -> AccountBook:
        return self.switcher.book


def test_a_limit_with_a_reset_swaps_the_pool_to_the_next_account(tmp_path: Path) -> None:
    """Park, pause, flip, launch on b, resume: in that order, and one entry in the history."""
    rig = Rig(tmp_path)
    rig.limit()
    assert rig.pool.calls == [
        ("park",),
        ("pause",),
        ("use", "b"),
        ("resume dispatch",),
        ("resume parked",),
        ("resume operator", "ops", SID),
    ]
    assert rig.links.points_to == tmp_path / "b"
    assert rig.book.active == "b" and rig.book.exhausted_until["a"] == RESET
    assert [(s.source, s.target) for s in rig.book.swaps] == [("a", "b")]
    trigger = "quota: quota with a reset time (hook, agentq-0)"
    assert rig.book.swaps[0].trigger == trigger
    [(kind, fields)] = rig.events.seen
    assert kind == "swap"
    assert {k: fields[k] for k in ("from", "to", "trigger", "resumed", "dedicated")} == {
        "from": "a",
        "to": "b",
        "trigger": trigger,
        "resumed": 2,
        "dedicated": ["ops"],
    }
    assert "rolled_back" not in fields


def test_a_failing_ensure_is_rolled_back_and_holds_on_an_exhausted_source(tmp_path: Path) -> None:
    """The link goes back to a; a is exhausted, so dispatch stays paused until a retry."""
    rig = Rig(tmp_path, ensure_fails=True)
    rig.limit()
    assert rig.links.points_to == tmp_path / "a"
    assert rig.pool.names() == ["park", "pause"]
    assert rig.book.active == "a" and rig.book.swaps == ()
    assert rig.book.hold is not None and rig.book.hold.until == T0 + RETRY_AFTER_FAILED_SWAP
    # One rolled-back swap; the retry pause is no "every account is exhausted" hold.
    [(kind, fields)] = rig.events.seen
    assert kind == "swap" and fields["rolled_back"] is True and fields["resumed"] == 0
    assert "projects is a real folder" in fields["error"]
    assert "failed and was rolled back" in fields["message"]


def test_a_failing_manual_swap_resumes_on_a_usable_source(tmp_path: Path) -> None:
    """Rolled back onto an account that is not exhausted, the parked tasks resume there."""
    rig = Rig(tmp_path, ensure_fails=True)
    outcome = rig.switcher.swap("manual (agentq swap)", "b", T0)
    assert not outcome.swapped and "rolled back" in outcome.message
    assert rig.pool.names() == ["park", "pause", "resume dispatch", "resume parked"]
    assert rig.book.hold is None and rig.links.points_to == tmp_path / "a"
    [(kind, fields)] = rig.events.seen
    assert kind == "swap" and fields["rolled_back"] is True and fields["resumed"] == 2


def test_a_failing_rollback_enters_the_sticky_partial_swap(tmp_path: Path) -> None:
    """Flip back fails: partial swap, dispatch paused, swaps refused until cleared."""
    rig = Rig(tmp_path, ensure_fails=True, flip_back_fails=True)
    rig.limit()
    assert rig.book.partial is not None and rig.book.partial.target == "b"
    assert rig.pool.names() == ["park", "pause"]
    assert rig.events.kinds() == ["partial_swap"]
    assert rig.events.seen[0][1]["active"] is True and rig.events.seen[0][1]["to"] == "b"
    refused = rig.switcher.swap("manual (agentq swap)", "b", T0)
    assert not refused.swapped and "partial swap" in refused.message
    rig.limit(T0 + timedelta(hours=1))
    assert rig.pool.names() == ["park", "pause"]  # no second swap while partial


def test_clearing_a_partial_swap_resumes_where_the_link_points(tmp_path: Path) -> None:
    """``agentq swap --clear``: the pool follows the link (none here: the source) and resumes."""
    rig = Rig(tmp_path, ensure_fails=True, flip_back_fails=True)
    rig.limit()
    rig.pool.calls.clear()
    outcome = rig.switcher.clear_partial()
    assert outcome.swapped and rig.book.partial is None and rig.book.active == "a"
    assert rig.pool.calls == [("use", "a"), ("resume dispatch",), ("resume parked",)]
    assert not rig.switcher.clear_partial().swapped  # nothing left to clear
    assert [(k, f["active"]) for k, f in rig.events.seen] == [
        ("partial_swap", True),
        ("partial_swap", False),
    ]


def test_a_restart_forgets_a_partial_swap_and_keeps_a_hold(tmp_path: Path) -> None:
    """The book from ``state.json``: no partial swap; a hold pauses dispatch at once."""
    book = AccountBook.fresh(["a", "b"]).held(T0, RESET).with_partial(PartialSwap("a", "b", "", ""))
    pool = FakePool()
    events = Events()
    switcher = Switcher(make_config(tmp_path), pool, book, events)
    assert switcher.book.partial is None
    assert pool.calls == [("use", "a"), ("pause",)]
    assert events.seen == []  # the previous daemon reported the hold


def test_every_account_exhausted_holds_then_retries_after_the_earliest_reset(
    tmp_path: Path,
) -> None:
    """b exhausted too: hold until the earliest reset (notified once), then swap by itself."""
    book = AccountBook.fresh(["a", "b"]).exhausted("b", RESET + timedelta(hours=1))
    rig = Rig(tmp_path, book)
    rig.limit()
    rig.limit(T0 + timedelta(minutes=10))
    assert rig.book.hold is not None and rig.book.hold.until == RESET
    assert rig.events.kinds() == ["hold"]
    assert rig.events.seen[0][1]["until"] == RESET.isoformat()
    assert rig.switcher.next_wakeup(T0) == (RESET - T0).total_seconds()
    rig.pool.calls.clear()
    rig.switcher.tick(RESET)
    assert rig.book.active == "a" and rig.book.hold is None  # a's reset passed first
    assert rig.pool.names()[:2] == ["park", "pause"] and ("use", "a") in rig.pool.calls
    assert rig.events.kinds() == ["hold", "accounts_available", "swap"]
    assert rig.events.seen[1][1]["account"] == "a"


def test_each_detection_is_logged_once_per_verdict(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The same verdict poll after poll is one forensic line, not one per poll."""
    rig = Rig(tmp_path)
    caplog.set_level(logging.WARNING, "agentq.accounts.switcher")
    for n in range(3):
        at = T0 + timedelta(seconds=5 * n)
        reading = Reading("agentq-1", "pane", "server_error", None, "API Error: 500", at)
        rig.switcher.observe([reading], at)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("quota monitor")]
    assert len(lines) == 1 and "decision=hold" in lines[0]
