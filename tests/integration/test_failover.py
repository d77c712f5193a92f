"""Quota failover with the simulator in real tmux: swap, resume, rollback, partial swap, hold."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentq.queue import taskfile
from agentq.sessions.tmux import TmuxDriver
from tests.support.daemon import Daemon, drop, inbox_left, make_projects, results, wait_until
from tests.support.webhook import WebhookSink

pytestmark = pytest.mark.integration


@pytest.fixture
def sink() -> Iterator[WebhookSink]:
    """A webhook receiver for the daemon's notifications."""
    with WebhookSink() as receiver:
        yield receiver


def _homes(root: Path) -> tuple[Path, Path]:
    a, b = root / "claude-a", root / "claude-b"
    a.mkdir()
    b.mkdir()
    return a, b


def _config(root: Path, socket: str, **quota: Any) -> dict[str, Any]:
    return {
        "agent": {"profile": "sim", "env": {"AGENTQ_SIM_LOG": str(root / "prompts.jsonl")}},
        "projects": {"roots": [str(root / "projects")]},
        "accounts": [
            {"name": "a", "home": str(root / "claude-a")},
            {"name": "b", "home": str(root / "claude-b")},
        ],
        "active_link": str(root / "home" / ".claude"),
        "shared": {"root": str(root / "claude-shared")},
        "pool": {"prefix": "fo-", "min": 1, "max": 2, "dedicated": [{"name": "ops"}]},
        "tmux": {"socket_name": socket},
        "dispatch": {"rescan_interval": "2s", "quiet_period": "0.2s"},
        "completion": {"idle_timeout": "60s"},
        "quota": {"cooldown": "1s", **quota},
    }


def _every_event(sink: WebhookSink) -> dict[str, Any]:
    """A webhook target for the account events, one message per event (no coalescing)."""
    events = ["swap", "partial_swap", "accounts_exhausted", "accounts_available"]
    return {"kind": "webhook", "url": f"{sink.url}/hook", "events": events, "min_interval": "0s"}


def _settle(daemon: Daemon, sink: WebhookSink) -> None:
    """Wait for a notification, then for a rescan after it: a duplicate would be sent by then."""
    wait_until(lambda: sink.received, 30, message="nothing was notified")
    rescans = _state(daemon).get("counters", {}).get("rescans", 0)
    wait_until(lambda: _state(daemon).get("counters", {}).get("rescans", 0) > rescans, 30)


def _state(daemon: Daemon) -> dict[str, Any]:
    path = daemon.state_dir / "state.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _hold(daemon: Daemon) -> dict[str, Any]:
    """The hold in the daemon's state (empty when the queue is not held)."""
    return dict(_state(daemon).get("hold") or {})


def _footer(path: Path) -> taskfile.Footer:
    _, footer = taskfile.split_footer(path.read_text())
    assert footer is not None
    return footer


def _detail(footer: taskfile.Footer, key: str) -> str | None:
    return dict(footer.details).get(key)


