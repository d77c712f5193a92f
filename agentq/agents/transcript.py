"""Reading an agent's transcript files (I/O: this module opens files; its callers stay pure).

Claude Code keeps each session in ``<config dir>/projects/<cwd slug>/<session id>.jsonl``
(:func:`agentq.agents.profiles.transcript_path`), and the agents a session started in
``<session id>/subagents/agent-<id>.jsonl`` beside it. The session executor reads the last
answer from it when a turn ended without a ``Stop`` hook, finds the session that holds our
prompt when no hook reported its id yet, reads a limit's exact window and reset (2.1.332's
``quotaLimits``) and what a task used (:mod:`agentq.agents.usage` sums it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from agentq.agents.classify import Kind, SignalReading, classify_transcript
from agentq.agents.profiles import UUID_RE

#: How many of the newest transcripts :func:`find_session_by_prompt` opens.
NEWEST_SEARCHED = 20
#: A limit is read from the transcript's last lines only (its error entry is the newest).
TAIL_LINES = 200


def read_entries(path: Path) -> list[dict[str, object]]:
    """The JSON objects of a JSONL transcript, in order ([] when it cannot be read)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    entries = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def task_entries(path: Path) -> tuple[list[dict[str, object]], list[list[dict[str, object]]]]:
    """A session transcript's entries and those of each agent it started (``subagents/``)."""
    folder = path.with_suffix("") / "subagents"
    try:
        agents = sorted(folder.glob("*.jsonl"))
    except OSError:
        agents = []
    return read_entries(path), [read_entries(agent) for agent in agents]


def quota_reading(path: Path) -> SignalReading | None:
    """The limit the transcript's last reply records (window, exact reset), if it is one."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()[-TAIL_LINES:]
    except OSError:
        return None
    reading = classify_transcript(lines)
    return reading if reading.kind is Kind.QUOTA else None


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
        text = _entry_text((entry.get("message") or {}).get("content"))
        if text is not None:
            return text
    return ""


def _entry_text(content: object) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            c.get("text", "") for c in content if isinstance(c, dict) and c.get("type") == "text"
        ]
        if texts:
            return "\n".join(texts)
    return None


def find_session_by_prompt(
    account_home: Path, cwd: Path, first_line: str, hint: str | None = None, since: float = 0.0
) -> str | None:
    """The session id whose transcript (``projects/<cwd slug>/*.jsonl``) holds our prompt.

    What a resume needs: a session whose conversation holds the task (a hook naming a
    session says only which process ran, not that the prompt reached its transcript).
    Only transcripts modified since ``since`` (wall time) are read: ``hint``'s first,
    then the newest.
    """
    if not first_line:
        return None
    folder = account_home / "projects" / re.sub(r"[^A-Za-z0-9]", "-", str(cwd))
    try:
        stamped = [(path.stat().st_mtime, path) for path in folder.glob("*.jsonl")]
    except OSError:
        return None
    candidates = [path for mtime, path in sorted(stamped, reverse=True) if mtime >= since]
    if hint:
        first = folder / f"{hint}.jsonl"
        candidates.sort(key=lambda path: path != first)  # stable: the rest stay newest first
    # As the text may appear inside a JSON string: escaped or not.
    needles = {json.dumps(first_line)[1:-1], json.dumps(first_line, ensure_ascii=False)[1:-1]}
    for path in candidates[:NEWEST_SEARCHED]:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if UUID_RE.fullmatch(path.stem) and any(n in text for n in needles):
            return path.stem
    return None
