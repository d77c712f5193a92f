"""The task index at scale: 100,000 finished tasks, listed without a folder walk per request."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import pytest

from tests.support.api import ApiDaemon

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DONE_FILES = 100_000
P50_LIMIT = 0.050


def _fill(done: Path, count: int) -> None:
    text = b"---\ntitle: archived\n---\nbody\n"
    for i in range(count):
        fd = os.open(done / f"t{i:06d}.md", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, text)
        os.close(fd)


def test_listing_done_tasks_stays_fast_with_100000_files(tmp_path: Path) -> None:
    """GET /api/tasks?state=done: p50 ≤ 50 ms over 100,000 files in done/ (and pages go deep)."""
    api = ApiDaemon(tmp_path, {"agent": {"profile": "instant"}}, projects=2)
    _fill(api.projects[0] / ".agent-queue" / "done", DONE_FILES)
    try:
        started = time.monotonic()
        api.start()
        ready = time.monotonic() - started
        timings = []
        with api.client() as client:
            client.get("/api/tasks?state=done&limit=100")  # the first page reads its titles
            for _ in range(40):
                t0 = time.perf_counter()
                answer = client.get("/api/tasks?state=done&limit=100")
                timings.append(time.perf_counter() - t0)
                assert answer.status_code == 200
            assert answer.json()["total"] == DONE_FILES
            filtered = client.get("/api/tasks?project=proj01&state=done").json()
            assert filtered["total"] == 0
            cursor, pages = None, 0
            while pages < 20:
                query = "/api/tasks?state=done&limit=500" + (f"&cursor={cursor}" if cursor else "")
                cursor = client.get(query).json()["cursor"]
                pages += 1
        p50 = statistics.median(timings)
        print(f"start-up with {DONE_FILES} done files: {ready:.2f}s; p50 {p50 * 1000:.1f} ms")
        assert p50 <= P50_LIMIT, f"p50 {p50 * 1000:.1f} ms"
    finally:
        api.close()
