"""The bundled simulated agent in a real tmux pane, with hooks writing real signal files."""

from __future__ import annotations

import json
import re
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import agentq
from agentq.agents import hooks
from agentq.agents.classify import Activity, classify_activity, classify_pane
from agentq.agents.usage import task_usage
from agentq.sessions.tmux import TmuxDriver
from agentq.sim.rules import (
    BACKGROUND_STARTED,
    default_answer,
    format_reset,
    parse_script,
    quota_message,
)
from agentq.sim.term import KeyParser
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration

REPO_ROOT = Path(agentq.__file__).resolve().parent.parent
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
INPUT_LINE = "❯\u00a0"
SPINNER_TITLES = ("⠂ Claude Code", "⠐ Claude Code")
WAIT = 15.0


@dataclass
class Rig:
    """One account home, one project folder, one state dir, and sims in tmux sessions."""

    driver: TmuxDriver
    config_dir: Path
    state_dir: Path
    cwd: Path
    log: Path

    def start(self, name: str = "sim", *args: str, session_env: bool = True) -> str:
        """Start ``python -m agentq.sim ARGS`` in session ``name``; wait for the input line."""
        env = {
            "CLAUDE_CONFIG_DIR": str(self.config_dir),
            "AGENTQ_SIM_LOG": str(self.log),
            "PYTHONPATH": str(REPO_ROOT),
        }
        if session_env:
            env["AGENTQ_SESSION"] = name
        command = [sys.executable, "-m", "agentq.sim", *args]
        self.driver.new_session(name, self.cwd, command, env, remain_on_exit=True)
        return name

    def screen(self, name: str = "sim") -> str:
        """The pane's text including some history."""
        return self.driver.capture(name, lines=200)

    def wait_screen(self, check: Callable[[str], bool], name: str = "sim") -> str:
        """Poll the pane until ``check(text)`` holds; return that text."""

        def ready() -> str:
            text = self.screen(name)
            return text if check(text) else ""

        return wait_until(ready, WAIT, message=name)

    def wait_idle(self, name: str = "sim") -> str:
        """Wait for the idle title and the live input line as the last input box."""
        wait_until(lambda: self.driver.pane_title(name) == "✳ Claude Code", WAIT)
        return self.wait_screen(lambda s: live_input(s) is not None, name)

    def signals(self, event: str | None = None) -> list[hooks.Signal]:
        """Signal files written by the hooks so far (optionally one event)."""
        found = hooks.read_signals(self.state_dir)
        return [s for s in found if event is None or s.event == event]

    def wait_signal(self, event: str, count: int = 1) -> list[hooks.Signal]:
        """Wait until ``count`` signals of ``event`` exist; return them."""

        def ready() -> list[hooks.Signal]:
            found = self.signals(event)
            return found if len(found) >= count else []

        return wait_until(ready, WAIT, message=event)

    def prompts(self) -> list[dict[str, Any]]:
        """The prompts the sim received (AGENTQ_SIM_LOG lines)."""
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text(encoding="utf-8").splitlines()]

    def transcript(self, session_id: str) -> list[dict[str, Any]]:
        """The session's transcript entries."""
        folder = re.sub(r"[^A-Za-z0-9]", "-", str(self.cwd))
        path = self.config_dir / "projects" / folder / f"{session_id}.jsonl"
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]

    def submit(self, text: str, name: str = "sim") -> None:
        """Paste ``text`` and press Enter once the input line shows it."""
        self.driver.paste(name, text)
        self.wait_screen(lambda s: (live_input(s) or "").strip() != "", name)
        self.driver.send_keys(name, "Enter")


def live_input(screen: str) -> str | None:
    """The text of the live input line if it is the last input box on screen, else None."""
    lines = screen.rstrip("\n").split("\n")
    for index in range(len(lines) - 1, 0, -1):
        if lines[index].startswith(INPUT_LINE):
            above = lines[index - 1]
            if above and set(above) == {"─"}:
                return lines[index][len(INPUT_LINE) :]
            return None
        if lines[index].startswith(("❯ ", "  What do you want", " Do you want")):
            return None
    return None


def after_last_echo(screen: str) -> str:
    """The part of the screen after the last prompt echo (``❯`` + normal space)."""
    lines = screen.split("\n")
    starts = [i for i, line in enumerate(lines) if line.startswith("❯ ")]
    return "\n".join(lines[starts[-1] :]) if starts else screen


