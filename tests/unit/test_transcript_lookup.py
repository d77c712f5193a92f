"""Finding the session whose transcript holds a task's prompt (what a resume needs)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from agentq.agents.transcript import NEWEST_SEARCHED, find_session_by_prompt

CWD = Path("/code/proj")
LINE = "[agentq task t7.md · project proj · attempt 1]"


def _write(home: Path, session_id: str, prompts: list[str], mtime: float) -> None:
    folder = home / "projects" / re.sub(r"[^A-Za-z0-9]", "-", str(CWD))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{session_id}.jsonl"
    entries = [
        {"type": "user", "message": {"content": p}, "sessionId": session_id} for p in prompts
    ]
    path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries))
    os.utime(path, (mtime, mtime))


def _sid(i: int) -> str:
    return f"00000000-0000-4000-8000-{i:012d}"


def test_the_session_whose_transcript_holds_the_prompt_is_found(tmp_path: Path) -> None:
    """Not the newest session, nor the one a hook named: the one that recorded the prompt."""
    _write(tmp_path, _sid(1), ["[agentq task t0.md · project proj · attempt 1]\n\nearlier"], 100)
    _write(tmp_path, _sid(2), [f"{LINE}\n\nDo it."], 200)
    _write(tmp_path, _sid(3), ["[agentq task t9.md · project proj · attempt 1]"], 300)
    assert find_session_by_prompt(tmp_path, CWD, LINE) == _sid(2)
    # A hook named session 1 (it ran the agent), but its transcript never got the prompt.
    assert find_session_by_prompt(tmp_path, CWD, LINE, hint=_sid(1)) == _sid(2)
    assert find_session_by_prompt(tmp_path, CWD, "[agentq task t5.md · project proj") is None


def test_the_hinted_transcript_is_read_even_past_the_newest_searched(tmp_path: Path) -> None:
    """A long task's transcript may be older than many fresh ones: the hint reaches it."""
    _write(tmp_path, _sid(0), [f"{LINE}\n\nDo it."], 10)
    for i in range(1, NEWEST_SEARCHED + 2):
        _write(tmp_path, _sid(i), [f"other {i}"], 100 + i)
    assert find_session_by_prompt(tmp_path, CWD, LINE) is None
    assert find_session_by_prompt(tmp_path, CWD, LINE, hint=_sid(0)) == _sid(0)
    assert find_session_by_prompt(tmp_path, CWD, LINE, hint="../../etc/passwd") is None


def test_only_transcripts_written_since_the_delivery_are_read(tmp_path: Path) -> None:
    """One untouched since before the delivery cannot hold its prompt: it is not opened."""
    _write(tmp_path, _sid(1), [f"{LINE}\n\nDo it."], 100)
    assert find_session_by_prompt(tmp_path, CWD, LINE, since=100) == _sid(1)
    assert find_session_by_prompt(tmp_path, CWD, LINE, since=101) is None
    assert find_session_by_prompt(tmp_path, CWD, LINE, hint=_sid(1), since=101) is None
