"""Classify what Claude Code shows: out of quota, failing server-side, or fine; idle or busy.

Three inputs, one answer. The pane text (``tmux capture-pane``) is the fallback; the
transcript's error entries and the ``StopFailure`` hook payload are the structured signals and
win when present (the caller combines them). Pure: text in, readings out.

Pane rules (from the measured signatures of Claude Code 2.1.x and older wordings):

* Only the current turn counts: the lines after the last prompt echo (``❯`` + space, or the old
  ``>``), and above the live input box (``❯`` + U+00A0 between two ``─`` rules). The echo of the
  auto-issued ``/rate-limit-options`` does not start a turn while its menu is open.
* Only the agent's own status lines count: a ``⎿`` line (not the first one under a tool call,
  which is tool output), a ``●``/``⏺`` line that starts with ``API Error``, a spinner line that
  says ``Retrying in``, and the rate-limit menu. Prose, code, tool output, the user's prompt and
  the footer (usage warnings live there) never count. Text with no Claude Code structure at all
  (a pasted message, a log excerpt) is read line by line with the same grammar.
* A status line must be a whole status message, not merely contain one.
* A retry line is provisional (``retrying``); the last final status line wins over it, so a 5xx
  final line vetoes a "Session limit reached · Retrying …" spinner.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from agentq.agents.status import (
    Kind,
    Status,
    has_server_veto,
    parse_banner,
    parse_retry,
    parse_status,
)

logger = logging.getLogger(__name__)

__all__ = [
    "Activity",
    "Kind",
    "PaneReading",
    "SignalReading",
    "classify_activity",
    "classify_hook_payload",
    "classify_pane",
    "classify_transcript",
    "classify_transcript_entry",
]

LIVE_PROMPT = "❯\u00a0"
ECHO_PREFIXES = ("❯ ", "> ")
BULLETS = ("●", "⏺")
ELBOW = "⎿"
SPINNER_GLYPHS = frozenset("·✢*✶✻✽✳∗")
RATE_LIMIT_COMMAND = "/rate-limit-options"
# Hook ``error`` values. billing_error counts as quota: the account cannot run until someone
# pays, and the remedy is the same as for an exhausted quota (another account), not a retry.
QUOTA_ERRORS = frozenset({"rate_limit", "billing_error"})
SERVER_ERRORS = frozenset({"server_error", "overloaded"})

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?")
_RULE = re.compile(r"^\s*[─━▔═]{8,}\s*$")
_OLD_LIVE = re.compile(r"^│ >(?:\s|$)")  # the boxed input line of 1.0.x versions
_BOX_EDGE = ("│", "╭", "╰", "┃")
# A tool call "Bash(…)", "mcp__x__y (MCP)(…)": its first ⎿ is always its own output. Collapsed
# summaries ("Read 2 files (ctrl+o to expand)") have no ⎿ of their own and are not listed.
_TOOL_HEADER = re.compile(r"^[A-Za-z_][\w.:-]*(?: \([^()]{0,40}\))?\(")
_OPTION = re.compile(r"^\s*(?:❯\s?)?\d{1,2}\.\s+\S")
_SELECTED_OPTION = re.compile(r"^\s*❯\s?\d{1,2}\.\s+(?P<label>\S.*)$")
_ECHOED_OPTION = re.compile(r"^[❯>] ?\d{1,2}\.\s")
_DIALOG_FOOTER = re.compile(r"Esc to cancel|Enter to confirm|Enter to select", re.IGNORECASE)
_RATE_LIMIT_OPTION = re.compile(r"^\s*(?:❯\s?)?\d{1,2}\.\s+Stop and wait for limit to reset\b")
_PERMISSION = re.compile(r"^\s*Do you want to .{1,200}\?\s*$|Tab to amend")
_STARTUP_DIALOG = re.compile(r"Bypass Permissions mode|trust (?:the files in )?this folder", re.I)
_BUSY_FOOTER = re.compile(r"esc to interrupt|Press up to edit queued messages", re.IGNORECASE)
_SPINNER_ACTIVE = re.compile(r"…|\.\.\.|Retrying in|esc to interrupt", re.IGNORECASE)
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
class PaneReading:
    """The classification of one pane capture.

    ``retrying`` is True when the kind rests only on a retry spinner line (the agent is still
    retrying, no final status yet): a provisional reading to confirm with a structured signal.
    """

    kind: Kind
    reset_text: str | None
    activity: Activity
    evidence: str | None
    retrying: bool = False

    def to_dict(self) -> dict[str, object]:
        """The reading as plain JSON-ready data."""
        return {
            "kind": str(self.kind),
            "reset_text": self.reset_text,
            "activity": str(self.activity),
            "evidence": self.evidence,
            "retrying": self.retrying,
        }


@dataclass(frozen=True)
class SignalReading:
    """The classification of a structured signal (transcript entry, hook payload)."""

    kind: Kind
    reset_text: str | None = None
    evidence: str | None = None

    def to_dict(self) -> dict[str, object]:
        """The reading as plain JSON-ready data."""
        return {"kind": str(self.kind), "reset_text": self.reset_text, "evidence": self.evidence}


@dataclass(frozen=True)
class _Layout:
    """Where the parts of a pane are: the current turn, the live input line, a dialog."""

    lines: list[str]
    start: int
    end: int
    live: int | None
    structured: bool
    dialog: list[str]


def classify_pane(text: str, title: str | None = None) -> PaneReading:
    """Classify a pane capture (and optionally its title) into kind, reset text and activity."""
    layout = _layout(_split(text))
    activity = _activity(layout, title)
    statuses = _statuses(layout.lines, layout.start, layout.end, structured=layout.structured)
    # Newer versions announce an auto-continue ("Usage limit reached · continuing
    # automatically at 3:45pm") and its end in a banner under the input box.
    banners = (parse_banner(line) for line in _footer(layout.lines, layout.live))
    statuses += [banner for banner in banners if banner is not None]
    if _has_rate_limit_menu(layout.dialog):
        quota = [status for status in statuses if status.kind is Kind.QUOTA]
        if not quota:
            return PaneReading(Kind.QUOTA, None, activity, "rate-limit menu is open")
        evidence = f"rate-limit menu is open; {quota[-1].evidence}"
        return PaneReading(Kind.QUOTA, quota[-1].reset_text, activity, evidence)
    decided = _decide(statuses)
    if decided is None:
        return PaneReading(Kind.OK, None, activity, None)
    return PaneReading(
        decided.kind, decided.reset_text, activity, decided.evidence, decided.retrying
    )


def classify_activity(text: str, title: str | None = None) -> Activity:
    """Tell idle, busy, permission dialog or menu from a pane capture and its title."""
    return _activity(_layout(_split(text)), title)


def classify_transcript_entry(entry: Mapping[str, object]) -> SignalReading:
    """Classify one transcript entry; only API error entries can be other than ok."""
    if entry.get("isApiErrorMessage") is not True:
        return SignalReading(Kind.OK)
    return _classify_error(
        entry.get("error"), entry.get("apiErrorStatus"), _entry_text(entry), "transcript"
    )


def classify_transcript(lines: Iterable[str]) -> SignalReading:
    """Classify a transcript (JSONL lines): the last assistant entry decides.

    Only an API error entry (``isApiErrorMessage``) can say quota or server_error; an ordinary
    assistant entry after it means the agent recovered, so it resets the reading to ok (its
    text is never read). User, tool and system entries are skipped; bad lines are ignored.
    """
    reading = SignalReading(Kind.OK)
    for line in lines:
        entry = _json_object(line)
        if entry is not None and entry.get("type") == "assistant":
            reading = classify_transcript_entry(entry)
    return reading


def classify_hook_payload(payload: Mapping[str, object]) -> SignalReading:
    """Classify a hook payload: ``StopFailure`` by its ``error``; everything else is ok."""
    event = payload.get("hook_event_name")
    if event != "StopFailure":
        return SignalReading(Kind.OK, None, f"hook {event}" if isinstance(event, str) else None)
    message = payload.get("last_assistant_message")
    text = message if isinstance(message, str) else ""
    return _classify_error(payload.get("error"), None, text, "StopFailure")


def _split(text: str) -> list[str]:
    """The pane's lines without colour codes, carriage returns or trailing blanks."""
    clean = _ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    return [line.rstrip(" \t") for line in clean.split("\n")]


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


