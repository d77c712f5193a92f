"""The real Claude Code CLI in tmux against the mock Anthropic API, through ``agentq run``.

The fixtures (``agentq_run``, ``claude_home``, ``mock_api``) live in this folder's conftest.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentq.agents.classify import (
    Activity,
    AutoContinue,
    Kind,
    PaneReading,
    SignalReading,
    Window,
    classify_activity,
    classify_hook_payload,
    classify_pane,
    classify_transcript,
)
from agentq.agents.hooks import Signal, merge_hooks, read_signals
from agentq.agents.resets import parse_reset
from agentq.queue import taskfile
from agentq.sessions.delivery import has_pending_input
from agentq.sessions.tmux import TmuxDriver
from tests.support.anthropic_mock import MockAnthropic
from tests.support.wait import wait_until

pytestmark = pytest.mark.e2e

#: Generous: a task takes about 2-4 s here (start-up, one turn, /exit).
RUN_TIMEOUT = 120.0
SESSION = "quota-1"


def drop_task(project: Path, name: str, body: str) -> None:
    """Drop a task the Maildir way: write in tmp/, rename into inbox/."""
    tmp = project / ".agent-queue" / "tmp" / f"{name}.tmp"
    tmp.write_text(f"---\n{yaml.safe_dump({'title': name})}---\n{body}\n")
    os.rename(tmp, project / ".agent-queue" / "inbox" / name)


def footers(projects: Sequence[Path], folder: str) -> dict[str, taskfile.Footer]:
    """The footers of the files in ``done/`` or ``failed/`` of every project, by file name."""
    out: dict[str, taskfile.Footer] = {}
    for project in projects:
        for path in (project / ".agent-queue" / folder).iterdir():
            if not path.name.startswith("."):
                _, footer = taskfile.split_footer(path.read_text())
                assert footer is not None, f"{path} has no agentq footer"
                out[path.name] = footer
    return out


def wait_finished(run: Any, count: int) -> None:
    """Wait until ``count`` tasks sit in done/ or failed/ (the daemon log on timeout)."""
    wait_until(
        lambda: len(footers(run.projects, "done")) + len(footers(run.projects, "failed")) == count,
        RUN_TIMEOUT,
        interval=0.2,
        message=f"{count} tasks finished; daemon log tail:\n{run.daemon.log()[-6000:]}",
    )


def transcript_lines(path: Path) -> list[str]:
    """A transcript's lines ([] while it does not exist)."""
    return path.read_text().splitlines() if path.exists() else []


def _stops(record_dir: Path, count: int) -> dict[str | None, Signal]:
    """The recorded Stop calls by session id, once there are ``count`` of them ({} before)."""
    stops = {s.session_id: s for s in read_signals(record_dir) if s.event == "Stop"}
    return stops if len(stops) >= count else {}


def test_five_tasks_in_two_projects_complete_with_the_mocks_replies_via_the_stop_hook(
    mock_api: MockAnthropic, agentq_run: Callable[[Sequence[str]], Any]
) -> None:
    """Five tasks in two projects reach done/ with the mock's replies, as the Stop hook gave."""
    run = agentq_run(["alpha", "beta"])
    for i in range(5):
        drop_task(run.projects[i % 2], f"task-{i}.md", f"Reply with a greeting for task {i}.")
    wait_finished(run, 5)

    assert footers(run.projects, "failed") == {}, run.daemon.log()[-6000:]
    done = footers(run.projects, "done")
    assert sorted(done) == [f"task-{i}.md" for i in range(5)]
    replies = mock_api.replies()
    # The recorder runs beside the daemon's own hook, so it may still be writing.
    stops = wait_until(
        lambda: _stops(run.recorder, 5),
        15,
        message="the recorder's five Stop hook calls",
    )
    for name, footer in done.items():
        assert re.fullmatch(r"DONE: mock reply \d+", footer.result or ""), (name, footer.result)
        assert footer.result in replies, f"{name}: {footer.result!r} is not a mock reply"
        details = dict(footer.details)
        # The transcript detail only comes from hook signals the daemon consumed.
        assert details.get("transcript"), f"{name}: no hook signal reached the daemon"
        stop = stops.get(details.get("session_id"))
        assert stop is not None, f"{name}: no Stop hook for session {details.get('session_id')}"
        assert stop.last_assistant_message == footer.result
        assert footer.account == "a"
        assert (footer.target or "").startswith("e2e-")
    assert len({footer.result for footer in done.values()}) == 5
    assert {entry["token"] for entry in mock_api.messages()} == {run.home.token}


