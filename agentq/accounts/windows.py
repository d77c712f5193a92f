"""Usage windows per account: what the readings tell of each, and when an account is preempted.

Pure: the book, a reading's window or usage warning, the time and the rules' numbers in; a
new book or a reason out. An account has several windows (Claude Code's representative
claims): five-hour, seven-day, and per-model seven-day windows (Opus, Sonnet), plus overage
and spend caps. Each is kept with its own use and reset (:class:`WindowState`).

The rules (docs: README, "Quota windows and preempt"):

- a limit read from a pool session blocks its account for the whole pool until that
  window's reset, whatever the window: the session's own request was refused, so the model
  it runs is covered by it (agentq does not switch models). The account's ``exhausted_until``
  is the latest reset of its blocking windows;
- a usage warning ("You've used 92% of your 5-hour limit") records how full the window is;
  ``over`` ("Over 75%") means at least that much; a warning without a number ("Approaching
  weekly limit") records none;
- an account is *preempted* when a window covering the pool's model is used to at least
  ``preempt_at``: five-hour, seven-day, overage and spend windows cover every model, an Opus
  or Sonnet window only that family (both when the pool's model is not configured);
- a window's readings lapse at its reset.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from agentq.accounts.book import AccountBook, WindowState
from agentq.agents.readings import WindowUse
from agentq.agents.status import Window

#: Windows that cover one model family only.
FAMILY_WINDOWS = {Window.OPUS: "opus", Window.SONNET: "sonnet"}
#: Model names (``--model`` values, ``ANTHROPIC_MODEL``) and the family each belongs to.
_FAMILY = re.compile(r"\b(opus|sonnet|haiku)\b", re.IGNORECASE)
EXHAUSTED_PERCENT = 100


def model_family(args: Sequence[str], env: Mapping[str, str]) -> str | None:
    """The model family the pool's agent runs (``opus``, ``sonnet``, ``haiku``), if configured.

    From ``--model NAME`` / ``--model=NAME`` in the agent's arguments, else ``ANTHROPIC_MODEL``;
    None when neither names a family (the CLI's default model may be either).
    """
    name: str | None = env.get("ANTHROPIC_MODEL")
    for index, arg in enumerate(args):
        if arg == "--model" and index + 1 < len(args):
            name = args[index + 1]
        elif arg.startswith("--model="):
            name = arg.partition("=")[2]
    found = _FAMILY.search(name.replace("-", " ")) if name else None
    return found.group(1).lower() if found else None


def covers(window: Window, family: str | None) -> bool:
    """Whether a window limits the pool's model (family None: the model is not known)."""
    only = FAMILY_WINDOWS.get(window)
    return only is None or family is None or only == family


def exhaust(
    book: AccountBook, account: str, window: Window, until: datetime, now: datetime
) -> AccountBook:
    """``account`` ran out of ``window`` until ``until``: the window is full, the account blocked.

    The account stays blocked until the latest reset among its windows that ran out.
    """
    state = WindowState(EXHAUSTED_PERCENT, False, until, until, now)
    book = book.with_window(account, window, state)
    current = book.exhausted_until.get(account)
    if current is not None and current > now and current > until:
        return book
    return book.exhausted(account, until)


def note_use(
    book: AccountBook, account: str, use: WindowUse, now: datetime, default: timedelta
) -> AccountBook:
    """Record a usage warning of ``account``'s window (unchanged readings change nothing).

    A window that ran out keeps its exhaustion; a warning without a reset keeps the one known,
    else lapses after ``default``.
    """
    old = book.current_windows(account, now).get(use.window)
    if old is not None and old.exhausted_until is not None and old.exhausted_until > now:
        return book
    used = use.percent if use.percent is not None else (old.used if old else None)
    over = use.over if use.percent is not None else (old.over if old else False)
    resets = use.reset_at or (old.resets_at if old else None) or now + default
    if old is not None and (old.used, old.over, old.resets_at) == (used, over, resets):
        return book
    return book.with_window(account, use.window, WindowState(used, over, None, resets, now))


def preempt_reason(
    book: AccountBook, account: str, now: datetime, threshold: float | None, family: str | None
) -> str | None:
    """Why ``account`` is past ``threshold`` (a fraction) on a window covering the pool's model.

    None when it is not (or preempting is off). Windows that ran out are the exhaustion's
    business, not the preempt's.
    """
    if threshold is None:
        return None
    for window, state in sorted(book.current_windows(account, now).items()):
        if state.used is None or state.exhausted_until is not None or not covers(window, family):
            continue
        if state.used / 100 >= threshold:
            used = f"over {state.used}%" if state.over else f"{state.used}%"
            return f"{window} window {used} used (preempt at {threshold:.0%})"
    return None


def preempted_accounts(
    book: AccountBook, now: datetime, threshold: float | None, family: str | None
) -> dict[str, str]:
    """Every account past ``threshold``, with the reason (see :func:`preempt_reason`)."""
    reasons = {a: preempt_reason(book, a, now, threshold, family) for a in book.accounts}
    return {account: reason for account, reason in reasons.items() if reason is not None}