def _layout(lines: list[str]) -> _Layout:
    """Find the current turn, the live input line and any open dialog."""
    echoes = [index for index in range(len(lines)) if _is_echo(lines, index)]
    last_echo = echoes[-1] if echoes else -1
    live = next(
        (index for index in range(len(lines) - 1, last_echo, -1) if _is_live(lines[index])), None
    )
    end = len(lines) if live is None else _box_top(lines, live)
    dialog = [] if live is not None else _dialog_lines(lines, last_echo + 1)
    start = 0
    for index in reversed(echoes):
        command = lines[index][2:].strip()
        if command == RATE_LIMIT_COMMAND and _has_rate_limit_menu(dialog):
            continue  # the menu's own echo: the quota message is in the turn above it
        start = index + 1
        break
    structured = bool(echoes) or live is not None or any(_is_bullet(line) for line in lines)
    return _Layout(lines, start, end, live, structured, dialog)


def _box_top(lines: list[str], live: int) -> int:
    """The first line of the input box: the rule above the live line, or the line itself."""
    above = lines[live - 1] if live > 0 else ""
    return live - 1 if _RULE.match(above) or above.startswith("╭") else live


def _footer(lines: list[str], live: int | None) -> list[str]:
    """The lines under the input box (hints, warnings, banners), or none without a box."""
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


