"""The bundled simulated agent, run in a tmux pane as ``python -m agentq.sim``.

Usage: ``python -m agentq.sim [--resume UUID] [--dangerously-skip-permissions]``.
It behaves like Claude Code 2.1.197 wherever agentq looks
(see the project's Claude Code facts): the live input line ``❯`` + U+00A0 between
two rules, bracketed paste with ``[Pasted text #N +M lines]``, a spinner title while
a turn runs, ``● answer`` / ``✻ Worked for Ns``, hooks from ``settings.json``, a
transcript under ``projects/``, ``/exit`` and ``--resume``.

What a turn does is scripted by lines in the prompt:

``sim: work 3s``        stay busy that long (default 1s)
``sim: answer TEXT``    answer TEXT instead of ``Done: <first line>…``
``sim: fail``           end on an API error (StopFailure ``unknown``)
``sim: permission``     ask for permission first (``1``/Enter go on, ``3``/Esc stop)
``sim: hang``           stay busy until interrupted
``sim: exit``           the process dies mid-turn (no hook, no answer)
``sim: write PATH TEXT`` / ``sim: commit MSG``  change the cwd (:mod:`agentq.sim.actions`)
``sim: background 5s``  the turn starts a background agent that runs that long after the
                        turn's ``Stop`` (which lists it running), as Claude Code 2.1.332 does:
                        ``✻ Waiting for 1 background agent to finish``, then ``SubagentStop``,
                        a ``<task-notification>`` prompt and a final ``Stop`` with the answer
``sim: warning 92%``    a usage warning under the input box from this turn on
                        (``sim: warning 80% weekly`` for the weekly window)

and by files in the account home (``$CLAUDE_CONFIG_DIR``, default ``~/.claude``):
``sim-quota`` (content ``resets 3pm (UTC)``, or ``<epoch> [text]`` which lifts at
that time) makes every prompt hit the session limit; ``sim-limit`` (``<requests> <epoch>``)
lets the account's first ``<requests>`` prompts through (counted in ``sim-requests``) and
the later ones hit the limit until ``<epoch>``; ``sim-server-error`` makes it end on a
500. ``$AGENTQ_SIM_LOG`` names a file that gets one JSON line per prompt received,
byte-exact, with its time and cwd (tests prove exactly-once delivery with it).

Replies record a ``usage`` (about four characters a token) in the transcript, so what a
task used can be summed. Simplifications: hooks are read from ``settings.json`` once at
start (as Claude Code snapshots them); the permission ``Notification`` follows
``PermissionRequest``
at once (Claude Code waits about 6 s); only ``/exit`` and ``/clear`` are commands.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from agentq.sim.actions import perform
from agentq.sim.record import Recorder, Session
from agentq.sim.rules import (
    BACKGROUND_AGENT,
    BACKGROUND_RESULT,
    BACKGROUND_STARTED,
    FAIL_TEXT,
    INTERRUPTED,
    LIMIT_FILE,
    LIMIT_MENU,
    PERMISSION_COMMAND,
    PERMISSION_DIALOG,
    QUOTA_FILE,
    REQUESTS_FILE,
    SERVER_ERROR_FILE,
    SERVER_ERROR_TEXT,
    VERSION,
    Script,
    default_answer,
    echo_line,
    limit_message,
    parse_script,
    quota_message,
    task_notification,
    warning_text,
)
from agentq.sim.term import (
    Key,
    Screen,
)
from agentq.sim.term import fit as fit_text

logger = logging.getLogger(__name__)

NBSP = "\u00a0"
TITLE_IDLE = "✳ Claude Code"
TITLE_BUSY = ("⠂ Claude Code", "⠐ Claude Code")
SPINNER_GLYPHS = "·✢*✶✻✽"
TICK = 0.5
ESC_PAUSE = 0.05
CTRL_C_WINDOW = 2.0
MAX_INPUT_LINES = 6


def read_text(path: Path) -> str:
    """A text file's content ('' when it cannot be read)."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


# -- the agent -----------------------------------------------------------------


