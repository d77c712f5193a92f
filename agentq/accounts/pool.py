"""What the account swap needs from the session pool, as an interface the pool implements.

The accounts side defines it and never imports the sessions side; the session executor
implements it (structurally) and never imports the accounts side. The daemon hands the
executor to the switcher as a :class:`SessionPool`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol


class SessionPool(Protocol):
    """The pool operations a swap is made of."""

    def pause_dispatch(self) -> None:
        """Take no new task and launch no session until :meth:`resume_dispatch`."""
        ...

    def resume_dispatch(self) -> None:
        """Take tasks and keep the pool's minimum again."""
        ...

    def park(self, account: str | None = None) -> int:
        """Stop our sessions (those on ``account``, or all); their tasks wait, parked.

        Returns how many tasks were parked.
        """
        ...

    def use_account(self, name: str) -> None:
        """Launch every later session on account ``name``."""
        ...

    def use_accounts(self, names: Sequence[str]) -> None:
        """Spread later sessions over accounts ``names`` (``pool.account_policy: spread``).

        Each session starts on its own account while that one is listed, else on a listed
        one; a running session is never restarted for it.
        """
        ...

    def resume_parked(self) -> int:
        """Relaunch each parked task on the current account(s) (``--resume`` in its cwd)."""
        ...

    def operator_sessions(self) -> Mapping[str, str]:
        """The operator's dedicated sessions and their agent session ids."""
        ...

    def resume_operator_session(self, name: str, session_id: str) -> bool:
        """Resume an operator's session on the current account if it sits at its shell."""
        ...
