"""What is typed into an agent and how its screen and transcript are read (pure helpers)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from agentq.agents.profiles import UUID_RE
from agentq.queue.jobs import Job

TAIL_LINES = 15

CONTINUE_PROMPT = (
    "The usage limit interrupted your previous turn; the session now runs on another "
    "account. Continue the task from where you stopped."
)
SHELLS = frozenset({"bash", "zsh", "sh", "fish", "dash", "ksh"})


def prompt_text(job: Job) -> str:
    """What is typed into the agent: a short header (task id, project) and the task body."""
    claim = job.claim
    project, attempt = claim.project.path.name, claim.record.attempts
    header = f"[agentq task {claim.name} · project {project} · attempt {attempt}]"
    return f"{header}\n\n{job.task.body}"


def last_echo(screen: str) -> str:
    """The last past-prompt echo line on screen (``❯`` + normal space), or ''."""
    for line in reversed(screen.splitlines()):
        if line.startswith("❯ "):
            return line
    return ""


def has_pending_input(screen: str) -> bool:
    """Whether the live input line (``❯`` + U+00A0) holds text waiting for Enter."""
    for line in reversed(screen.splitlines()):
        if line.startswith("❯\u00a0"):
            return bool(line[2:].strip())
    return False


def last_assistant_text(path: Path) -> str:
    """The text of the last assistant entry of a transcript JSONL file ('' when none)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if (
            not isinstance(entry, dict)
            or entry.get("type") != "assistant"
            or entry.get("isApiErrorMessage")
        ):
            continue
        content = (entry.get("message") or {}).get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            texts = [
                c.get("text", "")
                for c in content
                if isinstance(c, dict) and c.get("type") == "text"
            ]
            if texts:
                return "\n".join(texts)
    return ""


def screen_tail(screen: str, lines: int = TAIL_LINES) -> str:
    kept = [ln.rstrip() for ln in screen.splitlines() if ln.strip()]
    return "\n".join(kept[-lines:])


def find_session_by_prompt(account_home: Path, cwd: Path, first_line: str) -> str | None:
    """The session id whose transcript (``projects/<cwd slug>/*.jsonl``) holds our prompt.

    The fallback when no hook reported the id yet: the agent writes the user's prompt
    to its transcript as soon as it is submitted. Newest transcript first.
    """
    if not first_line:
        return None
    folder = account_home / "projects" / re.sub(r"[^A-Za-z0-9]", "-", str(cwd))
    try:
        candidates = sorted(folder.glob("*.jsonl"), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return None
    # As the text may appear inside a JSON string: escaped or not.
    needles = {json.dumps(first_line)[1:-1], json.dumps(first_line, ensure_ascii=False)[1:-1]}
    for path in candidates[:20]:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if UUID_RE.fullmatch(path.stem) and any(n in text for n in needles):
            return path.stem
    return None
