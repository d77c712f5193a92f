"""The account checks and commands as the CLI and the daemon call them, on a loaded config.

- :func:`account_problems`: every problem of the configured homes (``agentq validate`` and
  daemon start-up; the daemon refuses to start when the list is not empty);
- :func:`ensure_accounts`: create what is missing before the daemon starts or swaps;
- :func:`run_accounts_init`: ``agentq accounts init [--dry-run]``.

With one account (or none) nothing is shared: no link is required and these do nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from agentq.accounts import active_link_problems, ensure, validate
from agentq.adoption import plan_init, run_init
from agentq.config import Config
from agentq.errors import AccountError

logger = logging.getLogger(__name__)


def _homes(config: Config) -> list[tuple[str, Path]]:
    return [(account.name, account.home) for account in config.accounts]


def is_shared(config: Config) -> bool:
    """True when several accounts are configured, so their homes must share state."""
    return len(config.accounts) > 1


def account_problems(config: Config) -> list[str]:
    """Every problem of the configured account homes and the active link; [] when fine."""
    if not is_shared(config):
        return []
    homes = _homes(config)
    problems = validate(homes, config.shared.root, config.shared.links)
    return problems + active_link_problems(config.active_link, homes)


def ensure_accounts(config: Config) -> list[str]:
    """Create missing shared folders and links in every home; return the steps taken.

    Raises:
        AccountError: with every problem of every account (each line names the account).
    """
    if not is_shared(config):
        return []
    steps: list[str] = []
    problems: list[str] = []
    for name, home in _homes(config):
        try:
            steps += ensure(home, config.shared.root, config.shared.links)
        except AccountError as exc:
            problems += [f"account {name}: {problem}" for problem in exc.problems]
    problems += active_link_problems(config.active_link, _homes(config))
    if problems:
        raise AccountError(problems)
    return steps


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
        _homes(config), config.shared.root, config.shared.links, active_link=config.active_link
    )
    return run_init(plan, dry_run, out)
