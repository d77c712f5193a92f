"""Quota readings: what one agent session's hook, transcript or pane said about its account.

The session executor takes readings (it watches the sessions); the accounts side decides
what they mean (:func:`agentq.accounts.quota.plan_swap`). Both import this module, which
sits below them, so neither has to import the other. Pure data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

Source = Literal["hook", "transcript", "pane"]
ReadingKind = Literal["quota", "server_error", "ok"]


@dataclass(frozen=True)
class Reading:
    """One classified signal of one session: what it said, where from, and when it was taken.

    ``at`` identifies the poll: readings of the same session with the same ``at`` belong to
    the same poll (a pane capture and the hook read in the same round). ``account`` is the
    account the session runs on ('' when the reader did not say: the active one).
    """

    session: str
    source: Source
    kind: ReadingKind
    reset_at: datetime | None
    text: str
    at: datetime
    account: str = ""
