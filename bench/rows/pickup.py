"""Row 1, pickup: a task renamed into ``inbox/`` → claimed.

"Claimed" is the moment ``x.md.working`` appeared: the bench's inotify watch on the
inbox sees the claim's rename (an ``IN_MOVED_TO`` of that name) and reads the time the
kernel stamped on it (the inode's ctime, which the rename sets), falling back to when
the bench read the event if the file is gone already. That is the claim itself (one
rename, the protocol's visible state change), independent of the daemon's clock, of what
it does after the claim (parsing, routing, starting the executor: its ``working`` event
comes after those) and of how soon a busy machine schedules the bench. The time starts
just before the producer's ``rename``. Each task is dropped once the previous one is in
``done/`` and a few milliseconds have passed: the daemon is idle when a task arrives.

Floor: the same rename under a plain inotify watch (no daemon): the least any watcher
can take. Baseline: the same daemon with ``dispatch.watch: poll`` and a 1 s
``poll_interval``. The daemon's own ``agentq_pickup_latency_seconds`` histogram is
scraped at the end and its median compared to the bench's.
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from pathlib import Path

from bench.inotify import IN_MOVED_TO, Inotify
from bench.report import Figure, fmt, ratio
from bench.rows import Context, metrics_agreement
from bench.workspace import BenchError, Workspace, wait_until, workspace

PROJECTS = 4
BODY = "---\ntitle: pickup\n---\nnothing to do\n"


def _claimed_ns(inbox: Path, name: str, seen_ns: int) -> tuple[int, bool]:
    """When ``name.working`` appeared: its ctime (the claim's rename), else when it was seen."""
    try:
        return os.lstat(inbox / (name + ".working")).st_ctime_ns, True
    except FileNotFoundError:
        return seen_ns, False


def _measure(
    ws: Workspace, projects: list[Path], count: int, prefix: str
) -> tuple[list[float], int]:
    """Rename ``count`` tasks in one by one: ms from rename to claim; how many read a ctime."""
    samples, stamped = [], 0
    with Inotify() as watch:
        for project in projects:
            watch.add(project / ".agent-queue" / "inbox", IN_MOVED_TO)
        for i in range(count):
            queue = projects[i % len(projects)] / ".agent-queue"
            name = f"{prefix}{i:05d}.md"
            (queue / "tmp" / name).write_text(BODY)
            began = time.time_ns()
            os.rename(queue / "tmp" / name, queue / "inbox" / name)
            seen = watch.wait_name(name + ".working", 30)
            if seen is None:
                raise BenchError(f"{name} was not claimed within 30 s:\n{ws.tail()}")
            claimed, from_ctime = _claimed_ns(queue / "inbox", name, seen.read_ns)
            stamped += from_ctime
            samples.append((claimed - began) / 1e6)
            wait_until((queue / "done" / name).exists, 30, f"{name} in done/", interval=0.001)
            time.sleep(random.uniform(0.01, 0.03))  # the daemon is idle when the next one comes
    return samples, stamped


def floor(count: int) -> list[float]:
    """Milliseconds from a rename to a plain inotify watcher reading it (no daemon)."""
    samples = []
    with tempfile.TemporaryDirectory(prefix="agentq-bench-floor-") as tmp, Inotify() as watch:
        src, dst = Path(tmp) / "tmp", Path(tmp) / "inbox"
        src.mkdir()
        dst.mkdir()
        watch.add(dst, IN_MOVED_TO)
        for i in range(count):
            name = f"f{i:05d}.md"
            (src / name).write_text(BODY)
            began = time.time_ns()
            os.rename(src / name, dst / name)
            seen = watch.wait_name(name, 5)
            if seen is None:
                raise BenchError("the floor watcher saw nothing")
            samples.append((seen.read_ns - began) / 1e6)
            time.sleep(0.002)
    return samples


def run(ctx: Context) -> list[Figure]:
    """Measure pickup, its floor and its polling baseline; compare with /metrics."""
    count = ctx.size(200, 5)
    base_count = ctx.size(15, 2)
    with workspace("pickup") as ws:
        projects = ws.projects(PROJECTS)
        ws.start(ws.config(agent={"profile": "instant"}))
        samples, stamped = _measure(ws, projects, count, "t")
        text = ws.metrics()
    floor_ms = floor(count)
    with workspace("pickup-poll") as ws:
        projects = ws.projects(PROJECTS)
        poll = {"watch": "poll", "poll_interval": "1s"}
        ws.start(ws.config(agent={"profile": "instant"}, dispatch=poll))
        baseline, _ = _measure(ws, projects, base_count, "b")
    fig = Figure("pickup: renamed in → claimed", "ms", samples)
    fig.target = "p50 ≤ 2 ms, p99 ≤ 20 ms; ≥ 250x baseline"
    floor_med = Figure("", "ms", floor_ms).median
    base_med = Figure("", "ms", baseline).median
    fig.ok = fig.median <= 2 and fig.p99 <= 20 and base_med / fig.median >= 250
    fig.reference = (
        f"floor (inotify) {fmt(floor_med, 'ms')}; baseline (poll 1s) {fmt(base_med, 'ms')}"
    )
    fig.ratio = f"{ratio(fig.median, floor_med, 'floor')}; {ratio(base_med, fig.median, 'faster')}"
    agree = metrics_agreement(text, "agentq_pickup_latency_seconds", fig.median / 1000, "")
    fig.note = f"p99 {fmt(fig.p99, 'ms')}; claim times from ctime {stamped}/{count}; {agree}"
    floor_fig = Figure("floor: plain inotify watcher, rename", "ms", floor_ms)
    base_fig = Figure("baseline: dispatch.watch poll, 1 s", "ms", baseline)
    return [fig, floor_fig, base_fig]
