"""Percentiles of samples, and the median a Prometheus histogram implies."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

_BUCKET = re.compile(r"^(?P<name>[a-z_]+)_bucket\{(?P<labels>[^}]*)\} (?P<value>\S+)$")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) by linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def histogram_quantile(text: str, metric: str, q: float, match: str = "") -> tuple[float, int]:
    """``histogram_quantile(q, metric)`` over a /metrics text: (estimate, sample count).

    Buckets whose label text contains ``match`` are summed; the estimate interpolates
    linearly inside the bucket holding the rank, as Prometheus does.
    """
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        found = _BUCKET.match(line)
        if not found or found["name"] != metric or match not in found["labels"]:
            continue
        le = re.search(r'le="([^"]+)"', found["labels"])
        if le is None:
            continue
        bound = math.inf if le[1] == "+Inf" else float(le[1])
        buckets[bound] = buckets.get(bound, 0.0) + float(found["value"])
    if not buckets:
        return math.nan, 0
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total == 0:
        return math.nan, 0
    rank = q * total
    previous_bound, previous_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return previous_bound, int(total)
            inside = count - previous_count
            share = (rank - previous_count) / inside if inside else 0.0
            return previous_bound + (bound - previous_bound) * share, int(total)
        previous_bound, previous_count = bound, count
    return bounds[-1], int(total)
