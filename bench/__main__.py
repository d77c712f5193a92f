"""``python -m bench [--smoke] [--rows a,b] [--json PATH] [--scale X]``: the benchmark suite.

Each row builds its own workspace (temp dir, HOME inside it, a private tmux server),
runs the real daemon as a subprocess and measures it against a floor or baseline
measured in the same run. The table goes to stdout, every sample to the JSON file.
``--smoke`` runs every row with tiny sizes: it checks that the suite runs and prints,
and asserts no timing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from bench import procstat, workspace
from bench.report import Figure, Row, markdown, table
from bench.rows import (
    Context,
    delegation,
    delivery,
    fleet,
    hooks,
    idle,
    pickup,
    queue,
    scale,
    swap,
    throughput,
)

#: (number, key, title, run) in the order they run.
ROWS: list[tuple[int, str, str, Callable[[Context], list[Figure]]]] = [
    (1, "pickup", "Pickup (renamed into inbox/ → claimed)", pickup.run),
    (2, "delivery", "Delivery (claimed → agent busy, sim)", delivery.run),
    (3, "hooks", "Hook cost (the command in settings.json)", hooks.run),
    (4, "throughput", "Throughput (sim pool, recycle on)", throughput.run),
    (5, "idle", "Idle (sim sessions, inboxes, nothing to do)", idle.run),
    (6, "scale", "Scale (start-up backlog, inboxes, task index)", scale.run),
    (7, "swap", "Swap (quota → pool relaunched, cut tasks busy again)", swap.run),
    (8, "delegation", "Delegation overhead (local job-api provider)", delegation.run),
    (9, "queue", "The queue alone (instant executor; dead notification targets)", queue.run),
    (10, "fleet", "The fleet on Temporal (optional: needs the Temporal CLI)", fleet.run),
]


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _select(spec: str | None) -> list[tuple[int, str, str, Callable[[Context], list[Figure]]]]:
    if not spec:
        return ROWS
    wanted = {part.strip() for part in spec.split(",") if part.strip()}
    chosen = [r for r in ROWS if r[1] in wanted or str(r[0]) in wanted]
    unknown = wanted - {r[1] for r in chosen} - {str(r[0]) for r in chosen}
    if unknown:
        names = ", ".join(f"{n} ({k})" for n, k, _, _ in ROWS)
        raise SystemExit(f"unknown rows: {', '.join(sorted(unknown))}; rows: {names}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    """Run the selected rows, print the table, write the JSON file; 1 if a row failed."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="every row with tiny sizes")
    parser.add_argument("--rows", help="comma-separated row numbers or names (default: all)")
    parser.add_argument("--json", type=Path, default=Path("bench-results.json"))
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the sample counts")
    parser.add_argument(
        "--profile", type=Path, help="record py-spy profiles of the daemon into this folder"
    )
    args = parser.parse_args(argv)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    ctx = Context(smoke=args.smoke, scale=args.scale, profile=args.profile)
    selected = _select(args.rows)
    signal.signal(signal.SIGTERM, _interrupted)
    began = time.monotonic()
    rows: list[Row] = []
    try:
        for number, key, title, run in selected:
            print(f"[bench] {number}. {key} … (load {procstat.load()[0]:.2f})", flush=True)
            row = Row(number, title)
            started = time.monotonic()
            try:
                row.figures = run(ctx)
            except Exception as exc:  # one row failing must not lose the others' figures
                row.error = f"{type(exc).__name__}: {exc}"
                traceback.print_exc()
            finally:
                workspace.close_all()
            row.seconds = time.monotonic() - started
            row.load = procstat.load()
            rows.append(row)
    except KeyboardInterrupt:
        print("[bench] interrupted; cleaning up", file=sys.stderr)
        workspace.close_all()
        return 130
    doc = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "smoke": ctx.smoke,
        "scale": ctx.scale,
        "machine": procstat.machine(),
        "seconds": round(time.monotonic() - began, 1),
        "rows": [r.to_dict() for r in rows],
    }
    args.json.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    machine = procstat.machine()
    print()
    print(
        f"machine: {machine['nproc']} cores, {machine['cpu']}, Python {machine['python']}, "
        f"kernel {machine['kernel']}; {doc['seconds']} s"
    )
    print(table(rows))
    if args.markdown:
        args.markdown.write_text(markdown(rows) + "\n")
    print(f"\n[bench] JSON: {args.json}")
    return 1 if any(r.error for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
