"""Quota readings: what one agent session's hook, transcript or pane said about its account.

The session executor takes readings (it watches the sessions); the accounts side decides
what they mean (:func:`agentq.accounts.quota.plan_swap`). Both import this module, which
sits below them, so neither has to import the other. Pure data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from agentq.agents.status import Window

Source = Literal["hook", "transcript", "pane"]
ReadingKind = Literal["quota", "server_error", "ok"]


@dataclass(frozen=True)
class WindowUse:
    """How full one usage window is, from a usage warning ("You've used 92% of …").

    ``percent`` is the share used; with ``over`` it is a threshold already passed ("Over 75%
    of your weekly limit used": at least 75); None when the wording gives no number
    ("Approaching weekly limit"). ``reset_at`` is the window's reset when the warning named it.
    """

    window: Window
    percent: int | None
    over: bool = False
    reset_at: datetime | None = None


@dataclass(frozen=True)
class Reading:
    """One classified signal of one session: what it said, where from, and when it was taken.

    ``at`` identifies the poll: readings of the same session with the same ``at`` belong to
    the same poll (a pane capture and the hook read in the same round). ``account`` is the
    account the session runs on ('' when the reader did not say: the active one).
    ``window`` is the usage window a quota reading ran out of (``reset_at`` is its reset);
    ``use`` a usage warning the session showed (on any kind of reading).
    """

    session: str
    source: Source
    kind: ReadingKind
    reset_at: datetime | None
    text: str
    at: datetime
    account: str = ""
    window: Window | None = None
    use: WindowUse | None = None
