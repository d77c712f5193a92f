"""One pool slot's state machine, pure: ``step(slot, observation, now, rules) -> (slot, actions)``.

A slot is one tmux session of ours and where it is in its cycle::

    EMPTY → LAUNCHING → IDLE → PASTED → SUBMITTED → BUSY ⇄ QUOTA → EXITING → EMPTY
                                                      └─→ PARKED → LAUNCHING (resume)

The executor observes (one batched tmux query, a capture when :func:`needs_screen`, the
hook signals, the task as its control record tells it), steps, and applies the actions in
order. This module never does I/O, never reads a clock and imports no adapter: tmux, the
record, the transcript and the time all come in as data, and every effect goes out as an
action (:mod:`agentq.sessions.model`). The executor holds the task; the slot holds the
delivery bookkeeping of it; the task's control record holds its phase and session id.

Transitions. "Finish" ends the task (the executor hands its outcome over); "retry" means:
tries left → LAUNCHING, Launch (a fresh session, the same resume id); none left → EMPTY,
Finish(failed), Kill; no task → EMPTY, Kill. "Recycle" is EXITING, with Exit at once when
the pane reads idle (row 72; IDLE when ``recycle`` is off). Log lines are left out.

===  =============  ===============================================  ==========================
 #   from           observation: condition                           to: actions
===  =============  ===============================================  ==========================
 1   LAUNCHING      Tick: session gone or dead, no task              EMPTY: back off 2…60 s
 2   IDLE, EXITING  Tick: session gone                               EMPTY
 3   LAUNCHING      Tick: session gone, task, tries left             LAUNCHING: Launch
 4   LAUNCHING      Tick: session gone, task, resuming, no tries     EMPTY: Finish(failed)
 5   task states    Tick: session gone (otherwise)                   EMPTY: Finish(failed)
 6   EMPTY, PARKED  Tick (no resume waiting for the session id)      unchanged
 7   LAUNCHING      Tick: stale (left by a previous daemon), no task EMPTY: Kill
 8   LAUNCHING      Tick: a menu on screen                           LAUNCHING: Esc
 9   LAUNCHING      Tick: idle, no task                              IDLE
10   LAUNCHING      Tick: idle, task                                 PASTED: Progress, Paste
11   LAUNCHING      Tick: not ready within ``launch_timeout``        unchanged
12   LAUNCHING      Tick: not ready after ``launch_timeout``         retry
13   PASTED         Tick: the paste shows in the live input line     SUBMITTED: Submit (echo noted)
14   PASTED         Tick: no paste after ``delivery_timeout``        retry
15   SUBMITTED      Tick: prompt hook, or a busy pane                BUSY: Progress(running)
16   SUBMITTED      Tick: Stop hook                                  as 15, then as 21
17   SUBMITTED      Tick: not busy within ``delivery_timeout``       unchanged
18   SUBMITTED      Tick: after it, our prompt echoed                BUSY: Progress(running)
19   SUBMITTED      Tick: after it, the paste pending, tries left    SUBMITTED: Enter
20   SUBMITTED      Tick: after it, otherwise                        retry
21   BUSY           Tick: Stop hook                                  Finish(done), recycle
22   BUSY           Tick: StopFailure saying quota                   QUOTA: Report(hook)
23   BUSY           Tick: StopFailure, another error                 Finish(failed), recycle
24   BUSY           Tick: the limit on the pane after our echo       QUOTA: Report, Esc on menu
25   BUSY           Tick: a limit line above our echo (history)      unchanged
26   BUSY           Tick: pane ok, retrying, or a server error       BUSY: Report (a retry: ok)
27   BUSY           Tick: the idle prompt, first seen                BUSY (idle noted)
28   BUSY           Tick: the idle prompt for ``stop_grace``         Finish(transcript), recycle
29   BUSY           Tick: working again                              BUSY (idle forgotten)
30   BUSY, QUOTA    Tick: past the task's timeout                    EMPTY: Finish(failed), Kill
31   BUSY, QUOTA    Tick: a permission dialog, first seen            unchanged (dialog noted)
32   BUSY, QUOTA    Tick: the dialog past its timeout, no answer     EMPTY: Finish(failed), Kill
33   BUSY, QUOTA    Tick: the dialog past its timeout, an answer     unchanged: SendKeys(answer)
34   BUSY, QUOTA    Tick: no output for ``idle_timeout``             EMPTY: Finish(failed), Kill
35   QUOTA          Tick: Stop hook                                  as 21
36   QUOTA          Tick: working again                              BUSY
37   QUOTA          Tick: still at the limit                         QUOTA: Report (pane, hook)
38   QUOTA          Tick: the rate-limit menu                        QUOTA: Esc, Report
39   EXITING        Tick: exit typed, after ``exit_timeout``         EMPTY: Kill
40   IDLE           Assign: alive, in its cwd, on its account        PASTED: Progress, Paste
41   IDLE, EMPTY    Assign: otherwise                                LAUNCHING: Launch
42   any            Adopt (delivered before a restart)               BUSY
43   EMPTY          Warm (keep the pool's minimum)                   LAUNCHING: Launch
44   task states    Park: submitted, a resumed task's continue       PARKED: Kill
45   task states    Park: submitted (otherwise)                      PARKED: Kill, FindSessionId
46   task states    Park: not submitted                              PARKED: Kill
47   no task        Park                                             EMPTY: Kill
48   PARKED         Resume: not submitted                            LAUNCHING: Launch
49   PARKED         Resume: submitted, session id known              LAUNCHING: Launch(resume)
50   PARKED         Resume: submitted, session id unknown            PARKED: FindSessionId (74-76)
51   LAUNCHING      Failed: no task                                  EMPTY: back off
52   task states    Failed: the task dropped (its start failed)      EMPTY: Kill
53   task states    Failed: task, the session still exists           unchanged
54   LAUNCHING      Failed: task, session gone, resuming             EMPTY: Finish(failed)
55   task states    Failed: task, session gone (otherwise)           EMPTY: Finish(failed)
56   any            a hook older than the launch or the paste        ignored
57   any            another session's hook once ours is bound        ignored
58   any            a hook naming a session id (not SessionEnd)      Progress(session_id)
59   any            a fresh launch of a task with a recorded id      Progress(session_id=None)
60   task states    Cancel (the operator): the session is alive      Esc, Finish(failed), recycle
61   task states    Cancel: the session is gone                      EMPTY: Finish(failed)
62   BUSY, QUOTA    Tick, after the above: pane or transcript moved  unchanged (progress noted)
63   BUSY, QUOTA    Tick, after the above: still for ``stale_after`` unchanged: Stale, once per halt
64   BUSY           Tick: Stop hook, background agents still run     BUSY (background noted)
65   BUSY           Tick: the idle prompt, background agents run     BUSY (no completion)
66   SUBMITTED      Tick: the automatic continue's prompt hook       unchanged (not our prompt)
67   BUSY, QUOTA    Tick: automatic continue armed on the pane       QUOTA: Esc (cancel), Report
68   BUSY, QUOTA    Tick: automatic continue fired (hook, notice)    QUOTA: Esc (interrupt), Report
69   LAUNCHING…     Tick: the CLI exited (resume hint, a shell)      as 3-5: Kill first
70   BUSY           Tick: StopFailure: the account cannot run tasks  QUOTA: Report(hook)
71   BUSY           Tick: Stop hook, a usage warning on the pane     as 21, Report(warning) first
72   EXITING        Tick: exit not typed, the agent idle             EXITING: Exit
73   EXITING        Tick: exit not typed, not idle, exit_timeout     EXITING: Exit
74   PARKED         Tick: a resume waits, the session id now known   LAUNCHING: Launch(resume)
75   PARKED         Tick: a resume waits, within ``ID_LOOKUP``       unchanged: FindSessionId
76   PARKED         Tick: a resume waits, past ``ID_LOOKUP``         LAUNCHING: Launch (afresh)
===  =============  ===============================================  ==========================

A session of ours found at start-up begins LAUNCHING and stale. The slot states a task
can be in are LAUNCHING, PASTED, SUBMITTED, BUSY, QUOTA and PARKED ("task states");
"LAUNCHING…" are the states whose pane is read (LAUNCHING to QUOTA). BUSY and QUOTA are
:mod:`agentq.sessions.working`'s.

A parked task is resumed only in a session whose transcript holds its prompt (row 45):
``--resume`` restores what the transcript holds, nothing more. A hook names the agent
process, not what reached its transcript, and a session reused with ``recycle`` off holds
earlier tasks' conversation: a task cut moments after its prompt went in was seen (Claude
Code 2.1.332) "resumed" in a session whose transcript did not hold it, and the agent
continued without the task. So parking looks the prompt up in the transcripts written
since the delivery (the hooks' session first), and a parked task learns no id from
hooks. A task whose prompt is in no transcript is not failed for want of an id (rows 50,
74-76): the resume looks again for up to :data:`ID_LOOKUP`, then delivers the task
afresh, in full. The agent's process was killed by then, so the conversation holds
nothing of the task.

A task ends on the ``Stop`` that leaves no background agent of its running (Claude Code
fires one when the main turn ends and another after the follow-up turn the agents' end
starts). Claude Code 2.1.332's automatic continue after a limit never runs a pool task on:
pool sessions start with it off; armed anyway it is cancelled, fired anyway it is
interrupted and the task waits at the limit for agentq's resume. A reading resting on a
retry line is provisional (reported as ok) whatever its kind, as the account's login reads it.

Hook signals count only when they belong to this slot's current agent process (not older
than its launch, nor than the current delivery); once the agent session that took our
prompt is known (its ``UserPromptSubmit`` carried our first line), other sessions' signals
are ignored (a nested ``claude -p`` inherits the pane's environment). A session id heard
from a hook goes to the control record at once (:class:`Progress`): the record owns it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from agentq.agents.classify import Activity, classify_activity, has_exited
from agentq.queue.records import Phase
from agentq.sessions.delivery import (
    CONTINUE_PROMPT,
    has_pending_input,
    last_echo,
    screen_tail,
)
from agentq.sessions.model import (
    SCREEN_STATES,
    SUBMITTED_STATES,
    TASK_STATES,
    TURN_EVENTS,
    Action,
    Adopt,
    Assign,
    Cancel,
    Ending,
    Failed,
    FindSessionId,
    Hook,
    Instant,
    Kill,
    Observation,
    Pane,
    Park,
    Paste,
    Progress,
    Resume,
    Rules,
    SendKeys,
    Slot,
    SlotState,
    Submit,
    Tick,
    Warm,
)
from agentq.sessions.working import WorkingStep

#: Signals stamped up to this long before the paste still count (two clocks, one host).
DELIVERY_SLACK = 0.001
#: How long a resume looks for a transcript holding a parked task's prompt (one being written).
ID_LOOKUP = 3.0
#: A transcript's modification time may read this much before the paste (coarse timestamps).
TRANSCRIPT_SLACK = 1.0


# -- the step ----------------------------------------------------------------------------


def needs_screen(slot: Slot) -> bool:
    """Whether the next Tick of ``slot`` reads its pane's text (so the executor captures it)."""
    exiting = slot.state is SlotState.EXITING and not slot.exit_sent  # waits for idle
    return slot.state in SCREEN_STATES or exiting


