"""What the executor reads for the session machine besides tmux: hook signals and transcripts.

Small adapters: a hook signal file becomes the machine's :class:`~agentq.sessions.model.Hook`;
a task's transcript gives its size and mtime (the stale rule) and, when no ``Stop`` hook
carried it, the task's answer.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from agentq.agents.hooks import Signal
from agentq.agents.profiles import transcript_path
from agentq.agents.transcript import last_assistant_text
from agentq.sessions import model as m

#: Slot states in which a task works (its transcript is watched by the stale rule).
WORKING_STATES = frozenset({m.SlotState.BUSY, m.SlotState.QUOTA})


def hook_of(sig: Signal) -> m.Hook:
    """The fields of a hook signal the machine reads."""
    return m.Hook(
        event=sig.event,
        received_at=sig.received_at,
        session_id=sig.session_id,
        prompt=sig.prompt,
        transcript_path=sig.transcript_path,
        error=sig.error,
        last_assistant_message=sig.last_assistant_message,
    )


def _transcript_file(
    path: str | None,
    accounts: Mapping[str, Path],
    account: str,
    cwd: Path | None,
    session_id: str | None,
) -> Path | None:
    """The transcript a hook named, or the one the agent keeps for ``session_id`` in ``cwd``."""
    if path:
        return Path(path)
    home = accounts.get(account)
    if session_id and cwd is not None and home is not None:
        return transcript_path(home, cwd, session_id)
    return None


def transcript_stamp(
    slot: m.Slot, task: m.TaskView | None, accounts: Mapping[str, Path]
) -> m.FileStamp | None:
    """The size and mtime of a working task's transcript; None when unknown or missing."""
    if slot.state not in WORKING_STATES or task is None:
        return None
    path = _transcript_file(slot.transcript, accounts, slot.account, slot.cwd, task.session_id)
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return m.FileStamp(st.st_size, st.st_mtime_ns)


def transcript_answer(ref: m.TranscriptRef, accounts: Mapping[str, Path]) -> str:
    """The last assistant text of the session's transcript (the fallback result)."""
    path = _transcript_file(ref.path, accounts, ref.account, ref.cwd, ref.session_id)
    return last_assistant_text(path) if path is not None else ""
