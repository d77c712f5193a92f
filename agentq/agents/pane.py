"""The structure of a Claude Code pane: the current turn, the input box, dialogs, the footer.

Private to :mod:`agentq.agents.classify`, which turns what this finds into readings. Pure:
the captured text in, positions and statuses out.

* Only the current turn counts: the lines after the last prompt echo (``❯`` + space, or the old
  ``>``), and above the live input box (``❯`` + U+00A0 between two ``─`` rules). An echo that
  sent nothing to the model does not start a turn: a slash command whose output shows no model
  activity (``/rate-limit-options``, ``/cost``: a limit above it still stands), and 2.1.332's
  queued message (``❯ …`` then ``⎿  Queued · …``).
* Only the agent's own status lines count: a ``⎿`` line (not the first one under a tool call or
  a slash command, which is their output), a ``●``/``⏺`` line that starts with ``API Error`` or
  is an auto-continue notice, a spinner line that says ``Retrying in``, and the rate-limit
  menu. Prose, code, tool output and the user's prompt never count; the footer under the box
  holds banners and usage warnings only. Text with no Claude Code structure at all (a pasted
  message, a log excerpt) is read line by line with the same grammar.
* A retry line is provisional; the last final status line wins over it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from agentq.agents.status import (
    AutoContinue,
    Kind,
    Login,
    Status,
    UsageWarning,
    auto_continue_of,
    parse_banner,
    parse_retry,
    parse_status,
    parse_warning,
)

LIVE_PROMPT = "❯\u00a0"
ECHO_PREFIXES = ("❯ ", "> ")
BULLETS = ("●", "⏺")
ELBOW = "⎿"
SPINNER_GLYPHS = frozenset("·✢*✶✻✽✳∗")
RATE_LIMIT_COMMAND = "/rate-limit-options"
#: What the live input line shows when nothing is typed (dimmed; ``capture-pane`` drops the dim).
PLACEHOLDERS = frozenset({"Resend your message to try again", "Press up to edit queued messages"})

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?")
_RULE = re.compile(r"^\s*[─━▔═]{8,}\s*$")
_OLD_LIVE = re.compile(r"^│ >(?:\s|$)")  # the boxed input line of 1.0.x versions
_BOX_EDGE = ("│", "╭", "╰", "┃")
# A tool call "Bash(…)", "mcp__x__y (MCP)(…)": its first ⎿ is always its own output. Collapsed
# summaries ("Read 2 files (ctrl+o to expand)") have no ⎿ of their own and are not listed.
_TOOL_HEADER = re.compile(r"^[A-Za-z_][\w.:-]*(?: \([^()]{0,40}\))?\(")
_SLASH_COMMAND = re.compile(r"^/[A-Za-z][\w:.-]*(?:\s|$)")
_QUEUED = re.compile(r"^\s*⎿\s*Queued\b")
_OPTION = re.compile(r"^\s*(?:❯\s?)?\d{1,2}\.\s+\S")
_SELECTED_OPTION = re.compile(r"^\s*❯\s?\d{1,2}\.\s+(?P<label>\S.*)$")
_ECHOED_OPTION = re.compile(r"^[❯>] ?\d{1,2}\.\s")
_DIALOG_FOOTER = re.compile(r"Esc to cancel|Enter to confirm|Enter to select", re.IGNORECASE)
_RATE_LIMIT_OPTION = re.compile(r"^\s*(?:❯\s?)?\d{1,2}\.\s+Stop and wait for limit to reset\b")
_PERMISSION = re.compile(r"^\s*Do you want to .{1,200}\?\s*$|Tab to amend")
_STARTUP_DIALOG = re.compile(r"Bypass Permissions mode|trust (?:the files in )?this folder", re.I)
_BUSY_FOOTER = re.compile(r"esc to interrupt|Press up to edit queued messages", re.IGNORECASE)
# A running background agent's row in 2.1.332's agents panel under the footer.
_AGENT_ROW = re.compile(r"^\s+◯\s+\S")
_SPINNER_ACTIVE = re.compile(
    r"…|\.\.\.|Retrying in|esc to interrupt|Waiting for \d+ background (?:agent|task)",
    re.IGNORECASE,
)
# What is left on screen once the CLI has exited: how to resume (2.1.332 repeats the flags the
# session was started with: "claude --dangerously-skip-permissions --resume <uuid>").
_EXITED = re.compile(r"^(?:Resume this session with:|claude(?: \S+)* --resume [0-9a-f-]{36}\s*$)")
_CANCELLED_FOOTER = re.compile(r"\s{2,}automatic continue cancelled\s*$", re.IGNORECASE)
_FOOTER_CHUNK = re.compile(r"\s{3,}")
_NOT_FOUND = re.compile(r"^No conversation found with session ID:")
# The shell's prompt back at column 0 ("user@host:~/proj$", "bash-5.2#", "%").
_SHELL_PROMPT = re.compile(r"^(?:\([^()]{1,40}\) )?(?:[\w.@~/:+\[\]-]{1,120} ?)?[$#%] ?$")
_MAX_WRAPS = 8
_DIALOG_LINES = 40


class Activity(StrEnum):
    """What the agent is doing, as far as its pane and title tell."""

    IDLE = "idle"
    BUSY = "busy"
    PERMISSION = "permission"
    MENU = "menu"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Layout:
    """Where the parts of a pane are: the current turn, the live input line, a dialog.

    ``quiet`` holds the echoes inside the turn that started none (slash commands, queued
    messages): the ``⎿`` right under one is its output, not a status.
    """

    lines: list[str]
    start: int
    end: int
    live: int | None
    structured: bool
    dialog: list[str]
    quiet: frozenset[int] = frozenset()


def split(text: str) -> list[str]:
    """The pane's lines without colour codes, carriage returns or trailing blanks."""
    clean = _ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    return [line.rstrip(" \t") for line in clean.split("\n")]


