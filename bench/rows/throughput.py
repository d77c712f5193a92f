"""Row 4, throughput: many tasks over many projects through a pool of sim sessions.

2,000 tasks over 20 projects (``sim: work 0s``: the sims answer at once), a pool of 8
sessions, recycle on (every task gets a fresh agent: ``/exit`` and a relaunch). The
tasks are renamed into the inboxes as fast as the bench can, once the pool is up; the
clock runs from the first rename to the last result in ``done/``. Daemon CPU per task
comes from ``/proc/<pid>/stat`` (utime + stime) over the same span. The hooks' CPU per
task is the hook command's CPU per call (measured here, as in row 3) times the hook calls
per task (the daemon's ``agentq_hook_signals_total`` over the tasks). The tmux server's
CPU per task is shown beside it.
"""

from __future__ import annotations

import math
import re

from bench import procstat
from bench.report import Figure, fmt
from bench.rows import Context
from bench.rows.delivery import all_idle, sim_config
from bench.rows.hooks import hook_command, hook_cost
from bench.workspace import burst, failed_count, wait_until, workspace

TASK = "---\ntitle: throughput\n---\nthroughput task\nsim: work 0s\n"


def hook_calls(metrics: str) -> float:
    """The hook signals the daemon received (every event)."""
    found = re.findall(r"^agentq_hook_signals_total\{[^}]*\} (\S+)$", metrics, re.MULTILINE)
    return sum(float(x) for x in found)


def _cpu(pid: int | None) -> tuple[float, float]:
    """(own, waited-for children's) CPU seconds of ``pid``; NaN when it is unknown."""
    if pid is None:
        return math.nan, math.nan
    own = procstat.cpu_seconds(pid)
    return own, procstat.cpu_seconds(pid, children=True) - own


def run(ctx: Context) -> list[Figure]:
    """Push the tasks through the pool; tasks per second and where the CPU went, per task."""
    count = ctx.size(2000, 12)
    projects_n = 3 if ctx.smoke else 20
    pool = 2 if ctx.smoke else 8
    with workspace("throughput") as ws:
        projects = ws.projects(projects_n)
        ws.anchor_tmux()
        ws.start(sim_config(ws, pool))
        wait_until(lambda: all_idle(ws, pool), 120, "an idle pool", interval=0.1)
        tmux = ws.tmux_pid()
        signals_before = hook_calls(ws.metrics())
        daemon0, server0 = _cpu(ws.pid), _cpu(tmux)
        with ws.profiled(ctx.profile, "throughput"):
            elapsed = burst(ws, projects, count, "t", TASK, 0.5)
        daemon1, server1 = _cpu(ws.pid), _cpu(tmux)
        failed = failed_count(projects)
        calls = hook_calls(ws.metrics()) - signals_before
        ws.stop()  # the hook's cost alone, on the same machine, right after the run
        _, _, hook_cpu_ms, _ = hook_cost(ws, hook_command(ws), ctx.size(10, 5))
    per = {
        "daemon": daemon1[0] - daemon0[0],
        "tmux clients": daemon1[1] - daemon0[1],
        "tmux server": server1[0] - server0[0],
        "agents and their hooks": server1[1] - server0[1],
    }
    per = {k: v / count * 1000 for k, v in per.items()}
    rate = count / elapsed
    fig = Figure("throughput", "tasks/s", [rate], target="≥ 10 tasks/s", ok=rate >= 10)
    total = sum(per.values())
    cores = procstat.machine()["nproc"]
    fig.reference = f"CPU ceiling {cores} cores / {fmt(total, 'ms')} per task"
    fig.ratio = f"{cores * 1000 / total:.1f} tasks/s" if total else "-"
    fig.note = (
        f"{count} tasks, {projects_n} projects, {pool} sims, recycle on: {elapsed:.1f} s; "
        f"{failed} failed"
    )
    daemon = Figure("daemon CPU per task", "ms", [per["daemon"]], target="≤ 10 ms")
    daemon.ok = per["daemon"] <= 10
    hooks = Figure("hooks' CPU per task", "ms", [hook_cpu_ms * calls / count])
    hooks.note = f"{calls / count:.1f} hook calls per task × {fmt(hook_cpu_ms, 'ms')} CPU each"
    rest = [Figure(f"{name} CPU per task", "ms", [per[name]]) for name in list(per)[1:]]
    rest[-1].note = "the sims and the hooks they ran: reaped by the tmux server"
    return [fig, daemon, hooks, *rest]
