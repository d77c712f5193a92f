"""Quota decisions: the sessions' readings and the account book in, a swap plan out.

Pure: readings (from hook signals and, as the fallback, pane captures), the book and the
current time are parameters; nothing here reads a clock, a file or a pane.
:func:`plan_swap` applies one poll's readings:

- a ``server_error`` reading vetoes every ``quota`` reading of the same session in the same
  poll (same ``at``): a 5xx can print quota-like words, a quota never prints a server error;
- a ``quota`` reading with a parsed reset time swaps at once;
- one without needs ``confirm_polls`` consecutive quota polls of the same session;
- an ``ok`` reading (or a server error) breaks the run: the session's suspicion starts again;
- no new swap within ``cooldown`` of the last one (a pane still showing the old account's
  limit right after a swap must not trigger another), nor while a partial swap waits for
  the operator.

The plan names the next account not exhausted, round-robin (:func:`choose_account`), or
none: every account is exhausted and the queue holds until the earliest reset. Every
non-ok reading yields a :class:`Decision` whose ``forensic`` line says which session, which
signal, what text matched and which reset, so each detection can be logged once.

Per account (:mod:`agentq.accounts.windows`): every reading's usage warning is recorded on
its window; a confirmed limit exhausts its window and blocks the account until its reset.
What happens then depends on ``pool.account_policy``:

- ``failover``: a limit of the active account swaps (as above). A limit of another account
  (its sessions still finishing tasks after a preempt) stops only that account's sessions
  (:attr:`Verdict.stop`); their tasks resume on the active one. No cooldown applies there.
- ``spread``: every account with quota left runs sessions (:func:`launch_accounts`). A limit
  stops only its account's sessions; their tasks resume on the others. When that account is
  the active one (the active link's), the link moves to the next account with quota left
  (a ``link`` plan); with none left the queue holds. An account rejoins by itself once its
  reset passed. The cooldown does not apply: an exhausted account's further readings are
  ignored until its reset.

Preempt (:func:`plan_preempt`, each poll): an account past ``quota.preempt_at`` takes no new
task while another account has room. In ``failover`` the active one is swapped away from
softly (a ``preempt`` plan: no session is stopped, running tasks finish where they are, new
sessions start on the target); in ``spread`` it is left out of :func:`launch_accounts`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from agentq.accounts.book import AccountBook, Suspicion
from agentq.accounts.windows import exhaust, model_family, note_use, preempted_accounts
from agentq.agents.readings import Reading, ReadingKind, Source
from agentq.agents.status import Window
from agentq.config.models import Config, QuotaConfig

#: The matched text in a forensic line is cut to this many characters.
FORENSIC_TEXT_MAX = 120
DEFAULT_CONFIRM_POLLS = 2
DEFAULT_COOLDOWN = timedelta(minutes=5)
DEFAULT_EXHAUSTED = timedelta(hours=1)

AccountPolicy = Literal["failover", "spread"]
#: ``swap``: the failover swap (every session parked, resumed on the target) or, without a
#: target, the hold; ``preempt``: a soft swap (nothing parked, new sessions on the target);
#: ``link``: spread mode's active link moves (only the exhausted account's sessions stopped).
PlanMode = Literal["swap", "preempt", "link"]


@dataclass(frozen=True)
class QuotaRules:
    """How readings become swaps: confirmation, cooldown, and the reset assumed when unknown.

    ``preempt_at`` (a fraction, None: off) is the window use past which an account takes no
    new task; ``policy`` is ``pool.account_policy``; ``family`` the pool's model family when
    the configuration names one (:func:`~agentq.accounts.windows.model_family`).
    """

    confirm_polls: int = DEFAULT_CONFIRM_POLLS
    cooldown: timedelta = DEFAULT_COOLDOWN
    default_exhausted: timedelta = DEFAULT_EXHAUSTED
    preempt_at: float | None = None
    policy: AccountPolicy = "failover"
    family: str | None = None

    def __post_init__(self) -> None:
        if self.confirm_polls < 1:
            raise ValueError("confirm_polls must be at least 1")

    @classmethod
    def from_config(cls, quota: QuotaConfig) -> QuotaRules:
        """The configured confirmation count, cooldown and default exhaustion."""
        return cls(
            quota.confirm_polls,
            timedelta(seconds=quota.cooldown),
            timedelta(seconds=quota.default_exhausted),
            quota.preempt_at,
        )

    @classmethod
    def for_config(cls, config: Config) -> QuotaRules:
        """The rules of the whole configuration: quota, account policy and the pool's model."""
        family = model_family(config.agent.args, config.agent.env)
        quota = cls.from_config(config.quota)
        return replace(quota, policy=config.pool.account_policy, family=family)


