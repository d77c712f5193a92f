"""The account checks and commands as the CLI and the daemon call them, on a loaded config.

- :func:`account_problems`: every problem of the configured homes (``agentq validate`` and
  daemon start-up; the daemon refuses to start when the list is not empty);
- :func:`ensure_accounts`: create what is missing before the daemon starts or swaps.

With one account (or none) nothing is shared: no link is required and these do nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path

from agentq.accounts.links import active_link_problems, ensure, validate
from agentq.config.models import Config
from agentq.core.errors import AccountError

logger = logging.getLogger(__name__)


def homes_of(config: Config) -> list[tuple[str, Path]]:
    return [(account.name, account.home) for account in config.accounts]


def is_shared(config: Config) -> bool:
    """True when several accounts are configured, so their homes must share state."""
    return len(config.accounts) > 1


def account_problems(config: Config) -> list[str]:
    """Every problem of the configured account homes and the active link; [] when fine."""
    if not is_shared(config):
        return []
    homes = homes_of(config)
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
    for name, home in homes_of(config):
        try:
            steps += ensure(home, config.shared.root, config.shared.links)
        except AccountError as exc:
            problems += [f"account {name}: {problem}" for problem in exc.problems]
    problems += active_link_problems(config.active_link, homes_of(config))
    if problems:
        raise AccountError(problems)
    return steps
