"""Benchmark: does a dead notification target slow the queue? Tasks per second with and without.

Drops N tasks that fail (invalid frontmatter, so each one is a ``task_failed`` notification)
into P inboxes and runs the daemon in-process with the ``instant`` executor, as
``queue_throughput.py`` does, first without notification targets, then with three dead
ones: a webhook on a port nothing listens on, a webhook that accepts and never answers, and
an Apprise ``json://`` target that never answers. ``min_interval: 0`` makes every failure a
delivery attempt (the worst case). Usage: ``python bench/notify_throughput.py [N] [P] [runs]``.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from agentq.config.load import config_from_dict
from agentq.daemon.loop import Daemon


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(count: int, inboxes: int, targets: list[dict[str, Any]]) -> tuple[float, float, int, int]:
    """Process ``count`` failing tasks; return (seconds, CPU seconds, failed, delivery attempts).

    CPU seconds are the whole process's (the notifier's threads included): on a busy machine
    they vary less than the wall time.
    """
    root = Path(tempfile.mkdtemp(prefix="agentq-bench-"))
    for i in range(count):
        inbox = root / "projects" / f"p{i % inboxes}" / ".agent-queue" / "inbox"
        inbox.mkdir(parents=True, exist_ok=True)
        (inbox / f"t{i:06d}.md").write_text("---\ntitle: [unclosed\n---\nbody\n")
    past = time.time() - 60
    for path in (root / "projects").rglob("*.md"):
        os.utime(path, (past, past))
    env = {"HOME": str(root)}
    config = config_from_dict(
        {
            "state_dir": str(root / "state"),
            "projects": {"roots": [str(root / "projects")]},
            "agent": {"profile": "instant"},
            "notifications": targets,
        },
        env,
        root,
    )
    daemon = Daemon(config, env)
    daemon.state_dir.mkdir(parents=True, exist_ok=True)
    started, cpu = time.perf_counter(), time.process_time()
    daemon.start()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    daemon.watcher.stop()
    assert daemon.notifications is not None
    daemon.notifications.stop(deadline=1.0)
    failed = sum(1 for _ in (root / "projects").glob("*/.agent-queue/failed/*.md"))
    attempts = len(daemon.notifications.history())
    shutil.rmtree(root)
    return elapsed, cpu, failed, attempts


def main() -> None:
    args = [int(a) for a in sys.argv[1:]]
    count = args[0] if args else 500
    inboxes = args[1] if len(args) > 1 else 4
    runs = args[2] if len(args) > 2 else 3
    logging.basicConfig(level=logging.CRITICAL)  # a line per failed task and delivery otherwise
    with socket.socket() as hole, socket.socket() as hole2:
        for sock in (hole, hole2):
            sock.bind(("127.0.0.1", 0))
            sock.listen(1024)  # accepts (the kernel does), never answers
        dead = [
            {"kind": "webhook", "url": f"http://127.0.0.1:{closed_port()}/hook/TOKEN"},
            {"kind": "webhook", "url": f"http://127.0.0.1:{hole.getsockname()[1]}/hook"},
            {"kind": "apprise", "url": f"json://127.0.0.1:{hole2.getsockname()[1]}/x"},
        ]
        dead = [{**t, "min_interval": 0, "timeout": "2s"} for t in dead]
        for label, targets in (("no targets", []), ("3 dead targets", dead)):
            for _ in range(runs):
                elapsed, cpu, failed, attempts = run(count, inboxes, targets)
                print(
                    f"{label:>15}: {failed} tasks failed in {elapsed:.2f} s, "
                    f"{count / elapsed:.0f} tasks/s, {cpu / count * 1000:.2f} ms CPU/task, "
                    f"{attempts} delivery attempts"
                )


if __name__ == "__main__":
    main()