@pytest.mark.slow
def test_exhausted_account_swaps_once_resumes_the_task_and_the_operator_session(
    tmp_path: Path, socket_name: str
) -> None:
    """A exhausted after 3 tasks: one swap to B, the cut task resumed on B, the rest done on B."""
    home_a, home_b = _homes(tmp_path)
    projects = make_projects(tmp_path / "projects", 1)
    daemon = Daemon(tmp_path, _config(tmp_path, socket_name))
    tmux = TmuxDriver(socket_name)
    try:
        daemon.start()
        assert daemon.wait_ready()
        # The operator's own session runs the agent on account A, then leaves it to its shell.
        tmux.new_session("ops", tmp_path, None, {"CLAUDE_CONFIG_DIR": str(home_a)})
        wait_until(lambda: tmux.pane_command("ops") == "bash", 10)
        tmux.send_keys("ops", f"{sys.executable} -m agentq.sim", literal=True)
        tmux.send_keys("ops", "Enter")
        wait_until(lambda: "\u276f\u00a0" in tmux.capture("ops"), 20, message="ops agent not up")
        tmux.send_keys("ops", "/exit", literal=True)
        tmux.send_keys("ops", "Enter")
        wait_until(lambda: "claude --resume" in tmux.capture("ops"), 10)
        ops_id = tmux.capture("ops").split("claude --resume ")[1].split()[0]

        for i in range(3):
            drop(projects[0], f"a{i}.md", f"on account a {i}\nsim: work 0.2s")
        wait_until(lambda: len(results(projects)["done"]) == 3, 60)
        (home_a / "sim-quota").write_text("resets 11pm (UTC)")
        for i in range(4):
            drop(projects[0], f"b{i}.md", f"after the limit {i}\nsim: work 0.5s")
        wait_until(lambda: not inbox_left(projects), 120, interval=0.5)
        state = _state(daemon)
    finally:
        daemon.close()
    done = results(projects)["done"]
    assert len(done) == 7 and results(projects)["failed"] == []
    assert [(s["from"], s["to"]) for s in state["swaps"]] == [("a", "b")]
    assert (tmp_path / "home" / ".claude").resolve() == home_b.resolve()
    later = [_footer(p) for p in done if p.name.startswith("b")]
    assert {f.account for f in later} == {"b"}
    resumed = [f for f in later if _detail(f, "resumed")]
    assert resumed, "no task was resumed after the swap"
    session_id = _detail(resumed[0], "session_id")
    transcripts = list((tmp_path / "claude-shared" / "projects").rglob(f"{session_id}.jsonl"))
    assert len(transcripts) == 1
    entries = [json.loads(line) for line in transcripts[0].read_text().splitlines()]
    assert any(e.get("isApiErrorMessage") for e in entries), "the limit hit is not in the file"
    assert entries[-1]["type"] == "assistant" and not entries[-1].get("isApiErrorMessage")
    screen = tmux_text(socket_name, "ops")
    assert f"--resume {ops_id}" in screen and str(home_b) in screen
    prompts = [json.loads(x) for x in (tmp_path / "prompts.jsonl").read_text().splitlines()]
    assert not any(p["session"] == "ops" for p in prompts)


def tmux_text(socket: str, session: str) -> str:
    """The whole scrollback of a session."""
    return TmuxDriver(socket).capture(session, lines=200)


def test_server_error_burst_never_swaps(tmp_path: Path, socket_name: str) -> None:
    """Five tasks ending in 500s: each fails with the server error, and no swap happens."""
    home_a, _ = _homes(tmp_path)
    (home_a / "sim-server-error").write_text("")
    projects = make_projects(tmp_path / "projects", 1)
    daemon = Daemon(tmp_path, _config(tmp_path, socket_name, confirm_polls=1))
    try:
        daemon.start()
        assert daemon.wait_ready()
        for i in range(5):
            drop(projects[0], f"e{i}.md", f"error {i}")
        wait_until(lambda: len(results(projects)["failed"]) == 5, 90)
        state = _state(daemon)
    finally:
        daemon.close()
    assert state.get("swaps", []) == [] and state["active_account"] == "a"
    for path in results(projects)["failed"]:
        error = _footer(path).error or ""
        assert "server_error" in error and "500" in error


