"""Benchmark: tasks per second through the queue with the ``instant`` executor.

Drops N tasks into P inboxes, starts the daemon in-process (start-up recovery and
the first scan process every pre-existing task before READY), and prints figures.
Usage: ``python bench/queue_throughput.py [N] [P] [--profile]``.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

from agentq.config.load import config_from_dict
from agentq.daemon.loop import Daemon


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    count = int(args[0]) if args else 2000
    inboxes = int(args[1]) if len(args) > 1 else 4
    root = Path(tempfile.mkdtemp(prefix="agentq-bench-"))
    for i in range(count):
        inbox = root / "projects" / f"p{i % inboxes}" / ".agent-queue" / "inbox"
        inbox.mkdir(parents=True, exist_ok=True)
        (inbox / f"t{i:06d}.md").write_text(f"---\ntitle: t{i}\n---\nbody {i}\n")
    past = time.time() - 60
    for path in (root / "projects").rglob("*.md"):
        os.utime(path, (past, past))
    env = {"HOME": str(root)}
    config = config_from_dict(
        {
            "state_dir": str(root / "state"),
            "projects": {"roots": [str(root / "projects")]},
            "agent": {"profile": "instant"},
        },
        env,
        root,
    )
    daemon = Daemon(config, env)
    daemon.state_dir.mkdir(parents=True, exist_ok=True)
    profiler = cProfile.Profile() if "--profile" in sys.argv else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    daemon.start()
    if profiler:
        profiler.disable()
    elapsed = time.perf_counter() - started
    daemon.watcher.stop()
    done = sum(1 for _ in (root / "projects").glob("*/.agent-queue/done/*.md"))
    print(f"tasks: {count} in {inboxes} inboxes, done: {done}")
    print(
        f"elapsed: {elapsed:.2f} s, {count / elapsed:.0f} tasks/s, "
        f"{elapsed / count * 1000:.2f} ms/task"
    )
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
