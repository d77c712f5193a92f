"""Row 7, swap: a usage limit with a reset time → the pool relaunched on the next account,
every cut task busy again.

Two accounts (``a``, ``b``: homes sharing their state through ``shared.root``), a pool of
8 sim sessions, all idle on ``a``. The bench makes ``a`` hit its limit (the sim's
``sim-quota`` file in its home: every prompt on it ends at the limit, with a reset time)
and drops 8 tasks, one per session (their project lets them all run at once; each is
checked to have been cut and resumed). The clock starts at the first ``StopFailure`` hook
(its stamp in its signal file's name: the agent reporting the limit) and stops when every
one of the 8 tasks has been seen busy on account ``b`` in ``GET /api/sessions`` (polled
every 20 ms). The swap the daemon recorded is shown beside it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from agentq.queue.taskfile import split_footer
from bench.inotify import IN_MOVED_TO, Inotify
from bench.report import Figure
from bench.rows import Context
from bench.rows.delivery import all_idle, hook_ns
from bench.workspace import BenchError, Workspace, drop, wait_until, workspace

TASK = "cut by the limit\nsim: work 5s\n"
LIMIT = "resets 11pm (UTC)"


def _config(ws: Workspace, pool: int) -> dict[str, Any]:
    for name in ("claude-a", "claude-b"):
        (ws.root / name).mkdir()
    return ws.config(
        agent={"profile": "sim"},
        accounts=[
            {"name": "a", "home": str(ws.root / "claude-a")},
            {"name": "b", "home": str(ws.root / "claude-b")},
        ],
        active_link=str(ws.home / ".claude"),
        shared={"root": str(ws.root / "claude-shared")},
        pool={"prefix": "bw-", "min": pool, "max": pool},
        # One project whose tasks may all run at once (its default is one at a time in the
        # checkout): every session holds a task when the limit cuts them.
        dispatch={"delivery_timeout": "20s", "max_parallel": pool},
        completion={"idle_timeout": "120s", "recycle": True},
        quota={"cooldown": "1s"},
    )


def _busy_on(ws: Workspace, account: str, seen: dict[str, float]) -> None:
    """Note, per task, the first time the API shows it busy on ``account``."""
    doc: Any = ws.get_json("/api/sessions")
    now = time.time()
    for s in doc.get("sessions", []):
        task = s.get("task")
        if task and s.get("state") == "busy" and s.get("account") == account:
            seen.setdefault(str(task), now)


def _measure(ws: Workspace, project: Path, pool: int) -> tuple[float, float]:
    """Seconds from the first limit hook to every task busy on ``b``; and to the swap."""
    (ws.root / "claude-a" / "sim-quota").write_text(LIMIT)
    seen: dict[str, float] = {}
    with Inotify() as watch:
        watch.add(ws.state_dir / "signals", IN_MOVED_TO)
        for i in range(pool):
            drop(project, f"cut{i:02d}.md", TASK)
        limit = watch.wait_for(lambda e: "-StopFailure-" in e.name, 60)
        if limit is None:
            raise BenchError(f"no StopFailure within 60 s:\n{ws.tail()}")
        deadline = time.monotonic() + 60
        while len(seen) < pool:
            if time.monotonic() > deadline:
                raise BenchError(f"{len(seen)} of {pool} tasks busy on b:\n{ws.tail()}")
            _busy_on(ws, "b", seen)
            time.sleep(0.02)
    began = hook_ns(limit) / 1e9
    swaps = ws.get_json("/api/status").get("swaps", [])
    swapped = _epoch(swaps[-1].get("time")) if swaps else float("nan")
    _check_all_cut(project, pool, ws)
    return max(seen.values()) - began, swapped - began


def _check_all_cut(project: Path, pool: int, ws: Workspace) -> None:
    """Every task was cut and resumed (none merely waited for a session): its footer says so."""
    done = project / ".agent-queue" / "done"
    wait_until(lambda: len(list(done.glob("cut*.md"))) == pool, 60, "the cut tasks done")
    resumed = 0
    for path in done.glob("cut*.md"):
        _, footer = split_footer(path.read_text())
        resumed += footer is not None and "resumed" in dict(footer.details)
    if resumed != pool:
        raise BenchError(f"{resumed} of {pool} tasks were cut and resumed:\n{ws.tail()}")


def _epoch(text: Any) -> float:
    from datetime import datetime

    return datetime.fromisoformat(str(text)).timestamp() if text else float("nan")


def run(ctx: Context) -> list[Figure]:
    """Time one swap with a pool of sims cut mid-task."""
    pool = 2 if ctx.smoke else 8
    with workspace("swap") as ws:
        (project,) = ws.projects(1)
        ws.anchor_tmux()
        ws.start(_config(ws, pool))
        wait_until(lambda: all_idle(ws, pool), 120, "an idle pool", interval=0.1)
        total, decided = _measure(ws, project, pool)
    fig = Figure("quota → every cut task busy on the next account", "s", [total])
    fig.target = "≤ 5 s"
    fig.ok = total <= 5
    fig.note = f"pool of {pool} sims, 2 accounts; the swap was recorded {decided:.2f} s in"
    return [fig]
