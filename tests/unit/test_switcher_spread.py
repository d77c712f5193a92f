"""The switcher with accounts in parallel (spread) and preempt: what it asks of the pool.

The pool and the links are fakes that record their calls (``tests/unit/test_switcher.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agentq.accounts.book import AccountBook
from agentq.accounts.switcher import Switcher
from agentq.agents.readings import Reading, WindowUse
from agentq.agents.status import Window
from agentq.config.load import config_from_dict
from agentq.config.models import Config
from tests.unit.test_switcher import SID, Events, FakeLinks, FakePool

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RESET = T0 + timedelta(minutes=1)


class SpreadPool(FakePool):
    """A fake pool that also records which account is parked and the accounts in use."""

    def park(self, account: str | None = None) -> int:
        self.calls.append(("park", account or "*"))
        return 1

    def use_accounts(self, names: Sequence[str]) -> None:
        self.calls.append(("use accounts", ",".join(names)))


def make_config(root: Path, policy: str, **quota: Any) -> Config:
    data = {
        "state_dir": str(root / "state"),
        "accounts": [{"name": n, "home": str(root / n)} for n in ("a", "b", "c")],
        "active_link": str(root / "claude"),
        "shared": {"root": str(root / "shared")},
        "pool": {"account_policy": policy},
        "quota": {"confirm_polls": 1, "default_exhausted": "1h", **quota},
    }
    return config_from_dict(data, {"HOME": str(root)}, root)


class Rig:
    """A switcher of three accounts over a recording pool and links."""

    def __init__(self, root: Path, policy: str = "spread", **quota: Any) -> None:
        self.root = root
        self.pool = SpreadPool()
        self.links = FakeLinks(root / "a")
        self.events = Events()
        self.switcher = Switcher(
            make_config(root, policy, **quota),
            self.pool,
            AccountBook.fresh(["a", "b", "c"]),
            self.events,
            links=self.links,
        )
        self.switcher.tick(T0)

    def limit(self, account: str, at: datetime = T0, session: str = "aq-0") -> None:
        """A session of ``account`` hit its 5-hour limit, resetting at RESET."""
        reading = Reading(session, "hook", "quota", RESET, "limit", at, account, Window.FIVE_HOUR)
        self.switcher.observe([reading], at)

    def warn(self, account: str, percent: int, at: datetime = T0) -> None:
        """A session of ``account`` shows a 5-hour usage warning."""
        use = WindowUse(Window.FIVE_HOUR, percent, False, T0 + timedelta(hours=4))
        reading = Reading("aq-0", "pane", "ok", None, "", at, account, None, use)
        self.switcher.observe([reading], at)

    def calls(self) -> list[tuple[str, ...]]:
        calls, self.pool.calls = list(self.pool.calls), []
        return calls


def test_spread_starts_on_every_account(tmp_path: Path) -> None:
    """At start the pool is told every account (the link's account is the operator's)."""
    rig = Rig(tmp_path)
    assert rig.calls() == [("use", "a"), ("use accounts", "a,b,c")]


def test_a_limit_stops_only_that_accounts_sessions_and_resumes_their_tasks_elsewhere(
    tmp_path: Path,
) -> None:
    """b out: only b's sessions park; the pool goes on over a and c; nothing else is touched."""
    rig = Rig(tmp_path)
    rig.calls()
    rig.limit("b")
    assert rig.calls() == [("park", "b"), ("use accounts", "a,c"), ("resume parked",)]
    assert rig.switcher.book.active == "a" and rig.switcher.book.swaps == ()
    assert rig.links.points_to == tmp_path / "a"
    assert rig.switcher.book.windows["b"][Window.FIVE_HOUR].exhausted_until == RESET
    ((kind, fields),) = rig.events.seen
    assert (kind, fields["from"], fields["to"], fields["stopped"]) == ("swap", "b", "a,c", ["b"])


