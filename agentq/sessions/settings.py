"""What the session executor needs from the configuration."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agentq.config.models import Config
from agentq.queue.protocol import find_projects
from agentq.sessions import model as m


@dataclass(frozen=True)
class SessionSettings:
    """What the executor needs from the configuration.

    ``accounts`` maps every account the pool may launch on to its config dir (one entry,
    ``default``, without configured accounts); ``account`` is the one it starts on.
    """

    accounts: Mapping[str, Path]
    account: str
    default_cwd: Path
    timezone: str = "UTC"
    rules: m.Rules = field(default_factory=m.Rules)

    @classmethod
    def from_config(
        cls, config: Config, env: Mapping[str, str], state_dir: Path
    ) -> SessionSettings:
        """The settings ``config`` asks for (the first account first)."""
        accounts = {a.name: a.home for a in config.accounts}
        if not accounts:
            accounts = {"default": Path(env.get("HOME", "~")).expanduser() / ".claude"}
        projects = find_projects(config.projects.roots, config.projects.paths)
        answer = config.agent.permission_answer if config.agent.on_permission == "answer" else None
        rules = m.Rules(
            delivery_timeout=config.dispatch.delivery_timeout,
            delivery_retries=config.dispatch.delivery_retries,
            idle_timeout=config.completion.idle_timeout,
            task_timeout=config.completion.task_timeout,
            permission_timeout=config.completion.permission_timeout,
            permission_answer=answer,
            recycle=config.completion.recycle,
        )
        return cls(
            accounts=accounts,
            account=next(iter(accounts)),
            default_cwd=projects[0] if projects else state_dir,
            timezone=config.quota.timezone,
            rules=rules,
        )