@pytest.fixture
def rig(tmux_socket: str, tmp_path: Path) -> Rig:
    """A sim rig whose settings.json sends every hook event to `python -m agentq.agents.hooks`."""
    config_dir = tmp_path / "home" / ".claude-a"
    state_dir = tmp_path / "state"
    cwd = tmp_path / "project dir"
    for folder in (config_dir, state_dir, cwd):
        folder.mkdir(parents=True)
    python = shlex.quote(sys.executable)
    settings = {
        "theme": "dark",
        "hooks": {
            event: [
                {
                    "hooks": [
                        {
                            "type": "command",
                            "command": f"{python} -m agentq.agents.hooks {event} --state-dir "
                            + shlex.quote(str(state_dir)),
                        }
                    ]
                }
            ]
            for event in hooks.DEFAULT_EVENTS
        },
    }
    (config_dir / "settings.json").write_text(json.dumps(settings))
    return Rig(TmuxDriver(tmux_socket), config_dir, state_dir, cwd, tmp_path / "prompts.jsonl")


# -- the screen and the happy path ---------------------------------------------


def test_start_shows_idle_input_box_and_fires_session_start(rig: Rig) -> None:
    """The input line sits between two rules above `? for shortcuts`; SessionStart names the id."""
    rig.start()
    screen = rig.wait_idle()
    lines = screen.rstrip("\n").split("\n")
    assert lines[-1].strip() == "? for shortcuts"
    assert lines[-2] == lines[-4] == "─" * 200
    assert lines[-3] == INPUT_LINE
    (start,) = rig.wait_signal("SessionStart")
    assert start.source == "startup"
    assert start.session == "sim"
    assert UUID_RE.fullmatch(start.session_id or "")
    assert start.cwd == str(rig.cwd)
    assert start.transcript_path and start.transcript_path.endswith(f"{start.session_id}.jsonl")


def test_multiline_paste_arrives_byte_exact_once(rig: Rig) -> None:
    """Quotes, $(…), backticks, unicode and 20 KiB arrive as one prompt, exactly once."""
    rig.start()
    rig.wait_idle()
    pwn = rig.cwd / "pwn"
    body = "".join(f"line {i}: {'x' * 60}\n" for i in range(320))
    text = (
        'Fix the "login" bug; it\'s urgent\n'
        f"$(touch {pwn}) and `touch {pwn}` and ${{HOME}} and \\n literal\n"
        "tab\there — ünïcödé ❯ ✳ 日本語\n" + body + "last line without newline"
    )
    assert len(text.encode()) > 20 * 1024
    rig.driver.paste("sim", text)
    screen = rig.wait_screen(lambda s: "[Pasted text #1" in s)
    assert live_input(screen) == f"[Pasted text #1 +{text.count(chr(10))} lines]"
    assert rig.prompts() == []  # a multi-line paste needs its own Enter
    rig.driver.send_keys("sim", "Enter")
    rig.wait_signal("Stop")
    assert [p["prompt"] for p in rig.prompts()] == [text]
    assert rig.prompts()[0]["session"] == "sim"
    assert not pwn.exists()


def test_single_line_paste_is_inserted_as_text(rig: Rig) -> None:
    """A one-line paste shows on the input line itself and is submitted by Enter."""
    rig.start()
    rig.wait_idle()
    rig.driver.paste("sim", "just one line 'q' $(x)")
    rig.wait_screen(lambda s: live_input(s) == "just one line 'q' $(x)")
    rig.driver.send_keys("sim", "Enter")
    rig.wait_signal("Stop")
    assert [p["prompt"] for p in rig.prompts()] == ["just one line 'q' $(x)"]


def test_turn_goes_busy_then_idle_and_fires_stop(rig: Rig) -> None:
    """Paste+Enter: spinner title and status, then `●` answer, `✻ Worked`, idle, Stop hook."""
    rig.start()
    rig.wait_idle()
    rig.submit("Refactor the parser\nsim: work 2s")
    wait_until(lambda: rig.driver.pane_title("sim") in SPINNER_TITLES, WAIT)
    busy = rig.wait_screen(lambda s: "esc to interrupt" in s)
    assert "❯ Refactor the parser…" in busy
    assert re.search(r"^. Scurrying… \(\ds · esc to interrupt\)$", busy, re.MULTILINE)
    assert busy.rstrip("\n").split("\n")[-1].strip() == "esc to interrupt"
    (submitted,) = rig.wait_signal("UserPromptSubmit")
    assert submitted.prompt == "Refactor the parser\nsim: work 2s"
    (stop,) = rig.wait_signal("Stop")
    answer = default_answer("Refactor the parser")
    assert stop.last_assistant_message == answer
    idle = rig.wait_idle()
    tail = after_last_echo(idle)
    assert f"● {answer}" in tail
    assert re.search(r"^✻ Worked for \ds$", tail, re.MULTILINE)
    entries = rig.transcript(stop.session_id or "")
    assert [e["type"] for e in entries] == ["user", "assistant"]
    assert entries[0]["message"] == {"role": "user", "content": submitted.prompt}
    assert entries[1]["message"]["content"][0]["text"] == answer
    assert {e["sessionId"] for e in entries} == {stop.session_id}
    assert all(e["cwd"] == str(rig.cwd) and e["uuid"] and e["timestamp"] for e in entries)


