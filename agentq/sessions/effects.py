"""The effects a machine step makes: each changes the slot and emits the matching actions.

:class:`StepBase` holds one step's working state (the slot as it changes, the actions so
far, the task and its session id as this step knows them) and the primitive moves the
per-state decisions in :mod:`agentq.sessions.machine` are made of: launch, kill, recycle,
finish, report. Pure, like the machine.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

from agentq.agents.readings import ReadingKind, Source
from agentq.agents.status import Kind, UsageWarning, Window
from agentq.sessions.delivery import CONTINUE_PROMPT, TAIL_LINES, first_line, progress_view
from agentq.sessions.model import (
    Action,
    Ending,
    Exit,
    FileStamp,
    Finish,
    Instant,
    Kill,
    Launch,
    Log,
    Progress,
    Report,
    Rules,
    Slot,
    SlotState,
    Stale,
    TaskView,
    TranscriptRef,
)

#: Back-off of a slot whose agent will not start: 2, 4, 8 … seconds, at most this.
MAX_LAUNCH_BACKOFF = 60.0
#: A failure footer quotes at most this much of the pane.
TAIL_CHARS = 1500
_KINDS: dict[Kind, ReadingKind] = {
    Kind.OK: "ok",
    Kind.QUOTA: "quota",
    Kind.SERVER_ERROR: "server_error",
}


@dataclass
class StepBase:
    """One step's working state (the slot as it changes, the actions so far) and its effects."""

    slot: Slot
    now: Instant
    rules: Rules
    actions: list[Action] = field(default_factory=list)
    task: TaskView | None = None
    #: The task's session id as this step knows it (the record's, or a hook's newer word).
    session_id: str | None = None

    # -- helpers ---------------------------------------------------------------------------

    def set(self, **changes: object) -> None:
        # replace() checks the field names at run time; the table tests reach every call.
        self.slot = replace(self.slot, **changes)  # type: ignore[arg-type]

    def emit(self, *actions: Action) -> None:
        self.actions.extend(actions)

    def log(self, level: int, message: str, **fields: str) -> None:
        self.emit(Log(level, message, (("session", self.slot.name), *fields.items())))

    def bind(self, task: TaskView | None) -> None:
        self.task = task
        self.session_id = task.session_id if task else None

    def expected_prompt(self) -> str:
        """The first line of what we type into the slot ('' when it has no task)."""
        if self.task is None:
            return ""
        return first_line(CONTINUE_PROMPT if self.slot.continuing else self.task.prompt)

    # -- effects ---------------------------------------------------------------------------

    def launch(
        self,
        cwd: Path,
        account: str,
        resume: str | None,
        task: TaskView | None,
        *,
        retry: bool = False,
    ) -> None:
        self.emit(Launch(cwd, account, resume, retry))
        if task is not None and resume is None and self.session_id:
            # A fresh agent reports its own id; a resumed one keeps the recorded one.
            self.emit(Progress(session_id=None))
            self.session_id = None
        self.set(
            state=SlotState.LAUNCHING,
            cwd=cwd,
            account=account,
            since=self.now.mono,
            launched_at=self.now.wall,
            echo_baseline="",
            stale=False,
            background=False,  # a fresh agent process runs no background agent of ours
            resume_on=None,
        )

    def launch_failed(self, reason: str) -> None:
        """Back off a slot whose agent will not start (wrong command, bad folder…)."""
        failures = self.slot.launch_failures + 1
        delay = min(MAX_LAUNCH_BACKOFF, 2.0**failures)
        self.set(state=SlotState.EMPTY, launch_failures=failures, retry_at=self.now.mono + delay)
        self.log(
            logging.WARNING,
            "agent session failed to start; backing off",
            reason=reason,
            retry_in_s=f"{delay:g}",
        )

    def kill(self) -> None:
        self.emit(Kill())
        self.set(state=SlotState.EMPTY)

    def recycle(self, idle: bool = False) -> None:
        """A fresh session for the next task: ``/exit`` once the agent reads ``idle``.

        An agent still running its hooks (the user's own ``Stop`` hooks beside ours) is
        busy until they end; an ``/exit`` typed meanwhile would cut them short.
        """
        if not self.rules.recycle:
            self.set(state=SlotState.IDLE)
            return
        self.set(state=SlotState.EXITING, since=self.now.mono, exit_sent=False)
        if idle:
            self.send_exit()

    def send_exit(self) -> None:
        self.emit(Exit())
        self.set(exit_sent=True, since=self.now.mono)

    def on_exiting(self, idle: bool) -> None:
        """``/exit`` once the agent reads idle (or after ``exit_timeout`` anyway); kill it late."""
        overdue = self.now.mono - self.slot.since > self.rules.exit_timeout
        if not self.slot.exit_sent:
            if idle or overdue:
                self.send_exit()
        elif overdue:
            self.kill()

    def fail_and_kill(self, error: str, tail: str) -> None:
        self.finish(Ending.FAILED, error=error, tail=tail)
        self.kill()

    def watch_progress(self, screen: str, transcript: FileStamp | None) -> None:
        """The stale rule: flag a task whose pane and transcript stand still, once per standstill.

        Only flags (the :class:`Stale` action); failing a silent task is ``idle_timeout``'s
        job. A change of either clears the flag, so the next standstill is flagged again.
        """
        slot, view = self.slot, progress_view(screen)
        if view != slot.progress_screen or transcript != slot.progress_file:
            if slot.flagged_stale:
                self.log(logging.INFO, "stale task moves again")
            self.set(
                progress_screen=view,
                progress_file=transcript,
                progress_at=self.now.mono,
                flagged_stale=False,
            )
            return
        idle = self.now.mono - slot.progress_at
        if not slot.flagged_stale and idle >= self.rules.stale_after:
            self.set(flagged_stale=True)
            self.emit(Stale(idle))
            self.log(logging.WARNING, "task stale: no progress", idle_s=f"{idle:.0f}")

    def note(self, key: str, value: str) -> None:
        self.set(notes=(*self.slot.notes, (key, value)))

    def report(
        self,
        source: Source,
        kind: Kind,
        reset_text: str | None,
        text: str,
        *,
        window: Window | None = None,
        warning: UsageWarning | None = None,
    ) -> None:
        self.emit(Report(source, _KINDS[kind], reset_text, text, window, warning))

    def finish(
        self,
        ending: Ending,
        *,
        result: str | None = None,
        error: str | None = None,
        tail: str = "",
        answer_from: TranscriptRef | None = None,
    ) -> None:
        """Emit the task's end with its footer details; the slot forgets the task."""
        if self.task is None:
            return
        slot = self.slot
        details = list(slot.notes)
        if self.session_id:
            details.append(("session_id", self.session_id))
        if slot.transcript:
            details.append(("transcript", slot.transcript))
        if tail and ending is Ending.FAILED:
            lines = " ⏎ ".join(tail.splitlines()[-TAIL_LINES:])
            details.append(("last pane lines", lines[:TAIL_CHARS]))
        self.emit(Finish(ending, result, error, tuple(details), answer_from))
        self.set(
            notes=(),
            permission_since=None,
            continuing=False,
            quota_hint=None,
            resume_id=None,
            submitted=False,
            flagged_stale=False,
            background=False,
            resume_on=None,
        )
        self.task = None