@dataclass
class Segment:
    """Part of the input line: typed text, or one paste shown as a placeholder."""

    text: str
    paste_no: int = 0

    def shown(self) -> str:
        """What the input line displays for this part."""
        if not self.paste_no:
            return self.text
        return f"[Pasted text #{self.paste_no} +{self.text.count(chr(10))} lines]"


@dataclass
class Turn:
    """One prompt being worked on."""

    prompt: str
    script: Script
    outcome: str = "answer"  # answer | fail | server_error
    started: float = 0.0
    ends_at: float = math.inf


@dataclass
class Background:
    """A background agent the last turn started: it runs until ``ends_at``."""

    agent_id: str
    prompt: str
    script: Script
    started: float
    ends_at: float


@dataclass
class Sim:
    """The simulated Claude Code: a state machine driven by keys and a clock."""

    session: Session
    env: Mapping[str, str]
    bypass: bool
    screen: Screen
    hooks: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    mode: str = "idle"  # idle | busy | permission | menu
    background: Background | None = None
    #: The usage warning shown under the input box (Claude Code keeps it until it changes).
    warning: str | None = None
    out: Recorder = field(init=False)
    segments: list[Segment] = field(default_factory=list)
    pastes: int = 0
    turn: Turn | None = None
    queued: list[str] = field(default_factory=list)
    menu_shown: bool = False
    ctrl_c_until: float = 0.0
    next_tick: float = math.inf
    ticks: int = 0
    exit_code: int | None = None
    pending_history: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.out = Recorder(self.session, self.env, self.bypass, self.hooks)

    # -- start, hooks, transcript --------------------------------------------------

    def start(self, source: str) -> None:
        """Draw the header (and a resumed conversation), fire SessionStart, show the input box."""
        cwd = self.session.cwd
        self.pending_history += [
            f"╭─── Claude Code v{VERSION} · agentq sim ───╮",
            f"│ {cwd}",
            "╰───",
            "",
        ]
        if self.session.resumed:
            self._replay()
        self.screen.set_title(TITLE_IDLE)
        self._fire("SessionStart", source=source)
        self.render()

    def _replay(self) -> None:
        try:
            lines = self.session.transcript.read_text(encoding="utf-8").splitlines()
        except OSError:
            return
        for line in lines:
            try:
                entry = json.loads(line)
                content = entry["message"]["content"]
            except (ValueError, KeyError, TypeError):
                continue
            text = (
                content
                if isinstance(content, str)
                else "".join(part.get("text", "") for part in content if isinstance(part, dict))
            )
            self.session.parent_uuid = entry.get("uuid") or self.session.parent_uuid
            if entry.get("type") == "user":
                self.pending_history += ["", echo_line(text, self.screen.columns())]
            elif entry.get("error") == "rate_limit":
                self.pending_history.append(f"  ⎿  {text}")
            else:
                self.pending_history += ["", f"● {text}"]
        self.pending_history.append("")

    def _fire(self, event: str, **fields: Any) -> None:
        self.out.fire(event, **fields)

    # -- turns ---------------------------------------------------------------------

    def submit(self, prompt: str, now: float) -> None:
        """Run one prompt: echo it, record it, then work, ask, fail or hit the limit."""
        self.pending_history += ["", echo_line(prompt, self.screen.columns())]
        self.out.log_prompt(prompt)
        self.out.user(prompt, origin={"kind": "human"})
        quota = self._quota_text()
        if quota is not None:
            self._hit_limit(prompt, quota)
            return
        config_dir = self.session.config_dir
        turn = Turn(prompt, parse_script(prompt))
        if turn.script.warning is not None:
            reset = time.time() + 4 * 3600
            percent, window = turn.script.warning, turn.script.warning_window
            self.warning = warning_text(percent, window, reset, time.time())
        if (config_dir / SERVER_ERROR_FILE).exists():
            turn.outcome = "server_error"
        elif turn.script.fail:
            turn.outcome = "fail"
        self.turn = turn
        asks = turn.script.permission and not self.bypass
        if asks:
            self.mode = "permission"
        else:
            self._start_work(turn, now)
        self.render()
        self._fire("UserPromptSubmit", prompt=prompt, prompt_id=str(uuid.uuid4()))
        if asks:
            self._fire(
                "PermissionRequest", tool_name="Bash", tool_input={"command": PERMISSION_COMMAND}
            )
            self._fire(
                "Notification",
                notification_type="permission_prompt",
                message="Claude needs your permission to use Bash",
            )
        else:
            # The work clock starts once the hooks returned, so a slow hook
            # never eats into a scripted `sim: work` duration.
            self._start_work(turn, time.monotonic())

    def _start_work(self, turn: Turn, now: float) -> None:
        self.mode = "busy"
        turn.started = now
        turn.ends_at = now + turn.script.work
        self.next_tick = now + TICK
        self.screen.set_title(TITLE_BUSY[0])

    def _quota_text(self) -> str | None:
        home = self.session.config_dir
        requests = self.out.count_request(home / REQUESTS_FILE)
        limit = limit_message(read_text(home / LIMIT_FILE), requests, time.time())
        if limit is not None:
            return limit
        path = home / QUOTA_FILE
        return quota_message(read_text(path), time.time()) if path.exists() else None

    def _hit_limit(self, prompt: str, message: str) -> None:
        self.pending_history += [f"  ⎿  {message}", "", "✻ Worked for 0s"]
        self.out.reply(
            message, prompt, isApiErrorMessage=True, error="rate_limit", apiErrorStatus=429
        )
        if not self.menu_shown:
            self.menu_shown = True
            self.mode = "menu"
        self.render()
        self._fire("UserPromptSubmit", prompt=prompt, prompt_id=str(uuid.uuid4()))
        self._fire("StopFailure", error="rate_limit", last_assistant_message=message)

    def _finish(self, turn: Turn, now: float) -> None:
        if turn.script.exit:
            self.exit_code = 1  # dies mid-turn: no answer, no hook
            return
        seconds = round(now - turn.started)
        if turn.outcome == "answer" and turn.script.background > 0:
            self._start_background(turn, now)
            return
        if turn.outcome == "answer":
            text = turn.script.answer or default_answer(turn.prompt)
            folder = Path(self.session.cwd)
            notes = [perform(action, folder, self.env) for action in turn.script.actions]
            text = "\n".join([text, *notes])
        else:
            text = SERVER_ERROR_TEXT if turn.outcome == "server_error" else FAIL_TEXT
        first, *rest = text.split("\n")
        self.pending_history += ["", f"● {first}", *(f"  {line}" for line in rest)]
        self.pending_history += ["", f"✻ Worked for {seconds}s"]
        self._end_turn()
        if turn.outcome == "answer":
            self.out.reply(text, turn.prompt)
            self._fire(
                "Stop", last_assistant_message=text, stop_hook_active=False, background_tasks=[]
            )
        else:
            error = "server_error" if turn.outcome == "server_error" else "unknown"
            status = 500 if turn.outcome == "server_error" else None
            extra = {"isApiErrorMessage": True, "error": error, "apiErrorStatus": status}
            self.out.reply(text, turn.prompt, **extra)
            self._fire("StopFailure", error=error, last_assistant_message=text)
        if self.queued and self.mode == "idle" and self.exit_code is None:
            self.submit(self.queued.pop(0), time.monotonic())

    def _start_background(self, turn: Turn, now: float) -> None:
        """The turn ends leaving an agent running: a Stop that lists it, then the wait."""
        agent_id = secrets.token_hex(8)
        self.pending_history += [
            "",
            f"● Agent({BACKGROUND_AGENT})",
            "  ⎿  Backgrounded agent (↓ to manage · ctrl+o to expand)",
            "",
            f"● {BACKGROUND_STARTED}",
        ]
        self.out.reply(BACKGROUND_STARTED, turn.prompt)
        prompt = f"Do the background part of: {turn.prompt.splitlines()[0]}"
        ends = now + turn.script.background
        self.background = Background(agent_id, turn.prompt, turn.script, now, ends)
        self.turn = None
        self.next_tick = now + TICK
        self.render()
        running = {
            "id": agent_id,
            "type": "subagent",
            "status": "running",
            "description": BACKGROUND_AGENT,
            "agent_type": "general-purpose",
        }
        self._fire(
            "Stop",
            last_assistant_message=BACKGROUND_STARTED,
            stop_hook_active=False,
            background_tasks=[running],
        )
        self.out.agent_run(agent_id, prompt, BACKGROUND_RESULT)

    def _background_done(self, now: float) -> None:
        """The agent ended: SubagentStop, the notification prompt, the follow-up turn."""
        agent = self.background
        if agent is None:
            return
        self.background = None
        seconds = now - agent.started
        path = self.session.agent_transcript(agent.agent_id)
        self.pending_history += ["", f'● Agent "{BACKGROUND_AGENT}" finished · {round(seconds)}s']
        self._fire(
            "SubagentStop",
            agent_id=agent.agent_id,
            agent_type="general-purpose",
            agent_transcript_path=str(path),
            last_assistant_message=BACKGROUND_RESULT,
        )
        notice = task_notification(agent.agent_id, BACKGROUND_RESULT, seconds)
        self.out.user(notice, origin={"kind": "task-notification"}, isMeta=True)
        self._fire("UserPromptSubmit", prompt=notice, prompt_id=str(uuid.uuid4()))
        script = replace(agent.script, background=0.0, work=TICK)
        turn = Turn(agent.prompt, script)
        self.turn = turn
        self._start_work(turn, time.monotonic())
        self.render()

    def _end_turn(self) -> None:
        self.turn = None
        self.mode = "idle"
        self.next_tick = math.inf
        self.screen.set_title(TITLE_IDLE)
        self.render()

    def interrupt(self) -> None:
        """Esc/Ctrl-C/"No": stop the turn without a hook; queued prompts return to the input."""
        self.pending_history.append(INTERRUPTED)
        self.background = None
        self.segments += [Segment(text) for text in self.queued]
        self.queued.clear()
        self._end_turn()

    def exit_session(self, reason: str = "prompt_input_exit") -> None:
        """Leave like ``/exit``: print how to resume, fire SessionEnd, exit 0."""
        sid = self.session.session_id
        self.screen.draw(self._take_history(), [])
        self.screen.draw(["", "Resume this session with:", f"claude --resume {sid}", ""], [])
        self._fire("SessionEnd", reason=reason)
        self.exit_code = 0

    def clear(self) -> None:
        """``/clear``: end this session, start a new one with a new id."""
        self._fire("SessionEnd", reason="clear")
        self.session = Session(self.session.config_dir, self.session.cwd, str(uuid.uuid4()))
        self.out.session = self.session
        self.pending_history.clear()
        self.screen.clear()
        self.start("clear")

    # -- input ---------------------------------------------------------------------

    def on_key(self, key: Key, now: float) -> None:
        """Handle one input event in the current mode."""
        kind, value = key
        name = value if kind == "key" else ""
        typed = value if kind == "text" else ""
        if self.mode == "permission":
            if self.turn is not None and (name == "enter" or typed[:1] in ("1", "2")):
                self._start_work(self.turn, now)
            elif name in ("escape", "ctrl-c") or typed[:1] == "3":
                self.interrupt()
            return
        if self.mode == "menu":
            if name in ("escape", "enter") or typed[:1] in ("1", "2"):
                self.mode = "idle"
            return
        if kind == "paste":
            self._insert_paste(value)
        elif kind == "text":
            self._insert_text(value)
        elif name == "backspace":
            self._backspace()
        elif name == "enter":
            self._enter(now)
        elif name == "escape" and self.mode == "busy":
            self.interrupt()
        elif name == "ctrl-c":
            self._ctrl_c(now)

    def _insert_text(self, text: str) -> None:
        if self.segments and not self.segments[-1].paste_no:
            self.segments[-1].text += text
        else:
            self.segments.append(Segment(text))

    def _insert_paste(self, text: str) -> None:
        if "\n" not in text:
            self._insert_text(text)
            return
        self.pastes += 1
        self.segments.append(Segment(text, self.pastes))

    def _backspace(self) -> None:
        if not self.segments:
            return
        last = self.segments[-1]
        last.text = "" if last.paste_no else last.text[:-1]
        if not last.text:
            self.segments.pop()

    def _enter(self, now: float) -> None:
        prompt = "".join(segment.text for segment in self.segments)
        if not prompt.strip():
            return
        self.segments.clear()
        if self.mode == "busy":
            self.queued.append(prompt)
        elif prompt.strip() == "/exit":
            self.pending_history += ["", "❯ /exit"]
            self.exit_session()
        elif prompt.strip() == "/clear":
            self.clear()
        else:
            self.submit(prompt, now)

    def _ctrl_c(self, now: float) -> None:
        if self.mode == "busy":
            self.interrupt()
        elif self.segments:
            self.segments.clear()
        elif now < self.ctrl_c_until:
            self.exit_session()
        else:
            self.ctrl_c_until = now + CTRL_C_WINDOW

    # -- clock and drawing ---------------------------------------------------------

    def timeout(self, now: float, pending_escape: bool) -> float | None:
        """Seconds until something is due (None: wait for input)."""
        due = [self.next_tick]
        if self.turn is not None and self.mode == "busy":
            due.append(self.turn.ends_at)
        if self.background is not None and self.turn is None:
            due.append(self.background.ends_at)
        if self.ctrl_c_until > now:
            due.append(self.ctrl_c_until)
        if pending_escape:
            due.append(now + ESC_PAUSE)
        soonest = min(due)
        return None if soonest == math.inf else max(soonest - now, 0.0)

    def tick(self, now: float) -> None:
        """Advance the clock: finish a due turn, spin the spinner."""
        agent = self.background
        if self.mode == "busy" and self.turn is not None and now >= self.turn.ends_at:
            self._finish(self.turn, now)
        elif self.turn is None and agent is not None and now >= agent.ends_at:
            self._background_done(now)
        elif self.mode == "busy" and now >= self.next_tick:
            self.ticks += 1
            self.next_tick = now + TICK
            self.screen.set_title(TITLE_BUSY[self.ticks % 2])
        if self.ctrl_c_until and now >= self.ctrl_c_until:
            self.ctrl_c_until = 0.0

    def _take_history(self) -> list[str]:
        lines, self.pending_history = self.pending_history, []
        return lines

    def render(self) -> None:
        """Print new history lines and redraw the bottom region."""
        if self.exit_code is None:
            self.screen.draw(self._take_history(), self._live(time.monotonic()))

    def _live(self, now: float) -> list[str]:
        rule = "─" * self.screen.columns()
        if self.mode == "permission":
            return ["", rule, *PERMISSION_DIALOG]
        if self.mode == "menu":
            return [*LIMIT_MENU[:3], rule, *LIMIT_MENU[3:]]
        lines: list[str] = []
        if self.mode == "busy" and self.turn is not None:
            glyph = SPINNER_GLYPHS[self.ticks % len(SPINNER_GLYPHS)]
            elapsed = int(max(now - self.turn.started, 0))
            lines += ["", f"{glyph} Scurrying… ({elapsed}s · esc to interrupt)"]
        elif self.mode == "busy" and self.background is not None:
            lines += ["", "✻ Waiting for 1 background agent to finish"]
        lines += [f"  queued: {echo_line(text, self.screen.columns())[2:]}" for text in self.queued]
        footer = [self._footer()]
        if self.warning is not None:
            footer.append(self.warning.rjust(self.screen.columns() - 1))
        return [*lines, "", rule, *self._input_lines(), rule, *footer]

    def _input_lines(self) -> list[str]:
        rest = "".join(segment.shown() for segment in self.segments)
        width = self.screen.columns() - 2
        lines: list[str] = []
        while True:
            head, rest = fit_text(rest, width)
            lines.append(("❯" + NBSP if not lines else "  ") + head)
            if not rest:
                return lines
            if len(lines) == MAX_INPUT_LINES:
                lines[-1] = lines[-1][:-1] + "…"
                return lines

    def _footer(self) -> str:
        if self.ctrl_c_until:
            return "  Press Ctrl-C again to exit"
        if self.mode == "busy":
            return "  esc to interrupt" + (
                " · Press up to edit queued messages" * bool(self.queued)
            )
        if self.bypass:
            return "  ⏵⏵ bypass permissions on (shift+tab to cycle)"
        return "" if self.segments else "  ? for shortcuts"