def _is_bullet(line: str) -> bool:
    """True for a message line that starts with Claude Code's ● (⏺ on macOS) bullet."""
    return line.startswith(BULLETS)


def _is_spinner(line: str) -> bool:
    """True for a spinner/status line: a spinner glyph at column 0, then a space."""
    return len(line) > 2 and line[0] in SPINNER_GLYPHS and line[1] == " "


def _starts_block(line: str) -> bool:
    """True when a line opens a new block instead of continuing the previous one."""
    stripped = line.strip()
    return (
        stripped.startswith((ELBOW, *BULLETS, "❯", *_BOX_EDGE))
        or _is_spinner(line)
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


def _statuses(lines: list[str], start: int, end: int, *, structured: bool) -> list[Status]:
    """Every status message in ``lines[start:end]``, in order."""
    found: list[Status] = []
    after_tool = False
    index = start
    while index < end:
        line = lines[index]
        stripped = line.strip()
        if not stripped or _RULE.match(line):
            after_tool = False
            index += 1
            continue
        status: Status | None = None
        if stripped.startswith(ELBOW):
            block, index = _gather(lines, index, end, stripped[1:].strip())
            # The first ⎿ under a tool call is that tool's output, whatever it says.
            status = None if after_tool else parse_status(block)
            after_tool = False
        elif _is_bullet(line):
            content = stripped[1:].strip()
            block, index = _gather(lines, index, end, content)
            after_tool = bool(_TOOL_HEADER.match(content))
            status = None if after_tool else parse_status(block, bullet=True)
        elif _is_spinner(line):
            block, index = _gather(lines, index, end, stripped[1:].strip())
            status = parse_retry(block, spinner=True)
            after_tool = False
        else:
            block, index = _gather(lines, index, end, stripped)
            status = None if structured else parse_status(block)
        if status is not None:
            found.append(status)
    return found


def _decide(statuses: list[Status]) -> Status | None:
    """The last final status, else the last retry status, else None."""
    finals = [status for status in statuses if not status.retrying]
    if finals:
        return finals[-1]
    return statuses[-1] if statuses else None


def _has_rate_limit_menu(dialog: list[str]) -> bool:
    """True when the "What do you want to do?" rate-limit menu is open."""
    return any(_RATE_LIMIT_OPTION.match(line) for line in dialog)


def _activity(layout: _Layout, title: str | None) -> Activity:
    """Dialogs first (they replace the input box), then busy signs, then the live input line."""
    dialog = _dialog_activity(layout.dialog)
    if dialog is not None:
        return dialog
    if _title_is_busy(title) or _text_is_busy(layout):
        return Activity.BUSY
    if layout.live is not None or _title_is_idle(title):
        return Activity.IDLE
    return Activity.UNKNOWN


def _dialog_activity(dialog: list[str]) -> Activity | None:
    """Menu or permission when a dialog with numbered options replaced the input box."""
    if not any(_OPTION.match(line) for line in dialog):
        return None
    if _has_rate_limit_menu(dialog) or any(_STARTUP_DIALOG.search(line) for line in dialog):
        return Activity.MENU
    selected = [match["label"] for line in dialog if (match := _SELECTED_OPTION.match(line))]
    asks = any(_PERMISSION.search(line) for line in dialog)
    if asks or any(label.startswith("Yes") for label in selected):
        return Activity.PERMISSION
    return Activity.MENU if selected else None


def _text_is_busy(layout: _Layout) -> bool:
    """True when the footer says "esc to interrupt" or the turn's last spinner line is active."""
    lines = layout.lines
    if any(_BUSY_FOOTER.search(line) for line in _footer(lines, layout.live)):
        return True
    # The spinner line is replaced when the turn ends; a message after it means it is stale.
    marks = [
        line for line in lines[layout.start : layout.end] if _is_spinner(line) or _is_bullet(line)
    ]
    return bool(marks) and _is_spinner(marks[-1]) and bool(_SPINNER_ACTIVE.search(marks[-1]))


def _title_is_busy(title: str | None) -> bool:
    """True when the pane title starts with a braille spinner frame (⠂, ⠐, …)."""
    head = (title or "").strip()[:1]
    return bool(head) and "\u2800" <= head <= "\u28ff"


def _title_is_idle(title: str | None) -> bool:
    """True for the ✳ title Claude Code shows when idle or waiting for permission."""
    return (title or "").strip().startswith("✳")


def _message_statuses(text: str) -> list[Status]:
    """The status messages in a structured signal's text (read like an unstructured pane)."""
    lines = _split(text)
    return _statuses(lines, 0, len(lines), structured=False)


def _classify_error(error: object, status: object, text: str, source: str) -> SignalReading:
    """Classify an API error from its error name, HTTP status and displayed text."""
    name = _error_name(error)
    code = _status_code(status)
    decided = _decide(_message_statuses(text))
    evidence = f"{source} error={name} status={code}: {' '.join(text.split())[:200]}"
    # As on the pane, a 5xx (from the status or the displayed final error) vetoes quota.
    shown_server = decided is not None and decided.kind is Kind.SERVER_ERROR
    if has_server_veto(text) or (code is not None and code >= 500) or name in SERVER_ERRORS:
        return SignalReading(Kind.SERVER_ERROR, None, evidence)
    if shown_server and not (decided is not None and decided.retrying):
        return SignalReading(Kind.SERVER_ERROR, None, evidence)
    if name in QUOTA_ERRORS or code == 429:
        reset = decided.reset_text if decided and decided.kind is Kind.QUOTA else None
        return SignalReading(Kind.QUOTA, reset, evidence)
    if decided is not None and decided.kind is not Kind.OK:
        return SignalReading(decided.kind, decided.reset_text, evidence)
    return SignalReading(Kind.OK, None, evidence)


def _error_name(error: object) -> str | None:
    """The error name of a hook/transcript ``error`` field (a string, or an object with type)."""
    if isinstance(error, Mapping):
        error = error.get("type")
    return error.strip().lower() if isinstance(error, str) and error.strip() else None


def _status_code(status: object) -> int | None:
    """An HTTP status given as an int or a numeric string."""
    if isinstance(status, bool):
        return None
    if isinstance(status, int):
        return status
    if isinstance(status, str) and status.strip().isdigit():
        return int(status.strip())
    return None


def _entry_text(entry: Mapping[str, object]) -> str:
    """The displayed text of a transcript entry (its message's text blocks)."""
    message = entry.get("message")
    content = message.get("content") if isinstance(message, Mapping) else entry.get("content")
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = [
        block["text"]
        for block in content
        if isinstance(block, Mapping) and isinstance(block.get("text"), str)
    ]
    return "\n".join(texts)


def _json_object(line: str) -> Mapping[str, object] | None:
    """One JSONL line as an object, or None when it is blank, broken or not an object."""
    if not line.strip():
        return None
    try:
        value = json.loads(line)
    except ValueError:
        logger.debug("skipping a transcript line that is not JSON")
        return None
    return value if isinstance(value, dict) else None
