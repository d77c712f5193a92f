"""Row 3, hook cost: the exact command the daemon wrote into the account's ``settings.json``.

The daemon is started once (with the ``sim`` profile and no session) so that it merges
its hooks; the bench reads the ``Stop`` command from the file it wrote and runs it the
way Claude Code does (``/bin/sh -c <command>``, the payload on stdin: a real ``Stop``
payload from ``tests/fixtures/hooks/``), with ``AGENTQ_SESSION`` set as in a pool
session. Wall time per call (median of many) and CPU (the children's rusage). The floor
is ``cat > file`` run the same way in the same run.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import time
from pathlib import Path

import agentq
from bench.report import Figure, fmt, ratio
from bench.rows import Context
from bench.workspace import BenchError, Workspace, workspace

REPO = Path(__file__).resolve().parent.parent.parent
PAYLOAD = REPO / "tests" / "fixtures" / "hooks" / "2.1.197" / "Stop.json"
#: The account home's settings the daemon merges its hooks into (HOME/.claude without accounts).
SETTINGS = Path(".claude") / "settings.json"


def hook_command(ws: Workspace, event: str = "Stop") -> str:
    """Our command for ``event`` in the settings.json the daemon wrote."""
    settings = json.loads((ws.home / SETTINGS).read_text())
    for group in settings["hooks"][event]:
        for hook in group.get("hooks", []):
            command = str(hook.get("command", ""))
            if "agentq" in command:
                return command
    raise BenchError(f"no agentq hook for {event} in {ws.home / SETTINGS}")


def merged_hooks(ws: Workspace) -> str:
    """Start the daemon once so it writes its hooks; return the Stop command."""
    ws.start(ws.config(agent={"profile": "sim"}, pool={"prefix": "bh-", "min": 0, "max": 1}))
    ws.stop()
    return hook_command(ws)


def time_command(
    command: str, payload: bytes, env: dict[str, str], cwd: Path, runs: int
) -> tuple[list[float], float]:
    """Run ``/bin/sh -c command`` ``runs`` times: wall ms per run, CPU ms per run (mean)."""
    walls = []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run(["/bin/sh", "-c", command], input=payload, env=env, cwd=cwd, check=True)
        walls.append((time.perf_counter() - began) * 1000)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return walls, cpu * 1000 / runs


def hook_cost(ws: Workspace, command: str, runs: int) -> tuple[Figure, Figure, float, float]:
    """Measure the hook and ``cat > file``: (hook figure, cat figure, hook CPU, cat CPU) in ms."""
    payload = PAYLOAD.read_bytes()
    env = {**ws.env(), "AGENTQ_SESSION": "bh-0"}
    cwd = ws.root
    sink = ws.root / "cat-sink"
    floor = f"cat > {sink}"
    # Interleaved in blocks, so a burst of load on the machine hits both alike.
    hook_walls: list[float] = []
    cat_walls: list[float] = []
    hook_cpu = cat_cpu = 0.0
    blocks = max(1, runs // 5)
    for _ in range(blocks):
        walls, cpu = time_command(command, payload, env, cwd, 5)
        hook_walls += walls
        hook_cpu += cpu / blocks
        walls, cpu = time_command(floor, payload, env, cwd, 5)
        cat_walls += walls
        cat_cpu += cpu / blocks
    signals = ws.state_dir / "signals"
    written = sum(1 for e in os.scandir(signals) if not e.name.startswith("."))
    if written < len(hook_walls):
        raise BenchError(f"the hook wrote {written} signal files for {len(hook_walls)} calls")
    return (
        Figure("hook: wall per call", "ms", hook_walls),
        Figure("", "ms", cat_walls),
        hook_cpu,
        cat_cpu,
    )


def shown_command(command: str, ws: Workspace) -> str:
    """The command as the table shows it: the package and the workspace named, not their paths."""
    package = Path(agentq.__file__).resolve().parent
    return command.replace(str(package), "<agentq>").replace(str(ws.root), "<workspace>")


def run(ctx: Context) -> list[Figure]:
    """Measure the hook command against ``cat > file``."""
    runs = ctx.size(50, 5)
    with workspace("hooks") as ws:
        command = merged_hooks(ws)
        hook, cat, hook_cpu, cat_cpu = hook_cost(ws, command, runs)
    cat.label = "floor: cat > file, wall per call"
    hook.target = "median ≤ 20 ms and ≤ 10x cat"
    hook.ok = hook.median <= 20 and hook.median <= 10 * cat.median
    hook.reference = f"cat > file {fmt(cat.median, 'ms')}"
    hook.ratio = ratio(hook.median, cat.median, "cat")
    hook.note = f"command: {shown_command(command, ws)}"
    cpu = Figure("hook: CPU per call", "ms", [hook_cpu])
    cpu.reference = f"cat > file {fmt(cat_cpu, 'ms')}"
    cpu.ratio = ratio(hook_cpu, cat_cpu, "cat")
    return [hook, cat, cpu]
