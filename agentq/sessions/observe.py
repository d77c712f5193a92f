"""What the executor reads for the session machine besides tmux: hook signals and transcripts.

Small adapters: a hook signal file becomes the machine's :class:`~agentq.sessions.model.Hook`
(a ``Stop`` whose background agents still run does not end the task; the hooks of Claude
Code's automatic continue are marked); a quota report becomes the accounts side's
:class:`~agentq.agents.readings.Reading`; a task's transcript gives its size and mtime (the
stale rule), the task's answer when no ``Stop`` hook carried it, and what the task used.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from agentq.agents.classify import AutoContinue, Login, classify_hook_payload, stop_ends_task
from agentq.agents.hooks import Signal, read_signals
from agentq.agents.profiles import transcript_path
from agentq.agents.readings import Reading, WindowUse
from agentq.agents.resets import parse_reset
from agentq.agents.transcript import last_assistant_text, quota_reading, task_entries
from agentq.agents.usage import has_reply, task_usage, usage_footer
from agentq.queue.protocol import Claim
from agentq.sessions import model as m
from agentq.sessions.delivery import first_line
from agentq.sessions.settings import SessionSettings

#: A quota reading quotes at most this much of what the session said.
READING_TEXT_MAX = 120
#: Claude Code writes its transcript in batches: the entries of a turn can reach the file
#: just after the turn's ``Stop`` hook. A footer waits for them this often, this many times.
TRANSCRIPT_LAG_STEP = 0.05
TRANSCRIPT_LAG_STEPS = 40

#: Slot states in which a task works (its transcript is watched by the stale rule).
WORKING_STATES = frozenset({m.SlotState.BUSY, m.SlotState.QUOTA})


def hook_of(sig: Signal) -> m.Hook:
    """The fields of a hook signal the machine reads."""
    payload = sig.payload()
    return m.Hook(
        event=sig.event,
        received_at=sig.received_at,
        session_id=sig.session_id,
        prompt=sig.prompt,
        transcript_path=sig.transcript_path,
        error=sig.error,
        last_assistant_message=sig.last_assistant_message,
        ends_task=sig.event != "Stop" or stop_ends_task(payload),
        auto_continue=classify_hook_payload(payload).auto_continue is AutoContinue.FIRED,
    )


def turn_signalled(state_dir: Path, session: str, claimed_at: str) -> bool:
    """Whether hook signals since the claim show ``session`` took (or finished) this turn."""
    try:
        since = datetime.fromisoformat(claimed_at).timestamp()
    except ValueError:
        return False
    return any(
        sig.session == session and sig.event in m.TURN_EVENTS and sig.received_at >= since
        for sig in read_signals(state_dir)
    )


def reading_of(
    session: str,
    account: str,
    transcript: str | None,
    report: m.Report,
    now: datetime,
    timezone: str,
) -> Reading:
    """A report as the accounts side reads it: the window, an exact reset when the
    transcript records one (2.1.332's ``quotaLimits``), else the displayed reset parsed."""
    window = report.window
    reset_at = _reset(report.reset_text, now, timezone)
    if report.source == "hook" and report.kind == "quota" and transcript:
        structured = quota_reading(Path(transcript))
        if structured is not None:
            window = structured.window or window
            reset_at = structured.resets_at or reset_at
    use = None
    if report.warning is not None:
        warning = report.warning
        reset = _reset(warning.reset_text, now, timezone)
        use = WindowUse(warning.window, warning.percent, warning.over, reset)
    text = report.text[:READING_TEXT_MAX]
    kind = report.kind
    return Reading(session, report.source, kind, reset_at, text, now, account, window, use)


def _reset(reset_text: str | None, now: datetime, timezone: str) -> datetime | None:
    return parse_reset(reset_text, now, timezone) if reset_text else None


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


def stale_fields(claim: Claim, session: str, idle: float, after: float) -> dict[str, object]:
    """The ``task_stale`` event's fields for a task that stood still ``idle`` seconds."""
    return {
        "project": claim.project.path.name,
        "task": claim.name,
        "session": session,
        "idle_s": round(idle),
        "stale_after": after,
        "message": f"{claim.task_id} on {session}: no progress for {idle:.0f}s",
    }


def task_usage_footer(
    finish: m.Finish, settings: SessionSettings, account: str, cwd: Path, prompt: str
) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The footer's cost and usage rows: the task's transcript from our prompt on, its agents'.

    The cost is at API prices: "API-equivalent" unless the account signs in with an API key;
    ``unknown`` when the transcript or a model's price is not known.
    """
    home, first = settings.accounts.get(account), first_line(prompt)
    login = settings.logins.get(account, Login.UNKNOWN)
    details = dict(finish.details)
    path = details.get("transcript")
    session_id = details.get("session_id")
    if not path and session_id and home is not None:
        path = str(transcript_path(home, cwd, session_id))
    if not path:
        return usage_footer([], [], first, login)
    main, agents = task_entries(Path(path))
    pause = threading.Event()  # never set: a bounded wait for a lagging file, not a sleep loop
    # A completed task replied at least once; a failed one may have nothing to wait for. The
    # Stop hook can run before the transcript holds the turn it ends (its reply, and the
    # background agents it reported on): wait for the reply the hook quoted.
    steps = TRANSCRIPT_LAG_STEPS if finish.ending is m.Ending.DONE else 0
    for _ in range(steps):
        usage = task_usage(main, agents, first)
        caught_up = not finish.result or has_reply(main, finish.result)
        if usage is not None and usage.replies and caught_up:
            break
        pause.wait(TRANSCRIPT_LAG_STEP)
        main, agents = task_entries(Path(path))
    return usage_footer(main, agents, first, login)