def step(
    slot: Slot, observation: Observation, now: Instant, rules: Rules
) -> tuple[Slot, list[Action]]:
    """Advance ``slot`` by one observation; return the new slot and the actions to apply."""
    run = _Step(slot, now, rules)
    match observation:
        case Tick():
            run.tick(observation)
        case Assign():
            run.assign(observation)
        case Adopt():
            run.adopt(observation)
        case Warm():
            run.launch(observation.cwd, observation.account, None, None)
        case Park():
            run.park(observation)
        case Resume():
            run.resume(observation)
        case Failed():
            run.failed(observation)
        case Cancel():
            run.cancel(observation)
    return run.slot, run.actions


@dataclass
class _Step(WorkingStep):
    """One step: the observation handlers and what each state does with a Tick."""

    # -- observations ----------------------------------------------------------------------

    def tick(self, tick: Tick) -> None:
        self.bind(tick.task)
        own = self.own_hooks(tick.hooks)
        state = self.slot.state
        if state is SlotState.PARKED:
            self.on_parked()
            return
        if state is SlotState.EMPTY:
            return
        if tick.pane is None or not tick.pane.alive:
            self.session_gone(tick.pane)
            return
        pane = tick.pane
        if state in SCREEN_STATES and self.cli_exited(pane):
            self.session_gone(pane)  # row 69: the CLI exited under a shell or wrapper
            return
        if state is SlotState.LAUNCHING:
            self.on_launching(pane)
        elif state is SlotState.PASTED:
            self.on_pasted(pane)
        elif state is SlotState.SUBMITTED:
            self.on_submitted(pane, own)
        elif state is SlotState.BUSY:
            self.on_busy(pane, own)
        elif state is SlotState.QUOTA:
            self.on_quota(pane, own)
        elif state is SlotState.EXITING:
            self.on_exiting(classify_activity(pane.screen, pane.title) is Activity.IDLE)
        if self.task is not None and self.slot.state in (SlotState.BUSY, SlotState.QUOTA):
            self.watch_progress(pane.screen, tick.transcript)  # the stale rule (rows 62, 63)

    def cli_exited(self, pane: Pane) -> bool:
        """The agent CLI is gone though the pane lives (its resume hint, a shell prompt)."""
        activity = classify_activity(pane.screen, pane.title)
        return activity is Activity.UNKNOWN and has_exited(pane.screen)

    def assign(self, assign: Assign) -> None:
        self.bind(assign.task)
        note = (assign.note,) if assign.note else ()
        self.set(
            tries=0,
            notes=note,
            continuing=False,
            submitted=False,
            resume_id=None,
            quota_hint=None,
            permission_since=None,
            idle_seen_at=None,
        )
        slot, pane = self.slot, assign.pane
        reusable = slot.state is SlotState.IDLE and slot.cwd == assign.task.cwd
        if reusable and slot.account == assign.account and pane is not None and pane.alive:
            self.paste(pane)
        else:
            self.launch(assign.task.cwd, assign.account, None, assign.task)

    def adopt(self, adopt: Adopt) -> None:
        self.bind(adopt.task)
        mono = self.now.mono
        self.set(
            state=SlotState.BUSY,
            stale=False,
            account=adopt.account,
            cwd=adopt.task.cwd,
            since=mono,
            last_change=mono,
            delivered_at=0.0,
            tries=0,
            notes=(),
            continuing=False,
            idle_seen_at=None,
            progress_at=mono,
            flagged_stale=False,
        )

    def park(self, park: Park) -> None:
        self.bind(park.task)
        self.own_hooks(park.hooks)  # a hook not read yet may name the session id
        slot = self.slot
        if self.task is not None and slot.state in TASK_STATES - {SlotState.PARKED}:
            self.emit(Kill())
            submitted = slot.continuing or slot.state in SUBMITTED_STATES
            if submitted and not slot.continuing:
                # Row 45: only a transcript that holds the prompt makes it resumable.
                hint = slot.bound_id or self.session_id
                if self.session_id:
                    self.emit(Progress(session_id=None))
                    self.session_id = None
                self.find_session_id(hint)
            self.set(state=SlotState.PARKED, submitted=submitted)
        elif slot.state is SlotState.PARKED:
            self.set(resume_on=None)  # parked again: a waiting resume's account ran out too
        else:
            self.kill()

    def resume(self, resume: Resume) -> None:
        self.bind(resume.task)
        task = self.task
        if self.slot.state is not SlotState.PARKED or task is None:
            return
        if not self.slot.submitted:
            self.launch(task.cwd, resume.account, None, task)  # nothing was typed: deliver afresh
            return
        if self.session_id:
            self.resume_on_account(resume.account)
            return
        # Row 50: a transcript still being written may hold the prompt yet (rows 74-76).
        waiting = self.slot.resume_on is not None
        self.set(resume_on=resume.account, since=self.slot.since if waiting else self.now.mono)
        self.find_session_id(self.slot.bound_id)

    def resume_on_account(self, account: str) -> None:
        """``--resume`` the parked task's session on ``account``, typing the continue prompt."""
        task, uuid = self.task, self.session_id
        if task is None or uuid is None:
            return
        self.set(resume_id=uuid, continuing=True, tries=0)
        self.note("resumed", f"{uuid} on account {account}")
        self.launch(task.cwd, account, uuid, task)

    def find_session_id(self, hint: str | None = None) -> None:
        """Ask for the transcript that holds our prompt (the executor records what it finds)."""
        slot = self.slot
        if slot.cwd is not None:
            # A transcript that holds this delivery's prompt was written to since the paste.
            since = max(0.0, slot.delivered_at - TRANSCRIPT_SLACK) if slot.delivered_at else 0.0
            self.emit(FindSessionId(slot.account, slot.cwd, self.expected_prompt(), hint, since))

    def on_parked(self) -> None:
        """A parked task whose resume waits for its session id (rows 6, 74-76)."""
        account, task = self.slot.resume_on, self.task
        if account is None or task is None:
            return
        if self.session_id:
            self.resume_on_account(account)
        elif self.now.mono - self.slot.since <= ID_LOOKUP:
            self.find_session_id(self.slot.bound_id)
        else:
            # No transcript holds the prompt: no conversation to resume; it starts over.
            self.note("redelivered", f"on account {account}: cut before its prompt was recorded")
            self.log(logging.WARNING, "parked task delivered afresh: no session id", task=task.key)
            self.set(continuing=False, submitted=False, resume_id=None)
            self.launch(task.cwd, account, None, task)

    def failed(self, failed: Failed) -> None:
        self.bind(failed.task)
        slot = self.slot
        if self.task is None:
            if slot.state is SlotState.LAUNCHING:
                self.launch_failed(failed.reason)
            elif slot.state in TASK_STATES:
                self.kill()  # the executor dropped the task: free the slot
            return
        if failed.session_exists:
            # The state's own timeouts recover (a paste that never shows is retried).
            self.log(logging.WARNING, "tmux error; the slot carries on", error=failed.reason)
            return
        if slot.state is SlotState.LAUNCHING and slot.resume_id:
            self.finish(Ending.FAILED, error=f"could not resume after the swap: {failed.reason}")
        else:
            self.finish(Ending.FAILED, error=f"session {slot.name} vanished: {failed.reason}")
        self.set(state=SlotState.EMPTY)

    def cancel(self, cancel: Cancel) -> None:
        self.bind(cancel.task)
        if self.task is None:
            return
        alive = cancel.pane is not None and cancel.pane.alive
        if alive:
            self.emit(SendKeys(("Escape",)))  # interrupt the turn before the exit
        self.finish(Ending.FAILED, error="cancelled")
        if alive:
            self.recycle()
        else:
            self.set(state=SlotState.EMPTY)

    # -- signals ---------------------------------------------------------------------------

    def own_hooks(self, hooks: tuple[Hook, ...]) -> list[Hook]:
        """The hooks of the agent process that runs our delivery; learns id and transcript."""
        own: list[Hook] = []
        expected = self.expected_prompt()
        learned: str | None = None
        delivered = self.slot.delivered_at - DELIVERY_SLACK if self.slot.delivered_at else 0.0
        parked = self.slot.state is SlotState.PARKED
        for hook in hooks:
            if hook.received_at < max(delivered, self.slot.launched_at):
                continue  # from the process this slot ran before, or an earlier delivery
            sid = hook.session_id
            if sid and hook.event == "UserPromptSubmit" and _starts(hook.prompt, expected):
                self.set(bound_id=sid)
            if sid and self.slot.bound_id and sid != self.slot.bound_id:
                ignored = "signal of another agent process ignored"
                self.log(logging.INFO, ignored, event=hook.event, id=sid)
                continue
            if sid and hook.event != "SessionEnd" and not parked:
                learned = sid  # parked: the transcript, not a hook, names it (row 45)
            if hook.transcript_path:
                self.set(transcript=hook.transcript_path)
            own.append(hook)
        if self.task is not None and learned and learned != self.session_id:
            self.emit(Progress(session_id=learned))
            self.session_id = learned
        return own

    # -- per state ---------------------------------------------------------------------------

    def session_gone(self, pane: Pane | None) -> None:
        slot, task = self.slot, self.task
        if pane is not None:
            self.emit(Kill())  # a dead pane kept by remain-on-exit
        if slot.state is SlotState.LAUNCHING and task is None:
            self.launch_failed("the agent exited while starting")
            return
        if slot.state is SlotState.EXITING or task is None:
            self.set(state=SlotState.EMPTY)
            return
        tail = screen_tail(slot.last_screen)
        if slot.state is SlotState.LAUNCHING and slot.tries < self.rules.delivery_retries:
            self.set(tries=slot.tries + 1)
            self.launch(task.cwd, slot.account, slot.resume_id, task, retry=True)
            return
        if slot.state is SlotState.LAUNCHING and slot.resume_id:
            error = (
                f"could not resume session {slot.resume_id} on account {slot.account}: "
                "the agent exited at start"
            )
        else:
            error = f"session {slot.name} ended while working on the task"
        self.finish(Ending.FAILED, error=error, tail=tail)
        self.set(state=SlotState.EMPTY)

    def on_launching(self, pane: Pane) -> None:
        if self.slot.stale and self.task is None:
            self.kill()
            self.set(stale=False)
            return
        activity = classify_activity(pane.screen, pane.title)
        if activity is Activity.MENU:
            self.emit(SendKeys(("Escape",)))
            return
        if activity is Activity.IDLE:
            self.set(state=SlotState.IDLE, launch_failures=0)
            if self.task is not None:
                self.paste(pane)
            return
        if self.now.mono - self.slot.since > self.rules.launch_timeout:
            limit = self.rules.launch_timeout
            self.retry_or_fail(
                f"the agent in {self.slot.name} did not become ready in {limit:.0f}s"
            )

    def paste(self, pane: Pane) -> None:
        task = self.task
        if task is None:
            return
        # The record says "delivering" on disk before a key goes out (crash recovery).
        self.emit(Progress(Phase.DELIVERING, session=self.slot.name))
        text = CONTINUE_PROMPT if self.slot.continuing else task.prompt
        self.emit(Paste(text))
        self.set(
            state=SlotState.PASTED,
            since=self.now.mono,
            delivered_at=self.now.wall,
            bound_id=None,
            quota_hint=None,
            echo_baseline=last_echo(pane.screen),
        )

    def on_pasted(self, pane: Pane) -> None:
        if has_pending_input(pane.screen):
            self.emit(Submit())
            # Every echo on screen now is history: a resumed session's may have been drawn
            # only after the paste (a title reads idle before the conversation is shown).
            baseline = last_echo(pane.screen)
            self.set(state=SlotState.SUBMITTED, since=self.now.mono, echo_baseline=baseline)
        elif self.now.mono - self.slot.since > self.rules.delivery_timeout:
            self.retry_or_fail("the paste never showed in the agent's input line")

    def on_submitted(self, pane: Pane, own: list[Hook]) -> None:
        # Row 66: the prompt Claude Code's automatic continue submits is not our delivery.
        events = {hook.event for hook in own if not hook.auto_continue}
        busy = bool(events & TURN_EVENTS)
        if not busy:
            activity = classify_activity(pane.screen, pane.title)
            busy = activity in (Activity.BUSY, Activity.PERMISSION)
        if busy:
            turn = [hook.received_at for hook in own if hook.event in TURN_EVENTS]
            self.mark_busy(min(turn) if turn else None)
            if events & {"Stop", "StopFailure"}:
                self.on_busy(pane, own)
            return
        if self.now.mono - self.slot.since <= self.rules.delivery_timeout:
            return
        if last_echo(pane.screen) != self.slot.echo_baseline:
            # Our prompt is echoed: it was submitted, whatever the hooks said. Watch it
            # from here; typing it again could run the task twice.
            self.mark_busy()
        elif has_pending_input(pane.screen) and self.slot.tries < self.rules.delivery_retries:
            self.emit(SendKeys(("Enter",)))  # the paste is still there: Enter was lost
            self.set(tries=self.slot.tries + 1, since=self.now.mono)
        else:
            self.retry_or_fail("the agent did not start working on the prompt")

    def mark_busy(self, at: float | None = None) -> None:
        """The agent took the prompt: at ``at`` by its own hook's clock, else now."""
        if self.task is None:
            return
        mono = self.now.mono
        self.set(state=SlotState.BUSY, since=mono, last_change=mono, idle_seen_at=None)
        self.set(progress_at=mono, flagged_stale=False)
        self.emit(Progress(Phase.RUNNING, at=self.now.wall if at is None else at))
        self.log(logging.INFO, "task delivered", task=self.task.key)

    def retry_or_fail(self, reason: str) -> None:
        """Start over on a fresh session (nothing was submitted yet) or give up."""
        slot, task = self.slot, self.task
        if task is not None and slot.tries < self.rules.delivery_retries:
            self.set(tries=slot.tries + 1)
            self.log(logging.WARNING, "delivery retried", reason=reason)
            self.launch(task.cwd, slot.account, slot.resume_id, task, retry=True)
        elif task is not None:
            self.fail_and_kill(f"delivery failed: {reason}", screen_tail(slot.last_screen))
        else:
            self.kill()


def _starts(prompt: str | None, expected: str) -> bool:
    """Whether a submitted prompt is ours (it starts with the first line we typed)."""
    return bool(expected) and (prompt or "").startswith(expected)
