"""The account swap: one procedure, in one place, with rollback and a sticky partial-swap state.

The switcher owns the :class:`~agentq.accounts.book.AccountBook`. Each poll the daemon
hands it the sessions' quota readings; :func:`~agentq.accounts.quota.plan_swap` decides,
and the switcher carries the plan out by driving the session pool through its interface
(:class:`~agentq.accounts.pool.SessionPool`) and the account links through theirs
(:class:`AccountLinks`). It never writes another object's attributes.

Steps of a swap: park our pool sessions (their tasks wait, with the session ids the hooks
reported) → pause dispatch → note the operator's dedicated sessions → flip the active link
→ ensure the target's shared links (on failure flip back; if that fails too, enter the
sticky partial-swap state) → launch on the target → record the swap → resume dispatch and
the parked tasks (``--resume <uuid>`` in their cwd) → resume the dedicated sessions that
sit at their shell prompt.

When every account is exhausted the local queue is held until the earliest reset, then the
swap runs by itself (to the same account when there is only one).

Events (the ``emit`` callable handed in, the daemon's :class:`~agentq.core.events.EventLog`),
each once, when it happens: ``swap`` (from, to, trigger, resumed; a rolled-back one with
``rolled_back: true`` and the error), ``partial_swap`` (entered; ``active: false`` when
cleared), ``hold`` (since, until: every account is exhausted) and ``accounts_available`` (the
hold ended). The notifications are built from them; nobody else reports these.

The planner may also stop one account's sessions only (:attr:`~agentq.accounts.quota.Verdict
.stop`): in ``pool.account_policy: spread`` every account with quota left runs sessions, and
a limit parks only its own account's sessions; their tasks resume on the others (the same
``--resume``), other accounts' sessions are never restarted, and the account rejoins once its
reset passed (:meth:`Switcher.tick` hands the pool the accounts to use). There the active
link is the operator's account: it moves off an account only when that one runs out (to the
next with quota left, dedicated sessions resumed there as after a swap). A preempted account
(past ``quota.preempt_at``) is swapped away from softly in failover: nothing is parked, its
running tasks finish, new sessions start on the target. Each of these is a ``swap`` event
(``stopped`` names the accounts whose sessions stopped; ``soft: true`` when none did).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from agentq.accounts.book import AccountBook, PartialSwap
from agentq.accounts.links import SharedLinks
from agentq.accounts.pool import SessionPool
from agentq.accounts.quota import (
    Decision,
    PlanMode,
    QuotaRules,
    SwapPlan,
    launch_accounts,
    plan_preempt,
    plan_swap,
    plan_target,
)
from agentq.agents.readings import Reading
from agentq.config.models import Config
from agentq.core import events as ev
from agentq.core.errors import AccountError, AgentqError

logger = logging.getLogger(__name__)

#: How long to wait before trying again after a swap could not be completed.
RETRY_AFTER_FAILED_SWAP = timedelta(seconds=60)


class AccountLinks(Protocol):
    """The filesystem side of a swap (:class:`~agentq.accounts.links.SharedLinks`)."""

    def flip(self, link: Path, home: Path) -> None:
        """Point the active link at ``home``."""
        ...

    def ensure(self, home: Path) -> None:
        """Make ``home``'s shared links right, or raise :class:`AccountError` listing why not."""
        ...


@dataclass(frozen=True)
class SwapOutcome:
    """What a swap attempt did."""

    swapped: bool
    message: str


