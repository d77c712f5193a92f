"""Price table lookups and the provider-specific cost formulas."""

from __future__ import annotations

import pytest

from agentq.config.models import PriceConfig
from agentq.delegation.pricing import (
    DEFAULT_PRICES,
    Price,
    anthropic_tokens,
    canonical_model,
    cost_anthropic,
    cost_for,
    cost_openai,
    find_price,
    format_cost,
    openai_tokens,
)

SONNET = DEFAULT_PRICES["claude-sonnet-4-5"]
GPT41 = DEFAULT_PRICES["gpt-4.1"]


def test_default_table_is_dated_and_sourced() -> None:
    """The bundled table holds the eight documented models, each with as_of and source."""
    assert set(DEFAULT_PRICES) == {
        "claude-sonnet-4-5",
        "claude-haiku-4-5",
        "claude-opus-4-5",
        "gpt-4.1",
        "gpt-5",
        "gpt-4o",
        "gemini/gemini-2.5-pro",
        "gemini/gemini-2.5-flash",
    }
    assert all(p.as_of and p.source for p in DEFAULT_PRICES.values())
    assert DEFAULT_PRICES["claude-haiku-4-5"].input == 1.00  # not the stale $0.25 some list


def test_openai_cost_bills_cached_tokens_at_the_read_rate() -> None:
    """(prompt - cached)·in + cached·cache_read + completion·out, per 1M tokens."""
    usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 200,
        "prompt_tokens_details": {"cached_tokens": 400},
        "completion_tokens_details": {"reasoning_tokens": 150},
    }
    assert cost_openai(usage, GPT41) == pytest.approx((600 * 2.0 + 400 * 0.5 + 200 * 8.0) / 1e6)


def test_openai_cost_without_cache_rate_bills_cached_as_input() -> None:
    """A price without a cache rate gives no discount on cached tokens."""
    usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 0,
        "prompt_tokens_details": {"cached_tokens": 400},
    }
    assert cost_openai(usage, Price(input=1.0, output=1.0)) == pytest.approx(1000 / 1e6)


def test_openai_cost_long_context_tier() -> None:
    """Gemini 2.5 Pro bills a prompt above 200k tokens at its higher tier."""
    usage = {"prompt_tokens": 300_000, "completion_tokens": 1000}
    price = DEFAULT_PRICES["gemini/gemini-2.5-pro"]
    assert cost_openai(usage, price) == pytest.approx((300_000 * 2.5 + 1000 * 15.0) / 1e6)


def test_anthropic_cost_adds_cache_reads_and_writes() -> None:
    """input·in + cache_creation·write + cache_read·read + output·out; input excludes cache."""
    usage = {
        "input_tokens": 1000,
        "output_tokens": 500,
        "cache_creation_input_tokens": 2000,
        "cache_read_input_tokens": 10_000,
    }
    assert cost_anthropic(usage, SONNET) == pytest.approx(0.021)


def test_anthropic_cost_defaults_missing_cache_rates() -> None:
    """Without cache rates, writes cost 1.25x input and reads cost the input rate."""
    usage = {
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_creation_input_tokens": 1000,
        "cache_read_input_tokens": 1000,
    }
    assert cost_anthropic(usage, PriceConfig(input=4.0, output=0.0)) == pytest.approx(9000 / 1e6)


def test_token_counts_ignore_junk() -> None:
    """Missing, negative, boolean or non-numeric counts read as zero."""
    junk = {"prompt_tokens": "many", "completion_tokens": -3, "prompt_tokens_details": None}
    assert openai_tokens(junk) == (0, 0, 0, 0)
    assert anthropic_tokens({"input_tokens": True, "output_tokens": 7}) == (0, 7, 0, 0)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("gpt-4.1-2025-04-14", "gpt-4.1"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("gemini/gemini-2.5-pro", "gemini-2.5-pro"),
        ("openai/GPT-4o", "gpt-4o"),
    ],
    ids=[
        "an OpenAI dated snapshot",
        "an Anthropic dated snapshot",
        "a vendor prefix",
        "case and prefix",
    ],
)
def test_canonical_model(name: str, expected: str) -> None:
    """Model names are normalised for lookup."""
    assert canonical_model(name) == expected


def test_find_price_prefers_config_overrides() -> None:
    """A configured price wins over the table; dated and prefixed names still match."""
    override = PriceConfig(input=9.0, output=9.0)
    assert find_price("gpt-4.1", {"gpt-4.1": override}) is override
    assert find_price("gpt-4.1-2025-04-14") is GPT41
    assert find_price("gemini-2.5-flash") is DEFAULT_PRICES["gemini/gemini-2.5-flash"]
    assert find_price("qwen3-coder") is None
    assert find_price(None) is None


def test_cost_for_sources() -> None:
    """Provider-reported cost wins; else the table; else unknown (never $0)."""
    usage = {"prompt_tokens": 1000, "completion_tokens": 100}
    assert cost_for({**usage, "cost": 0.02}, ["gpt-4.1"], None, "openai") == (0.02, "provider")
    cost, source = cost_for(usage, ["unknown-model", "gpt-4.1"], None, "openai")
    assert source == "price_table" and cost == pytest.approx((1000 * 2 + 100 * 8) / 1e6)
    assert cost_for(usage, ["unknown-model"], None, "openai") == (None, "unknown")
    assert cost_for(None, ["gpt-4.1"], None, "openai") == (None, "unknown")


@pytest.mark.parametrize(
    ("cost", "source", "text"),
    [
        (0.0123, "price_table", "$0.0123"),
        (1.5, "provider", "$1.5000"),
        (0.0, "price_table", "$0.0000"),
        (None, "unknown", "unknown"),
        (0.5, "unknown", "unknown"),
    ],
    ids=["a table cost", "a provider cost", "a free model", "no cost", "an unknown source"],
)
def test_format_cost(cost: float | None, source: str, text: str) -> None:
    """Costs print with four decimals; unknown costs print as 'unknown'."""
    assert format_cost(cost, source) == text