@pytest.mark.parametrize(
    ("fault", "expected"),
    [("ensure", "rolled back"), ("rollback", "partial swap")],
    ids=["a failing ensure is rolled back", "a failing rollback enters the partial swap"],
)
def test_forced_swap_failures_roll_back_or_enter_partial_swap(
    tmp_path: Path, socket_name: str, sink: WebhookSink, fault: str, expected: str
) -> None:
    """An ensure failure rolls the swap back; a failing rollback enters the sticky partial swap.

    Each is one notification, and nothing else is notified (the retry pause after a rollback
    is no "every account is exhausted").
    """
    home_a, _ = _homes(tmp_path)
    (home_a / "sim-quota").write_text("resets 11pm (UTC)")
    projects = make_projects(tmp_path / "projects", 1)
    tweak = f"swap-{fault}-fails"  # the account links fail (tests/support/launch.py)
    config = _config(tmp_path, socket_name)
    config["notifications"] = [_every_event(sink)]
    daemon = Daemon(tmp_path, config, tweaks=[tweak])
    try:
        daemon.start()
        assert daemon.wait_ready()
        drop(projects[0], "limited.md", "hits the limit")
        wait_until(lambda: expected in daemon.log(), 60, message=f"no {expected!r} in the log")
        _settle(daemon, sink)
        state = _state(daemon)
        assert state.get("swaps", []) == [] and state["active_account"] == "a"
        link = tmp_path / "home" / ".claude"
        if fault == "rollback":
            wait_until(lambda: _state(daemon).get("partial_swap"), 10)
            refused = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "agentq",
                    "swap",
                    "--to",
                    "b",
                    "--config",
                    str(daemon.config_path),
                ],
                env=daemon.env(),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert refused.returncode == 1 and "partial swap" in refused.stdout
        else:
            assert link.resolve() == home_a.resolve()
    finally:
        daemon.close()
    notified = [(b["event"], b["count"]) for b in sink.bodies()]
    if fault == "rollback":
        assert notified == [("partial_swap", 1)]
    else:
        assert notified == [("swap", 1)]
        [item] = sink.bodies()[0]["items"]
        assert item["rolled_back"] is True and "injected ensure failure" in item["error"]


@pytest.mark.slow
def test_all_accounts_exhausted_holds_the_queue_and_resumes_by_itself(
    tmp_path: Path, socket_name: str, sink: WebhookSink
) -> None:
    """Both accounts out: the queue holds (reported, notified once) and resumes after the reset."""
    home_a, home_b = _homes(tmp_path)
    for home in (home_a, home_b):
        (home / "sim-quota").write_text("resets soon")
    projects = make_projects(tmp_path / "projects", 1)
    config = _config(tmp_path, socket_name, confirm_polls=1, default_exhausted="8s")
    config["dispatch"]["rescan_interval"] = "0.5s"  # two rescans fit well inside the hold
    config["notifications"] = [_every_event(sink)]
    daemon = Daemon(tmp_path, config)
    try:
        daemon.start()
        assert daemon.wait_ready()
        drop(projects[0], "held.md", "wait for me\nsim: work 0.2s")
        drop(projects[0], "later.md", "me too\nsim: work 0.2s")
        hold = wait_until(lambda: _hold(daemon), 60, message="the queue never held")
        drop(projects[0], "during.md", "dropped during the hold\nsim: work 0.2s")
        inbox = projects[0] / ".agent-queue" / "inbox"
        # A rescan lists every inbox and dispatches in the same pass. The next pass counted
        # after this read may have listed the inbox before the drop; the one after it began
        # once that pass had ended, after this read: it saw during.md and left it alone.
        rescans = daemon.counter("rescans")
        wait_until(lambda: daemon.counter("rescans") >= rescans + 2, 10)
        waiting = (inbox / "during.md").exists()
        # Only conclusive if all of that happened inside the one hold (a hold that ends and
        # begins again gets a new "since").
        assert _hold(daemon).get("since") == hold["since"], "the hold ended"
        assert waiting, "a task was dispatched during the hold"
        assert results(projects) == {"done": [], "failed": []}
        for home in (home_a, home_b):
            (home / "sim-quota").unlink()  # the limits reset
        wait_until(lambda: len(results(projects)["done"]) == 3, 90, interval=0.5)
        wait_until(lambda: sink.received, 10, message="the hold was not notified")
        _settle(daemon, sink)
        state = _state(daemon)
    finally:
        daemon.close()
    assert not state.get("hold")
    # One message per event (min_interval 0): the hold began and ended once, and each swap in
    # the history (a to b on a's limit, back at the hold's end) was notified once.
    bodies = sink.bodies()
    assert all(b["count"] == 1 for b in bodies)
    held = sorted(b["event"] for b in bodies if b["event"] != "swap")
    assert held == ["accounts_available", "accounts_exhausted"]
    swaps = [(b["items"][0]["from"], b["items"][0]["to"]) for b in bodies if b["event"] == "swap"]
    assert swaps == [(s["from"], s["to"]) for s in state["swaps"]]