def test_an_exhausted_account_rejoins_by_itself_after_its_reset(tmp_path: Path) -> None:
    """Once b's reset passed, the pool is told to use it again; nothing is restarted for it."""
    rig = Rig(tmp_path)
    rig.limit("b")
    rig.calls()
    rig.switcher.tick(RESET - timedelta(seconds=1))
    assert rig.calls() == []
    # The loop wakes for the reset, not only with the next task that happens by.
    assert rig.switcher.next_wakeup(RESET - timedelta(seconds=1)) == 1.0
    rig.switcher.tick(RESET)
    assert rig.calls() == [("use accounts", "a,b,c")]
    assert rig.switcher.next_wakeup(RESET) is None


def test_the_active_accounts_limit_moves_the_link_and_the_operator_sessions(
    tmp_path: Path,
) -> None:
    """a (the link's) out: a's sessions park, the link moves to b, ops resumed there."""
    rig = Rig(tmp_path)
    rig.calls()
    rig.limit("a")
    calls = rig.calls()
    assert calls[0] == ("park", "a")
    assert ("use", "b") in calls and ("resume operator", "ops", SID) in calls
    assert ("park", "*") not in calls and ("pause",) not in calls
    assert ("use accounts", "b,c") in calls and calls[-1] == ("resume parked",)
    assert rig.links.points_to == tmp_path / "b"
    assert [(s.source, s.target) for s in rig.switcher.book.swaps] == [("a", "b")]
    ((kind, fields),) = rig.events.seen
    assert (kind, fields["stopped"], fields["soft"], fields["dedicated"]) == (
        "swap",
        ["a"],
        False,
        ["ops"],
    )


def test_every_account_out_holds_and_the_first_reset_releases(tmp_path: Path) -> None:
    """All three out: hold (parked everything, paused); at a's reset the tasks resume on a."""
    rig = Rig(tmp_path)
    for account in ("b", "c", "a"):
        rig.limit(account)
    assert rig.switcher.book.hold is not None
    assert rig.events.kinds().count("hold") == 1
    rig.calls()
    rig.switcher.tick(RESET)
    calls = rig.calls()
    assert rig.switcher.book.hold is None
    assert ("resume dispatch",) in calls and ("resume parked",) in calls
    assert ("use accounts", "a,b,c") in calls
    assert rig.events.kinds()[-1] == "accounts_available"


def test_spread_leaves_a_preempted_account_out_of_new_launches(tmp_path: Path) -> None:
    """92% with preempt_at 90%: b takes no new task; its sessions are not parked."""
    rig = Rig(tmp_path, preempt_at="90%")
    rig.calls()
    rig.warn("b", 92)
    rig.switcher.tick(T0)
    assert rig.calls() == [("use accounts", "a,c")]
    assert "b" in rig.switcher.book.preempted


def test_failover_swaps_softly_off_a_preempted_active_account(tmp_path: Path) -> None:
    """Failover: a past preempt_at moves new tasks to b; nothing is parked or paused."""
    rig = Rig(tmp_path, policy="failover", preempt_at="90%")
    rig.calls()
    rig.warn("a", 92)
    rig.switcher.tick(T0)
    calls = rig.calls()
    assert ("use", "b") in calls
    assert not [c for c in calls if c[0] in ("park", "pause", "resume operator")]
    assert rig.links.points_to == tmp_path / "b"
    swap = rig.switcher.book.swaps[-1]
    assert (swap.source, swap.target) == ("a", "b") and swap.trigger.startswith("preempt: ")
    ((kind, fields),) = rig.events.seen
    assert (kind, fields["soft"], fields["stopped"]) == ("swap", True, [])


def test_failover_stops_the_preempted_accounts_sessions_when_it_runs_out(tmp_path: Path) -> None:
    """After the soft swap a's running task hits its limit: only a's sessions park, resumed on b."""
    rig = Rig(tmp_path, policy="failover", preempt_at="90%")
    rig.warn("a", 92)
    rig.switcher.tick(T0)
    rig.calls()
    rig.limit("a", T0 + timedelta(seconds=5))
    assert rig.calls() == [("park", "a"), ("resume parked",)]
    assert rig.switcher.book.active == "b"
