"""Row 8, delegation overhead: many tasks to a provider that answers at once.

A minimal ``job-api`` provider runs in the bench (a threaded HTTP server on 127.0.0.1:
``POST /jobs`` creates a job, keyed by its idempotency key; ``GET /jobs/{id}`` says it is
completed at once). The daemon routes every task to it (``preferred_ai``), polls it every
50 ms and writes each result to ``done/``. 1,000 tasks are renamed in at once; the clock
runs from the first rename to the last result. Daemon CPU per task from ``/proc``; the
provider's own CPU is the bench's and is not counted.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from bench.report import Figure
from bench.rows import Context
from bench.workspace import burst, failed_count, workspace

TASK = "---\npreferred_ai: bench\n---\nanswer at once\n"
KEY_ENV = "BENCH_JOB_API_KEY"


class _JobApi(BaseHTTPRequestHandler):
    """``POST /jobs`` and ``GET /jobs/{id}``: every job is completed as soon as it exists."""

    jobs: ClassVar[dict[str, str]] = {}
    lock: ClassVar[threading.Lock] = threading.Lock()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def _answer(self, status: int, doc: dict[str, Any]) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        key = self.headers.get("Idempotency-Key") or secrets.token_hex(8)
        with self.lock:
            job = self.jobs.setdefault(key, f"job-{len(self.jobs)}")
        self._answer(201, {"id": job})

    def do_GET(self) -> None:
        job = self.path.rsplit("/", 1)[-1]
        self._answer(
            200,
            {"status": "completed", "result": f"done: {job}", "provider": "bench", "model": "0"},
        )


@contextmanager
def job_api() -> Iterator[str]:
    """A job-api provider on a free loopback port; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _JobApi)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="job-api", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        _JobApi.jobs = {}


def run(ctx: Context) -> list[Figure]:
    """Delegate the tasks; tasks per second and daemon CPU per task."""
    count = ctx.size(1000, 10)
    projects_n = 2 if ctx.smoke else 10
    with job_api() as url, workspace("delegation") as ws:
        projects = ws.projects(projects_n)
        ws.extra_env[KEY_ENV] = secrets.token_hex(16)
        provider = {
            "name": "bench",
            "kind": "job-api",
            "base_url": url,
            "api_key_env": KEY_ENV,
            "poll_interval": "0.05s",
        }
        config = ws.config(
            agent={"profile": "instant"},
            delegation={"allow_by_default": True, "providers": [provider]},
        )
        ws.start(config)
        cpu0 = ws.cpu()
        with ws.profiled(ctx.profile, "delegation"):
            elapsed = burst(ws, projects, count, "d", TASK, 0.3)
        cpu = ws.cpu() - cpu0
        failed = failed_count(projects)
        created = len(_JobApi.jobs)
    rate = Figure("delegated tasks per second", "tasks/s", [count / elapsed])
    rate.note = f"{count} tasks, {projects_n} projects: {elapsed:.1f} s; {failed} failed"
    per_task = Figure("daemon CPU per delegated task", "ms", [cpu / count * 1000])
    per_task.note = f"{created} jobs created for {count} tasks (one per task)"
    return [rate, per_task]