def layout(lines: list[str]) -> Layout:
    """Find the current turn, the live input line and any open dialog."""
    echoes = [index for index in range(len(lines)) if _is_echo(lines, index)]
    last_echo = echoes[-1] if echoes else -1
    live = next(
        (index for index in range(len(lines) - 1, last_echo, -1) if _is_live(lines[index])), None
    )
    end = len(lines) if live is None else _box_top(lines, live)
    dialog = [] if live is not None else _dialog_lines(lines, last_echo + 1)
    start, quiet = _turn_start(lines, echoes, end)
    structured = bool(echoes) or live is not None or any(is_bullet(line) for line in lines)
    return Layout(lines, start, end, live, structured, dialog, quiet)


def _turn_start(lines: list[str], echoes: list[int], end: int) -> tuple[int, frozenset[int]]:
    """The first line of the current turn, and the echoes passed over that started none."""
    quiet: list[int] = []
    for position in range(len(echoes) - 1, -1, -1):
        index = echoes[position]
        stop = echoes[position + 1] if position + 1 < len(echoes) else max(end, index + 1)
        command = lines[index][2:].strip()
        queued = _is_queued(lines, index)
        slash = bool(_SLASH_COMMAND.match(command)) and not _model_ran(lines, index + 1, stop)
        if not (queued or slash):
            return index + 1, frozenset(quiet)
        quiet.append(index)
    return 0, frozenset(quiet)


def _is_queued(lines: list[str], echo: int) -> bool:
    """True for 2.1.332's queued message: its echo, its wrapped lines, then ``⎿  Queued · …``."""
    for row in lines[echo + 1 : echo + 1 + _MAX_WRAPS]:
        if _QUEUED.match(row):
            return True
        if not row.startswith(" ") or row.strip().startswith(ELBOW):
            return False
    return False


def _model_ran(lines: list[str], first: int, stop: int) -> bool:
    """True when ``lines[first:stop]`` show a model turn: a message, a tool call, a spinner."""
    for line in lines[first:stop]:
        if is_spinner(line):
            return True
        if is_bullet(line):
            state = auto_continue_of(line[1:])
            if state in (None, AutoContinue.FIRED):
                return True
    return False


def _is_live(line: str) -> bool:
    """True for the live input line (a past prompt is never empty, so a bare ❯ is live too)."""
    return line.startswith(LIVE_PROMPT) or line == "❯" or bool(_OLD_LIVE.match(line))


def _is_echo(lines: list[str], index: int) -> bool:
    """True for a past prompt echo at column 0 (not a dialog's selected option)."""
    line = lines[index]
    if not line.startswith(ECHO_PREFIXES):
        return False
    if _ECHOED_OPTION.match(line):
        following = lines[index + 1 : index + 12]
        return not any(_DIALOG_FOOTER.search(row) for row in following)
    return True


def _box_top(lines: list[str], live: int) -> int:
    """The first line of the input box: the rule above the live line, or the line itself."""
    above = lines[live - 1] if live > 0 else ""
    return live - 1 if _RULE.match(above) or above.startswith("╭") else live


def footer(layout: Layout) -> list[str]:
    """The lines under the input box (hints, warnings, banners), or none without a box."""
    lines, live = layout.lines, layout.live
    if live is None:
        return []
    for index in range(live + 1, len(lines)):
        if _RULE.match(lines[index]) or lines[index].startswith("╰"):
            return lines[index + 1 :]
    return []


def _dialog_lines(lines: list[str], first: int) -> list[str]:
    """The lines of a dialog or menu that replaced the input box (after the last rule)."""
    first = max(first, len(lines) - _DIALOG_LINES)
    rules = [index for index in range(first, len(lines)) if _RULE.match(lines[index])]
    return lines[rules[-1] + 1 if rules else first :]