def test_server_error_storms_fail_their_tasks_as_server_errors_never_quota(
    mock_api: MockAnthropic, agentq_run: Callable[[Sequence[str]], Any]
) -> None:
    """A 500 storm and a 529 storm each fail their task as a server error; later tasks run."""
    run = agentq_run(["alpha", "beta"])
    alpha, beta = run.projects
    drop_task(alpha, "storm-500.md", "Say hello. MOCK500")
    drop_task(beta, "storm-529.md", "Say hello. MOCK529")
    drop_task(alpha, "zz-after-storm.md", "Say hello after the storm.")
    wait_finished(run, 3)

    failed = footers(run.projects, "failed")
    assert sorted(failed) == ["storm-500.md", "storm-529.md"], run.daemon.log()[-6000:]
    assert (footers(run.projects, "done")["zz-after-storm.md"].result or "").startswith("DONE: ")
    for name, code in (("storm-500.md", 500), ("storm-529.md", 529)):
        error = failed[name].error or ""
        assert "server_error" in error and f"API Error: {code}" in error, f"{name}: {error!r}"
        assert "quota" not in error.lower() and "rate_limit" not in error, f"{name}: {error!r}"
        transcript = Path(dict(failed[name].details)["transcript"])
        reading = classify_transcript(transcript_lines(transcript))
        assert reading.kind is Kind.SERVER_ERROR, f"{name}: {reading}"
        # The task ended when the CLI gave up (its StopFailure), never on a retrying line:
        # the turn's own request (not the title request) was retried, every answer the storm's.
        # Up to 1 + CLAUDE_CODE_MAX_RETRIES requests reach the mock; one run under load saw
        # only two arrive before the CLI's StopFailure (the CLI's retrying, not agentq's).
        assert error.startswith("agent error ("), f"{name}: {error!r}"
        turns = [
            entry
            for entry in mock_api.messages()
            if f"MOCK{code}" in entry["prompt"] and "<session>" not in entry["prompt"]
        ]
        statuses = [entry["status"] for entry in turns]
        assert 2 <= len(statuses) <= 3 and set(statuses) == {code}, turns


def _stop_failure(state_dir: Path) -> Signal | None:
    return next((s for s in read_signals(state_dir) if s.event == "StopFailure"), None)


def _pane_quota(driver: TmuxDriver) -> PaneReading | None:
    reading = classify_pane(driver.capture(SESSION), driver.pane_title(SESSION))
    return reading if reading.kind is Kind.QUOTA and reading.reset_text else None


def _transcript_error(path: Path) -> SignalReading | None:
    reading = classify_transcript(transcript_lines(path))
    return reading if reading.kind is not Kind.OK else None


def _start_claude(driver: TmuxDriver, claude_bin: str, home: Any, project: Path) -> None:
    """Start the CLI in tmux on ``home`` and submit one prompt, the way the daemon does."""
    env = {**home.env, "CLAUDE_CONFIG_DIR": str(home.path), "AGENTQ_SESSION": SESSION}
    env["HOME"] = os.environ["HOME"]
    driver.new_session(SESSION, project, [claude_bin, "--dangerously-skip-permissions"], env)
    wait_until(
        lambda: (
            classify_activity(driver.capture(SESSION), driver.pane_title(SESSION)) is Activity.IDLE
        ),
        30,
        interval=0.1,
        message="the CLI ready for input",
    )
    driver.paste(SESSION, "Say hello.")
    wait_until(lambda: has_pending_input(driver.capture(SESSION)), 10, message="paste shown")
    driver.send_keys(SESSION, "Enter")


def test_subscriber_429_is_quota_with_its_reset_from_hook_transcript_and_pane(
    tmp_path: Path,
    claude_bin: str,
    claude_version: str,
    mock_api: MockAnthropic,
    claude_home: Callable[..., Any],
    tmux_socket: str,
) -> None:
    """A subscriber 429 with unified headers reads as quota, reset time included, three ways.

    Started by hand (not as a pool session), 2.1.332 arms its auto-continue: the pane says so.
    """
    project = tmp_path / "proj"
    project.mkdir()
    home = claude_home(tmp_path, "sub", trusted=[project])
    state_dir = tmp_path / "state"
    merge_hooks(home.path / "settings.json", state_dir)
    now = datetime.now(UTC)
    # A whole minute 2.5 hours ahead: the CLI prints minutes, and no date within the day.
    reset_epoch = (int(now.timestamp()) // 60 + 150) * 60
    reset_at = datetime.fromtimestamp(reset_epoch, UTC)
    mock_api.exhaust(home.token, reset_epoch, claim="five_hour")
    driver = TmuxDriver(tmux_socket)
    _start_claude(driver, claude_bin, home, project)

    signal = wait_until(lambda: _stop_failure(state_dir), 30, message="StopFailure hook")
    assert signal is not None and signal.session == SESSION and signal.error == "rate_limit"
    payload = {"hook_event_name": "StopFailure", "error": signal.error}
    hook = classify_hook_payload(
        {**payload, "last_assistant_message": signal.last_assistant_message}
    )
    assert signal.transcript_path is not None
    # The hook can run before the CLI has written the error entry to the transcript.
    transcript = wait_until(
        lambda: _transcript_error(Path(str(signal.transcript_path))), 10, message="transcript"
    )
    pane = wait_until(lambda: _pane_quota(driver), 15, message="quota on the pane")
    for source, reading in (("hook", hook), ("transcript", transcript), ("pane", pane)):
        assert reading is not None and reading.kind is Kind.QUOTA, f"{source}: {reading}"
        assert reading.reset_text, f"{source}: no reset text in {reading}"
        assert reading.window is Window.FIVE_HOUR, f"{source}: {reading}"
        parsed = parse_reset(reading.reset_text, now, "UTC")
        assert parsed == reset_at, f"{source}: {reading.reset_text!r} -> {parsed} != {reset_at}"
    assert transcript is not None and pane is not None
    if claude_version == "2.1.197":
        assert (transcript.resets_at, pane.auto_continue) == (None, None)
    else:
        # 2.1.332 records the claim's exact reset (quotaLimits), and arms its auto-continue.
        assert transcript.resets_at == reset_at
        wait_until(
            lambda: classify_pane(driver.capture(SESSION)).auto_continue is AutoContinue.ARMED,
            10,
            message="the auto-continue armed on the pane",
        )
    rejected = [entry for entry in mock_api.messages() if entry["status"] == 429]
    assert rejected and {entry["token"] for entry in rejected} == {home.token}
