"""What a reload changes: a pure function of the running configuration and the re-read one.

:func:`plan_reload` compares the two key by key (``section.key`` for the keys of a
section, the key itself for ``state_dir``, ``accounts``, ``active_link`` and
``notifications``) and sorts every changed key into one of two lists:

- **applied live** (:data:`LIVE_KEYS`): ``projects``, ``dispatch``, ``completion``,
  ``quota``, ``delegation``, ``notifications``, ``janitor``, ``pool.min``/``pool.max`` and
  how a permission dialog is answered (``agent.on_permission``, ``agent.permission_answer``);
- **needs a restart**: everything else (``state_dir``, ``accounts``, ``active_link``,
  ``shared``, ``tmux``, ``api``, ``logging``, ``pool.prefix``/``start_index``/``dedicated``,
  the agent's ``profile``/``command``/``args``/``env``/``answer``, and any key this list does
  not know). The running value of such a key is kept: :attr:`ReloadPlan.config` is the new
  configuration with those keys as they were.

The pool's size is applied only while its range leaves the dedicated sessions out under
the kept prefix and start index; otherwise it waits for the restart too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from agentq.config.models import Config

#: The keys a running daemon applies on a reload.
LIVE_KEYS = frozenset(
    {
        "projects.roots",
        "projects.paths",
        "dispatch.max_attempts",
        "dispatch.rescan_interval",
        "dispatch.quiet_period",
        "dispatch.tmp_max_age",
        "dispatch.delivery_timeout",
        "dispatch.delivery_retries",
        "dispatch.after_restart",
        "completion.idle_timeout",
        "completion.recycle",
        "completion.permission_timeout",
        "completion.task_timeout",
        "completion.stale_after",
        "quota.poll_interval",
        "quota.cooldown",
        "quota.confirm_polls",
        "quota.default_exhausted",
        "quota.timezone",
        "quota.preempt_at",
        "delegation.allow_by_default",
        "delegation.providers",
        "delegation.fallbacks",
        "delegation.complexity",
        "delegation.stale_after",
        "notifications",
        "janitor.keep_done",
        "janitor.keep_failed",
        "janitor.keep_worktrees",
        "janitor.archive",
        "janitor.interval",
        "pool.min",
        "pool.max",
        "agent.on_permission",
        "agent.permission_answer",
    }
)
_POOL_SIZE = ("pool.min", "pool.max")


@dataclass(frozen=True)
class ReloadPlan:
    """The changed keys a reload applies, those that need a restart, and the config to run on."""

    applied: tuple[str, ...]
    restart: tuple[str, ...]
    config: Config

    def touches(self, *sections: str) -> bool:
        """Whether an applied key is one of ``sections`` or inside one (``"pool"``)."""
        return any(key == s or key.startswith(s + ".") for key in self.applied for s in sections)

    def summary(self) -> str:
        """What was applied and what needs a restart, one line each (for the operator)."""
        if not self.applied and not self.restart:
            return "configuration reloaded: nothing changed"
        lines = [f"applied: {', '.join(self.applied) or 'nothing'}"]
        if self.restart:
            lines.append(f"needs a restart (old value kept): {', '.join(self.restart)}")
        return "configuration reloaded\n" + "\n".join(lines)


def flatten(config: Config) -> dict[str, Any]:
    """Every key of ``config``: ``section.key`` inside a section, the bare key elsewhere."""
    out: dict[str, Any] = {}
    for name in Config.model_fields:
        value = getattr(config, name)
        if isinstance(value, BaseModel):
            for key in type(value).model_fields:
                out[f"{name}.{key}"] = getattr(value, key)
        else:
            out[name] = value
    return out


def plan_reload(old: Config, new: Config) -> ReloadPlan:
    """Sort the keys ``new`` changes into applied and restart-needed; see the module doc."""
    before, after = flatten(old), flatten(new)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    applied = [k for k in changed if k in LIVE_KEYS]
    restart = [k for k in changed if k not in LIVE_KEYS]
    config = _keep(new, old, restart)
    if any(k in applied for k in _POOL_SIZE) and _pool_takes_dedicated(config):
        moved = [k for k in _POOL_SIZE if k in applied]
        applied = [k for k in applied if k not in moved]
        restart = sorted([*restart, *moved])
        config = _keep(new, old, restart)
    return ReloadPlan(tuple(applied), tuple(restart), config)


def _keep(new: Config, old: Config, keys: list[str]) -> Config:
    """``new`` with the value ``old`` has for each of ``keys``."""
    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    for key in keys:
        section, dot, field = key.partition(".")
        if dot:
            sections.setdefault(section, {})[field] = getattr(getattr(old, section), field)
        else:
            top[key] = getattr(old, key)
    for section, fields in sections.items():
        top[section] = getattr(new, section).model_copy(update=fields)
    return new.model_copy(update=top)


def _pool_takes_dedicated(config: Config) -> bool:
    """Whether the pool's range, as it would run, takes in a dedicated session's name."""
    return bool(set(config.pool_names()) & set(config.dedicated_names()))
