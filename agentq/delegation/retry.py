"""Pure retry decisions for provider HTTP calls.

Which responses are worth another attempt, how long to wait, and what the provider
said went wrong. No I/O and no clock: the HTTP adapter (:mod:`agentq.delegation.http`)
passes responses, headers and ``now`` in.
"""

from __future__ import annotations

import email.utils
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

logger = logging.getLogger(__name__)

RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
# Quota and spend-cap errors arrive as 429 but do not clear by waiting.
TERMINAL_ERROR_CODES = frozenset({"insufficient_quota", "enforced_spend_limit_reached"})
MAX_DETAIL_CHARS = 300

Verdict = Literal["ok", "retry", "terminal"]


@dataclass(frozen=True)
class ErrorDetail:
    """What an error body says: a message, its type/code strings, a numeric code if any."""

    message: str
    codes: frozenset[str]
    status: int | None = None


def error_detail(body: object) -> ErrorDetail | None:
    """Read an error out of any known error shape (OpenAI, vLLM, Anthropic, OpenRouter)."""
    if not isinstance(body, Mapping):
        return None
    inner = body.get("error")
    if isinstance(inner, Mapping):
        return _detail_from(inner)
    if isinstance(inner, str) and inner:
        return ErrorDetail(inner, frozenset())
    # vLLM puts the fields at the top level: {"object": "error", "message": ...}.
    if body.get("object") == "error" or body.get("type") == "error":
        return _detail_from(body, skip_type="error")
    return None


def _detail_from(fields: Mapping[object, object], skip_type: str = "") -> ErrorDetail:
    codes: set[str] = set()
    status: int | None = None
    for name in ("type", "code", "status"):
        value = fields.get(name)
        if isinstance(value, bool):
            continue
        if isinstance(value, int) and 100 <= value <= 599:
            status = value
        elif isinstance(value, str) and value and value != skip_type:
            codes.add(value)
    details = fields.get("details")
    if isinstance(details, Mapping) and isinstance(details.get("error_code"), str):
        codes.add(str(details["error_code"]))
    message = fields.get("message")
    return ErrorDetail(message if isinstance(message, str) else "", frozenset(codes), status)


def has_error(body: object) -> bool:
    """True when a 2xx body nevertheless reports an error (OpenRouter mid-generation)."""
    if not isinstance(body, Mapping):
        return False
    return bool(body.get("error")) or body.get("object") == "error" or body.get("type") == "error"


def classify(status: int, body: object, *, error_in_body: bool = False) -> Verdict:
    """Decide whether a response is a success, worth retrying, or terminal for the provider."""
    if 200 <= status < 300:
        if not (error_in_body and has_error(body)):
            return "ok"
        detail = error_detail(body)
        effective = detail.status if detail else None
        if detail and detail.codes & TERMINAL_ERROR_CODES:
            return "terminal"
        return "retry" if effective in RETRYABLE_STATUSES else "terminal"
    detail = error_detail(body)
    if detail and detail.codes & TERMINAL_ERROR_CODES:
        return "terminal"
    return "retry" if status in RETRYABLE_STATUSES else "terminal"


def describe_error(body: object, fallback: str) -> str:
    """One line saying what went wrong: the body's message and code, else ``fallback``."""
    detail = error_detail(body)
    if detail is None:
        return one_line(fallback)
    text = detail.message or fallback
    extra = sorted(code for code in detail.codes if code not in text)
    if extra:
        text = f"{text} ({', '.join(extra)})"
    return one_line(text)


def one_line(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    """Collapse whitespace to single spaces and cut to ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def parse_retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds the server asks us to wait (``retry-after-ms``, then ``retry-after``), or None."""
    millis = _float(headers.get("retry-after-ms"))
    if millis is not None and millis > 0:
        return millis / 1000.0
    raw = headers.get("retry-after")
    if raw is None:
        return None
    seconds = _float(raw)
    if seconds is None:
        seconds = _seconds_until(raw, now)
    return seconds if seconds is not None and seconds > 0 else None


def _float(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _seconds_until(http_date: str, now: float) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(http_date)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return when.timestamp() - now


def backoff_delay(retry_number: int, base: float, cap: float, rand: float) -> float:
    """Full-jitter exponential backoff: ``rand * min(cap, base * 2**retry_number)``."""
    exponent = min(retry_number, 62)  # keep 2**n finite for absurd retry counts
    return max(0.0, rand) * min(cap, base * 2.0**exponent)
