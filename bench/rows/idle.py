"""Row 5, idle: a pool of sim sessions and many watched inboxes, nothing to do.

50 sim sessions (min = max, so all are up and idle) and 1,000 inboxes. Once every
session is idle and a few seconds have passed, the bench reads the daemon's and the
tmux server's CPU time (``/proc/<pid>/stat``) and the main loop's pass count
(``GET /watchdog/status``, which reads the last snapshot and wakes nothing), waits 60 s,
and reads them again. Each pass lists the panes of every session in one tmux query
(``list-panes -a``) only when a session is due: passes per second while idle is the
polling rate. RSS (``VmRSS``) and the thread count are read at the end.
"""

from __future__ import annotations

import time
from typing import Any

from bench import procstat
from bench.report import Figure
from bench.rows import Context
from bench.rows.delivery import all_idle, sim_config
from bench.workspace import Workspace, wait_until, workspace

SETTLE = 5.0


def _passes(ws: Workspace) -> int:
    doc: Any = ws.get_json("/watchdog/status")
    return int(doc["loop"]["passes"])


def run(ctx: Context) -> list[Figure]:
    """Measure the idle cost of the daemon and the tmux server."""
    sessions = ctx.size(50, 3)
    inboxes = ctx.size(1000, 20)
    window = 3.0 if ctx.smoke else 60.0
    with workspace("idle") as ws:
        ws.projects(inboxes)
        ws.anchor_tmux()
        ws.start(sim_config(ws, sessions))
        wait_until(lambda: all_idle(ws, sessions), 300, "an idle pool", interval=0.5)
        time.sleep(0.5 if ctx.smoke else SETTLE)
        tmux = ws.tmux_pid()
        assert tmux is not None
        passes0, cpu0, tmux0 = _passes(ws), ws.cpu(), procstat.cpu_seconds(tmux)
        began = time.monotonic()
        with ws.profiled(ctx.profile, "idle"):
            time.sleep(window)
        elapsed = time.monotonic() - began
        passes, cpu = _passes(ws) - passes0, ws.cpu() - cpu0
        tmux_cpu = procstat.cpu_seconds(tmux) - tmux0
        rss, threads = procstat.rss_mb(ws.pid), procstat.threads(ws.pid)
        tmux_rss = procstat.rss_mb(tmux)
    share = (cpu + tmux_cpu) / elapsed * 100
    fig = Figure("daemon + tmux server CPU", "% of a core", [share])
    fig.target = "≤ 0.5 %"
    fig.ok = share <= 0.5
    fig.note = (
        f"{sessions} sims, {inboxes} inboxes, {elapsed:.0f} s: daemon {cpu / elapsed * 100:.2f} %, "
        f"tmux server {tmux_cpu / elapsed * 100:.2f} %"
    )
    memory = Figure("daemon RSS", "MB", [rss], target="≤ 80 MB", ok=rss <= 80)
    memory.note = f"{threads} threads; tmux server RSS {tmux_rss:.0f} MB"
    polls = Figure("main-loop passes while idle", "per s", [passes / elapsed])
    polls.target = "well under 10 per s"
    polls.ok = passes / elapsed < 1
    return [fig, memory, polls]
