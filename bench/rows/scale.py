"""Row 6, scale: a start-up backlog, many watched inboxes, a big task index.

1,000 projects (1,000 watched inboxes), 10 pending tasks in each (10,000) and 100
results in each ``done/`` (100,000), all written before the daemon starts, with an mtime
in the past (complete). The daemon runs the ``sim`` profile with a pool of one: READY
comes after recovery and the first scan of every inbox (every pending file vetted),
not after the work. Start-up is timed from the process start to ``READY=1`` on the
bench's ``NOTIFY_SOCKET``. Then ``GET /api/tasks?state=done`` (the first page, through
HTTP with the token) is timed 50 times: the API answers from its task index, not by
listing the folders.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from bench.report import Figure
from bench.rows import Context
from bench.workspace import workspace

TASK = b"---\ntitle: backlog\n---\nwaiting\n"
RESULT = b"---\ntitle: old\n---\ndone long ago\n\n---\nagentq: done\n---\n"


def _fill(projects: list[Path], pending: int, done: int) -> None:
    """Write the backlog and the old results directly (the daemon is not running yet)."""
    past = time.time() - 3600
    for project in projects:
        queue = project / ".agent-queue"
        for i in range(pending):
            path = queue / "inbox" / f"p{i:03d}.md"
            path.write_bytes(TASK)
            os.utime(path, (past, past))
        for i in range(done):
            (queue / "done" / f"d{i:04d}.md").write_bytes(RESULT)


def run(ctx: Context) -> list[Figure]:
    """Time start-up with the backlog, then the API's task listing."""
    inboxes = ctx.size(1000, 10)
    pending = 1 if ctx.smoke else 10
    done = 10 if ctx.smoke else 100
    requests = ctx.size(50, 3)
    with workspace("scale") as ws:
        projects = ws.projects(inboxes)
        _fill(projects, pending, done)
        config = ws.config(
            agent={"profile": "sim"},
            pool={"prefix": "bs-", "min": 0, "max": 1},
            completion={"idle_timeout": "1h"},
        )
        ready = ws.start(config)
        ws.api_url()
        latencies = []
        for _ in range(requests):
            began = time.perf_counter()
            ws.get("/api/tasks?state=done")
            latencies.append((time.perf_counter() - began) * 1000)
    start = Figure("start-up to READY", "s", [ready], target="≤ 5 s", ok=ready <= 5)
    start.note = (
        f"{inboxes * pending} pending tasks, {inboxes} inboxes, {inboxes * done} files in done/"
    )
    listing = Figure("GET /api/tasks?state=done", "ms", latencies, target="p50 ≤ 50 ms")
    listing.ok = listing.median <= 50
    return [start, listing]
