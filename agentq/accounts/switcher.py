"""The account swap: one procedure, in one place, with rollback and a sticky partial-swap state.

Steps (issue 5): pick the next account not exhausted → record the session ids of the
working pool sessions and of the operator's dedicated sessions → stop dispatching →
kill our own pool range only → flip ``active_link`` → ``ensure`` the target's shared
links (on failure flip back; if that fails too, enter the sticky partial-swap state)
→ record the swap → relaunch the pool on the target account, resuming each
interrupted task with ``--resume <uuid>`` in its cwd → resume dedicated sessions
that sit at their shell prompt.

When every account is exhausted the local queue is held until the earliest reset,
then the swap runs by itself (to the same account when there is only one).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agentq.accounts import links as accounts
from agentq.accounts.quota import choose_account, earliest_reset, exhausted_until_for, is_exhausted
from agentq.agents.hooks import merge_hooks
from agentq.config.models import Config
from agentq.core.errors import AccountError, AgentqError
from agentq.sessions.executor import SessionExecutor

logger = logging.getLogger(__name__)

Notify = Callable[[str, str], None]

#: How long to wait before trying again after a swap could not be completed.
RETRY_AFTER_FAILED_SWAP = timedelta(seconds=60)


@dataclass(frozen=True)
class SwapOutcome:
    """What a swap attempt did."""

    swapped: bool
    message: str


class Switcher:
    """Owns the active account, the exhausted-until book, holds and the partial-swap state."""

    def __init__(
        self,
        config: Config,
        executor: SessionExecutor,
        state: dict[str, Any],
        notify: Notify,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.executor = executor
        self.state = state
        self.notify = notify
        self.homes = {a.name: a.home for a in config.accounts}
        self._fault = (env or {}).get("AGENTQ_FAULT_SWAP", "")
        book = state.setdefault("accounts", {})
        for name in self.homes:
            book.setdefault(name, {"exhausted_until": None})
        if state.get("active_account") not in self.homes:
            state["active_account"] = config.accounts[0].name if config.accounts else "default"
        state.pop("partial_swap", None)  # a restart clears it (the operator's other way out)
        if state.get("hold"):
            executor.paused = True
        for home in self.homes.values():
            # Hooks go into every home now, so a broken settings.json stops start-up
            # (AccountError) instead of failing in the middle of a swap.
            merge_hooks(home / "settings.json", executor.state_dir)

    # -- the book ---------------------------------------------------------------------

    @property
    def active(self) -> str:
        """The account new sessions run on."""
        return str(self.state["active_account"])

    def exhausted_until(self) -> dict[str, datetime | None]:
        """Each account's recorded reset time."""
        out: dict[str, datetime | None] = {}
        for name, entry in self.state["accounts"].items():
            raw = entry.get("exhausted_until")
            out[name] = datetime.fromisoformat(raw) if raw else None
        return out

    def _mark_exhausted(self, name: str, reset_at: datetime | None, now: datetime) -> datetime:
        default = timedelta(seconds=self.config.quota.default_exhausted)
        until = exhausted_until_for(reset_at, now, default)
        self.state["accounts"].setdefault(name, {})["exhausted_until"] = until.isoformat()
        return until

    # -- the loop's entry point -------------------------------------------------------

    def tick(self, now: datetime) -> None:
        """Act on a swap request from the monitor, or end a hold whose reset has passed."""
        if self.state.get("partial_swap"):
            return
        decision = self.executor.swap_request
        if decision is not None:
            self.executor.swap_request = None
            self._mark_exhausted(self.active, decision.reset_at, now)
            self.swap(
                f"quota: {decision.reason} ({decision.source}, {decision.session})", None, now
            )
            return
        hold = self.state.get("hold")
        if hold and datetime.fromisoformat(hold["until"]) <= now:
            # Push the hold out first: if this attempt fails, the next one waits.
            hold["until"] = (now + RETRY_AFTER_FAILED_SWAP).isoformat()
            self.swap("hold ended: the earliest reset passed", None, now)

    def next_wakeup(self, now: datetime) -> float | None:
        """Seconds until a hold ends, so the loop wakes for it."""
        hold = self.state.get("hold")
        if not hold:
            return None
        return max(0.0, (datetime.fromisoformat(hold["until"]) - now).total_seconds())

    def clear_partial(self) -> SwapOutcome:
        """``agentq swap --clear``: leave the partial-swap state and dispatch again.

        The pool follows wherever the active link points now (the flip back failed, so
        it may point at either account) and the parked tasks are resumed there.
        """
        partial = self.state.pop("partial_swap", None)
        if not partial:
            return SwapOutcome(False, "no partial swap to clear")
        active = self._linked_account() or str(partial["from"])
        self.state["active_account"] = active
        if active in self.homes:
            self.executor.set_account(active, self.homes[active])
        self.executor.swap_request = None
        self.executor.paused = False
        self.executor.resume_parked()
        logger.warning("partial swap cleared by the operator", extra={"active": active})
        return SwapOutcome(True, f"partial swap cleared; running on {active}")

    def _linked_account(self) -> str | None:
        link = self.config.active_link
        if link is None or not link.is_symlink():
            return None
        target = link.resolve()
        return next((n for n, h in self.homes.items() if h.resolve() == target), None)

    # -- the procedure ----------------------------------------------------------------

    def swap(self, trigger: str, to: str | None, now: datetime) -> SwapOutcome:
        """Run the swap procedure; ``to`` forces the target (``agentq swap --to``)."""
        if self.state.get("partial_swap"):
            return SwapOutcome(False, "refused: a partial swap needs `agentq swap --clear` first")
        names = list(self.homes) or [self.active]
        target = to or choose_account(names, self.active, self.exhausted_until(), now)
        if to is not None and to not in self.homes:
            return SwapOutcome(False, f"unknown account {to!r}")
        if target is None:
            return self._hold(now)
        source = self.active
        parked = self.executor.park_all()
        self.executor.paused = True
        dedicated = self.executor.dedicated_sessions()
        logger.warning(
            "swapping accounts",
            extra={"from": source, "to": target, "trigger": trigger, "parked": len(parked)},
        )
        problem = self._flip_and_ensure(source, target)
        if problem is not None:
            return SwapOutcome(False, problem)
        self.state.pop("hold", None)
        self.state["active_account"] = target
        self.state.setdefault("swaps", []).append(
            {"time": now.isoformat(), "from": source, "to": target, "trigger": trigger}
        )
        self.executor.paused = False
        self.executor.resume_parked()
        resumed = [n for n, sid in dedicated.items() if self._relaunch(n, sid)]
        self.executor.monitor.note_swap(now)
        self.notify("swap", f"swapped from {source} to {target} ({trigger})")
        message = f"swapped from {source} to {target}; resumed {len(parked)} task(s)"
        if resumed:
            message += f" and dedicated session(s) {', '.join(sorted(resumed))}"
        return SwapOutcome(True, message)

    def _flip_and_ensure(self, source: str, target: str) -> str | None:
        """Flip the active link and ensure the target's links; roll back on failure."""
        link = self.config.active_link
        target_home = self.homes.get(target)
        source_home = self.homes.get(source)
        try:
            if link is not None and target_home is not None:
                accounts.flip_active_link(link, target_home)
            self._ensure(target_home)
            self.executor.set_account(target, target_home or self.executor.settings.account_home)
        except (AccountError, OSError) as exc:
            error = _one_line(exc)
            try:
                if link is not None and source_home is not None:
                    self._flip_back(link, source_home)
            except (AccountError, OSError) as back:
                return self._enter_partial(source, target, error, _one_line(back))
            logger.error("swap rolled back", extra={"from": source, "to": target, "error": error})
            if is_exhausted(source, self.exhausted_until(), datetime.now(UTC)):
                # Never resume on an exhausted account: hold, and try again a bit later.
                until = datetime.now(UTC) + RETRY_AFTER_FAILED_SWAP
                self.state["hold"] = {
                    "since": datetime.now(UTC).isoformat(),
                    "until": until.isoformat(),
                }
                self.executor.paused = True
            else:
                self.executor.paused = False
                self.executor.resume_parked()
            self.notify(
                "swap", f"swap from {source} to {target} failed and was rolled back: {error}"
            )
            return f"swap to {target} failed and was rolled back: {error}"
        return None

    def _relaunch(self, name: str, session_id: str) -> bool:
        try:
            return self.executor.relaunch_dedicated(name, session_id)
        except AgentqError as exc:  # one operator session must not undo the swap
            logger.error(
                "dedicated session not resumed", extra={"session": name, "error": str(exc)}
            )
            return False

    def _ensure(self, home: Path | None) -> None:
        if self._fault in ("ensure", "rollback"):  # a rollback is only tried after ensure failed
            raise AccountError(["injected ensure failure"])
        if home is not None and len(self.homes) > 1:
            accounts.ensure(home, self.config.shared.root, self.config.shared.links)

    def _flip_back(self, link: Path, home: Path) -> None:
        if self._fault == "rollback":
            raise AccountError(["injected rollback failure"])
        accounts.flip_active_link(link, home)

    def _enter_partial(self, source: str, target: str, error: str, back: str) -> str:
        self.state["partial_swap"] = {
            "from": source,
            "to": target,
            "error": error,
            "rollback": back,
        }
        self.executor.paused = True
        message = (
            f"partial swap from {source} to {target}: {error}; rolling back failed: {back}. "
            "Dispatching stopped until `agentq swap --clear` or a restart"
        )
        logger.error("partial swap", extra={"from": source, "to": target})
        self.notify("partial_swap", message)
        return message

    def _hold(self, now: datetime) -> SwapOutcome:
        until = earliest_reset(self.exhausted_until(), now) or now + timedelta(
            seconds=self.config.quota.default_exhausted
        )
        first = not self.state.get("hold")
        self.executor.park_all()
        self.executor.paused = True
        self.state["hold"] = {"since": now.isoformat(), "until": until.isoformat()}
        if first:
            self.notify("accounts_exhausted", f"every account is exhausted; holding until {until}")
            logger.warning(
                "every account exhausted: queue held", extra={"until": until.isoformat()}
            )
        return SwapOutcome(False, f"every account is exhausted; holding until {until.isoformat()}")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]
