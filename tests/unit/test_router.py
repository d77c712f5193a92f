"""Unit tests for agentq.router: every precedence branch, ties between them, fallback walks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentq.queue.router import RouteDecision, RoutingPolicy, route
from agentq.queue.taskfile import TaskMeta

POLICY = RoutingPolicy(
    allow_by_default=True,
    configured=frozenset({"gpu", "gemini", "claude-api", "nokey"}),
    available=frozenset({"gpu", "gemini", "claude-api"}),
    fallbacks={"gpu": ["gemini", "local"], "gemini": ["claude-api", "local"]},
    complexity={"high": "claude-api", "medium": "gpu"},
)


def meta(**fields: Any) -> TaskMeta:
    """A TaskMeta with the given frontmatter keys."""
    return TaskMeta.model_validate(fields)


@pytest.mark.parametrize(
    ("fields", "executor", "provider", "reason"),
    [
        pytest.param(
            {"needs_claude_code": True, "preferred_ai": "gpu", "allow_delegation": True},
            "local",
            None,
            "needs_claude_code is set",
            id="needs_claude_code beats a configured preferred_ai",
        ),
        pytest.param(
            {"needs_claude_code": True, "preferred_ai": "claude-code"},
            "local",
            None,
            "needs_claude_code is set",
            id="needs_claude_code is checked before preferred_ai claude-code",
        ),
        pytest.param(
            {"needs_claude_code": False, "preferred_ai": "gpu"},
            "provider",
            "gpu",
            "preferred_ai is 'gpu'",
            id="needs_claude_code false does not force local",
        ),
        pytest.param(
            {"preferred_ai": "claude-code", "allow_delegation": True, "complexity_hint": "high"},
            "local",
            None,
            "preferred_ai is claude-code",
            id="preferred_ai claude-code beats allowed delegation and a complexity hint",
        ),
        pytest.param(
            {"preferred_ai": "claude-code", "allow_delegation": False},
            "local",
            None,
            "preferred_ai is claude-code",
            id="preferred_ai claude-code is checked before allow_delegation",
        ),
        pytest.param(
            {"allow_delegation": False, "complexity_hint": "high"},
            "local",
            None,
            "delegation is not allowed (allow_delegation is false)",
            id="allow_delegation false beats a complexity hint",
        ),
        pytest.param(
            {"preferred_ai": "gpu"},
            "provider",
            "gpu",
            "preferred_ai is 'gpu'",
            id="configured preferred_ai is used when delegation is allowed by default",
        ),
        pytest.param(
            {"preferred_ai": "gpu", "complexity_hint": "high"},
            "provider",
            "gpu",
            "preferred_ai is 'gpu'",
            id="preferred_ai beats the complexity hint",
        ),
        pytest.param(
            {"complexity_hint": "high"},
            "provider",
            "claude-api",
            "complexity_hint 'high' maps to 'claude-api'",
            id="mapped complexity hint picks its provider",
        ),
        pytest.param(
            {"complexity_hint": "low"},
            "local",
            None,
            "no provider was asked for",
            id="unmapped complexity hint stays local",
        ),
        pytest.param({}, "local", None, "no provider was asked for", id="empty frontmatter"),
    ],
)
def test_precedence(
    fields: dict[str, Any], executor: str, provider: str | None, reason: str
) -> None:
    """The first matching rule decides, in the documented order."""
    decision = route(meta(**fields), POLICY)
    assert (decision.executor, decision.provider, decision.reason) == (executor, provider, reason)
    assert decision.warnings == ()


def test_delegation_is_off_by_default() -> None:
    """Without allow_delegation, the config default (false) keeps a named provider local."""
    policy = RoutingPolicy(configured=frozenset({"gpu"}), available=frozenset({"gpu"}))
    decision = route(meta(preferred_ai="gpu"), policy)
    assert decision == RouteDecision(
        "local",
        None,
        "delegation is not allowed (by default)",
        ("preferred_ai 'gpu' ignored: by default",),
    )


def test_explicit_allow_overrides_the_default() -> None:
    """allow_delegation: true opens delegation even when the default is closed."""
    policy = RoutingPolicy(configured=frozenset({"gpu"}), available=frozenset({"gpu"}))
    decision = route(meta(preferred_ai="gpu", allow_delegation=True), policy)
    assert (decision.executor, decision.provider) == ("provider", "gpu")


def test_explicit_false_overrides_an_open_default() -> None:
    """allow_delegation: false wins over allow_by_default, and says the provider was ignored."""
    decision = route(meta(preferred_ai="gpu", allow_delegation=False), POLICY)
    assert decision.executor == "local"
    assert decision.warnings == ("preferred_ai 'gpu' ignored: allow_delegation is false",)


def test_unknown_preferred_ai_runs_locally_with_a_warning() -> None:
    """A name that is not configured is fail-safe: local, and the footer says why."""
    decision = route(meta(preferred_ai="gemnii"), POLICY)
    assert decision == RouteDecision(
        "local",
        None,
        "unknown preferred_ai 'gemnii'",
        ("unknown preferred_ai 'gemnii'; running locally",),
    )


def test_unknown_preferred_ai_beats_a_complexity_hint() -> None:
    """An unknown preferred_ai does not fall through to the complexity mapping."""
    decision = route(meta(preferred_ai="x", complexity_hint="high"), POLICY)
    assert (decision.executor, decision.warnings) == (
        "local",
        ("unknown preferred_ai 'x'; running locally",),
    )


@pytest.mark.parametrize(
    ("unavailable", "provider", "warnings"),
    [
        pytest.param(
            {"gpu"},
            "gemini",
            ("provider 'gpu' skipped: temporarily unavailable",),
            id="first fallback when the preferred one is down",
        ),
        pytest.param(
            {"gpu", "gemini"},
            "claude-api",
            (
                "provider 'gpu' skipped: temporarily unavailable",
                "provider 'gemini' skipped: temporarily unavailable",
            ),
            id="a fallback's own fallbacks come before the next entry",
        ),
    ],
)
def test_fallback_walk_finds_the_first_usable_provider(
    unavailable: set[str], provider: str, warnings: tuple[str, ...]
) -> None:
    """An unusable preferred provider walks its chain and names every skip."""
    decision = route(meta(preferred_ai="gpu"), POLICY, frozenset(unavailable))
    assert (decision.executor, decision.provider) == ("provider", provider)
    assert decision.reason == f"preferred_ai is 'gpu'; fell back to {provider!r}"
    assert decision.warnings == warnings


def test_fallback_chain_ends_at_local() -> None:
    """When every provider in the chain is down, an explicit ``local`` entry ends the walk."""
    decision = route(meta(preferred_ai="gpu"), POLICY, frozenset({"gpu", "gemini", "claude-api"}))
    assert decision.executor == "local"
    assert decision.reason == "preferred_ai is 'gpu'; fell back to the local agent"
    assert decision.warnings[-1] == "fell back from 'gpu' to the local agent"
    assert len(decision.warnings) == 4


def test_provider_without_credentials_and_no_fallbacks_runs_locally() -> None:
    """A configured provider that is not available and has no chain still ends at local."""
    decision = route(meta(preferred_ai="nokey"), POLICY)
    assert decision == RouteDecision(
        "local",
        None,
        "preferred_ai is 'nokey'; no fallback usable, running locally",
        (
            "provider 'nokey' skipped: not available (no credentials?)",
            "no usable provider in the fallback chain of 'nokey'; running locally",
        ),
    )


def test_cyclic_fallbacks_terminate() -> None:
    """A cycle in the fallback config visits each provider once, then goes local."""
    policy = RoutingPolicy(
        allow_by_default=True,
        configured=frozenset({"a", "b", "c"}),
        available=frozenset({"a", "b", "c"}),
        fallbacks={"a": ["b"], "b": ["c", "a"], "c": ["a", "b", "c"]},
    )
    decision = route(meta(preferred_ai="a"), policy, frozenset({"a", "b", "c"}))
    assert decision.executor == "local"
    assert [w.split("'")[1] for w in decision.warnings[:-1]] == ["a", "b", "c"]


def test_fallback_to_an_unconfigured_name_is_skipped() -> None:
    """A fallback entry that is not a configured provider is skipped with a warning."""
    policy = RoutingPolicy(
        allow_by_default=True,
        configured=frozenset({"a", "b"}),
        available=frozenset({"b"}),
        fallbacks={"a": ["ghost", "b"]},
    )
    decision = route(meta(preferred_ai="a"), policy)
    assert (decision.executor, decision.provider) == ("provider", "b")
    assert "provider 'ghost' skipped: not configured" in decision.warnings


def test_complexity_hint_uses_the_same_fallback_walk() -> None:
    """A mapped hint whose provider is down falls back like preferred_ai does."""
    decision = route(meta(complexity_hint="medium"), POLICY, frozenset({"gpu"}))
    assert (decision.executor, decision.provider) == ("provider", "gemini")
    assert decision.reason == "complexity_hint 'medium' maps to 'gpu'; fell back to 'gemini'"


def test_complexity_hint_mapped_to_the_local_agent() -> None:
    """A hint mapped to ``local`` runs locally without a warning."""
    policy = RoutingPolicy(allow_by_default=True, complexity={"low": "local"})
    decision = route(meta(complexity_hint="low"), policy)
    assert decision == RouteDecision(
        "local", None, "complexity_hint 'low' maps to 'local', which is the local agent", ()
    )


def test_complexity_hint_needs_delegation() -> None:
    """A mapped hint is ignored when delegation is not allowed."""
    policy = RoutingPolicy(
        configured=frozenset({"gpu"}), available=frozenset({"gpu"}), complexity={"high": "gpu"}
    )
    assert route(meta(complexity_hint="high"), policy).executor == "local"


def test_reasons_and_warnings_are_single_lines() -> None:
    """Reasons and warnings go into footers as they are."""
    decision = route(meta(preferred_ai="gpu"), POLICY, frozenset({"gpu", "gemini", "claude-api"}))
    for text in (decision.reason, *decision.warnings):
        assert len(text.splitlines()) == 1


def test_to_dict_is_json_ready() -> None:
    """to_dict has exactly the four documented keys and serialises to JSON."""
    decision = route(meta(preferred_ai="gemnii"), POLICY)
    data = decision.to_dict()
    assert data == {
        "executor": "local",
        "provider": None,
        "reason": "unknown preferred_ai 'gemnii'",
        "warnings": ["unknown preferred_ai 'gemnii'; running locally"],
    }
    assert json.loads(json.dumps(data)) == data


def test_decisions_are_immutable() -> None:
    """A decision is a value: it cannot be changed after routing."""
    decision = route(meta(), POLICY)
    with pytest.raises(AttributeError):
        decision.provider = "gpu"  # type: ignore[misc]
