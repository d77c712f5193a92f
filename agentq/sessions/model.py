"""The session machine's data: a slot, what it observes, and the actions it asks for.

Frozen dataclasses and enums only (see :mod:`agentq.sessions.machine` for the step that
turns a slot and an observation into the next slot and a list of actions). Pure: nothing
here reads a clock, a file or tmux.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from agentq.agents.readings import ReadingKind, Source
from agentq.agents.status import Login, UsageWarning, Window
from agentq.queue.records import KEEP, Keep, Phase

DEFAULT_LAUNCH_TIMEOUT = 45.0
DEFAULT_EXIT_TIMEOUT = 5.0
DEFAULT_STOP_GRACE = 2.0
DEFAULT_STALE_AFTER = 900.0
#: Hook events that mean the agent took the prompt.
TURN_EVENTS = frozenset({"UserPromptSubmit", "Stop", "StopFailure"})


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


#: States a slot with a task can be in.
TASK_STATES = frozenset(
    {
        SlotState.LAUNCHING,
        SlotState.PASTED,
        SlotState.SUBMITTED,
        SlotState.BUSY,
        SlotState.QUOTA,
        SlotState.PARKED,
    }
)
#: States whose step reads the pane's text (the executor captures only for these).
SCREEN_STATES = frozenset(
    {SlotState.LAUNCHING, SlotState.PASTED, SlotState.SUBMITTED, SlotState.BUSY, SlotState.QUOTA}
)
#: States in which the prompt counts as submitted (a parked task is resumed, not re-typed).
SUBMITTED_STATES = frozenset({SlotState.SUBMITTED, SlotState.BUSY, SlotState.QUOTA})


class Ending(Enum):
    """How a task ended on this slot."""

    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class Instant:
    """One reading of the clock: monotonic seconds for timeouts, wall seconds for signals.

    Hook signals are stamped with the wall clock by the hook process, so telling a new
    process's signals from its predecessor's needs the wall clock; timeouts must not jump
    with it.
    """

    mono: float
    wall: float


@dataclass(frozen=True)
class Rules:
    """The configuration the machine decides by.

    ``permission_answer`` is what to type into a permission dialog past its timeout;
    ``None`` fails the task instead.
    """

    delivery_timeout: float = 15.0
    delivery_retries: int = 3
    idle_timeout: float = 1800.0
    task_timeout: float | None = None
    permission_timeout: float = 300.0
    permission_answer: str | None = None
    recycle: bool = True
    launch_timeout: float = DEFAULT_LAUNCH_TIMEOUT
    exit_timeout: float = DEFAULT_EXIT_TIMEOUT
    stop_grace: float = DEFAULT_STOP_GRACE
    #: A working task whose pane and transcript stand still this long is flagged (never failed).
    stale_after: float = DEFAULT_STALE_AFTER


@dataclass(frozen=True)
class TaskView:
    """The slot's task as the executor and the task's control record tell it.

    ``cwd`` is where the task runs (the project folder today; a worktree of its own
    later). ``session_id`` is read from the control record, which owns it.
    """

    key: str
    cwd: Path
    prompt: str
    timeout: float | None = None
    session_id: str | None = None


@dataclass(frozen=True)
class Hook:
    """One hook signal of the slot's tmux session (the fields the machine reads).

    ``ends_task`` is False for a ``Stop`` whose ``background_tasks`` still run (their
    follow-up turn ends with another ``Stop``); ``auto_continue`` is True for the hooks
    Claude Code sends when its automatic continue after a usage limit fires.
    """

    event: str
    received_at: float
    session_id: str | None = None
    prompt: str | None = None
    transcript_path: str | None = None
    error: str | None = None
    last_assistant_message: str | None = None
    ends_task: bool = True
    auto_continue: bool = False


@dataclass(frozen=True)
class Pane:
    """The slot's tmux session as this poll saw it; ``screen`` only when it was captured.

    ``login`` is how the account the session runs on signs in (it decides what a retried
    limit line means).
    """

    alive: bool
    title: str = ""
    screen: str = ""
    login: Login = Login.UNKNOWN


@dataclass(frozen=True)
class FileStamp:
    """A file's size and modification time as one poll saw them (the task's transcript)."""

    size: int
    mtime_ns: int


@dataclass(frozen=True)
class QuotaHint:
    """A limit the agent's own ``StopFailure`` hook reported for the current turn."""

    reset_text: str | None
    evidence: str
    window: Window | None = None


@dataclass(frozen=True)
class Slot:
    """One pool session and the delivery bookkeeping of its task.

    ``since`` (monotonic) is when the current wait began; ``launched_at`` and
    ``delivered_at`` (wall) bound the signals that belong to the current process and
    delivery. ``account`` is the account its session was launched on.
    """

    name: str
    state: SlotState = SlotState.EMPTY
    account: str = ""
    cwd: Path | None = None
    since: float = 0.0
    tries: int = 0
    launched_at: float = 0.0
    delivered_at: float = 0.0
    transcript: str | None = None
    last_screen: str = ""
    last_change: float = 0.0
    idle_seen_at: float | None = None
    permission_since: float | None = None
    permission_text: str = ""
    #: Left running by a previous daemon: recycled unless a task is adopted on it.
    stale: bool = False
    #: Typing the continue prompt into a resumed session rather than the task's prompt.
    continuing: bool = False
    #: The agent session to ``--resume`` on every (re)launch of this task, after a swap.
    resume_id: str | None = None
    launch_failures: int = 0
    retry_at: float = 0.0
    #: The agent session that took our prompt (its UserPromptSubmit carried our header).
    bound_id: str | None = None
    quota_hint: QuotaHint | None = None
    #: Set when parked: whether the prompt had been submitted (resume) or not (deliver).
    submitted: bool = False
    #: PARKED: the account a resume waits to launch on while the session id is looked up.
    resume_on: str | None = None
    #: The last prompt echo on screen before our paste: pane readings count only after ours.
    echo_baseline: str = ""
    notes: tuple[tuple[str, str], ...] = ()
    #: The stale rule: the pane (its spinner line aside) and the transcript as last seen to
    #: change, when (monotonic), and whether this standstill was flagged already.
    progress_screen: str = ""
    progress_file: FileStamp | None = None
    progress_at: float = 0.0
    flagged_stale: bool = False
    #: A Stop came while background agents the task started still ran: wait for the next.
    background: bool = False
    #: EXITING: whether ``/exit`` was typed (it waits until the agent reads idle).
    exit_sent: bool = True