class Switcher:
    """Owns the account book: turns readings into swaps, holds and the partial-swap state."""

    def __init__(
        self,
        config: Config,
        pool: SessionPool,
        book: AccountBook,
        emit: ev.Emit,
        *,
        links: AccountLinks | None = None,
    ) -> None:
        self._pool = pool
        self._emit = emit
        self._homes = {a.name: a.home for a in config.accounts}
        self._active_link = config.active_link
        self._rules = QuotaRules.for_config(config)
        #: The accounts the pool was last told to spread over (spread mode).
        self._spread: tuple[str, ...] | None = None
        shared = len(self._homes) > 1
        self._links = links or SharedLinks(config.shared.root, config.shared.links, shared)
        #: One forensic line per session and verdict change, not one per poll.
        self._logged: dict[str, tuple[str, str, bool]] = {}
        self._book = book.with_partial(None)  # a restart clears it (the operator's other way out)
        #: Whether a hold was reported (its end is then reported too); a retry pause after a
        #: rolled-back swap also holds the queue, but it is no "every account is exhausted".
        self._hold_reported = self._book.hold is not None
        pool.use_account(self._book.active)
        if self._book.hold is not None:
            pool.pause_dispatch()

    @property
    def book(self) -> AccountBook:
        """The account book as it stands (a frozen copy: the switcher alone changes it)."""
        return self._book

    def reconfigure(self, rules: QuotaRules) -> None:
        """Decide by ``rules`` from the next reading on (a reload of ``quota:``).

        The account policy is kept: changing it needs a restart.
        """
        self._rules = replace(rules, policy=self._rules.policy)

    # -- the loop's entry points ---------------------------------------------------------

    def observe(self, readings: Iterable[Reading], now: datetime) -> None:
        """Apply one poll's quota readings; swap (or hold) when the planner says so."""
        batch = list(readings)
        if not batch:
            return
        verdict = plan_swap(self._book, batch, now, self._rules)
        self._set_book(verdict.book)
        for reading in batch:
            if reading.kind == "ok":
                self._logged.pop(reading.session, None)
        self._log(verdict.decisions)
        for account in verdict.stop:
            parked = self._pool.park(account)
            until = self._book.exhausted_until.get(account)
            logger.warning(
                "account exhausted: its sessions stop",
                extra={"account": account, "parked": parked, "until": str(until)},
            )
        if verdict.plan is not None:
            self._execute(verdict.plan, now, verdict.stop)
        elif verdict.stop:
            self._resume_elsewhere(verdict.stop, now)

    def tick(self, now: datetime) -> None:
        """End a hold whose reset has passed; preempt; let accounts whose reset passed rejoin."""
        hold = self._book.hold
        if self._book.partial is None and hold is not None and hold.until <= now:
            if self._rules.policy == "spread":
                self._release(now)
            else:
                # Push the hold out first: if this attempt fails, the next one waits.
                self._set_book(self._book.held(hold.since, now + RETRY_AFTER_FAILED_SWAP))
                self.swap("hold ended: the earliest reset passed", None, now)
        verdict = plan_preempt(self._book, now, self._rules)
        self._set_book(verdict.book)
        if verdict.plan is not None:
            self._execute(verdict.plan, now)
        self._sync_accounts(now)

    def next_wakeup(self, now: datetime) -> float | None:
        """Seconds until a hold ends or (spread) an exhausted account's reset, so the loop
        wakes for it: the account rejoins then, not with the next task that happens by."""
        times = [self._book.hold.until] if self._book.hold is not None else []
        if self._rules.policy == "spread":
            times += [t for t in self._book.exhausted_until.values() if t is not None and t > now]
        if not times:
            return None
        return max(0.0, (min(times) - now).total_seconds())

    # -- operator requests ---------------------------------------------------------------

    def swap(self, trigger: str, to: str | None, now: datetime) -> SwapOutcome:
        """Run the swap procedure; ``to`` forces the target (``agentq swap --to``)."""
        if self._book.partial is not None:
            return SwapOutcome(False, "refused: a partial swap needs `agentq swap --clear` first")
        if to is not None and to not in self._homes:
            return SwapOutcome(False, f"unknown account {to!r}")
        mode: PlanMode = "link" if self._rules.policy == "spread" else "swap"
        return self._execute(plan_target(self._book, trigger, to, now, self._rules, mode), now)

    def clear_partial(self) -> SwapOutcome:
        """``agentq swap --clear``: leave the partial-swap state and dispatch again.

        The pool follows wherever the active link points now (the flip back failed, so
        it may point at either account) and the parked tasks are resumed there.
        """
        partial = self._book.partial
        if partial is None:
            return SwapOutcome(False, "no partial swap to clear")
        active = self._linked_account() or partial.source
        self._set_book(self._book.with_partial(None).with_active(active))
        if active in self._homes:
            self._pool.use_account(active)
        self._pool.resume_dispatch()
        self._pool.resume_parked()
        logger.warning("partial swap cleared by the operator", extra={"active": active})
        return SwapOutcome(True, f"partial swap cleared; running on {active}")

    # -- the procedure -------------------------------------------------------------------

    def _execute(self, plan: SwapPlan, now: datetime, stopped: tuple[str, ...] = ()) -> SwapOutcome:
        if plan.target is None:
            return self._hold(plan, now)
        if plan.mode != "swap":
            return self._move_link(plan, plan.target, now, stopped)
        source, target = plan.source, plan.target
        parked = self._pool.park()
        self._pool.pause_dispatch()
        dedicated = dict(self._pool.operator_sessions())
        logger.warning(
            "swapping accounts",
            extra={"from": source, "to": target, "trigger": plan.trigger, "parked": parked},
        )
        problem = self._flip_and_ensure(source, target, plan.trigger, now)
        if problem is not None:
            return SwapOutcome(False, problem)
        self._set_book(self._book.swapped(source, target, now, plan.trigger))
        self._logged.clear()
        self._pool.resume_dispatch()
        tasks = self._pool.resume_parked()
        resumed = [name for name, sid in dedicated.items() if self._resume_operator(name, sid)]
        message = f"swapped from {source} to {target}; resumed {parked} task(s)"
        if resumed:
            message += f" and dedicated session(s) {', '.join(sorted(resumed))}"
        self._emit(
            ev.SWAP,
            **{"from": source, "to": target},
            trigger=plan.trigger,
            resumed=tasks,
            dedicated=sorted(resumed),
            message=message,
        )
        return SwapOutcome(True, message)

    def _move_link(
        self, plan: SwapPlan, target: str, now: datetime, stopped: tuple[str, ...] = ()
    ) -> SwapOutcome:
        """A swap that parks no more sessions: preempt (failover) or the link moving (spread).

        Running tasks finish where they are; new sessions start on ``target`` (failover) or
        on every account with quota left (spread). In spread the operator's dedicated
        sessions at their shell are resumed on ``target``, as after a failover swap, and the
        tasks of the account that ran out (``stopped``, parked already) resume elsewhere.
        """
        source, spread = plan.source, self._rules.policy == "spread"
        dedicated = dict(self._pool.operator_sessions()) if spread else {}
        problem = self._flip_and_ensure(source, target, plan.trigger, now, resume=not spread)
        if problem is not None:
            return SwapOutcome(False, problem)
        # Only one account (or none) ran out: the other sessions' suspicion runs stand.
        suspicions = self._book.suspicions
        swapped = self._book.swapped(source, target, now, plan.trigger)
        self._set_book(replace(swapped, suspicions=suspicions))
        self._sync_accounts(now)
        resumed = [name for name, sid in dedicated.items() if self._resume_operator(name, sid)]
        tasks = self._pool.resume_parked()
        what = "active link" if spread else "new tasks"
        message = f"{what} moved from {source} to {target} ({plan.trigger})"
        if resumed:
            message += f"; resumed dedicated session(s) {', '.join(sorted(resumed))}"
        logger.warning("accounts: %s", message, extra={"from": source, "to": target})
        self._emit(
            ev.SWAP,
            **{"from": source, "to": target},
            trigger=plan.trigger,
            resumed=tasks,
            dedicated=sorted(resumed),
            stopped=list(stopped),
            soft=not stopped,
            message=message,
        )
        return SwapOutcome(True, message)

    def _resume_elsewhere(self, stopped: tuple[str, ...], now: datetime) -> None:
        """Only ``stopped`` accounts' sessions parked: their tasks resume on the others."""
        self._sync_accounts(now)
        tasks = self._pool.resume_parked()
        usable = launch_accounts(self._book, now, self._rules)
        to = ",".join(usable) if self._rules.policy == "spread" else self._book.active
        accounts = ", ".join(stopped)
        message = f"account {accounts} exhausted; {tasks} task(s) resumed on {to}"
        logger.warning("accounts: %s", message, extra={"from": accounts, "to": to})
        self._emit(
            ev.SWAP,
            **{"from": accounts, "to": to},
            trigger=f"quota: account {accounts} exhausted",
            resumed=tasks,
            dedicated=[],
            stopped=list(stopped),
            soft=False,
            message=message,
        )

    def _release(self, now: datetime) -> None:
        """Spread: end a hold once an account has quota again; its parked tasks resume there."""
        hold = self._book.hold
        usable = launch_accounts(self._book, now, self._rules)
        if hold is None:
            return
        if not usable:
            self._set_book(self._book.held(hold.since, now + RETRY_AFTER_FAILED_SWAP))
            return
        self._set_book(self._book.released())  # reports accounts_available
        if self._book.is_exhausted(self._book.active, now):
            trigger = "hold ended: the earliest reset passed"
            plan = SwapPlan(trigger, self._book.active, usable[0], mode="link")
            self._move_link(plan, usable[0], now)
        self._pool.resume_dispatch()
        self._sync_accounts(now)
        self._pool.resume_parked()

    def _sync_accounts(self, now: datetime) -> None:
        """Spread: hand the pool the accounts with quota left when that changed."""
        if self._rules.policy != "spread":
            return
        accounts = launch_accounts(self._book, now, self._rules)
        if accounts == self._spread:
            return
        old = set(self._spread or ())
        self._spread = accounts
        if accounts:
            self._pool.use_accounts(accounts)
        back = [a for a in accounts if a not in old]
        extra = {"accounts": ",".join(accounts), "rejoined": ",".join(back)}
        logger.info("sessions spread over accounts", extra=extra)

    def _flip_and_ensure(
        self, source: str, target: str, trigger: str, now: datetime, *, resume: bool = True
    ) -> str | None:
        """Flip the active link and ensure the target's links; roll back on failure.

        After a rollback the pool resumes on ``source`` (or holds when it is exhausted) unless
        ``resume`` is off (a spread pool runs on without the link).
        """
        link, target_home, source_home = (
            self._active_link,
            self._homes.get(target),
            self._homes.get(source),
        )
        try:
            if link is not None and target_home is not None:
                self._links.flip(link, target_home)
            if target_home is not None:
                self._links.ensure(target_home)
            self._pool.use_account(target)
        except (AccountError, OSError) as exc:
            error = _one_line(exc)
            try:
                if link is not None and source_home is not None:
                    self._links.flip(link, source_home)
            except (AccountError, OSError) as back:
                return self._enter_partial(source, target, error, _one_line(back))
            logger.error("swap rolled back", extra={"from": source, "to": target, "error": error})
            resumed = self._after_rollback(source, now) if resume else 0
            message = f"swap from {source} to {target} failed and was rolled back: {error}"
            self._emit(
                ev.SWAP,
                **{"from": source, "to": target},
                trigger=trigger,
                resumed=resumed,
                rolled_back=True,
                error=error,
                message=message,
            )
            return f"swap to {target} failed and was rolled back: {error}"
        return None

    def _after_rollback(self, source: str, now: datetime) -> int:
        """Back on ``source``: resume there, unless it is exhausted (then hold, retry later).

        Returns how many parked tasks were resumed.
        """
        if self._book.is_exhausted(source, now):
            # Never resume on an exhausted account: dispatch stays paused until the retry.
            self._set_book(self._book.held(now, now + RETRY_AFTER_FAILED_SWAP))
            return 0
        self._pool.resume_dispatch()
        return self._pool.resume_parked()

    def _resume_operator(self, name: str, session_id: str) -> bool:
        try:
            return self._pool.resume_operator_session(name, session_id)
        except AgentqError as exc:  # one operator session must not undo the swap
            logger.error(
                "dedicated session not resumed", extra={"session": name, "error": str(exc)}
            )
            return False

    def _enter_partial(self, source: str, target: str, error: str, back: str) -> str:
        self._set_book(self._book.with_partial(PartialSwap(source, target, error, back)))
        message = (
            f"partial swap from {source} to {target}: {error}; rolling back failed: {back}. "
            "Dispatching stopped until `agentq swap --clear` or a restart"
        )
        logger.error("partial swap", extra={"from": source, "to": target})
        return message

    def _hold(self, plan: SwapPlan, now: datetime) -> SwapOutcome:
        until = plan.hold_until or now + self._rules.default_exhausted
        first = self._book.hold is None
        self._pool.park()
        self._pool.pause_dispatch()
        self._set_book(self._book.held(now, until))
        if first:
            logger.warning(
                "every account exhausted: queue held", extra={"until": until.isoformat()}
            )
        if not self._hold_reported:
            self._hold_reported = True
            self._emit(
                ev.HOLD,
                active=True,
                since=now.isoformat(),
                until=until.isoformat(),
                message=f"every account is exhausted; holding until {until.isoformat()}",
            )
        return SwapOutcome(False, f"every account is exhausted; holding until {until.isoformat()}")

    def _set_book(self, book: AccountBook) -> None:
        """Take the next book; the end of a reported hold and a partial swap's start and end
        are reported, once each."""
        old, self._book = self._book, book
        if book.hold is None and self._hold_reported:
            self._hold_reported = False
            message = f"the hold ended: account {book.active} is usable"
            self._emit(ev.ACCOUNTS_AVAILABLE, account=book.active, message=message)
        if old.partial != book.partial:
            partial = book.partial or old.partial
            fields = {"from": partial.source, "to": partial.target} if partial else {}
            if book.partial is not None:
                self._emit(
                    ev.PARTIAL_SWAP,
                    active=True,
                    error=book.partial.error,
                    rollback=book.partial.rollback,
                    message=f"partial swap: {book.partial.error}; run `agentq swap --clear`",
                    **fields,
                )
            else:
                self._emit(ev.PARTIAL_SWAP, active=False, message="partial swap cleared", **fields)

    def _linked_account(self) -> str | None:
        link = self._active_link
        if link is None or not link.is_symlink():
            return None
        target = link.resolve()
        return next((n for n, h in self._homes.items() if h.resolve() == target), None)

    def _log(self, decisions: Iterable[Decision]) -> None:
        for decision in decisions:
            verdict = (decision.source, decision.kind, decision.swap)
            if self._logged.get(decision.session) != verdict:
                self._logged[decision.session] = verdict
                extra = {"session": decision.session}
                logger.warning("quota monitor: %s", decision.forensic, extra=extra)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]
