"""The suite's rows: each ``run(ctx)`` measures and returns its figures."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from bench.report import fmt
from bench.stats import histogram_quantile

#: Tolerance of the agreement between the daemon's histograms and the bench's figures.
AGREEMENT = 0.10


@dataclass(frozen=True)
class Context:
    """How big a run is: ``smoke`` (tiny sizes, seconds) or full, times ``scale``.

    ``profile``: a folder for py-spy profiles of the daemon over the measured spans.
    """

    smoke: bool = False
    scale: float = 1.0
    profile: Path | None = None

    def size(self, full: int, smoke: int) -> int:
        """The size of a measurement: ``smoke`` in a smoke run, else ``full`` × scale."""
        return smoke if self.smoke else max(1, round(full * self.scale))


def metrics_agreement(text: str, metric: str, bench_s: float, match: str) -> str:
    """Compare the daemon's histogram median with the bench's (seconds); a note for the table."""
    estimate, count = histogram_quantile(text, metric, 0.5, match)
    if count == 0 or math.isnan(estimate):
        return f"/metrics {metric}: no samples"
    off = abs(estimate - bench_s) / bench_s if bench_s else math.inf
    verdict = "agrees" if off <= AGREEMENT else "DISAGREES"
    return (
        f"/metrics median {fmt(estimate * 1000, 'ms')} over {count} vs bench "
        f"{fmt(bench_s * 1000, 'ms')}: {verdict} ({off * 100:.0f}% off)"
    )