def test_scripted_answer_and_session_from_tmux_pane(rig: Rig) -> None:
    """`sim: answer` sets the answer; without AGENTQ_SESSION the hook asks tmux for the name."""
    rig.start("agentq-7", session_env=False)
    rig.wait_idle("agentq-7")
    rig.submit("sim: answer forty-two\nsim: work 0s", "agentq-7")
    (stop,) = rig.wait_signal("Stop")
    assert stop.last_assistant_message == "forty-two"
    assert stop.session == "agentq-7"


def test_a_background_agent_ends_the_task_only_with_the_second_stop(rig: Rig) -> None:
    """`sim: background`: a Stop listing the agent running, the wait, the notification turn,
    then a Stop with no background task and the answer (Claude Code 2.1.332's order)."""
    rig.start()
    rig.wait_idle()
    rig.submit("Research it\nsim: work 0.2s\nsim: background 2s")
    (first,) = rig.wait_signal("Stop")
    assert first.last_assistant_message == BACKGROUND_STARTED
    assert [t["status"] for t in first.background_tasks or ()] == ["running"]
    waiting = rig.wait_screen(lambda s: "Waiting for 1 background agent to finish" in s)
    assert classify_activity(waiting, rig.driver.pane_title("sim")) is Activity.BUSY
    _, final = rig.wait_signal("Stop", 2)
    assert final.background_tasks == () and final.last_assistant_message == default_answer(
        "Research it"
    )
    prompts = [s.prompt or "" for s in rig.signals("UserPromptSubmit")]
    assert len(prompts) == 2 and prompts[1].startswith("<task-notification>")
    entries = rig.transcript(final.session_id or "")
    assert [e.get("origin", {}).get("kind") for e in entries if e["type"] == "user"] == [
        "human",
        "task-notification",
    ]
    folder = re.sub(r"[^A-Za-z0-9]", "-", str(rig.cwd))
    agents = list((rig.config_dir / "projects" / folder / final.session_id / "subagents").iterdir())
    agent_entries = [json.loads(line) for line in agents[0].read_text().splitlines()]
    usage = task_usage(entries, [agent_entries], "Research it")
    assert usage is not None and usage.agents == 1 and usage.replies == 3
    assert len(usage.models) == 2 and usage.total.output > 0


