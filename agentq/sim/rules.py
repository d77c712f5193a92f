"""What the simulated agent says and decides: pure functions of prompt text, file content and time.

Split from :mod:`agentq.sim` (the interactive program) so the wording Claude Code
2.1.197 shows, and the ``sim:`` script a prompt can carry, read on their own.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentq.core.durations import parse_duration
from agentq.sim.term import fit

VERSION = "2.1.197"
DEFAULT_WORK = 1.0
HOOK_TIMEOUT = 60.0
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
QUOTA_FILE = "sim-quota"
#: ``<requests> <epoch>``: the account's prompts after the first ``<requests>`` hit the limit
#: until ``<epoch>``; the prompts are counted in :data:`REQUESTS_FILE` (one line each).
LIMIT_FILE = "sim-limit"
REQUESTS_FILE = "sim-requests"
SERVER_ERROR_FILE = "sim-server-error"
SERVER_ERROR_TEXT = (
    "API Error: 500 Internal server error. This is a server-side issue, usually temporary"
    " — try again in a moment."
)
FAIL_TEXT = "API Error: Connection error."
INTERRUPTED = "  ⎿  Interrupted · What should Claude do instead?"
PERMISSION_COMMAND = "echo agentq-sim-permission"
#: The permission dialog (below a rule); it replaces the input box like Claude Code's.
PERMISSION_DIALOG = (
    " Bash command",
    "",
    f"   {PERMISSION_COMMAND}",
    "   Scripted permission request (agentq sim)",
    "",
    " Do you want to proceed?",
    " ❯ 1. Yes",
    "   2. Yes, and always allow access to this command for this session",
    "   3. No",
    "",
    " Esc to cancel · Tab to amend",
)
#: The usage-limit menu Claude Code opens the first time per process (a rule after line 3).
LIMIT_MENU = (
    "",
    "❯ /rate-limit-options",
    "",
    "  What do you want to do?",
    "",
    "  ❯ 1. Stop and wait for limit to reset",
    "    2. Upgrade your plan",
    "",
    "  Enter to confirm · Esc to cancel",
)
_DIRECTIVE_RE = re.compile(r"^\s*sim:\s*(\w+)\s*(.*?)\s*$", re.IGNORECASE)


#: A background agent's name in the pane and in ``background_tasks``.
BACKGROUND_AGENT = "background helper"
#: What the main turn says when it leaves a background agent running.
BACKGROUND_STARTED = "Started a background agent (background helper); it reports when it ends."
BACKGROUND_RESULT = "SUB RESULT: the background work is finished"
#: Token counts the simulated replies report besides their text's: a cached system prompt.
CACHE_READ_TOKENS = 2048
SYSTEM_TOKENS = 12


@dataclass(frozen=True)
class Action:
    """A change the simulated agent makes in its folder at the end of its turn.

    ``write``: ``path`` (relative to the folder) gets ``text`` plus a newline;
    ``commit``: ``git add -A`` then ``git commit -m text``.
    """

    verb: str
    path: str = ""
    text: str = ""


@dataclass(frozen=True)
class Script:
    """What the ``sim:`` lines of a prompt ask for."""

    work: float = DEFAULT_WORK
    answer: str | None = None
    fail: bool = False
    permission: bool = False
    exit: bool = False
    actions: tuple[Action, ...] = ()
    #: Seconds a background agent started by the turn runs after the turn's first Stop.
    background: float = 0.0
    #: A usage warning shown from the turn on: percent used, and ``session`` or ``weekly``.
    warning: int | None = None
    warning_window: str = "session"


def parse_script(prompt: str) -> Script:
    """Read the ``sim: …`` directives of a prompt (unknown ones are ignored)."""
    fields: dict[str, Any] = {}
    actions: list[Action] = []
    for line in prompt.splitlines():
        match = _DIRECTIVE_RE.match(line)
        if not match:
            continue
        verb, arg = match.group(1).lower(), match.group(2)
        if verb == "work":
            try:
                fields["work"] = parse_duration(arg)
            except ValueError:
                continue
        elif verb == "hang":
            fields["work"] = math.inf
        elif verb == "answer":
            fields["answer"] = arg
        elif verb == "background":
            try:
                fields["background"] = parse_duration(arg)
            except ValueError:
                continue
        elif verb == "warning":
            fields.update(_warning(arg))
        elif verb in ("fail", "permission", "exit"):
            fields[verb] = True
        elif verb == "write" and arg:
            path, _, text = arg.partition(" ")
            actions.append(Action("write", path, text))
        elif verb == "commit":
            actions.append(Action("commit", text=arg or "agentq sim commit"))
    return Script(**fields, actions=tuple(actions))


def relative_parts(path: str) -> tuple[str, ...] | None:
    """The parts of a path that stays inside its folder, or ``None`` (absolute, ``..``, NUL)."""
    if not path or "\0" in path or path.startswith(("/", "\\")):
        return None
    parts = tuple(part for part in path.split("/") if part not in ("", "."))
    if not parts or ".." in parts:
        return None
    return parts


def _warning(arg: str) -> dict[str, Any]:
    """``92%`` or ``80% weekly``: the warning's percentage and window (nothing when invalid)."""
    words = arg.split()
    number = words[0].rstrip("%") if words else ""
    if not number.isdigit() or not 0 < int(number) <= 100:
        return {}
    window = "weekly" if len(words) > 1 and words[1].lower().startswith("week") else "session"
    return {"warning": int(number), "warning_window": window}