@dataclass(frozen=True)
class Decision:
    """What a non-ok reading came to; ``swap`` says whether it decided a swap."""

    swap: bool
    reason: str
    reset_at: datetime | None
    source: Source
    session: str
    forensic: str
    kind: ReadingKind = "quota"


@dataclass(frozen=True)
class SwapPlan:
    """What to do about the accounts: swap ``source`` → ``target``, or hold (no target).

    ``hold_until`` is when a hold ends (the earliest reset). ``trigger`` says why, for the
    swap history and the notification.
    """

    trigger: str
    source: str
    target: str | None
    hold_until: datetime | None = None
    mode: PlanMode = "swap"


@dataclass(frozen=True)
class Verdict:
    """One poll's readings applied: the next book, each detection, and the plan if any.

    ``stop`` names the accounts whose sessions stop now (their tasks wait, parked, and resume
    on an account with quota left), in the order they ran out.
    """

    book: AccountBook
    decisions: tuple[Decision, ...] = ()
    plan: SwapPlan | None = None
    stop: tuple[str, ...] = ()


def plan_swap(
    book: AccountBook, readings: Iterable[Reading], now: datetime, rules: QuotaRules
) -> Verdict:
    """Apply one poll's readings to ``book``; plan a swap (or a hold) when one is due.

    The returned book carries the updated suspicions and windows, the cooldown start and the
    exhausted accounts; nothing else changes until the plan is carried out.
    """
    ordered = sorted(readings, key=lambda r: r.kind != "server_error")
    suspicions = dict(book.suspicions)
    vetoed = {(r.session, r.at) for r in ordered if r.kind == "server_error"}
    decisions: list[Decision] = []
    plan: SwapPlan | None = None
    stop: list[str] = []
    for reading in ordered:
        account = reading.account or book.active
        if reading.use is not None:
            book = note_use(book, account, reading.use, now, rules.default_exhausted)
        if reading.kind == "ok":
            suspicions.pop(reading.session, None)
            continue
        if reading.kind == "server_error":
            suspicions.pop(reading.session, None)
            decisions.append(_decide(reading, swap=False, reason="server error, not a quota"))
            continue
        if (reading.session, reading.at) in vetoed:
            reason = "vetoed by a server error in the same poll"
            decisions.append(_decide(reading, swap=False, reason=reason))
            continue
        reason, confirmed = _quota_reason(reading, suspicions, rules)
        wait = _wait_reason(book, account, now, rules) if confirmed else None
        if not confirmed or wait is not None:
            full = f"{reason}; {wait}" if wait else reason
            decisions.append(_decide(reading, swap=False, reason=full))
            continue
        until = exhausted_until_for(reading.reset_at, now, rules.default_exhausted)
        book = exhaust(book, account, reading.window or Window.UNKNOWN, until, now)
        if rules.policy == "failover" and account == book.active:
            decision = _decide(reading, swap=True, reason=reason)
            suspicions.clear()
            vetoed.clear()
            book = replace(book, last_swap_at=now)
            trigger = f"quota: {reason} ({decision.source}, {decision.session})"
            plan = plan_target(book, trigger, None, now, rules)
        else:
            decision = _stop_decision(book, reading, account, reason, now, rules)
            suspicions.pop(reading.session, None)
            stop.append(account)
            plan = _after_stop(book, account, decision, now, rules) or plan
        decisions.append(decision)
    return Verdict(replace(book, suspicions=suspicions), tuple(decisions), plan, tuple(stop))


