"""Token prices and cost arithmetic (pure).

Prices are USD per 1M tokens. A small dated default table covers mainstream models;
configuration overrides any entry. A model with no price gives cost ``None`` and
source ``"unknown"``, never $0. Provider-reported cost (OpenRouter ``usage.cost``)
always wins over the table.

The two formulas differ on purpose:

- OpenAI-compatible ``prompt_tokens`` *include* ``cached_tokens``:
  ``(prompt - cached)·in + cached·cache_read + completion·out``.
- Anthropic ``input_tokens`` *exclude* cache reads and writes:
  ``input·in + cache_creation·cache_write + cache_read·cache_read_rate + output·out``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Literal

from agentq.core.pricing import (
    DEFAULT_PRICES,
    DEFAULT_PRICES_AS_OF,
    DEFAULT_PRICES_SOURCE,
    LONG_CONTEXT_TOKENS,
    PER_MILLION,
    CostSource,
    Price,
    PriceLike,
    anthropic_tokens,
    canonical_model,
    cost_anthropic,
    count_tokens,
    find_price,
    format_cost,
)

__all__ = [
    "DEFAULT_PRICES",
    "DEFAULT_PRICES_AS_OF",
    "DEFAULT_PRICES_SOURCE",
    "CostSource",
    "Price",
    "PriceLike",
    "TokenFormula",
    "anthropic_tokens",
    "canonical_model",
    "cost_anthropic",
    "cost_for",
    "cost_openai",
    "find_price",
    "format_cost",
    "openai_tokens",
    "reported_cost",
]

logger = logging.getLogger(__name__)

TokenFormula = Literal["openai", "anthropic"]


def openai_tokens(usage: Mapping[str, object]) -> tuple[int, int, int, int]:
    """(uncached input, output, cache read, cache write) from an OpenAI ``usage`` object."""
    prompt = count_tokens(usage, "prompt_tokens")
    cached = min(prompt, count_tokens(usage, "prompt_tokens_details", "cached_tokens"))
    written = count_tokens(usage, "prompt_tokens_details", "cache_write_tokens")
    return prompt - cached, count_tokens(usage, "completion_tokens"), cached, written


def cost_openai(usage: Mapping[str, object], price: PriceLike) -> float:
    """USD for an OpenAI-compatible ``usage``; cached tokens are inside ``prompt_tokens``."""
    uncached, output, cached, _written = openai_tokens(usage)
    rate_in, rate_out = price.input, price.output
    if isinstance(price, Price) and uncached + cached > LONG_CONTEXT_TOKENS:
        rate_in = price.input_above_200k or rate_in
        rate_out = price.output_above_200k or rate_out
    # No cache rate configured: the server gives no discount we know of.
    read_rate = price.cache_read if price.cache_read is not None else rate_in
    return (uncached * rate_in + cached * read_rate + output * rate_out) / PER_MILLION


def reported_cost(usage: Mapping[str, object]) -> float | None:
    """The cost a provider reported in ``usage.cost`` (OpenRouter), if any."""
    value = usage.get("cost")
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return float(value)


def cost_for(
    usage: Mapping[str, object] | None,
    models: Iterable[str | None],
    overrides: Mapping[str, PriceLike] | None,
    formula: TokenFormula,
) -> tuple[float | None, CostSource]:
    """Cost and its source: provider-reported, else the first priced model, else unknown."""
    if usage is None:
        return None, "unknown"
    reported = reported_cost(usage)
    if reported is not None:
        return reported, "provider"
    for model in models:
        price = find_price(model, overrides)
        if price is not None:
            compute = cost_openai if formula == "openai" else cost_anthropic
            return compute(usage, price), "price_table"
    return None, "unknown"
