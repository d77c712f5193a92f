"""Accounts in parallel and background agents with the real Claude Code CLI against the mock.

Spread (issue 14): two subscriber accounts, ``pool.account_policy: spread`` with two sessions
per account, ``completion.recycle: false``; the mock lets account A's first three task
requests through and answers the 429 after that until its reset, about a minute later. Ten
tasks: all done; A's cut tasks resume on sessions running on B with the same session id in
the same folder; B's own sessions are never restarted (their pane pids stay); after A's
reset, A's sessions take tasks again. Footers carry the model, tokens and the API-equivalent
cost (the mock names a priced model).

The pool's size per account is ``$AGENTQ_E2E_SPREAD_PER_ACCOUNT`` (default 2): a machine that
can run only two Claude Code processes at once sets 1.

Background agents (2.1.332 runs the ``Agent`` tool in the background by default; 2.1.197 only
with ``run_in_background``): the mock asks for an agent whose own request it holds for a
while; the first ``Stop`` lists it running; the task completes only with the ``Stop`` after
the follow-up turn, whose answer is the footer's result.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agentq.sessions.delivery import CONTINUE_PROMPT
from agentq.sessions.tmux import TmuxDriver
from tests.support.anthropic_mock import MockAnthropic, Rule, ToolCall

from .conftest import ClaudeHome, DaemonProcess, add_stop_recorder
from .test_claude_code import drop_task, footers
from .test_failover_claude import daemon_state, make_project, recorded, transcript, wait_for

pytestmark = pytest.mark.e2e

PRICED_MODEL = "claude-sonnet-4-5-20250929"
PER_ACCOUNT = int(os.environ.get("AGENTQ_E2E_SPREAD_PER_ACCOUNT", "2"))
RUN_TIMEOUT = 240.0
SUB_RESULT = "SUB RESULT: the sub work is finished"
FINAL = "FINAL: the helper reported back"


def _config(
    root: Path, project_root: Path, claude_bin: str, homes: list[ClaudeHome], **pool: Any
) -> dict[str, Any]:
    return {
        "projects": {"roots": [str(project_root)]},
        "agent": {
            "profile": "claude-code",
            "command": claude_bin,
            "args": ["--dangerously-skip-permissions"],
            "env": homes[0].env,
        },
        "accounts": [{"name": h.name, "home": str(h.path)} for h in homes],
        "active_link": str(root / "home" / ".claude"),
        "shared": {"root": str(root / "claude-shared")},
        "pool": {"prefix": "e2e-", **pool},
        # Every session on the one project at once (plain tasks otherwise run singly).
        "dispatch": {"rescan_interval": "2s", "quiet_period": "0.2s", "max_parallel": 4},
        "completion": {"idle_timeout": "2m", "task_timeout": "4m", "recycle": False},
        "quota": {"cooldown": "1s", "default_exhausted": "10m"},
        "logging": {"format": "json"},
    }


def _sessions(daemon: DaemonProcess) -> dict[str, dict[str, Any]]:
    return {s["session"]: s for s in daemon_state(daemon).get("sessions", [])}


def _pids(driver: TmuxDriver, names: list[str]) -> dict[str, int]:
    panes = driver.list_panes()
    return {name: panes[name].pid for name in names if name in panes}


@pytest.mark.slow
def test_spread_resumes_a_cut_task_on_b_never_restarts_b_and_a_rejoins_after_its_reset(
    tmp_path: Path,
    claude_bin: str,
    mock_api: MockAnthropic,
    claude_home: Callable[..., ClaudeHome],
    run_daemon: Callable[[dict[str, Any]], DaemonProcess],
    tmux_socket: str,
) -> None:
    """A out after three requests: cut tasks resumed on B, B's panes unchanged, A back later."""
    mock_api.model = PRICED_MODEL
    project = make_project(tmp_path / "projects")
    homes = [claude_home(tmp_path, name, trusted=[project, tmp_path]) for name in ("a", "b")]
    home_a, _ = homes
    size = 2 * PER_ACCOUNT
    config = _config(tmp_path, tmp_path / "projects", claude_bin, homes, min=size, max=size)
    config["pool"]["account_policy"] = "spread"
    daemon = run_daemon(config)
    driver = TmuxDriver(tmux_socket)
    wanted = ["a", "b"] * PER_ACCOUNT

    def all_idle() -> bool:
        sessions = _sessions(daemon)
        return [s["account"] for s in sessions.values() if s["state"] == "idle"] == wanted

    wait_for(all_idle, RUN_TIMEOUT, "the pool idle, spread over both accounts", daemon)
    on_b = [name for name, s in _sessions(daemon).items() if s["account"] == "b"]
    before = _pids(driver, on_b)
    reset = int((time.time() + 45) // 60 + 1) * 60
    mock_api.exhaust_after(home_a.token, 3, reset)
    started = time.monotonic()
    for i in range(10):
        drop_task(project, f"t{i}.md", f"Reply with a greeting for task t{i}.")
    wait_for(
        lambda: len(footers([project], "done")) + len(footers([project], "failed")) == 10,
        RUN_TIMEOUT,
        "ten tasks finished",
        daemon,
    )
    took = time.monotonic() - started
    first = footers([project], "done")
    after_run = _pids(driver, on_b)
    state = daemon_state(daemon)
    wait_for(lambda: time.time() > reset + 1, 150, "A's reset", daemon)
    # A's sessions that ran on B while A was out go home by themselves, no task needed.
    wait_for(all_idle, RUN_TIMEOUT, "A's sessions idle on A again", daemon)

    for i in range(2 * PER_ACCOUNT):
        drop_task(project, f"r{i}.md", f"Reply with a greeting for task r{i}.")
    wait_for(
        lambda: len(footers([project], "done")) == 10 + 2 * PER_ACCOUNT,
        RUN_TIMEOUT,
        "the tasks after the reset",
        daemon,
    )
    later = {n: f for n, f in footers([project], "done").items() if n.startswith("r")}
    at_end = _pids(driver, on_b)

    placements = {n: (f.target, f.account) for n, f in sorted(first.items())}
    print(f"\nspread ({claude_bin}): ten tasks in {took:.1f}s; placements {placements}")
    print(f"B's pane pids before {before}, after the run {after_run}, at the end {at_end}")
    print(f"after the reset: { ({n: (f.target, f.account) for n, f in sorted(later.items())}) }")
    assert footers([project], "failed") == {}, daemon.log()[-6000:]
    assert before == after_run == at_end and len(before) == PER_ACCOUNT
    resumed = {n: f for n, f in first.items() if "resumed" in dict(f.details)}
    assert resumed, f"no cut task was resumed: {placements}"
    shared = tmp_path / "claude-shared"
    for name, footer in resumed.items():
        details = dict(footer.details)
        session_id = details["session_id"]
        assert details["resumed"] == f"{session_id} on account b" and footer.account == "b"
        _, entries = transcript(shared, session_id)
        assert {e["cwd"] for e in entries if "cwd" in e} == {str(project)}, name
        users = [e for e in entries if e.get("type") == "user"]
        texts = [str((e.get("message") or {}).get("content")) for e in users]
        assert any(f"[agentq task {name} " in t for t in texts), name
        assert any(CONTINUE_PROMPT in t for t in texts), name
    assert sum(f.account == "a" for f in first.values()) <= 3
    assert [(s["from"], s["to"]) for s in state["swaps"]] == [("a", "b")]
    assert state["accounts"]["a"]["windows"]["five_hour"]["exhausted_until"] is not None
    assert "a" in {f.account for f in later.values()}, later  # A takes tasks again
    for name, footer in [*first.items(), *later.items()]:
        details = dict(footer.details)
        assert details.get("model") == PRICED_MODEL, (name, footer)
        assert details["tokens"].startswith("input "), details
        assert footer.cost is not None and footer.cost.endswith("(API-equivalent)"), footer.cost


@pytest.mark.slow
def test_a_task_with_a_background_agent_completes_with_the_stop_after_it(
    tmp_path: Path,
    claude_bin: str,
    mock_api: MockAnthropic,
    claude_home: Callable[..., ClaudeHome],
    run_daemon: Callable[[dict[str, Any]], DaemonProcess],
) -> None:
    """The first Stop lists the agent running; the footer's answer is the follow-up turn's."""
    mock_api.model = PRICED_MODEL
    mock_api.reply = lambda prompt, n: FINAL if "<task-notification>" in prompt else f"DONE {n}"
    agent = {
        "description": "slow helper",
        "prompt": "SUBSLOW do the sub work",
        "subagent_type": "general-purpose",
        "run_in_background": True,
    }
    mock_api.on_prompt(Rule("SUBSLOW", delay=12, text=SUB_RESULT))
    mock_api.on_prompt(Rule("BGAGENT", tool=ToolCall("Agent", agent)))
    project = make_project(tmp_path / "projects")
    home = claude_home(tmp_path, "a", trusted=[project, tmp_path])
    recorder = tmp_path / "recorder"
    add_stop_recorder(home.path / "settings.json", recorder, ("Stop", "StopFailure"))
    config = _config(tmp_path, tmp_path / "projects", claude_bin, [home], min=1, max=1)
    config["completion"]["recycle"] = True
    daemon = run_daemon(config)
    drop_task(project, "bg.md", "please start BGAGENT now")
    wait_for(lambda: footers([project], "done"), RUN_TIMEOUT, "the task done", daemon)
    footer = footers([project], "done")["bg.md"]

    # The recorder is a Stop hook of its own, run beside agentq's: it may write a moment later.
    def two_stops() -> list[Any]:
        stops = recorded(recorder, "e2e-0", "Stop")
        return stops if len(stops) >= 2 else []

    stops = wait_for(two_stops, 10, "the recorder's second Stop", daemon)
    print(f"\nbackground ({claude_bin}): Stops {[s.last_assistant_message for s in stops]}")
    assert len(stops) >= 2 and [t["status"] for t in stops[0].background_tasks or ()] == ["running"]
    assert footer.result == FINAL, footer.result
    assert footer.finished is not None and footer.finished.timestamp() >= stops[-1].received_at - 1
    details = dict(footer.details)
    assert "agent transcript(s) included" in details["tokens"], details
    assert footer.cost is not None and footer.cost.endswith("(API-equivalent)")