def is_bullet(line: str) -> bool:
    """True for a message line that starts with Claude Code's ● (⏺ on macOS) bullet."""
    return line.startswith(BULLETS)


def is_spinner(line: str) -> bool:
    """True for a spinner/status line: a spinner glyph at column 0, then a space."""
    return len(line) > 2 and line[0] in SPINNER_GLYPHS and line[1] == " "


def _starts_block(line: str) -> bool:
    """True when a line opens a new block instead of continuing the previous one."""
    stripped = line.strip()
    return (
        stripped.startswith((ELBOW, *BULLETS, "❯", *_BOX_EDGE))
        or is_spinner(line)
        or bool(_RULE.match(line))
    )


def _indent(line: str) -> int:
    """The width of a line's leading whitespace (NBSP included)."""
    return len(line) - len(line.lstrip())


def _gather(lines: list[str], index: int, end: int, content: str) -> tuple[str, int]:
    """A block's text with its wrapped lines (joined by newlines), and the next index."""
    own = _indent(lines[index])
    parts = [content]
    following = index + 1
    while following < end and len(parts) <= _MAX_WRAPS:
        row = lines[following]
        if not row.strip() or _indent(row) <= own or _starts_block(row):
            break
        parts.append(row.strip())
        following += 1
    return "\n".join(parts), following


def blocks(layout: Layout) -> list[tuple[str, str]]:
    """The current turn's blocks as ``(kind, text)``, in order.

    Kinds: ``elbow`` (a ``⎿`` status line), ``bullet``, ``spinner``, ``text``; ``output`` for a
    tool call and its first ``⎿`` (its output), ``reply`` for the ``⎿`` under a quiet echo.
    """
    lines, end = layout.lines, layout.end
    found: list[tuple[str, str]] = []
    after_tool = reply = False
    index = layout.start
    while index < end:
        line = lines[index]
        stripped = line.strip()
        if index in layout.quiet:
            reply = True  # a slash command's (or queued message's) own ⎿ follows
            index += 1
            continue
        if not stripped or _RULE.match(line):
            after_tool = reply = False
            index += 1
            continue
        if stripped.startswith(ELBOW):
            block, index = _gather(lines, index, end, stripped[1:].strip())
            # The first ⎿ under a tool call is that tool's output, whatever it says.
            kind = "reply" if reply else "output" if after_tool else "elbow"
            found.append((kind, block))
            after_tool = reply = False
            continue
        reply = False
        if is_bullet(line):
            content = stripped[1:].strip()
            block, index = _gather(lines, index, end, content)
            after_tool = bool(_TOOL_HEADER.match(content))
            found.append(("output" if after_tool else "bullet", block))
        elif is_spinner(line):
            block, index = _gather(lines, index, end, stripped[1:].strip())
            found.append(("spinner", block))
            after_tool = False
        else:
            block, index = _gather(lines, index, end, stripped)
            found.append(("text", block))
    return found


def statuses(layout: Layout, login: Login = Login.UNKNOWN) -> list[Status]:
    """Every status message of the current turn, then the footer's banners, in order."""
    found: list[Status] = []
    for kind, block in blocks(layout):
        status: Status | None = None
        if kind == "elbow":
            status = parse_status(block, login=login)
        elif kind == "bullet":
            status = parse_status(block, bullet=True, login=login)
        elif kind == "spinner":
            status = parse_retry(block, spinner=True, login=login)
        elif kind == "text" and not layout.structured:
            status = parse_status(block, login=login)
        if status is not None:
            found.append(status)
    # Newer versions repeat the limit in a banner under the input box ("⚠ Usage limit reached ·
    # limit resets 4:32pm") and announce its end there.
    banners = (parse_banner(line) for line in footer(layout))
    found += [banner for banner in banners if banner is not None]
    return found


def text_statuses(text: str, login: Login = Login.UNKNOWN) -> list[Status]:
    """The status messages in a structured signal's text (read like an unstructured pane)."""
    lines = split(text)
    return statuses(Layout(lines, 0, len(lines), None, False, []), login)


def decide(found: list[Status]) -> Status | None:
    """The last final status, else the last retry status, else None.

    A fallback (the auto-continue notice or banner repeating a limit) gives way to the turn's
    own limit line, whose reset names the zone.
    """
    finals = [status for status in found if not status.retrying]
    if finals:
        last = finals[-1]
        if last.fallback and last.kind is Kind.QUOTA:
            shown = [status for status in finals if not status.fallback]
            if shown and shown[-1].kind is Kind.QUOTA:
                return shown[-1]
        return last
    return found[-1] if found else None


