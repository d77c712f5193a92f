"""``agentq accounts init [--dry-run]``: adopt an existing home into the shared layout."""

from __future__ import annotations

from collections.abc import Callable

from agentq.accounts.adoption import plan_init, run_init
from agentq.accounts.setup import homes_of, is_shared
from agentq.config.models import Config


def run_accounts_init(config: Config, dry_run: bool, out: Callable[[str], None]) -> int:
    """``agentq accounts init``: move the homes' shared state into the shared root, link it.

    Returns the exit code: 0 done or nothing to do, 1 refused (conflicts or problems listed).

    Raises:
        AccountError: a step failed midway; a re-run finishes the job.
    """
    if not is_shared(config):
        out("one account configured: nothing is shared, so there is nothing to do")
        return 0
    plan = plan_init(
        homes_of(config), config.shared.root, config.shared.links, active_link=config.active_link
    )
    return run_init(plan, dry_run, out)
