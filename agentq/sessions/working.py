"""The session machine while the agent works on a task: BUSY and QUOTA (pure).

Split from :mod:`agentq.sessions.machine` (which holds the transition table and the other
states) by concern: how a running turn ends (Stop, StopFailure, the idle prompt), how the
account's limit and usage warnings are read off the pane and the hooks, Claude Code's own
automatic continue after a limit, background agents, and the task's own limits (timeout,
permission dialog, stall). Rows refer to the table in :mod:`agentq.sessions.machine`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from agentq.agents.classify import (
    Activity,
    AutoContinue,
    PaneReading,
    classify_activity,
    classify_hook_payload,
    classify_pane,
)
from agentq.agents.status import Kind, Window
from agentq.sessions.delivery import last_echo, screen_tail
from agentq.sessions.effects import StepBase
from agentq.sessions.model import (
    Ending,
    Hook,
    Pane,
    QuotaHint,
    SendKeys,
    SlotState,
    TranscriptRef,
)

#: ``StopFailure`` errors that say the account, not the task, cannot go on (Claude Code
#: 2.1.332): held like a limit, so the task resumes on another account.
ACCOUNT_ERRORS = frozenset({"account_on_hold", "verification_required", "cloud_credential_error"})


@dataclass
class WorkingStep(StepBase):
    """What BUSY and QUOTA do with a Tick."""

    #: This step's reading of the pane (classified once per step).
    readings: dict[str, PaneReading] = field(default_factory=dict)

    def on_busy(self, pane: Pane, own: list[Hook]) -> None:
        if self.task is None:
            return
        for hook in own:
            if hook.event == "Stop" and not hook.ends_task:
                self.wait_for_background()  # row 64
                continue
            if hook.event == "Stop":
                self.note("completed by", "Stop hook")
                self.report_warning(pane)  # row 71
                self.finish(Ending.DONE, result=hook.last_assistant_message or "")
                self.recycle(idle=classify_activity(pane.screen, pane.title) is Activity.IDLE)
                return
            if hook.event == "StopFailure":
                self.on_stop_failure(hook)
                return
        if self.auto_continued(pane, own):
            return
        mono, screen = self.now.mono, pane.screen
        if screen != self.slot.last_screen:
            self.set(last_screen=screen, last_change=mono)
        at_limit = self.watch_quota(pane)
        activity = classify_activity(screen, pane.title)
        if self.check_limits(activity):
            return
        if at_limit:
            if activity is Activity.MENU:
                self.emit(SendKeys(("Escape",)))  # the rate-limit menu blocks the input
            self.set(state=SlotState.QUOTA)  # at the account's limit: never "done" when idle
            return
        if activity is not Activity.IDLE or self.slot.background:
            self.set(idle_seen_at=None)  # row 65: background agents still run
            return
        seen = self.slot.idle_seen_at if self.slot.idle_seen_at is not None else mono
        self.set(idle_seen_at=seen)
        if mono - seen >= self.rules.stop_grace:
            self.note("completed by", "idle prompt (answer from the transcript)")
            slot = self.slot
            ref = TranscriptRef(slot.transcript, slot.account, slot.cwd, self.session_id)
            self.finish(Ending.DONE, answer_from=ref)
            self.recycle(idle=True)

    def wait_for_background(self) -> None:
        """A Stop while background agents run: the task goes on until the Stop after them."""
        if not self.slot.background:
            self.log(logging.INFO, "turn ended; waiting for its background agents")
        self.set(background=True, idle_seen_at=None)

    def on_stop_failure(self, hook: Hook) -> None:
        payload = {
            "hook_event_name": "StopFailure",
            "error": hook.error,
            "last_assistant_message": hook.last_assistant_message,
        }
        reading = classify_hook_payload(payload)
        if reading.kind is Kind.QUOTA or hook.error in ACCOUNT_ERRORS:
            window = reading.window or Window.UNKNOWN
            evidence = reading.evidence or ""
            if reading.kind is not Kind.QUOTA:  # row 70: the account cannot go on
                evidence = f"the account cannot run tasks ({hook.error}): {evidence}"
            hint = QuotaHint(reading.reset_text, evidence, window)
            self.report("hook", Kind.QUOTA, hint.reset_text, hint.evidence, window=window)
            self.set(state=SlotState.QUOTA, quota_hint=hint)
            return
        lines = (hook.last_assistant_message or "").strip().splitlines()
        text = lines[0] if lines else ""
        error = f"agent error ({hook.error or 'unknown'}, {reading.kind}): {text}".rstrip(": ")
        self.finish(Ending.FAILED, error=error[:500])
        self.recycle()

    def read_pane(self, pane: Pane) -> PaneReading:
        """The pane's reading (as the account's login reads it)."""
        key = f"{pane.title}\0{pane.login}\0{pane.screen}"
        if key not in self.readings:
            self.readings[key] = classify_pane(pane.screen, pane.title, login=pane.login)
        return self.readings[key]

    def shows_our_turn(self, pane: Pane) -> bool:
        """Whether our prompt's echo is on screen: before it, the pane shows an earlier turn
        (a resumed session's history ends on the old account's limit)."""
        return last_echo(pane.screen) != self.slot.echo_baseline

    def watch_quota(self, pane: Pane) -> bool:
        """Pane fallback: report what it says; True when it shows the account's limit.

        Until our prompt's echo is on screen, what the pane shows belongs to an earlier
        turn (a resumed session's history ends on the old account's limit line). A reading
        that rests on a retry line is provisional whatever its kind: reported as ok.
        """
        if not self.shows_our_turn(pane):
            self.report_warning(pane)
            return False
        reading = self.read_pane(pane)
        if reading.kind is Kind.OK or reading.retrying:
            self.report("pane", Kind.OK, None, "", warning=reading.warning)
            return False
        evidence = reading.evidence or ""
        window, warning = reading.window, reading.warning
        self.report(
            "pane", reading.kind, reading.reset_text, evidence, window=window, warning=warning
        )
        return reading.kind is Kind.QUOTA

    def report_warning(self, pane: Pane) -> None:
        """Report the usage warning the pane shows (it sits in the footer: any turn's)."""
        warning = self.read_pane(pane).warning if pane.screen else None
        if warning is not None:
            self.report("pane", Kind.OK, None, "", warning=warning)

    def auto_continued(self, pane: Pane, own: list[Hook]) -> bool:
        """Claude Code's automatic continue after a limit: cancelled or stopped (rows 67, 68).

        Pool sessions start with it turned off; if it is armed anyway (a changed settings
        file), Esc cancels it; if it fired, the turn it started is interrupted and the task
        waits at the limit for agentq to resume it where there is quota.
        """
        shown = self.read_pane(pane).auto_continue if self.shows_our_turn(pane) else None
        fired = any(hook.auto_continue for hook in own) or (
            shown is AutoContinue.FIRED
            and classify_activity(pane.screen, pane.title) is Activity.BUSY
        )
        if not fired and shown is not AutoContinue.ARMED:
            return False
        self.emit(SendKeys(("Escape",)))  # cancels an armed continue, interrupts a fired one
        what = "fired; interrupted" if fired else "armed; cancelled"
        self.log(logging.WARNING, f"the agent's automatic continue {what}")
        hint = self.slot.quota_hint or QuotaHint(None, f"automatic continue {what}")
        self.report("pane", Kind.QUOTA, hint.reset_text, hint.evidence, window=hint.window)
        self.set(state=SlotState.QUOTA, quota_hint=hint)
        return True

    def on_quota(self, pane: Pane, own: list[Hook]) -> None:
        """At the account's limit: wait for the swap; the turn may still finish or recover."""
        if any(hook.event == "Stop" for hook in own):
            self.set(state=SlotState.BUSY)
            self.on_busy(pane, own)
            return
        if self.auto_continued(pane, own):
            return
        activity = classify_activity(pane.screen, pane.title)
        if activity is Activity.MENU:
            self.emit(SendKeys(("Escape",)))  # the rate-limit menu blocks the input
        elif activity is Activity.BUSY:
            self.set(state=SlotState.BUSY, quota_hint=None)  # the limit lifted, or was misread
            return
        if self.check_limits(activity):
            return
        reading = self.read_pane(pane)
        hint = self.slot.quota_hint
        if reading.kind is Kind.QUOTA and not reading.retrying:
            evidence, window = reading.evidence or "", reading.window
            self.report("pane", Kind.QUOTA, reading.reset_text, evidence, window=window)
        elif hint is not None:
            self.report("hook", Kind.QUOTA, hint.reset_text, hint.evidence, window=hint.window)

    def check_limits(self, activity: Activity) -> bool:
        """Task timeout, permission dialog, stall: True when the task ended here."""
        slot, mono = self.slot, self.now.mono
        timeout = (self.task.timeout if self.task else None) or self.rules.task_timeout
        if timeout and mono - slot.since > timeout:
            self.fail_and_kill(f"timed out after {timeout:g}s", screen_tail(slot.last_screen))
            return True
        if activity is Activity.PERMISSION:
            if slot.permission_since is None:
                self.set(permission_since=mono, permission_text=screen_tail(slot.last_screen, 8))
                self.log(logging.WARNING, "agent waits on a permission dialog")
            waited = mono - (self.slot.permission_since or mono)
            if waited >= self.rules.permission_timeout:
                return self.permission_timeout(waited)
            return False
        self.set(permission_since=None)
        if mono - slot.last_change > self.rules.idle_timeout:
            error = f"stalled: no output for {self.rules.idle_timeout:g}s"
            self.fail_and_kill(error, screen_tail(slot.last_screen))
            return True
        return False

    def permission_timeout(self, waited: float) -> bool:
        note = f"waited {waited:.0f}s on a permission dialog"
        answer = self.rules.permission_answer
        if answer is not None:
            self.note("permission", f"{note}; answered {answer!r}")
            self.emit(SendKeys((answer,), literal=True))
            self.set(permission_since=None)
            return False
        dialog = " ".join(self.slot.permission_text.split())[:300]
        self.fail_and_kill(f"{note}: {dialog}", "")
        return True