def _stop_decision(
    book: AccountBook,
    reading: Reading,
    account: str,
    reason: str,
    now: datetime,
    rules: QuotaRules,
) -> Decision:
    """The decision to stop only ``account``'s sessions (spread, or not the active one)."""
    usable = launch_accounts(book, now, rules) if rules.policy == "spread" else (book.active,)
    where = ", ".join(a for a in usable if a != account) or "no account (hold)"
    why = "" if rules.policy == "spread" else f"account {account} is not the active one; "
    full = f"{reason}; {why}its sessions stop, their tasks resume on {where}"
    return _decide(reading, swap=rules.policy == "spread", reason=full)


def _after_stop(
    book: AccountBook, account: str, decision: Decision, now: datetime, rules: QuotaRules
) -> SwapPlan | None:
    """After ``account`` stopped: the active link moves off it (spread), or every account is out."""
    trigger = f"quota: account {account} exhausted ({decision.source}, {decision.session})"
    if rules.policy == "spread" and account == book.active:
        return plan_target(book, trigger, None, now, rules, mode="link")
    if choose_account(book.accounts, book.active, book.exhausted_until, now) is None:
        return plan_target(book, trigger, None, now, rules)
    return None


def plan_preempt(book: AccountBook, now: datetime, rules: QuotaRules) -> Verdict:
    """Mark the accounts past ``preempt_at``; in failover, plan a soft swap off the active one.

    The swap needs another account with room (usable and not preempted), no partial swap, no
    hold and no swap within the cooldown; otherwise the active account goes on taking tasks
    (its quota is still there).
    """
    preempted = preempted_accounts(book, now, rules.preempt_at, rules.family)
    if preempted != book.preempted:
        book = book.with_preempted(preempted)
    active = book.active
    if rules.policy != "failover" or active not in preempted:
        return Verdict(book)
    if book.partial is not None or book.hold is not None:
        return Verdict(book)
    if book.last_swap_at is not None and now - book.last_swap_at < rules.cooldown:
        return Verdict(book)
    target = _roomy_account(book, now)
    if target is None:
        return Verdict(book)
    trigger = f"preempt: account {active}: {preempted[active]}"
    book = replace(book, last_swap_at=now)
    return Verdict(book, plan=SwapPlan(trigger, active, target, mode="preempt"))


def launch_accounts(book: AccountBook, now: datetime, rules: QuotaRules) -> tuple[str, ...]:
    """The accounts new pool sessions start on, in configured order.

    ``failover``: the active one. ``spread``: every account with quota left, less the
    preempted ones while another has room; empty when every account is exhausted.
    """
    if rules.policy == "failover":
        return (book.active,)
    usable = tuple(a for a in book.accounts if not book.is_exhausted(a, now))
    roomy = tuple(a for a in usable if a not in book.preempted)
    return roomy or usable


def _roomy_account(book: AccountBook, now: datetime) -> str | None:
    """The next account after the active one that is usable and not preempted."""
    blocked = dict.fromkeys(book.preempted, now + DEFAULT_EXHAUSTED)
    candidate = choose_account(book.accounts, book.active, {**book.exhausted_until, **blocked}, now)
    return candidate if candidate != book.active else None


def plan_target(
    book: AccountBook,
    trigger: str,
    to: str | None,
    now: datetime,
    rules: QuotaRules,
    mode: PlanMode = "swap",
) -> SwapPlan:
    """The swap for ``trigger``: to ``to`` if given, else the next usable account (one that is
    not preempted first), else a hold."""
    target = to or _roomy_account(book, now)
    target = target or choose_account(book.accounts, book.active, book.exhausted_until, now)
    if target is not None:
        return SwapPlan(trigger, book.active, target, mode=mode)
    until = earliest_reset(book.exhausted_until, now) or now + rules.default_exhausted
    return SwapPlan(trigger, book.active, None, until)