def has_rate_limit_menu(dialog: list[str]) -> bool:
    """True when the "What do you want to do?" rate-limit menu is open."""
    return any(_RATE_LIMIT_OPTION.match(line) for line in dialog)


def auto_continue(layout: Layout) -> AutoContinue | None:
    """The auto-continue state the pane shows: the footer's now, else the turn's last notice."""
    for line in footer(layout):
        if _CANCELLED_FOOTER.search(line):
            return AutoContinue.CANCELLED  # the footer's right side: "automatic continue cancelled"
        state = auto_continue_of(line)
        if state is AutoContinue.ARMED:
            return state
    state = None
    for kind, block in blocks(layout):
        if kind in ("bullet", "elbow", "reply"):
            state = auto_continue_of(block) or state
    return state


def warning(layout: Layout) -> UsageWarning | None:
    """The usage warning under the input box (or in text with no Claude Code structure)."""
    rows = footer(layout) if layout.structured else [block for _, block in blocks(layout)]
    for row in reversed(rows):
        # A footer line holds a left and a right part, far apart: read each on its own.
        for chunk in _FOOTER_CHUNK.split(row.strip()):
            found = parse_warning(chunk)
            if found is not None:
                return found
    return None


def has_exited(layout: Layout) -> bool:
    """True when the CLI is gone: its resume hint, "No conversation found", or the shell's prompt.

    tmux keeps the last pane title (``✳ Claude Code``) after the CLI exits, so only the text
    tells. What matters is below the last input box (or anywhere in the turn without one).
    """
    lines = layout.lines
    rows = footer(layout) if layout.live is not None else lines[layout.start :]
    if any(_EXITED.match(line) or _NOT_FOUND.match(line) for line in rows):
        return True
    last = next((line for line in reversed(rows) if line.strip()), "")
    return bool(_SHELL_PROMPT.match(last))


def pending_input(layout: Layout) -> str:
    """The text waiting in the live input line ('' when empty or showing a placeholder)."""
    if layout.live is None:
        return ""
    line = layout.lines[layout.live]
    text = line[len(LIVE_PROMPT) :] if line.startswith(LIVE_PROMPT) else line.lstrip("│>❯ ")
    text = text.rstrip("│ ").strip()
    return "" if text in PLACEHOLDERS else text


def activity(layout: Layout, title: str | None) -> Activity:
    """Dialogs first (they replace the input box), then an exit, busy signs, the input line.

    The pane title is a busy flag only for versions that spin it (2.1.197: ⠂/⠐); 2.1.332 keeps
    ``✳ Claude Code`` while busy, so its spinner line, footer and agents panel decide.
    """
    dialog = _dialog_activity(layout.dialog)
    if dialog is not None:
        return dialog
    if has_exited(layout):
        return Activity.UNKNOWN
    if _title_is_busy(title) or _text_is_busy(layout):
        return Activity.BUSY
    if layout.live is not None or _title_is_idle(title):
        return Activity.IDLE
    return Activity.UNKNOWN


def _text_is_busy(layout: Layout) -> bool:
    """True when the footer says "esc to interrupt" or lists a running background agent, or
    the turn's last spinner line is active ("Fermenting…", "Waiting for 1 background agent")."""
    lines = layout.lines
    below = footer(layout)
    if any(_BUSY_FOOTER.search(line) or _AGENT_ROW.match(line) for line in below):
        return True
    # The spinner line is replaced when the turn ends; a message after it means it is stale.
    marks = [
        line for line in lines[layout.start : layout.end] if is_spinner(line) or is_bullet(line)
    ]
    return bool(marks) and is_spinner(marks[-1]) and bool(_SPINNER_ACTIVE.search(marks[-1]))


def _dialog_activity(dialog: list[str]) -> Activity | None:
    """Menu or permission when a dialog with numbered options replaced the input box."""
    if not any(_OPTION.match(line) for line in dialog):
        return None
    if has_rate_limit_menu(dialog) or any(_STARTUP_DIALOG.search(line) for line in dialog):
        return Activity.MENU
    selected = [match["label"] for line in dialog if (match := _SELECTED_OPTION.match(line))]
    asks = any(_PERMISSION.search(line) for line in dialog)
    if asks or any(label.startswith("Yes") for label in selected):
        return Activity.PERMISSION
    return Activity.MENU if selected else None


def _title_is_busy(title: str | None) -> bool:
    """True when the pane title starts with a braille spinner frame (⠂, ⠐, …)."""
    head = (title or "").strip()[:1]
    return bool(head) and "\u2800" <= head <= "\u28ff"


def _title_is_idle(title: str | None) -> bool:
    """True for the ✳ title Claude Code shows when idle or waiting for permission."""
    return (title or "").strip().startswith("✳")
