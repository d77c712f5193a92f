"""Row 2, delivery: claimed → the agent busy on the task (sim sessions, ready and waiting).

One project, a pool of ``sim`` sessions started in it, one task at a time, each dropped
once every session is idle again (recycling included). The clock starts when the bench's
inotify watch sees ``x.md.working`` (the claim) and stops when the agent went busy: the
time its ``UserPromptSubmit`` hook (which runs as it starts the turn) stamped on the
signal file it wrote, read from the file's name (``<ns>-UserPromptSubmit-<pid>.sig``) as
the bench's watch on ``signals/`` sees it appear. Neither is reported by the daemon.

Baseline, in the same run and on the same tmux server: what the system agentq descends
from did, a paste, a fixed 500 ms sleep, then Enter, into a sim session of the bench's own,
timed from the paste to the same hook. The daemon's ``agentq_delivery_latency_seconds``
histogram is compared with the bench's median at the end.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bench.inotify import IN_MOVED_TO, Event, Inotify
from bench.report import Figure, fmt, ratio
from bench.rows import Context, metrics_agreement
from bench.workspace import BenchError, Workspace, drop, wait_until, workspace

TASK = "deliver me\nsim: work 0s\n"
BASELINE_SLEEP = 0.5


def sim_config(ws: Workspace, pool: int, **extra: object) -> dict[str, object]:
    """A ``sim`` pool of ``pool`` sessions (min = max), recycle on, the bench's sizes."""
    sections: dict[str, object] = {
        "agent": {"profile": "sim"},
        "pool": {"prefix": "bq-", "min": pool, "max": pool},
        "dispatch": {"delivery_timeout": "20s"},
        "completion": {"idle_timeout": "120s", "recycle": True},
    }
    sections.update(extra)
    return ws.config(**sections)


def all_idle(ws: Workspace, count: int) -> bool:
    """Whether the API shows ``count`` pool sessions, every one idle."""
    sessions = ws.get_json("/api/sessions")
    rows = sessions.get("sessions", sessions) if isinstance(sessions, dict) else sessions
    states = [s.get("state") for s in rows]
    return len(states) == count and all(state == "idle" for state in states)


def _is_prompt_signal(event: Event) -> bool:
    return "-UserPromptSubmit-" in event.name and not event.name.startswith(".")


def hook_ns(event: Event) -> int:
    """When the hook ran (its own stamp in the signal file's name), else when the bench saw it."""
    stamp = event.name.split("-", 1)[0]
    return int(stamp) if stamp.isdigit() and len(stamp) >= 19 else event.read_ns


def _measure(ws: Workspace, project: Path, pool: int, count: int) -> list[float]:
    samples = []
    with Inotify() as watch:
        watch.add(project / ".agent-queue" / "inbox", IN_MOVED_TO)
        watch.add(ws.state_dir / "signals", IN_MOVED_TO)
        for i in range(count):
            wait_until(lambda: all_idle(ws, pool), 60, "an idle pool", interval=0.05)
            watch.drain()
            name = f"d{i:04d}.md"
            drop(project, name, TASK)
            claimed = watch.wait_name(name + ".working", 30)
            if claimed is None:
                raise BenchError(f"{name} not claimed:\n{ws.tail()}")
            busy = watch.wait_for(_is_prompt_signal, 30)
            if busy is None:
                raise BenchError(f"{name}: no UserPromptSubmit within 30 s:\n{ws.tail()}")
            samples.append((hook_ns(busy) - claimed.read_ns) / 1e6)
            done = project / ".agent-queue" / "done" / name
            wait_until(done.exists, 60, f"{name} in done/")
    return samples


def _tmux(ws: Workspace, *args: str, data: bytes | None = None) -> str:
    argv = ["tmux", "-L", ws.socket_name, *args]
    out = subprocess.run(argv, input=data, env=ws.env(), capture_output=True, check=True)
    return out.stdout.decode()


def baseline(ws: Workspace, project: Path, count: int) -> list[float]:
    """Paste, sleep 500 ms, Enter into a sim of the bench's own; ms from paste to the hook."""
    home = ws.home / ".claude"
    env = [f"CLAUDE_CONFIG_DIR={home}", "AGENTQ_SESSION=bench-base"]
    argv = ["new-session", "-d", "-s", "bench-base", "-c", str(project), "-x", "200", "-y", "50"]
    for item in env:
        argv += ["-e", item]
    _tmux(ws, *argv, f"exec {sys.executable} -m agentq.sim")
    ready = "\u276f\u00a0"
    wait_until(lambda: ready in _tmux(ws, "capture-pane", "-p", "-t", "=bench-base:"), 30, "sim")
    samples = []
    with Inotify() as watch:
        watch.add(ws.state_dir / "signals", IN_MOVED_TO)
        for i in range(count):
            text = f"baseline {i}\n{TASK}".encode()
            watch.drain()
            began = time.time_ns()
            _tmux(ws, "load-buffer", "-b", "bench", "-", data=text)
            _tmux(ws, "paste-buffer", "-p", "-d", "-b", "bench", "-t", "=bench-base:")
            time.sleep(BASELINE_SLEEP)
            _tmux(ws, "send-keys", "-t", "=bench-base:", "Enter")
            busy = watch.wait_for(_is_prompt_signal, 30)
            if busy is None:
                raise BenchError("the baseline sim never took its prompt")
            samples.append((hook_ns(busy) - began) / 1e6)
            watch.wait_for(lambda e: "-Stop-" in e.name, 30)
    _tmux(ws, "kill-session", "-t", "=bench-base")
    return samples


def run(ctx: Context) -> list[Figure]:
    """Measure delivery into ready sim sessions, and the paste-sleep-Enter baseline."""
    pool = ctx.size(4, 2)
    count = ctx.size(40, 3)
    with workspace("delivery") as ws:
        (project,) = ws.projects(1)
        ws.start(sim_config(ws, pool))
        samples = _measure(ws, project, pool, count)
        text = ws.metrics()
        wait_until(lambda: all_idle(ws, pool), 60, "an idle pool")
        base = baseline(ws, project, ctx.size(5, 1))
    fig = Figure("delivery: claimed → agent busy", "ms", samples)
    base_fig = Figure("baseline: paste, sleep 500 ms, Enter", "ms", base)
    fig.target = "p50 ≤ 100 ms"
    fig.ok = fig.median <= 100
    fig.reference = f"paste + 500 ms sleep + Enter {fmt(base_fig.median, 'ms')}"
    fig.ratio = ratio(base_fig.median, fig.median, "faster")
    fig.note = metrics_agreement(text, "agentq_delivery_latency_seconds", fig.median / 1000, "")
    return [fig, base_fig]
