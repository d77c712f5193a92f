"""The pool slot's state machine, one case per transition of the table in its docstring."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from agentq.queue.records import KEEP, Phase
from agentq.sessions import machine
from agentq.sessions.delivery import CONTINUE_PROMPT, progress_view
from agentq.sessions.machine import step
from agentq.sessions.model import (
    TASK_STATES,
    Action,
    Adopt,
    Assign,
    Cancel,
    Ending,
    Exit,
    Failed,
    FileStamp,
    FindSessionId,
    Finish,
    Hook,
    Instant,
    Kill,
    Launch,
    Log,
    Observation,
    Pane,
    Park,
    Paste,
    Progress,
    QuotaHint,
    Report,
    Resume,
    Rules,
    SendKeys,
    Slot,
    SlotState,
    Stale,
    Submit,
    TaskView,
    Tick,
    Warm,
)

NOW = Instant(mono=1000.0, wall=1_800_000_000.0)
RULES = Rules(
    delivery_timeout=15.0,
    delivery_retries=2,
    idle_timeout=100.0,
    permission_timeout=30.0,
    launch_timeout=45.0,
    exit_timeout=5.0,
    stop_grace=2.0,
)
CWD = Path("/code/proj")
SID = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"
OTHER_SID = "11111111-2222-4333-8444-555555555555"
PROMPT = "[agentq task t.md · project proj · attempt 1]\n\nDo the thing."
FIRST_LINE = PROMPT.split("\n", maxsplit=1)[0]
TASK = TaskView("proj/t.md", CWD, PROMPT)
TASK_WITH_ID = replace(TASK, session_id=SID)

NBSP = "\u00a0"
RULE = "─" * 60
IDLE_BOX = f"\n{RULE}\n❯{NBSP}\n{RULE}\n  ? for shortcuts\n"
BUSY_BOX = f"\n{RULE}\n❯{NBSP}\n{RULE}\n  esc to interrupt\n"
ECHO = "❯ [agentq task t.md · project proj · attempt 1]"
IDLE_TITLE, BUSY_TITLE = "✳ Claude Code", "⠂ Claude Code"
LIMIT_LINE = "  ⎿  You've hit your session limit · resets 3pm (UTC)"
MENU = (
    "\n  What do you want to do?\n\n  ❯ 1. Stop and wait for limit to reset\n"
    "    2. Upgrade your plan\n\n  Enter to confirm · Esc to cancel\n"
)
DIALOG = (
    f"\n● Bash(touch x)\n  ⎿  Waiting…\n\n{RULE}\n Bash command\n\n Do you want to proceed?\n"
    " ❯ 1. Yes\n   2. Yes, and always allow\n   3. No\n\n Esc to cancel · Tab to amend"
)


def screen(body: str, box: str = IDLE_BOX) -> str:
    """A pane after our prompt's echo: the agent's output, then the input box."""
    return f"{ECHO}\n\n{body}\n{box}"


FRESH = Pane(True, IDLE_TITLE, f"{RULE}\n❯{NBSP}\n{RULE}\n")
STARTING = Pane(True, "", "Loading…")
STARTUP_MENU = Pane(True, IDLE_TITLE, MENU)
PASTE_SHOWN = Pane(True, IDLE_TITLE, f"{RULE}\n❯{NBSP}[Pasted text #1 +3 lines]\n{RULE}\n")
WORKING = Pane(True, BUSY_TITLE, screen("✻ Scurrying… (3s)", BUSY_BOX))
DONE = Pane(True, IDLE_TITLE, screen("● Done.\n\n✻ Worked for 1s"))
AT_LIMIT = Pane(True, IDLE_TITLE, screen(LIMIT_LINE))
LIMIT_MENU = Pane(True, IDLE_TITLE, f"{ECHO}\n\n{LIMIT_LINE}\n{MENU}")  # it replaces the box
RETRYING = Pane(True, BUSY_TITLE, screen("✻ Session limit reached · Retrying in 5s", BUSY_BOX))
SERVER_ERROR = Pane(True, IDLE_TITLE, screen("● API Error: 500 Internal server error."))
PERMISSION = Pane(True, IDLE_TITLE, f"{ECHO}\n{DIALOG}")
DEAD = Pane(False)
LIMIT_5H = "  ⎿  You've hit your 5-hour limit · resets 4:32pm (UTC)"
ARMED_NOTICE = "● Usage limit reached · set to continue automatically at 4:32pm"
ARMED = Pane(
    True,
    IDLE_TITLE,
    f"{ECHO}\n{LIMIT_5H}\n\n{ARMED_NOTICE}\n{RULE}\n❯{NBSP}\n{RULE}\n"
    "  ⚠ Usage limit reached · limit resets 4:32pm\n"
    "    Continuing automatically at 4:32pm · Esc to cancel\n",
)
FIRED = Pane(
    True,
    IDLE_TITLE,
    f"{ECHO}\n{LIMIT_5H}\n\n{ARMED_NOTICE}\n\n● Usage limit reset · Continuing automatically"
    f"\n\n✻ Scurrying… (3s)\n{BUSY_BOX}",
)
EXITED = Pane(
    True,
    IDLE_TITLE,
    f"{ECHO}\n\n● Working\n\n{RULE}\n❯{NBSP}\n{RULE}\n\nResume this session with:\n"
    f"claude --resume {SID}\nuser@host:~/proj$ ",
)
WARNED = Pane(
    True,
    IDLE_TITLE,
    screen(
        "● Done.\n\n✻ Worked for 1s",
        f"\n{RULE}\n❯{NBSP}\n{RULE}\n  ? for shortcuts\n                     You've used 92% of"
        " your session limit · resets 11:30pm (UTC) · /upgrade to keep using Claude Code\n",
    ),
)
AUTO_PROMPT = "Your claude.ai usage limit has reset. Continue the task you were working on."


def later(seconds: float) -> Instant:
    """``seconds`` after NOW on both clocks."""
    return Instant(NOW.mono + seconds, NOW.wall + seconds)


def slot(state: SlotState, **fields: object) -> Slot:
    """Slot ``aq-0`` on account a in CWD, in ``state`` since NOW, launched 10 s before."""
    base = Slot(
        "aq-0",
        state,
        account="a",
        cwd=CWD,
        since=NOW.mono,
        last_change=NOW.mono,
        launched_at=NOW.wall - 10,
    )
    return replace(base, **fields)  # type: ignore[arg-type]


def hook(event: str, **fields: object) -> Hook:
    """A hook signal received at NOW."""
    return replace(Hook(event, NOW.wall), **fields)  # type: ignore[arg-type]


def tick(pane: Pane | None, *hooks: Hook, task: TaskView | None = TASK) -> Tick:
    """A poll of the slot with ``task`` on it."""
    return Tick(pane, hooks, task)


def only(actions: list[Action], kind: type[Action]) -> Action:
    """The one action of ``kind``."""
    found = [a for a in actions if isinstance(a, kind)]
    assert len(found) == 1, actions
    return found[0]


def finish(actions: list[Action]) -> Finish:
    """The one Finish action."""
    found = only(actions, Finish)
    assert isinstance(found, Finish)
    return found


def failed_with(text: str) -> Callable[[Slot, list[Action]], bool]:
    """A check: the task failed with ``text`` in its error."""

    def check(_: Slot, actions: list[Action]) -> bool:
        end = finish(actions)
        return end.ending is Ending.FAILED and text in (end.error or "")

    return check


def logged(message: str) -> Callable[[Slot, list[Action]], bool]:
    """A check: a log line with ``message`` was asked for."""
    return lambda _, actions: any(isinstance(a, Log) and a.message == message for a in actions)


def reported(source: str, kind: str) -> Callable[[Slot, list[Action]], bool]:
    """A check: a quota reading of ``source`` and ``kind`` was reported."""

    def check(_: Slot, actions: list[Action]) -> bool:
        report = only(actions, Report)
        return isinstance(report, Report) and (report.source, report.kind) == (source, kind)

    return check


def both(*checks: Callable[[Slot, list[Action]], bool]) -> Callable[[Slot, list[Action]], bool]:
    """Every check holds."""
    return lambda s, a: all(check(s, a) for check in checks)


@dataclass(frozen=True)
class Case:
    """One transition: the slot before, what it observed, the state after and the actions.

    ``actions`` are the action types in order, log lines left out; ``check`` looks closer.
    """

    id: str
    row: int
    before: Slot
    observation: Observation
    after: SlotState
    actions: tuple[type[Action], ...]
    now: Instant = NOW
    check: Callable[[Slot, list[Action]], bool] = lambda _s, _a: True


BUSY = slot(SlotState.BUSY)
STALE_AFTER = 60.0
#: The working pane a moment later: only its spinner line changed.
SPUN = Pane(True, BUSY_TITLE, screen("✶ Scurrying… (63s)", BUSY_BOX))
#: A busy slot whose task stood still since NOW (pane and transcript as last seen).
STILL = replace(
    BUSY,
    last_screen=SPUN.screen,
    progress_screen=progress_view(WORKING.screen),
    progress_file=FileStamp(1024, 1),
    progress_at=NOW.mono,
)
QUOTA = slot(SlotState.QUOTA, quota_hint=QuotaHint("3pm (UTC)", "session limit"))
PARKED = slot(SlotState.PARKED, submitted=True)
#: Parked, its resume to account b waiting for the session id since NOW.
WAITING = replace(PARKED, resume_on="b")
HINT = QuotaHint("3pm (UTC)", "session limit")

CASES = [
    # -- the session is gone -----------------------------------------------------------------
    Case(
        "an idle agent that exits while starting backs the slot off",
        1,
        slot(SlotState.LAUNCHING),
        tick(None, task=None),
        SlotState.EMPTY,
        (),
        check=lambda s, a: s.launch_failures == 1 and s.retry_at == NOW.mono + 2,
    ),
    Case(
        "a dead pane of a starting agent is killed and backed off",
        1,
        slot(SlotState.LAUNCHING, launch_failures=3),
        tick(DEAD, task=None),
        SlotState.EMPTY,
        (Kill,),
        check=lambda s, a: s.retry_at == NOW.mono + 16,
    ),
    Case(
        "an exiting session that is gone leaves the slot empty",
        2,
        slot(SlotState.EXITING),
        tick(None, task=None),
        SlotState.EMPTY,
        (),
    ),
    Case(
        "an idle session that is gone leaves the slot empty",
        2,
        slot(SlotState.IDLE),
        tick(None, task=None),
        SlotState.EMPTY,
        (),
    ),
    Case(
        "a task's agent that exits while starting is launched again",
        3,
        slot(SlotState.LAUNCHING, resume_id=SID),
        tick(None, task=TASK_WITH_ID),
        SlotState.LAUNCHING,
        (Launch,),
        check=lambda s, a: s.tries == 1 and only(a, Launch) == Launch(CWD, "a", SID, retry=True),
    ),
    Case(
        "a resume whose agent keeps exiting at start fails the task",
        4,
        slot(SlotState.LAUNCHING, tries=2, resume_id=SID),
        tick(None, task=TASK_WITH_ID),
        SlotState.EMPTY,
        (Finish,),
        check=failed_with(f"could not resume session {SID} on account a"),
    ),
    Case(
        "a working session that is gone fails its task",
        5,
        BUSY,
        tick(None),
        SlotState.EMPTY,
        (Finish,),
        check=failed_with("session aq-0 ended while working on the task"),
    ),
    Case(
        "a session that dies before its paste shows fails its task",
        5,
        slot(SlotState.PASTED),
        tick(DEAD),
        SlotState.EMPTY,
        (Kill, Finish),
        check=failed_with("ended while working"),
    ),
    Case(
        "an empty slot ignores a poll",
        6,
        slot(SlotState.EMPTY),
        tick(FRESH, task=None),
        SlotState.EMPTY,
        (),
    ),
    Case(
        "a parked slot takes no session id from a late hook, even our prompt's",
        6,
        PARKED,
        tick(None, hook("UserPromptSubmit", session_id=SID, prompt=PROMPT)),
        SlotState.PARKED,
        (),
        check=lambda s, a: s.bound_id == SID,  # where the transcript lookup reads first
    ),
    Case(
        "a parked slot takes no session id from a late hook that is not our prompt's",
        6,
        PARKED,
        tick(None, hook("Stop", session_id=SID)),
        SlotState.PARKED,
        (),
    ),
    # -- launching ---------------------------------------------------------------------------
    Case(
        "a session left by a previous daemon with no task adopted is killed",
        7,
        slot(SlotState.LAUNCHING, stale=True),
        tick(FRESH, task=None),
        SlotState.EMPTY,
        (Kill,),
        check=lambda s, a: not s.stale,
    ),
    Case(
        "a menu on a starting agent is dismissed with Escape",
        8,
        slot(SlotState.LAUNCHING),
        tick(STARTUP_MENU),
        SlotState.LAUNCHING,
        (SendKeys,),
        check=lambda s, a: only(a, SendKeys) == SendKeys(("Escape",)),
    ),
    Case(
        "an agent that became ready without a task is idle",
        9,
        slot(SlotState.LAUNCHING, launch_failures=2),
        tick(FRESH, task=None),
        SlotState.IDLE,
        (),
        check=lambda s, a: s.launch_failures == 0,
    ),
    Case(
        "an agent that became ready gets its task: delivering on disk, then the paste",
        10,
        slot(SlotState.LAUNCHING),
        tick(FRESH),
        SlotState.PASTED,
        (Progress, Paste),
        check=lambda s, a: (
            a[0] == Progress(Phase.DELIVERING, session="aq-0")
            and only(a, Paste) == Paste(PROMPT)
            and s.delivered_at == NOW.wall
            and s.since == NOW.mono
        ),
    ),
    Case(
        "a resumed agent that became ready gets the continue prompt",
        10,
        slot(SlotState.LAUNCHING, continuing=True, resume_id=SID),
        tick(FRESH, task=TASK_WITH_ID),
        SlotState.PASTED,
        (Progress, Paste),
        check=lambda s, a: only(a, Paste) == Paste(CONTINUE_PROMPT),
    ),
    Case(
        "an agent still starting is left alone",
        11,
        slot(SlotState.LAUNCHING),
        tick(STARTING),
        SlotState.LAUNCHING,
        (),
        now=later(44),
    ),
    Case(
        "an agent not ready after the launch timeout is launched again",
        12,
        slot(SlotState.LAUNCHING),
        tick(STARTING),
        SlotState.LAUNCHING,
        (Launch,),
        now=later(46),
        check=both(lambda s, a: s.tries == 1, logged("delivery retried")),
    ),
    Case(
        "an agent never ready after every retry fails the task",
        12,
        slot(SlotState.LAUNCHING, tries=2),
        tick(STARTING),
        SlotState.EMPTY,
        (Finish, Kill),
        now=later(46),
        check=failed_with("delivery failed: the agent in aq-0 did not become ready in 45s"),
    ),
    Case(
        "an agent without a task never ready is killed",
        12,
        slot(SlotState.LAUNCHING),
        tick(STARTING, task=None),
        SlotState.EMPTY,
        (Kill,),
        now=later(46),
    ),
    # -- pasted ------------------------------------------------------------------------------
    Case(
        "a paste that shows in the input line is submitted",
        13,
        slot(SlotState.PASTED),
        tick(PASTE_SHOWN),
        SlotState.SUBMITTED,
        (Submit,),
    ),
    Case(
        "the history a resumed session drew after the paste is noted as not ours",
        13,
        slot(SlotState.PASTED, continuing=True),
        tick(Pane(True, IDLE_TITLE, f"{ECHO}\n\n{LIMIT_LINE}\n{RULE}\n❯{NBSP}The usage…\n{RULE}")),
        SlotState.SUBMITTED,
        (Submit,),
        check=lambda s, a: s.echo_baseline == ECHO,
    ),
    Case(
        "a paste that never shows is retried on a fresh session",
        14,
        slot(SlotState.PASTED),
        tick(FRESH),
        SlotState.LAUNCHING,
        (Launch,),
        now=later(16),
    ),
    Case(
        "a placeholder in the input line is no paste: retried on a fresh session",
        14,
        slot(SlotState.PASTED),
        tick(Pane(True, IDLE_TITLE, f"{RULE}\n❯{NBSP}Resend your message to try again\n{RULE}\n")),
        SlotState.LAUNCHING,
        (Launch,),
        now=later(16),
    ),
    Case(
        "a paste that never shows after every retry fails the task",
        14,
        slot(SlotState.PASTED, tries=2),
        tick(FRESH),
        SlotState.EMPTY,
        (Finish, Kill),
        now=later(16),
        check=failed_with("delivery failed: the paste never showed"),
    ),
    # -- submitted ---------------------------------------------------------------------------
    Case(
        "the prompt hook marks the task running",
        15,
        slot(SlotState.SUBMITTED),
        tick(FRESH, hook("UserPromptSubmit", prompt=PROMPT, received_at=NOW.wall - 0.25)),
        SlotState.BUSY,
        (Progress,),
        check=both(
            lambda s, a: only(a, Progress) == Progress(Phase.RUNNING, at=NOW.wall - 0.25),
            logged("task delivered"),
        ),
    ),
    Case(
        "a spinning title marks the task running, busy since this poll",
        15,
        slot(SlotState.SUBMITTED),
        tick(WORKING),
        SlotState.BUSY,
        (Progress,),
        check=lambda s, a: only(a, Progress) == Progress(Phase.RUNNING, at=NOW.wall),
    ),
    Case(
        "a Stop hook right after Enter completes the task",
        16,
        slot(SlotState.SUBMITTED),
        tick(DONE, hook("Stop", last_assistant_message="All done.")),
        SlotState.EXITING,
        (Progress, Finish, Exit),
        check=lambda s, a: finish(a).result == "All done.",
    ),
    Case(
        "an agent not busy yet within the delivery timeout is left alone",
        17,
        slot(SlotState.SUBMITTED),
        tick(FRESH),
        SlotState.SUBMITTED,
        (),
        now=later(14),
    ),
    Case(
        "our prompt echoed without a hook counts as delivered: never typed twice",
        18,
        slot(SlotState.SUBMITTED),
        tick(DONE),
        SlotState.BUSY,
        (Progress,),
        now=later(16),
    ),
    Case(
        "a paste still pending after the timeout gets Enter again",
        19,
        slot(SlotState.SUBMITTED),
        tick(PASTE_SHOWN),
        SlotState.SUBMITTED,
        (SendKeys,),
        now=later(16),
        check=lambda s, a: s.tries == 1 and only(a, SendKeys) == SendKeys(("Enter",)),
    ),
    Case(
        "a prompt that vanished unsubmitted is retried on a fresh session",
        20,
        slot(SlotState.SUBMITTED),
        tick(FRESH),
        SlotState.LAUNCHING,
        (Launch,),
        now=later(16),
    ),
    Case(
        "a prompt that never starts after every retry fails the task",
        20,
        slot(SlotState.SUBMITTED, tries=2),
        tick(FRESH),
        SlotState.EMPTY,
        (Finish, Kill),
        now=later(16),
        check=failed_with("the agent did not start working on the prompt"),
    ),
    # -- busy --------------------------------------------------------------------------------
    Case(
        "a Stop hook completes the task with its last message and recycles the session",
        21,
        BUSY,
        tick(DONE, hook("Stop", session_id=SID, last_assistant_message="Result.")),
        SlotState.EXITING,
        (Progress, Finish, Exit),
        check=lambda s, a: (
            finish(a).ending is Ending.DONE
            and finish(a).result == "Result."
            and ("completed by", "Stop hook") in finish(a).details
            and ("session_id", SID) in finish(a).details
        ),
    ),
    Case(
        "a Stop hook without recycling leaves the session idle",
        21,
        slot(SlotState.BUSY),
        tick(DONE, hook("Stop", last_assistant_message="Result.")),
        SlotState.IDLE,
        (Finish,),
        check=lambda s, a: s.notes == (),
    ),
    Case(
        "a StopFailure saying rate limit is a quota reading from the hook",
        22,
        BUSY,
        tick(
            DONE,
            hook(
                "StopFailure",
                error="rate_limit",
                last_assistant_message="You've hit your session limit · resets 3pm (UTC)",
            ),
        ),
        SlotState.QUOTA,
        (Report,),
        check=both(
            reported("hook", "quota"),
            lambda s, a: s.quota_hint is not None and s.quota_hint.reset_text == "3pm (UTC)",
        ),
    ),
    Case(
        "a StopFailure of another kind fails the task with the agent's error",
        23,
        BUSY,
        tick(
            DONE,
            hook("StopFailure", error="server_error", last_assistant_message="API Error: 500"),
        ),
        SlotState.EXITING,
        (Finish,),
        check=failed_with("agent error (server_error, server_error): API Error: 500"),
    ),
    Case(
        "the limit on the pane after our echo is a quota reading and waits at the limit",
        24,
        BUSY,
        tick(AT_LIMIT),
        SlotState.QUOTA,
        (Report,),
        check=both(reported("pane", "quota"), lambda s, a: "3pm (UTC)" in str(a)),
    ),
    Case(
        "the rate-limit menu is dismissed as the slot waits at the limit",
        24,
        BUSY,
        tick(LIMIT_MENU),
        SlotState.QUOTA,
        (Report, SendKeys),
        check=lambda s, a: only(a, SendKeys) == SendKeys(("Escape",)),
    ),
    Case(
        "a limit line above our prompt's echo is history, not a reading",
        25,
        slot(SlotState.BUSY, echo_baseline=ECHO),
        tick(AT_LIMIT),
        SlotState.BUSY,
        (),
    ),
    Case(
        "a retrying limit line is only provisional: the pane reads ok",
        26,
        BUSY,
        tick(RETRYING),
        SlotState.BUSY,
        (Report,),
        check=reported("pane", "ok"),
    ),
    Case(
        "a server error on the pane is reported as one",
        26,
        BUSY,
        tick(SERVER_ERROR),
        SlotState.BUSY,
        (Report,),
        check=reported("pane", "server_error"),
    ),
    Case(
        "the idle prompt is noted the first time it is seen",
        27,
        BUSY,
        tick(DONE),
        SlotState.BUSY,
        (Report,),
        check=lambda s, a: s.idle_seen_at == NOW.mono,
    ),
    Case(
        "the idle prompt for the grace period completes the task from the transcript",
        28,
        slot(SlotState.BUSY, idle_seen_at=NOW.mono - 2, transcript="/t/x.jsonl"),
        tick(DONE, task=TASK_WITH_ID),
        SlotState.EXITING,
        (Report, Finish, Exit),
        check=lambda s, a: (
            finish(a).ending is Ending.DONE
            and finish(a).answer_from is not None
            and finish(a).answer_from.path == "/t/x.jsonl"
            and finish(a).answer_from.session_id == SID
        ),
    ),
    Case(
        "working again forgets the idle prompt",
        29,
        slot(SlotState.BUSY, idle_seen_at=NOW.mono - 1),
        tick(WORKING),
        SlotState.BUSY,
        (Report,),
        check=lambda s, a: s.idle_seen_at is None,
    ),
    Case(
        "a task past its timeout fails and its session is killed",
        30,
        BUSY,
        tick(WORKING, task=replace(TASK, timeout=60.0)),
        SlotState.EMPTY,
        (Report, Finish, Kill),
        now=later(61),
        check=failed_with("timed out after 60s"),
    ),
    Case(
        "a task at the limit past its timeout fails too",
        30,
        QUOTA,
        tick(AT_LIMIT, task=replace(TASK, timeout=60.0)),
        SlotState.EMPTY,
        (Finish, Kill),
        now=later(61),
        check=failed_with("timed out"),
    ),
    Case(
        "a permission dialog is noted and reported when first seen",
        31,
        BUSY,
        tick(PERMISSION),
        SlotState.BUSY,
        (Report,),
        check=both(
            lambda s, a: s.permission_since == NOW.mono,
            logged("agent waits on a permission dialog"),
        ),
    ),
    Case(
        "a permission dialog past its timeout fails the task naming the dialog",
        32,
        slot(SlotState.BUSY, permission_since=NOW.mono - 31, permission_text=DIALOG),
        tick(PERMISSION),
        SlotState.EMPTY,
        (Report, Finish, Kill),
        check=failed_with("waited 31s on a permission dialog: ● Bash(touch x)"),
    ),
    Case(
        "a permission dialog past its timeout is answered when so configured",
        33,
        slot(SlotState.BUSY, permission_since=NOW.mono - 31),
        tick(PERMISSION),
        SlotState.BUSY,
        (Report, SendKeys),
        check=lambda s, a: (
            only(a, SendKeys) == SendKeys(("1",), literal=True)
            and s.permission_since is None
            and s.notes[-1][0] == "permission"
        ),
    ),
    Case(
        "no output for the idle timeout fails the task as stalled",
        34,
        slot(SlotState.BUSY, last_screen=WORKING.screen, last_change=NOW.mono - 101),
        tick(WORKING),
        SlotState.EMPTY,
        (Report, Finish, Kill),
        check=failed_with("stalled: no output for 100s"),
    ),
    # -- at the limit ------------------------------------------------------------------------
    Case(
        "a Stop hook at the limit still completes the task",
        35,
        QUOTA,
        tick(DONE, hook("Stop", last_assistant_message="Made it.")),
        SlotState.EXITING,
        (Finish, Exit),
        check=lambda s, a: finish(a).result == "Made it." and s.quota_hint is None,
    ),
    Case(
        "an agent at the limit that works again is busy",
        36,
        QUOTA,
        tick(WORKING),
        SlotState.BUSY,
        (),
        check=lambda s, a: s.quota_hint is None,
    ),
    Case(
        "a pane still at the limit is reported again",
        37,
        QUOTA,
        tick(AT_LIMIT),
        SlotState.QUOTA,
        (Report,),
        check=reported("pane", "quota"),
    ),
    Case(
        "a quiet pane at the limit repeats the hook's reading",
        37,
        QUOTA,
        tick(DONE),
        SlotState.QUOTA,
        (Report,),
        check=lambda s, a: (
            only(a, Report) == Report("hook", "quota", HINT.reset_text, HINT.evidence)
        ),
    ),
    Case(
        "the rate-limit menu at the limit is dismissed",
        38,
        QUOTA,
        tick(LIMIT_MENU),
        SlotState.QUOTA,
        (SendKeys, Report),
    ),
    # -- exiting -----------------------------------------------------------------------------
    Case(
        "an exiting agent gets its exit timeout",
        39,
        slot(SlotState.EXITING),
        tick(DONE, task=None),
        SlotState.EXITING,
        (),
        now=later(4),
    ),
    Case(
        "an agent that does not exit in time is killed",
        39,
        slot(SlotState.EXITING),
        tick(DONE, task=None),
        SlotState.EMPTY,
        (Kill,),
        now=later(6),
    ),
    Case(
        "a Stop hook while the agent still runs its other hooks: done, the exit waits",
        21,
        BUSY,
        tick(WORKING, hook("Stop", last_assistant_message="All done.")),
        SlotState.EXITING,
        (Finish,),
        check=lambda s, a: not s.exit_sent and finish(a).result == "All done.",
    ),
    Case(
        "an agent waiting for its exit gets it once it reads idle",
        72,
        slot(SlotState.EXITING, exit_sent=False),
        tick(DONE, task=None),
        SlotState.EXITING,
        (Exit,),
        check=lambda s, a: s.exit_sent,
    ),
    Case(
        "an agent still busy with its hooks is not interrupted",
        72,
        slot(SlotState.EXITING, exit_sent=False),
        tick(WORKING, task=None),
        SlotState.EXITING,
        (),
        now=later(4),
    ),
    Case(
        "an agent that never reads idle gets its exit after the exit timeout",
        73,
        slot(SlotState.EXITING, exit_sent=False),
        tick(WORKING, task=None),
        SlotState.EXITING,
        (Exit,),
        now=later(6),
    ),
    # -- assign, adopt, warm -----------------------------------------------------------------
    Case(
        "a task for an idle agent in its folder on its account is pasted at once",
        40,
        slot(SlotState.IDLE, tries=3, notes=(("old", "note"),)),
        Assign(TASK, "a", FRESH, ("pin", "aq-1 was busy; ran on aq-0")),
        SlotState.PASTED,
        (Progress, Paste),
        check=lambda s, a: s.tries == 0 and s.notes == (("pin", "aq-1 was busy; ran on aq-0"),),
    ),
    Case(
        "a task for an empty slot launches an agent in its folder",
        41,
        slot(SlotState.EMPTY, cwd=None),
        Assign(TASK, "b"),
        SlotState.LAUNCHING,
        (Launch,),
        check=lambda s, a: only(a, Launch) == Launch(CWD, "b") and s.account == "b",
    ),
    Case(
        "a task for an idle agent in another folder relaunches it there",
        41,
        slot(SlotState.IDLE, cwd=Path("/elsewhere")),
        Assign(TASK, "a", FRESH),
        SlotState.LAUNCHING,
        (Launch,),
    ),
    Case(
        "a task for an idle agent on another account relaunches it on the new one",
        41,
        slot(SlotState.IDLE),
        Assign(TASK, "b", FRESH),
        SlotState.LAUNCHING,
        (Launch,),
    ),
    Case(
        "a task delivered before a restart is watched as busy",
        42,
        slot(SlotState.LAUNCHING, stale=True, launched_at=0.0),
        Adopt(TASK_WITH_ID, "a"),
        SlotState.BUSY,
        (),
        check=lambda s, a: not s.stale and s.delivered_at == 0.0 and s.since == NOW.mono,
    ),
    Case(
        "an empty slot is warmed up with an idle agent",
        43,
        slot(SlotState.EMPTY),
        Warm(CWD, "a"),
        SlotState.LAUNCHING,
        (Launch,),
        check=lambda s, a: s.launched_at == NOW.wall,
    ),
    # -- park and resume ---------------------------------------------------------------------
    Case(
        "a working task is looked up in the transcripts, its prompt's session first",
        45,
        replace(BUSY, bound_id=SID),
        Park((), TASK_WITH_ID),
        SlotState.PARKED,
        (Kill, Progress, FindSessionId),
        check=lambda s, a: (
            only(a, Progress) == Progress(session_id=None)
            and only(a, FindSessionId) == FindSessionId("a", CWD, FIRST_LINE, SID)
            and s.submitted
        ),
    ),
    Case(
        "a resumed task cut again before its continue was taken keeps its session",
        44,
        replace(BUSY, continuing=True, resume_id=SID),
        Park((), TASK_WITH_ID),
        SlotState.PARKED,
        (Kill,),
        check=lambda s, a: s.submitted,
    ),
    Case(
        "the lookup reads only transcripts written since the delivery",
        45,
        replace(BUSY, delivered_at=NOW.wall - 5),
        Park((), TASK),
        SlotState.PARKED,
        (Kill, FindSessionId),
        check=lambda s, a: (
            only(a, FindSessionId)
            == FindSessionId("a", CWD, FIRST_LINE, None, NOW.wall - 5 - machine.TRANSCRIPT_SLACK)
        ),
    ),
    Case(
        "a session id only a hook named is dropped and the prompt looked up",
        45,
        BUSY,
        Park((), TASK_WITH_ID),
        SlotState.PARKED,
        (Kill, Progress, FindSessionId),
        check=lambda s, a: only(a, Progress) == Progress(session_id=None) and s.submitted,
    ),
    Case(
        "a hook not read yet names the session whose transcript is read first",
        45,
        BUSY,
        Park((hook("UserPromptSubmit", session_id=SID, prompt=PROMPT),), TASK),
        SlotState.PARKED,
        (Progress, Kill, Progress, FindSessionId),
        check=lambda s, a: only(a, FindSessionId) == FindSessionId("a", CWD, FIRST_LINE, SID),
    ),
    Case(
        "a task submitted before any hook spoke is looked up in the transcripts",
        45,
        slot(SlotState.SUBMITTED),
        Park((), TASK),
        SlotState.PARKED,
        (Kill, FindSessionId),
        check=lambda s, a: only(a, FindSessionId) == FindSessionId("a", CWD, FIRST_LINE),
    ),
    Case(
        "a task whose prompt was not submitted is parked for a fresh delivery",
        46,
        slot(SlotState.PASTED),
        Park((), TASK),
        SlotState.PARKED,
        (Kill,),
        check=lambda s, a: not s.submitted,
    ),
    Case(
        "a slot without a task is simply stopped",
        47,
        slot(SlotState.IDLE),
        Park((), None),
        SlotState.EMPTY,
        (Kill,),
    ),
    Case(
        "a parked task that was never submitted is delivered afresh",
        48,
        slot(SlotState.PARKED, submitted=False),
        Resume(TASK, "b"),
        SlotState.LAUNCHING,
        (Launch,),
        check=lambda s, a: only(a, Launch) == Launch(CWD, "b") and not s.continuing,
    ),
    Case(
        "a parked task is resumed in its folder on the new account",
        49,
        PARKED,
        Resume(TASK_WITH_ID, "b"),
        SlotState.LAUNCHING,
        (Launch,),
        check=lambda s, a: (
            only(a, Launch) == Launch(CWD, "b", SID)
            and s.continuing
            and s.resume_id == SID
            and s.notes[-1] == ("resumed", f"{SID} on account b")
        ),
    ),
    Case(
        "a parked task whose session id is unknown waits while the transcripts are searched",
        50,
        PARKED,
        Resume(TASK, "b"),
        SlotState.PARKED,
        (FindSessionId,),
        check=lambda s, a: (
            s.resume_on == "b"
            and s.since == NOW.mono
            and only(a, FindSessionId) == FindSessionId("a", CWD, FIRST_LINE)
        ),
    ),
    Case(
        "a second resume while the id is looked up keeps the wait's start",
        50,
        replace(WAITING, since=NOW.mono - 1),
        Resume(TASK, "c"),
        SlotState.PARKED,
        (FindSessionId,),
        check=lambda s, a: s.resume_on == "c" and s.since == NOW.mono - 1,
    ),
    Case(
        "a waiting resume launches once the record holds the id the transcript named",
        74,
        WAITING,
        tick(None, task=TASK_WITH_ID),
        SlotState.LAUNCHING,
        (Launch,),
        now=later(0.5),
        check=lambda s, a: (
            only(a, Launch) == Launch(CWD, "b", SID)
            and s.continuing
            and s.resume_id == SID
            and s.resume_on is None
            and s.notes[-1] == ("resumed", f"{SID} on account b")
        ),
    ),
    Case(
        "a waiting resume reads the transcript of the session a late prompt hook names first",
        75,
        WAITING,
        tick(None, hook("UserPromptSubmit", session_id=SID, prompt=PROMPT)),
        SlotState.PARKED,
        (FindSessionId,),
        now=later(0.5),
        check=lambda s, a: only(a, FindSessionId) == FindSessionId("a", CWD, FIRST_LINE, SID),
    ),
    Case(
        "a waiting resume takes no id from a hook that is not our prompt's",
        75,
        WAITING,
        tick(None, hook("SessionStart", session_id=SID)),
        SlotState.PARKED,
        (FindSessionId,),
        now=later(0.5),
        check=lambda s, a: s.resume_on == "b" and s.bound_id is None,
    ),
    Case(
        "a waiting resume searches the transcripts again until the lookup's end",
        75,
        WAITING,
        tick(None),
        SlotState.PARKED,
        (FindSessionId,),
        now=later(machine.ID_LOOKUP),
        check=lambda s, a: s.resume_on == "b",
    ),
    Case(
        "a task its agent never took (no id in time) is delivered afresh, nothing resumed",
        76,
        WAITING,
        tick(None),
        SlotState.LAUNCHING,
        (Launch,),
        now=later(machine.ID_LOOKUP + 0.1),
        check=lambda s, a: (
            only(a, Launch) == Launch(CWD, "b")
            and not s.continuing
            and not s.submitted
            and s.resume_id is None
            and s.resume_on is None
            and s.notes[-1][0] == "redelivered"
            and logged("parked task delivered afresh: no session id")(s, a)
        ),
    ),
    Case(
        "a waiting resume whose account is parked too waits for the next resume",
        44,
        WAITING,
        Park((), TASK),
        SlotState.PARKED,
        (),
        check=lambda s, a: s.resume_on is None and s.submitted,
    ),
    Case(
        "a parked task without a waiting resume stays parked on a tick",
        6,
        PARKED,
        tick(None),
        SlotState.PARKED,
        (),
        now=later(machine.ID_LOOKUP + 60),
    ),
    # -- applying actions failed -------------------------------------------------------------
    Case(
        "a launch that tmux refused backs the slot off",
        51,
        slot(SlotState.LAUNCHING),
        Failed("tmux new-session failed", session_exists=False),
        SlotState.EMPTY,
        (),
        check=lambda s, a: s.launch_failures == 1,
    ),
    Case(
        "a start that failed frees the slot the task was dropped from",
        52,
        slot(SlotState.PASTED),
        Failed("tmux paste-buffer failed", session_exists=True),
        SlotState.EMPTY,
        (Kill,),
    ),
    Case(
        "a tmux error on a live session leaves recovery to the state's timeouts",
        53,
        slot(SlotState.PASTED),
        Failed("tmux paste-buffer failed", session_exists=True, task=TASK),
        SlotState.PASTED,
        (),
        check=logged("tmux error; the slot carries on"),
    ),
    Case(
        "a resume that cannot launch fails the task",
        54,
        slot(SlotState.LAUNCHING, resume_id=SID),
        Failed("malformed session id", session_exists=False, task=TASK_WITH_ID),
        SlotState.EMPTY,
        (Finish,),
        check=failed_with("could not resume after the swap: malformed session id"),
    ),
    Case(
        "a session that vanished under a tmux command fails its task",
        55,
        BUSY,
        Failed("no server", session_exists=False, task=TASK),
        SlotState.EMPTY,
        (Finish,),
        check=failed_with("session aq-0 vanished: no server"),
    ),
    # -- whose signals count -----------------------------------------------------------------
    Case(
        "a signal from before the launch belongs to the previous agent",
        56,
        slot(SlotState.BUSY, launched_at=NOW.wall + 1),
        tick(WORKING, hook("Stop", last_assistant_message="stale")),
        SlotState.BUSY,
        (Report,),
    ),
    Case(
        "a signal from before the current paste belongs to an earlier delivery",
        56,
        slot(SlotState.SUBMITTED, delivered_at=NOW.wall + 1),
        tick(FRESH, hook("Stop", last_assistant_message="stale")),
        SlotState.SUBMITTED,
        (),
    ),
    Case(
        "once our prompt bound a session, another session's Stop is ignored",
        57,
        slot(SlotState.SUBMITTED),
        tick(
            WORKING,
            hook("UserPromptSubmit", session_id=SID, prompt=PROMPT),
            hook("Stop", session_id=OTHER_SID, last_assistant_message="nested"),
        ),
        SlotState.BUSY,
        (Progress, Progress),
        check=both(
            lambda s, a: s.bound_id == SID, logged("signal of another agent process ignored")
        ),
    ),
    Case(
        "a session id heard from a hook goes to the task's record",
        58,
        BUSY,
        tick(WORKING, hook("Notification", session_id=SID, transcript_path="/t/s.jsonl")),
        SlotState.BUSY,
        (Progress, Report),
        check=lambda s, a: a[0] == Progress(session_id=SID) and s.transcript == "/t/s.jsonl",
    ),
    Case(
        "a SessionEnd does not name the task's session",
        58,
        BUSY,
        tick(WORKING, hook("SessionEnd", session_id=SID)),
        SlotState.BUSY,
        (Report,),
    ),
    Case(
        "a fresh relaunch forgets the recorded session id: the new agent reports its own",
        59,
        slot(SlotState.PASTED),
        tick(FRESH, task=TASK_WITH_ID),
        SlotState.LAUNCHING,
        (Launch, Progress),
        now=later(16),
        check=lambda s, a: only(a, Progress) == Progress(KEEP, KEEP, None),
    ),
    # -- the operator cancels ----------------------------------------------------------------
    Case(
        "a cancelled task's agent is interrupted, the task fails and the session is recycled",
        60,
        BUSY,
        Cancel(TASK, WORKING),
        SlotState.EXITING,
        (SendKeys, Finish),
        check=both(failed_with("cancelled"), lambda s, a: a[0] == SendKeys(("Escape",))),
    ),
    Case(
        "a cancelled parked task fails and frees its slot",
        61,
        PARKED,
        Cancel(TASK_WITH_ID, None),
        SlotState.EMPTY,
        (Finish,),
        check=failed_with("cancelled"),
    ),
    # -- the stale rule: flags, never fails ----------------------------------------------------
    Case(
        "a pane that moved notes the progress and clears the stale flag",
        62,
        replace(STILL, flagged_stale=True, progress_screen="an older screen"),
        tick(WORKING),
        SlotState.BUSY,
        (Report,),
        now=later(STALE_AFTER + 10),
        check=both(
            lambda s, a: not s.flagged_stale and s.progress_at == later(STALE_AFTER + 10).mono,
            logged("stale task moves again"),
        ),
    ),
    Case(
        "a transcript that grew is progress though the pane stood still",
        62,
        STILL,
        Tick(WORKING, (), TASK, FileStamp(2048, 2)),
        SlotState.BUSY,
        (Report,),
        now=later(STALE_AFTER + 10),
        check=lambda s, a: not s.flagged_stale and s.progress_file == FileStamp(2048, 2),
    ),
    Case(
        "a task whose pane (its spinner aside) and transcript stood still is flagged",
        63,
        STILL,
        Tick(SPUN, (), TASK, FileStamp(1024, 1)),
        SlotState.BUSY,
        (Report, Stale),
        now=later(STALE_AFTER + 10),
        check=lambda s, a: s.flagged_stale and only(a, Stale) == Stale(STALE_AFTER + 10),
    ),
    Case(
        "a standstill already flagged is not flagged again",
        63,
        replace(STILL, flagged_stale=True),
        Tick(SPUN, (), TASK, FileStamp(1024, 1)),
        SlotState.BUSY,
        (Report,),
        now=later(STALE_AFTER + 20),
        check=lambda s, a: s.flagged_stale,
    ),
    Case(
        "a standstill shorter than stale_after is not flagged",
        63,
        STILL,
        Tick(SPUN, (), TASK, FileStamp(1024, 1)),
        SlotState.BUSY,
        (Report,),
        now=later(STALE_AFTER - 1),
        check=lambda s, a: not s.flagged_stale,
    ),
    # -- background agents -------------------------------------------------------------------
    Case(
        "a Stop while background agents still run does not end the task",
        64,
        BUSY,
        tick(DONE, hook("Stop", last_assistant_message="Started a helper.", ends_task=False)),
        SlotState.BUSY,
        (Report,),
        check=both(
            lambda s, a: s.background and s.idle_seen_at is None,
            logged("turn ended; waiting for its background agents"),
        ),
    ),
    Case(
        "the idle prompt while background agents run never completes the task",
        65,
        slot(SlotState.BUSY, background=True, idle_seen_at=NOW.mono - 60),
        tick(DONE),
        SlotState.BUSY,
        (Report,),
        check=lambda s, a: s.idle_seen_at is None,
    ),
    # -- Claude Code's automatic continue after a limit --------------------------------------
    Case(
        "the automatic continue's prompt is not our delivery",
        66,
        slot(SlotState.SUBMITTED),
        tick(FRESH, hook("UserPromptSubmit", prompt=AUTO_PROMPT, auto_continue=True)),
        SlotState.SUBMITTED,
        (),
    ),
    Case(
        "an armed automatic continue at the limit is cancelled with Escape",
        67,
        QUOTA,
        tick(ARMED),
        SlotState.QUOTA,
        (SendKeys, Report),
        check=both(
            lambda s, a: only(a, SendKeys) == SendKeys(("Escape",)),
            reported("pane", "quota"),
            logged("the agent's automatic continue armed; cancelled"),
        ),
    ),
    Case(
        "a working task whose pane arms the automatic continue is at the limit",
        67,
        BUSY,
        tick(ARMED),
        SlotState.QUOTA,
        (SendKeys, Report),
        check=reported("pane", "quota"),
    ),
    Case(
        "an automatic continue that fired is interrupted: the task waits at the limit",
        68,
        QUOTA,
        tick(FIRED),
        SlotState.QUOTA,
        (SendKeys, Report),
        check=both(
            lambda s, a: only(a, SendKeys) == SendKeys(("Escape",)),
            logged("the agent's automatic continue fired; interrupted"),
        ),
    ),
    Case(
        "the automatic continue's hooks stop a working task at the limit",
        68,
        BUSY,
        tick(WORKING, hook("UserPromptSubmit", prompt=AUTO_PROMPT, auto_continue=True)),
        SlotState.QUOTA,
        (SendKeys, Report),
        check=reported("pane", "quota"),
    ),
    # -- the CLI exited under a live pane -----------------------------------------------------
    Case(
        "a CLI that exited to a shell under a working task fails it",
        69,
        BUSY,
        tick(EXITED),
        SlotState.EMPTY,
        (Kill, Finish),
        check=failed_with("ended while working"),
    ),
    Case(
        "a CLI that exited while starting a task is launched again",
        69,
        slot(SlotState.LAUNCHING),
        tick(EXITED),
        SlotState.LAUNCHING,
        (Kill, Launch),
    ),
    # -- account errors and warnings ---------------------------------------------------------
    Case(
        "an account on hold holds the task like a limit, for another account",
        70,
        BUSY,
        tick(
            WORKING, hook("StopFailure", error="account_on_hold", last_assistant_message="On hold")
        ),
        SlotState.QUOTA,
        (Report,),
        check=both(
            reported("hook", "quota"),
            lambda s, a: "account_on_hold" in (s.quota_hint.evidence if s.quota_hint else ""),
        ),
    ),
    Case(
        "a usage warning on the pane is reported when the task completes",
        71,
        BUSY,
        tick(WARNED, hook("Stop", last_assistant_message="Result.")),
        SlotState.EXITING,
        (Report, Finish, Exit),
        check=lambda s, a: (
            isinstance(report := only(a, Report), Report)
            and report.warning is not None
            and report.warning.percent == 92
        ),
    ),
    Case(
        "the Stop after the background agents finished completes with the final answer",
        21,
        slot(SlotState.BUSY, background=True),
        tick(DONE, hook("Stop", last_assistant_message="Final.")),
        SlotState.EXITING,
        (Finish, Exit),
        check=lambda s, a: finish(a).result == "Final." and not s.background,
    ),
]

#: Rules that recycle off, or answer permission dialogs, for the cases that need them.
RULES_FOR = {
    "a Stop hook without recycling leaves the session idle": replace(RULES, recycle=False),
    "a permission dialog past its timeout is answered when so configured": replace(
        RULES, permission_answer="1"
    ),
}
STALE_RULES = replace(RULES, stale_after=STALE_AFTER, idle_timeout=10 * STALE_AFTER)
RULES_FOR.update({case.id: STALE_RULES for case in CASES if case.row in (62, 63)})


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_transition(case: Case) -> None:
    """The slot's next state and actions are the table's."""
    rules = RULES_FOR.get(case.id, RULES)
    after, actions = step(case.before, case.observation, case.now, rules)
    assert after.state is case.after
    assert tuple(type(a) for a in actions if not isinstance(a, Log)) == case.actions, actions
    assert case.check(after, actions), (after, actions)


def test_every_row_of_the_table_has_a_case_and_every_case_a_row() -> None:
    """The docstring's transition table and these cases describe the same transitions."""
    table = {int(n) for n in re.findall(r"^ *(\d+) {2,}", machine.__doc__ or "", re.MULTILINE)}
    covered = {case.row for case in CASES}
    assert table == covered
    assert table == set(range(1, max(table) + 1))


def test_a_task_is_only_ever_in_a_task_state_unless_it_finished() -> None:
    """After any step that had a task and did not finish it, the slot is in a task state."""
    for case in CASES:
        task = getattr(case.observation, "task", None)
        rules = RULES_FOR.get(case.id, RULES)
        after, actions = step(case.before, case.observation, case.now, rules)
        if task is not None and not any(isinstance(a, Finish) for a in actions):
            assert after.state in TASK_STATES, case.id