def warning_text(percent: int, window: str, reset_at: float, now: float) -> str:
    """The usage warning Claude Code 2.1.197 shows under the input box."""
    hint = "/upgrade to keep using Claude Code" if window == "session" else "try /effort medium"
    reset = format_reset(reset_at, now)
    return f"You've used {percent}% of your {window} limit · resets {reset} · {hint}"


def usage_of(prompt: str, text: str) -> dict[str, int]:
    """A reply's ``usage`` (Anthropic's fields): about four characters a token; none for ''."""
    if not prompt and not text:
        return {
            "input_tokens": 0,
            "output_tokens": 0,
            "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0,
        }
    return {
        "input_tokens": len(prompt) // 4 + SYSTEM_TOKENS,
        "output_tokens": max(1, len(text) // 4),
        "cache_read_input_tokens": CACHE_READ_TOKENS,
        "cache_creation_input_tokens": 0,
    }


def task_notification(agent_id: str, result: str, seconds: float) -> str:
    """The prompt Claude Code submits by itself when a background agent finished."""
    return (
        f"<task-notification>\n<task-id>{agent_id}</task-id>\n<status>completed</status>\n"
        f'<summary>Agent "{BACKGROUND_AGENT}" finished</summary>\n<result>{result}</result>\n'
        f"<usage><duration_ms>{round(seconds * 1000)}</duration_ms></usage>\n</task-notification>"
    )


def default_answer(prompt: str) -> str:
    """``Done: <first line of the prompt, ≤80 chars>`` plus a fixed sentence."""
    lines = [line.strip() for line in prompt.splitlines() if line.strip()]
    plain = [line for line in lines if not _DIRECTIVE_RE.match(line)]
    first = (plain or lines or [""])[0][:80]
    return f"Done: {first} — the agentq simulator did no real work."


def format_reset(reset_at: float, now: float) -> str:
    """Claude Code's reset wording in UTC: ``3pm (UTC)``, ``Nov 24, 5:30am (UTC)``."""
    when = dt.datetime.fromtimestamp(reset_at, dt.UTC)
    hour = when.hour % 12 or 12
    suffix = "am" if when.hour < 12 else "pm"
    clock = f"{hour}{suffix}" if when.minute == 0 else f"{hour}:{when.minute:02d}{suffix}"
    if when.date() != dt.datetime.fromtimestamp(now, dt.UTC).date():
        clock = f"{when:%b} {when.day}, {clock}"
    return f"{clock} (UTC)"


def quota_message(content: str, now: float) -> str | None:
    """The limit line for a ``sim-quota`` file, or None once its epoch reset time passed."""
    text = content.strip()
    head, _, rest = text.partition(" ")
    if head.isdigit() and len(head) <= 12:  # epoch seconds, not an absurd number
        if now >= int(head):
            return None
        text = rest.strip() or "resets " + format_reset(int(head), now)
    text = text or "resets 3pm (UTC)"
    if text.startswith("You"):
        return text
    if not text.startswith("resets"):
        text = "resets " + text
    return f"You've hit your session limit · {text}"


def limit_message(content: str, requests: int, now: float) -> str | None:
    """The limit line for a ``sim-limit`` file once ``requests`` passed its allowance."""
    words = content.split()
    if len(words) != 2 or not all(word.isdigit() for word in words):
        return None
    allowed, reset = int(words[0]), int(words[1])
    if requests <= allowed:
        return None
    return quota_message(f"{reset}", now)


def project_dir(config_dir: Path, cwd: str) -> Path:
    """The transcript folder of ``cwd``: every non-alphanumeric character becomes ``-``."""
    return config_dir / "projects" / re.sub(r"[^A-Za-z0-9]", "-", cwd)


def echo_line(prompt: str, width: int) -> str:
    """The history line of a submitted prompt: ``❯`` + a normal space + its first line."""
    first, _, rest = prompt.strip("\n").partition("\n")
    head, cut = fit(first, max(width - 4, 10))
    return f"❯ {head}" + ("…" if cut or rest else "")


def parse_hooks(text: str) -> dict[str, list[tuple[str, float]]]:
    """``{event: [(command, timeout)]}`` from a Claude Code ``settings.json`` (bad JSON: none)."""
    try:
        settings = json.loads(text)
    except ValueError:
        return {}
    hooks = settings.get("hooks") if isinstance(settings, dict) else None
    found: dict[str, list[tuple[str, float]]] = {}
    for event, groups in (hooks if isinstance(hooks, dict) else {}).items():
        for group in groups if isinstance(groups, list) else []:
            entries = group.get("hooks") if isinstance(group, dict) else None
            for hook in entries if isinstance(entries, list) else []:
                if not isinstance(hook, dict) or not isinstance(hook.get("command"), str):
                    continue
                limit = hook.get("timeout")
                timeout = float(limit) if isinstance(limit, int | float) else HOOK_TIMEOUT
                found.setdefault(event, []).append((hook["command"], timeout))
    return found
