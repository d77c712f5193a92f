"""Routing: decide whether a task runs on a local agent session or on a remote provider.

Precedence (first match wins):

1. ``needs_claude_code: true``                 → local
2. ``preferred_ai: claude-code``               → local
3. delegation not allowed (``allow_delegation: false``, or missing while the
   config's ``allow_by_default`` is false)    → local
4. ``preferred_ai: <configured provider>``     → that provider, or down its fallback chain
5. ``preferred_ai: <anything else>``           → local, with a warning
6. ``complexity_hint`` mapped in the policy    → that provider, or down its fallback chain
7. otherwise                                   → local

A fallback chain is walked depth first: a provider's own fallbacks are tried before the next
entry of the list that named it, each provider at most once, and the walk ends at local.
The names ``local`` and ``claude-code`` in a chain mean the local agent. Pure: no I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from agentq.config.models import DelegationConfig
from agentq.queue.taskfile import TaskMeta

logger = logging.getLogger(__name__)

LOCAL_NAMES = frozenset({"local", "claude-code"})


@dataclass(frozen=True)
class RouteDecision:
    """Where a task runs, why, and anything the footer should warn about."""

    executor: Literal["local", "provider"]
    provider: str | None
    reason: str
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        """The decision as JSON-ready data (``agentq route FILE`` prints it)."""
        return {
            "executor": self.executor,
            "provider": self.provider,
            "reason": self.reason,
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class RoutingPolicy:
    """What the configuration allows: providers, their fallbacks and complexity hints."""

    allow_by_default: bool = False
    configured: frozenset[str] = frozenset()
    available: frozenset[str] = frozenset()
    fallbacks: Mapping[str, Sequence[str]] = field(default_factory=dict)
    complexity: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_config(
        cls, delegation: DelegationConfig, available: frozenset[str] | None = None
    ) -> RoutingPolicy:
        """The policy of a configuration; ``available`` names the providers with usable keys.

        ``None`` takes every configured provider as available (``agentq route`` without
        resolving keys); the daemon passes the providers it built clients for.
        """
        configured = frozenset(p.name for p in delegation.providers)
        return cls(
            allow_by_default=delegation.allow_by_default,
            configured=configured,
            available=configured if available is None else available,
            fallbacks=delegation.fallbacks,
            complexity={str(k): v for k, v in delegation.complexity.items()},
        )


def route(
    meta: TaskMeta, policy: RoutingPolicy, unavailable: frozenset[str] = frozenset()
) -> RouteDecision:
    """Decide where a task runs; ``unavailable`` names providers to skip right now."""
    preferred = meta.preferred_ai
    if meta.needs_claude_code:
        return _local("needs_claude_code is set")
    if preferred == "claude-code":
        return _local("preferred_ai is claude-code")
    if meta.allow_delegation is False or (
        meta.allow_delegation is None and not policy.allow_by_default
    ):
        why = "allow_delegation is false" if meta.allow_delegation is False else "by default"
        warnings = () if preferred is None else (f"preferred_ai {preferred!r} ignored: {why}",)
        return _local(f"delegation is not allowed ({why})", warnings)
    if preferred is not None:
        if preferred in policy.configured:
            return _walk(preferred, f"preferred_ai is {preferred!r}", policy, unavailable)
        return _local(
            f"unknown preferred_ai {preferred!r}",
            (f"unknown preferred_ai {preferred!r}; running locally",),
        )
    hint = meta.complexity_hint
    if hint is not None and hint in policy.complexity:
        target = policy.complexity[hint]
        return _walk(target, f"complexity_hint {hint!r} maps to {target!r}", policy, unavailable)
    return _local("no provider was asked for")


def _local(reason: str, warnings: tuple[str, ...] = ()) -> RouteDecision:
    return RouteDecision(executor="local", provider=None, reason=reason, warnings=warnings)


def _walk(
    start: str, why: str, policy: RoutingPolicy, unavailable: frozenset[str]
) -> RouteDecision:
    """Take ``start`` if usable, else the first usable provider down its fallback chain."""
    warnings: list[str] = []
    for name in _chain(start, policy.fallbacks):
        if name in LOCAL_NAMES:
            if name == start:
                return _local(f"{why}, which is the local agent")
            warnings.append(f"fell back from {start!r} to the local agent")
            return _local(f"{why}; fell back to the local agent", tuple(warnings))
        problem = _problem(name, policy, unavailable)
        if problem is None:
            if name == start:
                return RouteDecision("provider", name, why, ())
            return RouteDecision("provider", name, f"{why}; fell back to {name!r}", tuple(warnings))
        warnings.append(f"provider {name!r} skipped: {problem}")
    warnings.append(f"no usable provider in the fallback chain of {start!r}; running locally")
    return _local(f"{why}; no fallback usable, running locally", tuple(warnings))


def _chain(start: str, fallbacks: Mapping[str, Sequence[str]]) -> list[str]:
    """``start`` then its fallbacks, depth first, each name once (cycles are cut)."""
    order: list[str] = []
    seen: set[str] = set()
    stack = [start]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        order.append(name)
        stack.extend(reversed(fallbacks.get(name, ())))
    return order


def _problem(name: str, policy: RoutingPolicy, unavailable: frozenset[str]) -> str | None:
    """Why ``name`` cannot take a task now, or None when it can."""
    if name not in policy.configured:
        return "not configured"
    if name not in policy.available:
        return "not available (no credentials?)"
    if name in unavailable:
        return "temporarily unavailable"
    return None