def test_replies_record_usage_and_a_warning_shows_under_the_input_box(rig: Rig) -> None:
    """`sim: warning 92%` puts the 2.1.197 warning in the footer; replies carry usage."""
    rig.start()
    rig.wait_idle()
    rig.submit("Count the files\nsim: work 0.2s\nsim: warning 92%")
    (stop,) = rig.wait_signal("Stop")
    screen = rig.wait_idle()
    warning = classify_pane(screen, rig.driver.pane_title("sim")).warning
    assert warning is not None and (warning.percent, str(warning.window)) == (92, "five_hour")
    entries = rig.transcript(stop.session_id or "")
    usage = entries[1]["message"]["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert entries[1]["message"]["model"].startswith("claude-")


# -- dialogs, errors, limits -------------------------------------------------------


def test_permission_dialog_then_yes(rig: Rig) -> None:
    """The dialog replaces the input line, fires PermissionRequest then Notification; 1 goes on."""
    rig.start()
    rig.wait_idle()
    rig.submit("sim: permission\nsim: answer allowed")
    screen = rig.wait_screen(lambda s: "Do you want to proceed?" in s)
    assert live_input(screen) is None
    for text in ("❯ 1. Yes", "2. Yes, and always allow", "3. No", "Esc to cancel · Tab to amend"):
        assert text in screen
    assert rig.driver.pane_title("sim") == "✳ Claude Code"
    rig.wait_signal("Notification")
    kinds = [s.event for s in rig.signals() if s.event in ("PermissionRequest", "Notification")]
    assert kinds == ["PermissionRequest", "Notification"]
    assert rig.signals("Notification")[0].notification_type == "permission_prompt"
    rig.driver.send_keys("sim", "1")
    (stop,) = rig.wait_signal("Stop")
    assert stop.last_assistant_message == "allowed"
    assert "● allowed" in after_last_echo(rig.wait_idle())


def test_permission_no_and_hang_interrupt_fire_no_stop(rig: Rig) -> None:
    """`3` on the dialog and Esc on a hung turn interrupt without any Stop hook."""
    rig.start()
    rig.wait_idle()
    rig.submit("sim: permission")
    rig.wait_screen(lambda s: "Do you want to proceed?" in s)
    rig.driver.send_keys("sim", "3")
    rig.wait_screen(lambda s: "Interrupted" in after_last_echo(s) and live_input(s) == "")
    rig.submit("sim: hang")
    wait_until(lambda: rig.driver.pane_title("sim") in SPINNER_TITLES, WAIT)
    rig.driver.send_keys("sim", "Escape")
    rig.wait_screen(lambda s: "Interrupted" in after_last_echo(s))
    rig.wait_idle()
    rig.submit("sim: answer third\nsim: work 0s")
    rig.wait_signal("Stop")
    assert [s.last_assistant_message for s in rig.signals("Stop")] == ["third"]
    assert rig.signals("StopFailure") == []


def test_quota_file_shows_limit_menu_and_fires_rate_limit(rig: Rig) -> None:
    """sim-quota: the `⎿` limit line, the menu once, StopFailure rate_limit, a 429 entry."""
    (rig.config_dir / "sim-quota").write_text("resets 3pm (UTC)\n")
    rig.start()
    rig.wait_idle()
    rig.submit("do the thing")
    message = "You've hit your session limit · resets 3pm (UTC)"
    screen = rig.wait_screen(lambda s: "What do you want to do?" in s)
    assert live_input(screen) is None
    assert f"❯ do the thing\n  ⎿  {message}" in screen
    for text in ("❯ 1. Stop and wait for limit to reset", "2. Upgrade your plan"):
        assert text in screen
    assert "Enter to confirm · Esc to cancel" in screen
    (failure,) = rig.wait_signal("StopFailure")
    assert failure.error == "rate_limit"
    assert failure.last_assistant_message == message
    entries = rig.transcript(failure.session_id or "")
    error = entries[-1]
    assert error["type"] == "assistant"
    assert error["isApiErrorMessage"] is True
    assert error["error"] == "rate_limit"
    assert error["apiErrorStatus"] == 429
    assert error["message"]["content"][0]["text"] == message
    rig.driver.send_keys("sim", "Escape")
    rig.wait_idle()
    rig.submit("again")
    rig.wait_signal("StopFailure", 2)
    screen = rig.wait_idle()
    assert f"❯ again\n  ⎿  {message}" in screen
    assert "What do you want to do?" not in after_last_echo(screen)
    assert rig.signals("Stop") == []


def test_server_error_file_fails_turns_with_500(rig: Rig) -> None:
    """With sim-server-error: `● API Error: 500 …`, StopFailure server_error, status 500 logged."""
    (rig.config_dir / "sim-server-error").write_text("")
    rig.start()
    rig.wait_idle()
    rig.submit("sim: work 0s\nanything")
    (failure,) = rig.wait_signal("StopFailure")
    assert failure.error == "server_error"
    assert failure.last_assistant_message
    assert failure.last_assistant_message.startswith("API Error: 500 Internal server error.")
    screen = rig.wait_idle()
    assert "● API Error: 500 Internal server error. This is a server-side issue" in screen
    assert rig.transcript(failure.session_id or "")[-1]["apiErrorStatus"] == 500


def test_scripted_fail_fires_stop_failure_unknown(rig: Rig) -> None:
    """`sim: fail` ends the turn on an API error with StopFailure `unknown`."""
    rig.start()
    rig.wait_idle()
    rig.submit("sim: fail\nsim: work 0s")
    (failure,) = rig.wait_signal("StopFailure")
    assert failure.error == "unknown"
    assert "● API Error:" in after_last_echo(rig.wait_idle())


def test_scripted_exit_kills_the_process_mid_turn(rig: Rig) -> None:
    """`sim: exit` goes busy, then the process is gone without an answer or Stop."""
    rig.start()
    rig.wait_idle()
    rig.submit("sim: exit\nsim: work 0.5s")
    wait_until(lambda: rig.driver.pane_dead("sim"), WAIT)
    assert rig.signals("Stop") == [] and rig.signals("StopFailure") == []
    assert "● " not in after_last_echo(rig.screen())


# -- exit and resume ---------------------------------------------------------------


def test_exit_then_resume_appends_to_the_same_transcript(rig: Rig) -> None:
    """`/exit` prints the resume command and fires SessionEnd; --resume continues the session."""
    rig.start("first")
    rig.wait_idle("first")
    rig.submit("first prompt\nsim: work 0s", "first")
    (stop,) = rig.wait_signal("Stop")
    session_id = stop.session_id or ""
    rig.wait_idle("first")
    rig.driver.send_keys("first", "/exit", literal=True)
    rig.driver.send_keys("first", "Enter")
    wait_until(lambda: rig.driver.pane_dead("first"), WAIT)
    screen = rig.screen("first")
    assert f"Resume this session with:\nclaude --resume {session_id}" in screen
    (end,) = rig.wait_signal("SessionEnd")
    assert end.reason == "prompt_input_exit"
    assert end.session_id == session_id

    rig.start("second", "--resume", session_id, "--model", "ignored")
    replay = rig.wait_idle("second")
    assert "❯ first prompt…" in replay
    starts = rig.wait_signal("SessionStart", 2)
    assert (starts[-1].source, starts[-1].session_id) == ("resume", session_id)
    rig.submit("second prompt\nsim: work 0s", "second")
    rig.wait_signal("Stop", 2)
    entries = rig.transcript(session_id)
    users = [e["message"]["content"] for e in entries if e["type"] == "user"]
    assert users == ["first prompt\nsim: work 0s", "second prompt\nsim: work 0s"]
    assert entries[2]["parentUuid"] == entries[1]["uuid"]


def test_resume_of_unknown_session_fails(rig: Rig) -> None:
    """An unknown --resume id prints `No conversation found…` and the process exits."""
    unknown = "0b0e9a5e-9f59-4b8e-8f0a-8c7a3c1f2d4e"
    rig.start("sim", "--resume", unknown)
    wait_until(lambda: rig.driver.pane_dead("sim"), WAIT)
    assert f"No conversation found with session ID: {unknown}" in rig.screen()
    assert rig.signals("SessionStart") == []


# -- pure pieces of the sim (fast, no tmux) ------------------------------------------


def test_parse_script_reads_directives() -> None:
    """`sim:` lines set work, answer and flags; other lines and bad durations are ignored."""
    script = parse_script(
        "do it\nsim: work 3s\nSIM: answer  the answer \nsim: fail\nsim: work soon"
    )
    assert (script.work, script.answer, script.fail, script.permission) == (
        3,
        "the answer",
        True,
        False,
    )
    assert parse_script("sim: hang").work == float("inf")
    assert parse_script("plain").work == 1.0
    assert parse_script("sim: background 5s").background == 5
    assert (parse_script("sim: warning 92%").warning, parse_script("x").warning) == (92, None)
    weekly = parse_script("sim: warning 80% weekly")
    assert (weekly.warning, weekly.warning_window) == (80, "weekly")
    assert parse_script("sim: warning lots").warning is None


def test_quota_message_variants() -> None:
    """Plain reset text, full messages and epoch files that lift at their time."""
    now = 1_700_000_000
    assert (
        quota_message("resets 3pm (UTC)", now) == "You've hit your session limit · resets 3pm (UTC)"
    )
    assert quota_message("11pm (UTC)", now) == "You've hit your session limit · resets 11pm (UTC)"
    assert quota_message("You've hit your weekly limit · resets Nov 24", now) == (
        "You've hit your weekly limit · resets Nov 24"
    )
    assert quota_message(f"{now - 1} resets 3pm (UTC)", now) is None
    assert (
        quota_message(f"{now + 3600} resets soon", now)
        == "You've hit your session limit · resets soon"
    )
    assert quota_message(str(now + 1800), now) == (
        f"You've hit your session limit · resets {format_reset(now + 1800, now)}"
    )
    assert format_reset(1_700_006_400, 1_700_000_000) == "Nov 15, 12am (UTC)"  # the next day
    assert format_reset(1_700_001_000, 1_700_000_000) == "10:30pm (UTC)"


def test_key_parser_splits_paste_across_reads() -> None:
    """A bracketed paste split anywhere, even inside its end marker, is one paste event."""
    data = b"ab\x1b[200~one\rtwo\r\xe2\x9d\xaf\x1b[201~\r\x1b"
    for cut in range(1, len(data)):
        parser = KeyParser()
        events = parser.feed(data[:cut]) + parser.feed(data[cut:])
        events += parser.flush() if parser.pending_escape else []
        assert events[-1] == ("key", "escape"), cut
        merged = [e for e in events if e[0] != "text"]
        assert merged == [("paste", "one\ntwo\n❯"), ("key", "enter"), ("key", "escape")], cut
        assert "".join(v for k, v in events if k == "text") == "ab"
