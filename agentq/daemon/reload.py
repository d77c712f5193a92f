"""Reloading the configuration on the main loop: re-read, validate, plan, apply what is live.

:class:`Reloader` re-reads the file the daemon was started with. A file with any problem
(every one is logged, one line each, and goes into the answer) changes nothing: the
daemon runs on as it was. Otherwise :func:`~agentq.config.changes.plan_reload` sorts the
changes, the new notification senders are built first (a target that cannot be built
refuses the whole reload), and each collaborator is handed its part through its own
``reconfigure``:

==========================  ===================================================================
collaborator                what it takes
==========================  ===================================================================
project scanner             roots, paths (new projects at the rescan that follows; removed ones
                            released once nothing of theirs is in flight), quiet period
dispatcher                  max_attempts, the routing policy, the provider executor
session pool                pool.min/max (grow: new slots; shrink: idle slots beyond max stop,
                            busy ones finish first), the machine's rules, the time zone
switcher                    the quota rules
delegation                  new clients for new tasks; a job in flight keeps its own client
janitor                     keep_done, keep_failed, keep_worktrees, archive, tmp_max_age
                            (interval: the daemon's)
notifier                    unchanged targets keep their state; others are flushed and rebuilt
==========================  ===================================================================

Keys that need a restart keep their running value; one log line names them all. The
daemon reads its own settings (rescan interval, temp file age, janitor interval) from the
configuration :class:`Reloaded` hands back.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from agentq.accounts.quota import QuotaRules
from agentq.accounts.switcher import Switcher
from agentq.config.changes import ReloadPlan, plan_reload
from agentq.config.load import load_config
from agentq.config.models import Config
from agentq.core import events as ev
from agentq.core.clock import Clock
from agentq.core.errors import ConfigError
from agentq.daemon.dispatch import Dispatcher
from agentq.daemon.notify.notifier import Notifier, Target
from agentq.daemon.scanning import ProjectScanner
from agentq.daemon.wiring import (
    Context,
    PoolExecutor,
    Remote,
    RemoteFactory,
    build_targets,
    notification_problems,
)
from agentq.queue.janitor.run import Janitor
from agentq.queue.jobs import Executor
from agentq.queue.router import RoutingPolicy
from agentq.sessions.settings import session_setup

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reloaded:
    """A reload's answer; ``config`` is what the daemon runs on now (None: unchanged)."""

    ok: bool
    message: str
    config: Config | None = None


@dataclass(frozen=True)
class Parts:
    """The daemon's collaborators a reload reconfigures."""

    scanner: ProjectScanner
    dispatcher: Dispatcher
    notifier: Notifier
    janitor: Janitor
    switcher: Switcher | None
    pool: PoolExecutor | None


class Reloader:
    """Re-reads ``path`` and reconfigures the collaborators; runs on the main loop only."""

    def __init__(
        self,
        path: Path | None,
        env: Mapping[str, str],
        clock: Clock,
        wake: Callable[[], None],
        emit: ev.Emit,
        remote: Remote,
        make_remote: RemoteFactory,
    ) -> None:
        self._path = path
        self._env = env
        self._clock = clock
        self._wake = wake
        self._emit = emit
        self._remote = remote
        self._available = remote.available if remote.executor is not None else frozenset()
        self._make_remote = make_remote

    def reload(self, current: Config, parts: Parts) -> Reloaded:
        """Re-read the configuration; apply it if it is valid, else keep ``current``."""
        if self._path is None:
            return Reloaded(False, "no configuration file to re-read (started without one)")
        new, problems = self._read(self._path)
        if new is None:
            return self._refused(problems)
        plan = plan_reload(current, new)
        try:
            targets, specs = build_targets(plan.config, skip=parts.notifier.specs())
        except ConfigError as exc:
            return self._refused(exc.problems)
        warnings = self._apply(plan, parts, targets, specs)
        if plan.restart:
            logger.warning(
                "configuration keys need a restart to take effect; their old values are kept",
                extra={"keys": ", ".join(plan.restart)},
            )
        logger.info("configuration reloaded", extra={"applied": ", ".join(plan.applied)})
        for warning in warnings:
            logger.warning("delegation: %s", warning)
        message = "\n".join([plan.summary(), *(f"warning: {w}" for w in warnings)])
        return Reloaded(True, message, plan.config)

    def _read(self, path: Path) -> tuple[Config | None, list[str]]:
        """The configuration in ``path``, or every problem it has."""
        try:
            new = load_config(path, self._env)
        except ConfigError as exc:
            return None, exc.problems
        problems = notification_problems(new)
        return (None, problems) if problems else (new, [])

    def _refused(self, problems: list[str]) -> Reloaded:
        for problem in problems:
            logger.error(
                "configuration problem; the daemon keeps its running configuration",
                extra={"config_path": str(self._path), "problem": problem},
            )
        lines = [f"{self._path}: {p}" for p in problems]
        head = f"configuration not reloaded: {len(problems)} problem(s); nothing changed"
        return Reloaded(False, "\n".join([head, *lines]))

    def _apply(
        self, plan: ReloadPlan, parts: Parts, targets: list[Target], specs: frozenset[str]
    ) -> list[str]:
        """Hand each collaborator its part; returns the delegation warnings."""
        config = plan.config
        projects = config.projects
        parts.scanner.reconfigure(projects.roots, projects.paths, config.dispatch.quiet_period)
        remote, warnings = self._delegation(plan, parts.dispatcher.remote)
        policy = RoutingPolicy.from_config(config.delegation, self._available)
        parts.dispatcher.reconfigure(policy, config.dispatch.max_attempts, remote)
        if parts.pool is not None:
            pool, settings = session_setup(config, self._env, config.state_dir)
            parts.pool.reconfigure(pool, settings)
        if parts.switcher is not None:
            parts.switcher.reconfigure(QuotaRules.for_config(config))
        parts.janitor.reconfigure(config.janitor, config.dispatch.tmp_max_age)
        parts.notifier.reconfigure(specs & parts.notifier.specs(), targets)
        return warnings

    def _delegation(
        self, plan: ReloadPlan, current: Executor | None
    ) -> tuple[Executor | None, list[str]]:
        """The provider executor after the reload (new clients, or a first executor)."""
        if not plan.touches("delegation"):
            return current, []
        config = plan.config
        for provider in config.delegation.providers:
            if provider.api_key_env:
                os.environ.pop(provider.api_key_env, None)  # as at start-up: panes inherit
        if current is None:
            ctx = Context(config, self._env, self._clock, self._wake, self._emit)
            self._remote = self._make_remote(ctx)
            current = self._remote.executor
            self._available = self._remote.available if current is not None else frozenset()
            return current, list(self._remote.warnings)
        if self._remote.reconfigure is None:
            return current, ["this provider executor cannot be reconfigured; restart for that"]
        self._available, warnings = self._remote.reconfigure(config)
        return current, warnings
