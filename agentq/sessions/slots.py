"""A pool slot: one tmux session of ours, its place in the cycle, and the task it works on."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from agentq.queue.jobs import Job


class SlotState(Enum):
    """Where a pool session is in its cycle."""

    EMPTY = "empty"
    LAUNCHING = "launching"
    IDLE = "idle"
    PASTED = "pasted"
    SUBMITTED = "submitted"
    BUSY = "busy"
    QUOTA = "quota"
    PARKED = "parked"
    EXITING = "exiting"


@dataclass
class SessionSettings:
    """What the executor needs from the configuration."""

    account: str
    account_home: Path
    default_cwd: Path
    delivery_timeout: float = 15.0
    delivery_retries: int = 3
    idle_timeout: float = 1800.0
    task_timeout: float | None = None
    permission_timeout: float = 300.0
    on_permission: str = "fail"
    permission_answer: str = "1"
    recycle: bool = True
    timezone: str = "UTC"
    confirm_polls: int = 2
    cooldown: float = 300.0


@dataclass
class Slot:
    """One pool session and the job it is working on."""

    name: str
    state: SlotState = SlotState.EMPTY
    cwd: Path | None = None
    since: float = 0.0
    job: Job | None = None
    tries: int = 0
    delivered_ns: int = 0
    session_id: str | None = None
    transcript: str | None = None
    last_screen: str = ""
    last_change: float = 0.0
    idle_seen_at: float | None = None
    permission_since: float | None = None
    permission_text: str = ""
    stale: bool = False
    continuing: bool = False
    #: The agent session to ``--resume`` on every (re)launch of this task, after a swap.
    resume_id: str | None = None
    launch_failures: int = 0
    #: The agent session that took our prompt (its UserPromptSubmit carried our header).
    bound_id: str | None = None
    #: When the current agent process was launched (time_ns): older signals are its predecessor's.
    launched_ns: int = 0
    #: (reset text, evidence) of a quota the agent's own hook reported for this turn.
    quota_hint: tuple[str | None, str] | None = None
    retry_at: float = 0.0
    submitted: bool = False
    last_verdict: tuple[str, str, bool] | None = None
    #: The last prompt echo on screen before our paste: pane readings count only after ours.
    echo_baseline: str = ""
    notes: list[tuple[str, str]] = field(default_factory=list)