# -- observations ------------------------------------------------------------------------


@dataclass(frozen=True)
class Tick:
    """A poll: the pane (None when the session is gone), new hook signals, the task, and the
    task's transcript (None when it is not known or not there)."""

    pane: Pane | None
    hooks: tuple[Hook, ...] = ()
    task: TaskView | None = None
    transcript: FileStamp | None = None


@dataclass(frozen=True)
class Assign:
    """Start ``task`` on this free slot, launching on ``account`` if a launch is needed."""

    task: TaskView
    account: str
    pane: Pane | None = None
    note: tuple[str, str] | None = None


@dataclass(frozen=True)
class Adopt:
    """Watch ``task``, delivered to this slot's session before a restart, to completion."""

    task: TaskView
    account: str


@dataclass(frozen=True)
class Warm:
    """Launch an idle agent in ``cwd`` so the pool keeps its minimum."""

    cwd: Path
    account: str


@dataclass(frozen=True)
class Park:
    """Stop the session for an account swap; a task keeps the slot, parked, for a resume."""

    hooks: tuple[Hook, ...] = ()
    task: TaskView | None = None


@dataclass(frozen=True)
class Resume:
    """Relaunch a parked task on ``account``: ``--resume`` it, or deliver it afresh."""

    task: TaskView | None
    account: str


@dataclass(frozen=True)
class Failed:
    """Applying the last step's actions failed (tmux, a malformed session id).

    ``task`` is None when the executor dropped the task (its start failed).
    """

    reason: str
    session_exists: bool
    task: TaskView | None = None


@dataclass(frozen=True)
class Cancel:
    """The operator cancels the slot's task: the agent is interrupted, the task fails."""

    task: TaskView | None
    pane: Pane | None


Observation = Tick | Assign | Adopt | Warm | Park | Resume | Failed | Cancel


# -- actions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Launch:
    """(Re)start the agent in a fresh session: any leftover session of the slot goes first.

    ``retry`` says the launch retries a delivery that did not go through (it is counted).
    """

    cwd: Path
    account: str
    resume: str | None = None
    retry: bool = False


@dataclass(frozen=True)
class Kill:
    """Kill the slot's session if it exists."""


@dataclass(frozen=True)
class Paste:
    """Paste the prompt as one bracketed paste (crash point ``before_tmux_send`` first)."""

    text: str


@dataclass(frozen=True)
class Submit:
    """Press Enter on a verified paste (crash point ``after_tmux_send`` after)."""


@dataclass(frozen=True)
class SendKeys:
    """Send tmux key names, or text typed as is when ``literal``."""

    keys: tuple[str, ...]
    literal: bool = False


@dataclass(frozen=True)
class Exit:
    """Ask the agent to exit (recycle: a fresh context for the next task)."""


@dataclass(frozen=True)
class Progress:
    """Tell the task's control record (its owner) how far delivery went; persisted at once."""

    phase: Phase | Keep = KEEP
    session: str | Keep | None = KEEP
    session_id: str | Keep | None = KEEP
    #: With ``running``: when the agent went busy (wall), by its own hook when one said so.
    at: float | None = None


@dataclass(frozen=True)
class Delivery:
    """A task an agent took: which, in which session on which account, and when (wall)."""

    task: str
    session: str
    account: str
    at: float


@dataclass(frozen=True)
class TranscriptRef:
    """Where the task's answer is when no Stop hook gave it."""

    path: str | None
    account: str
    cwd: Path | None
    session_id: str | None


@dataclass(frozen=True)
class Finish:
    """The task ended on this slot; the executor hands its outcome to the daemon."""

    ending: Ending
    result: str | None = None
    error: str | None = None
    details: tuple[tuple[str, str], ...] = ()
    answer_from: TranscriptRef | None = None


@dataclass(frozen=True)
class Report:
    """A quota reading of the slot's session, for the accounts side.

    ``window`` is the usage window a quota ran out of; ``warning`` a usage warning shown.
    """

    source: Source
    kind: ReadingKind
    reset_text: str | None = None
    text: str = ""
    window: Window | None = None
    warning: UsageWarning | None = None


@dataclass(frozen=True)
class FindSessionId:
    """Find the session whose transcript holds the task's prompt and record its id.

    ``hint``: the session a hook named, whose transcript is read first. ``since`` (wall
    time): only transcripts modified since then are read (0: every one).
    """

    account: str
    cwd: Path
    first_line: str
    hint: str | None = None
    since: float = 0.0


@dataclass(frozen=True)
class Stale:
    """The task made no progress for ``idle_s`` seconds: flag it (once per standstill)."""

    idle_s: float


@dataclass(frozen=True)
class Log:
    """A log line the executor writes for the slot (``fields`` go into ``extra``)."""

    level: int
    message: str
    fields: tuple[tuple[str, str], ...] = ()


Action = (
    Launch
    | Kill
    | Paste
    | Submit
    | SendKeys
    | Exit
    | Progress
    | Finish
    | Report
    | FindSessionId
    | Stale
    | Log
)
