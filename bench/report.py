"""Figures, rows and the table: what a row measured, against what, and how it is printed."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.stats import percentile


@dataclass
class Figure:
    """One measured quantity: its samples (in ``unit``), its target, and a same-run reference.

    ``reference`` names the floor or baseline measured in the same run and its value;
    ``ratio`` is how this figure compares to it (``"40x faster"``, ``"3.1x floor"``).
    ``ok`` is None where no target applies.
    """

    label: str
    unit: str
    values: list[float]
    target: str = ""
    ok: bool | None = None
    reference: str = ""
    ratio: str = ""
    note: str = ""

    @property
    def median(self) -> float:
        return percentile(self.values, 50)

    @property
    def p95(self) -> float:
        return percentile(self.values, 95)

    @property
    def p99(self) -> float:
        return percentile(self.values, 99)

    @property
    def max(self) -> float:
        return max(self.values) if self.values else math.nan

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.update(n=len(self.values), median=self.median, p95=self.p95, p99=self.p99)
        doc["max"] = self.max
        return doc


@dataclass
class Row:
    """One row of the suite: its figures, the load average at its end, how long it took."""

    number: int
    name: str
    figures: list[Figure] = field(default_factory=list)
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)
    seconds: float = 0.0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "name": self.name,
            "load": list(self.load),
            "seconds": round(self.seconds, 1),
            "error": self.error,
            "figures": [f.to_dict() for f in self.figures],
        }


def fmt(value: float, unit: str = "") -> str:
    """A number with 3 significant digits (no exponent), and its unit."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    magnitude = abs(value)
    if magnitude >= 100:
        text = f"{value:.0f}"
    elif magnitude >= 10:
        text = f"{value:.1f}"
    elif magnitude >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3f}"
    return f"{text} {unit}".rstrip()


def ratio(value: float, reference: float, word: str = "") -> str:
    """``"123x"`` (value / reference), with a word after it."""
    if not value or not reference or math.isnan(value) or math.isnan(reference):
        return "-"
    r = value / reference
    text = f"{r:.0f}x" if r >= 10 else f"{r:.1f}x"
    return f"{text} {word}".rstrip()


_HEAD = ("#", "figure", "n", "median", "p95", "max", "target", "ok", "same-run reference", "ratio")


def table(rows: list[Row]) -> str:
    """The suite's table, plain text: one line per figure, a line per row with its load."""
    lines: list[list[str]] = []
    for row in rows:
        load = " ".join(f"{x:.2f}" for x in row.load)
        title = f"{row.number}. {row.name}  (load {load}, {row.seconds:.0f} s)"
        if row.error:
            title += f"  ERROR: {row.error.splitlines()[0][:120]}"
        lines.append(["", title])
        for f in row.figures:
            ok = "" if f.ok is None else ("yes" if f.ok else "NO")
            many = len(f.values) > 1
            lines.append(
                [
                    str(row.number),
                    f.label,
                    str(len(f.values)),
                    fmt(f.median, f.unit),
                    fmt(f.p95, f.unit) if many else "",
                    fmt(f.max, f.unit) if many else "",
                    f.target,
                    ok,
                    f.reference,
                    f.ratio,
                ]
            )
            if f.note:
                lines.append(["", "  " + f.note])
    widths = [len(h) for h in _HEAD]
    for line in lines:
        if len(line) == len(_HEAD):
            widths = [max(w, len(c)) for w, c in zip(widths, line, strict=True)]
    out = ["  ".join(h.ljust(w) for h, w in zip(_HEAD, widths, strict=True)).rstrip()]
    out.append("  ".join("-" * w for w in widths))
    for line in lines:
        if len(line) == len(_HEAD):
            out.append("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        else:
            out.append(line[1])
    return "\n".join(out)


def markdown(rows: list[Row]) -> str:
    """The same table in Markdown (for docs/benchmarks.md)."""
    out = ["| " + " | ".join(_HEAD) + " |", "|" + "---|" * len(_HEAD)]
    for row in rows:
        load = " ".join(f"{x:.2f}" for x in row.load)
        title = f"**{row.number}. {row.name}** (load {load})"
        if row.error:
            title += f" ERROR: {row.error.splitlines()[0][:120]}"
        out.append(f"| | {title} |" + " |" * (len(_HEAD) - 2))
        for f in row.figures:
            ok = "" if f.ok is None else ("yes" if f.ok else "**NO**")
            many = len(f.values) > 1
            cells = [
                str(row.number),
                f.label + (f" ({f.note})" if f.note else ""),
                str(len(f.values)),
                fmt(f.median, f.unit),
                fmt(f.p95, f.unit) if many else "",
                fmt(f.max, f.unit) if many else "",
                f.target,
                ok,
                f.reference,
                f.ratio,
            ]
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(out)