def _quota_reason(
    reading: Reading, suspicions: dict[str, Suspicion], rules: QuotaRules
) -> tuple[str, bool]:
    """Why a quota reading counts, and whether it is confirmed (counting its poll once)."""
    if reading.reset_at is not None:
        return "quota with a reset time", True
    entry = suspicions.get(reading.session)
    if entry is None or entry.last_at != reading.at or not entry.polls:
        polls = (entry.polls if entry else 0) + 1
        entry = suspicions[reading.session] = Suspicion(polls, reading.at)
    if entry.polls < rules.confirm_polls:
        return f"suspected quota ({entry.polls} of {rules.confirm_polls} polls)", False
    return f"quota confirmed by {entry.polls} consecutive polls", True


def _wait_reason(book: AccountBook, account: str, now: datetime, rules: QuotaRules) -> str | None:
    """Why a confirmed quota of ``account`` does not act now; None when it does."""
    if book.partial is not None:
        return "a partial swap waits for `agentq swap --clear`"
    other = rules.policy == "spread" or account != book.active
    if other and book.is_exhausted(account, now):
        return f"account {account} is exhausted already"
    if other:
        return None
    if book.last_swap_at is not None and now - book.last_swap_at < rules.cooldown:
        return f"cooldown since the swap at {book.last_swap_at.isoformat()}"
    return None


def _decide(reading: Reading, *, swap: bool, reason: str) -> Decision:
    return Decision(
        swap=swap,
        reason=reason,
        reset_at=reading.reset_at,
        source=reading.source,
        session=reading.session,
        forensic=forensic_line(reading, "swap" if swap else "hold", reason),
        kind=reading.kind,
    )


def forensic_line(reading: Reading, verdict: str, reason: str) -> str:
    """One log line for a detection: session, signal source, matched text, reset and verdict."""
    text = " ".join(reading.text.split())
    if len(text) > FORENSIC_TEXT_MAX:
        text = text[: FORENSIC_TEXT_MAX - 1] + "…"
    reset = reading.reset_at.isoformat() if reading.reset_at else "unknown"
    # json.dumps quotes the session's text so a crafted pane cannot forge log fields.
    return (
        f"quota detection session={reading.session} source={reading.source} kind={reading.kind}"
        f" reset={reset} decision={verdict} reason={json.dumps(reason)}"
        f" text={json.dumps(text, ensure_ascii=False)}"
    )


def exhausted_until_for(reset_at: datetime | None, now: datetime, default: timedelta) -> datetime:
    """An exhausted account's ``exhausted_until``: its parsed reset, else ``now + default``.

    A reset that is not in the future (a stale or misread time) counts as unknown.
    """
    if reset_at is not None and reset_at > now:
        return reset_at
    return now + default


def is_exhausted(
    account: str, exhausted_until: Mapping[str, datetime | None], now: datetime
) -> bool:
    """True while ``account``'s recorded reset lies in the future."""
    until = exhausted_until.get(account)
    return until is not None and until > now


def choose_account(
    accounts: Sequence[str],
    current: str,
    exhausted_until: Mapping[str, datetime | None],
    now: datetime,
) -> str | None:
    """The next usable account after ``current``, round-robin; None when all are exhausted.

    ``current`` itself comes last, so the answer is ``current`` only when every other account
    is exhausted and it is not (then no swap is needed).
    """
    start = accounts.index(current) + 1 if current in accounts else 0
    for offset in range(len(accounts)):
        candidate = accounts[(start + offset) % len(accounts)]
        if not is_exhausted(candidate, exhausted_until, now):
            return candidate
    return None


def earliest_reset(
    exhausted_until: Mapping[str, datetime | None], now: datetime
) -> datetime | None:
    """The soonest future ``exhausted_until``: when a held queue can try again; None if none."""
    future = [until for until in exhausted_until.values() if until is not None and until > now]
    return min(future, default=None)
