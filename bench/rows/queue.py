"""Row 9, the queue alone: the ``instant`` executor, and dead notification targets.

No agent: every task completes as it is claimed, so this is the queue protocol's own
cost (vet, claim, parse, footer, no-clobber move, fsyncs) and the event log's. 2,000
tasks over 4 inboxes are renamed in at once after READY; tasks per second and daemon CPU
per task. Then 500 tasks that fail (invalid frontmatter: each one a ``task_failed``
notification) with and without three dead targets (a webhook on a closed port, a
webhook that accepts and never answers, an Apprise ``json://`` that never answers;
``min_interval: 0``, the worst case): a dead target must not slow the queue.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.report import Figure, ratio
from bench.rows import Context
from bench.workspace import Workspace, burst, workspace

GOOD = "---\ntitle: queue\n---\nnothing to do\n"
BAD = "---\ntitle: [unclosed\n---\nbody\n"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def dead_targets() -> Iterator[list[dict[str, Any]]]:
    """Three notification targets that never deliver (sockets that accept and never answer)."""
    with socket.socket() as hole, socket.socket() as hole2:
        for sock in (hole, hole2):
            sock.bind(("127.0.0.1", 0))
            sock.listen(1024)
        targets: list[dict[str, Any]] = [
            {"kind": "webhook", "url": f"http://127.0.0.1:{_closed_port()}/hook/TOKEN"},
            {"kind": "webhook", "url": f"http://127.0.0.1:{hole.getsockname()[1]}/hook"},
            {"kind": "apprise", "url": f"json://127.0.0.1:{hole2.getsockname()[1]}/x"},
        ]
        yield [{**t, "min_interval": "0s", "timeout": "2s"} for t in targets]


def _burst(ws: Workspace, projects: list[Path], count: int, body: str) -> tuple[float, float]:
    """Rename ``count`` tasks in at once: (seconds to the last result, daemon CPU seconds)."""
    cpu0 = ws.cpu()
    elapsed = burst(ws, projects, count, "q", body, 0.1)
    return elapsed, ws.cpu() - cpu0


def _failing(count: int, targets: list[dict[str, Any]]) -> float:
    with workspace("queue-notify") as ws:
        projects = ws.projects(4)
        ws.start(ws.config(agent={"profile": "instant"}, notifications=targets))
        elapsed, _ = _burst(ws, projects, count, BAD)
    return count / elapsed


def run(ctx: Context) -> list[Figure]:
    """The instant executor's throughput, then failing tasks with and without dead targets."""
    count = ctx.size(2000, 20)
    failing = ctx.size(500, 10)
    with workspace("queue") as ws:
        projects = ws.projects(4)
        ws.start(ws.config(agent={"profile": "instant"}))
        elapsed, cpu = _burst(ws, projects, count, GOOD)
    rate = Figure("instant executor: tasks per second", "tasks/s", [count / elapsed])
    rate.note = f"{count} tasks over 4 inboxes in {elapsed:.1f} s"
    per_task = Figure("instant executor: daemon CPU per task", "ms", [cpu / count * 1000])
    alone = _failing(failing, [])
    with dead_targets() as targets:
        dead = _failing(failing, targets)
    notify = Figure("failing tasks, 3 dead notification targets", "tasks/s", [dead])
    notify.reference = f"no targets {alone:.0f} tasks/s"
    notify.ratio = ratio(dead, alone, "of it")
    notify.note = f"{failing} tasks, each a task_failed notification (min_interval 0)"
    return [rate, per_task, notify]
