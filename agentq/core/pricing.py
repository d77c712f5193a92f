"""Token prices and the Anthropic cost formula (pure): shared by delegation and sessions.

Prices are USD per 1M tokens. A small dated default table covers mainstream models;
configuration overrides any entry. A model with no price gives cost ``None`` (shown as
``unknown``), never $0. Anthropic ``input_tokens`` *exclude* cache reads and writes:
``input·in + cache_creation·cache_write + cache_read·cache_read_rate + output·out``
(:func:`cost_anthropic`). The OpenAI-compatible formula and provider-reported costs are
delegation's (:mod:`agentq.delegation.pricing`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, Protocol

logger = logging.getLogger(__name__)

CostSource = Literal["provider", "price_table", "unknown"]

PER_MILLION = 1_000_000
LONG_CONTEXT_TOKENS = 200_000
# Anthropic bills 5-minute cache writes at 1.25x the input rate.
ANTHROPIC_CACHE_WRITE_FACTOR = 1.25
DEFAULT_PRICES_AS_OF = "2026-11-21"
DEFAULT_PRICES_SOURCE = "LiteLLM 1.109.1 model_prices_and_context_window_backup.json"


class PriceLike(Protocol):
    """What cost arithmetic needs from a price entry (``PriceConfig`` or :class:`Price`)."""

    @property
    def input(self) -> float: ...
    @property
    def output(self) -> float: ...
    @property
    def cache_read(self) -> float | None: ...
    @property
    def cache_write(self) -> float | None: ...


@dataclass(frozen=True)
class Price:
    """One model's price in USD per 1M tokens, with where and when it was read."""

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None
    as_of: str | None = None
    source: str | None = None
    input_above_200k: float | None = None
    output_above_200k: float | None = None


def _default(input_: float, output: float, read: float, write: float | None = None) -> Price:
    return Price(input_, output, read, write, DEFAULT_PRICES_AS_OF, DEFAULT_PRICES_SOURCE)


DEFAULT_PRICES: Mapping[str, Price] = MappingProxyType(
    {
        "claude-sonnet-4-5": _default(3.00, 15.00, 0.30, 3.75),
        "claude-haiku-4-5": _default(1.00, 5.00, 0.10, 1.25),
        "claude-opus-4-5": _default(5.00, 25.00, 0.50, 6.25),
        "gpt-4.1": _default(2.00, 8.00, 0.50),
        "gpt-5": _default(1.25, 10.00, 0.125),
        "gpt-4o": _default(2.50, 10.00, 1.25),
        "gemini/gemini-2.5-pro": Price(
            1.25,
            10.00,
            0.125,
            None,
            DEFAULT_PRICES_AS_OF,
            DEFAULT_PRICES_SOURCE,
            input_above_200k=2.50,
            output_above_200k=15.00,
        ),
        "gemini/gemini-2.5-flash": _default(0.30, 2.50, 0.03),
    }
)

_DATE_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8})$")


def canonical_model(name: str) -> str:
    """Normalise a model name for price lookup: lower case, no ``vendor/`` prefix, no date."""
    base = name.strip().lower().rsplit("/", 1)[-1]
    return _DATE_SUFFIX.sub("", base)


def find_price(
    model: str | None,
    overrides: Mapping[str, PriceLike] | None = None,
    table: Mapping[str, PriceLike] = DEFAULT_PRICES,
) -> PriceLike | None:
    """The price for ``model``: a config override first, then the table; None if unknown."""
    if not model:
        return None
    for source in (overrides or {}, table):
        if model in source:
            return source[model]
        wanted = canonical_model(model)
        for key, price in source.items():
            if canonical_model(key) == wanted:
                return price
    return None


def count_tokens(usage: Mapping[str, object], *path: str) -> int:
    """The non-negative integer at ``path`` in ``usage`` (0 when absent or not a number)."""
    node: object = usage
    for name in path:
        if not isinstance(node, Mapping):
            return 0
        node = node.get(name)
    if isinstance(node, bool) or not isinstance(node, int | float):
        return 0
    return max(0, int(node))


def anthropic_tokens(usage: Mapping[str, object]) -> tuple[int, int, int, int]:
    """(uncached input, output, cache read, cache write) from an Anthropic ``usage`` object."""
    return (
        count_tokens(usage, "input_tokens"),
        count_tokens(usage, "output_tokens"),
        count_tokens(usage, "cache_read_input_tokens"),
        count_tokens(usage, "cache_creation_input_tokens"),
    )


def cost_anthropic(usage: Mapping[str, object], price: PriceLike) -> float:
    """USD for an Anthropic ``usage``; cache reads and writes are separate from input."""
    uncached, output, read, written = anthropic_tokens(usage)
    read_rate = price.cache_read if price.cache_read is not None else price.input
    write_rate = (
        price.cache_write
        if price.cache_write is not None
        else price.input * ANTHROPIC_CACHE_WRITE_FACTOR
    )
    total = uncached * price.input + written * write_rate + read * read_rate
    return (total + output * price.output) / PER_MILLION


def format_cost(cost_usd: float | None, source: str) -> str:
    """``"$0.0123"`` for a known cost, ``"unknown"`` otherwise."""
    if cost_usd is None or source == "unknown":
        return "unknown"
    return f"${cost_usd:.4f}"
