"""What the session executor needs from the configuration, as data.

:func:`session_setup` reads the pool's range and size (:class:`~agentq.sessions.pool.PoolSpec`)
and the executor's settings (:class:`SessionSettings`: account homes, the machine's rules, the
time zone of reset times) from a :class:`~agentq.config.models.Config`. The executor is built
from them at start-up and reconfigured from them on a reload.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agentq.agents.classify import Login
from agentq.agents.profiles import login_of
from agentq.config.models import Config
from agentq.queue.protocol import find_projects
from agentq.sessions import model as m
from agentq.sessions.pool import PoolSpec


@dataclass(frozen=True)
class SessionSettings:
    """What the executor needs from the configuration.

    ``accounts`` maps every account the pool may launch on to its config dir (one entry,
    ``default``, without configured accounts); ``account`` is the one it starts on.
    ``logins`` says how each signs in (it decides what a retried limit line means, and
    whether a footer's cost is real or API-equivalent).
    """

    accounts: Mapping[str, Path]
    account: str
    default_cwd: Path
    timezone: str = "UTC"
    rules: m.Rules = field(default_factory=m.Rules)
    logins: Mapping[str, Login] = field(default_factory=dict)

    @classmethod
    def from_config(
        cls, config: Config, env: Mapping[str, str], state_dir: Path
    ) -> SessionSettings:
        """The settings ``config`` asks for (the first account first)."""
        accounts = {a.name: a.home for a in config.accounts}
        if not accounts:
            accounts = {"default": Path(env.get("HOME", "~")).expanduser() / ".claude"}
        projects = find_projects(config.projects.roots, config.projects.paths)
        return cls(
            accounts=accounts,
            account=next(iter(accounts)),
            default_cwd=projects[0] if projects else state_dir,
            timezone=config.quota.timezone,
            rules=rules_from_config(config),
            logins={
                name: login_of(home, {**env, **config.agent.env}) for name, home in accounts.items()
            },
        )


def rules_from_config(config: Config) -> m.Rules:
    """The session machine's rules ``config`` asks for."""
    answer = config.agent.permission_answer if config.agent.on_permission == "answer" else None
    return m.Rules(
        delivery_timeout=config.dispatch.delivery_timeout,
        delivery_retries=config.dispatch.delivery_retries,
        idle_timeout=config.completion.idle_timeout,
        task_timeout=config.completion.task_timeout,
        permission_timeout=config.completion.permission_timeout,
        permission_answer=answer,
        recycle=config.completion.recycle,
        stale_after=config.completion.stale_after,
    )


def pool_spec(config: Config) -> PoolSpec:
    """The pool's range, size and the operator's sessions ``config`` names."""
    spec = config.pool
    dedicated = frozenset(d.name for d in spec.dedicated)
    return PoolSpec(spec.prefix, spec.start_index, spec.min, spec.max, dedicated)


def session_setup(
    config: Config, env: Mapping[str, str], state_dir: Path
) -> tuple[PoolSpec, SessionSettings]:
    """The pool spec and the executor's settings, for building or reconfiguring the executor."""
    return pool_spec(config), SessionSettings.from_config(config, env, state_dir)
