"""The local-session executor: tasks typed into a pool of agent sessions in tmux.

Each pool slot is a small state machine advanced by :meth:`SessionExecutor.poll`,
so launches, deliveries and completions of several sessions overlap and the main
loop never blocks on one of them::

    EMPTY → LAUNCHING → IDLE → PASTED → SUBMITTED → BUSY → EXITING → EMPTY
                          ↑_____________________________________|  (recycle)

Delivery is verified, not assumed: the paste must show in the live input line
before Enter is sent, and the agent must be seen busy (hook ``UserPromptSubmit``
or a spinning title) before the task counts as delivered. Completion precedence:
``Stop`` signal > ``StopFailure`` > idle prompt after busy (result from the
transcript) > timeout / idle timeout.
"""

from __future__ import annotations

import logging
import shlex
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agentq.accounts.quota import Decision, QuotaMonitor, Reading
from agentq.agents.classify import Activity, classify_hook_payload, classify_pane
from agentq.agents.hooks import Signal, consume, merge_hooks, read_signals
from agentq.agents.profiles import AgentProfile, transcript_path
from agentq.agents.resets import parse_reset
from agentq.agents.screen import (
    CONTINUE_PROMPT,
    SHELLS,
    TAIL_LINES,
    find_session_by_prompt,
    has_pending_input,
    last_assistant_text,
    last_echo,
    prompt_text,
    screen_tail,
)
from agentq.core import crashpoints
from agentq.core.errors import AgentError, TmuxError
from agentq.queue.jobs import Job, Outcome, OutcomeStatus, Recovery, RecoveryKind
from agentq.queue.protocol import Claim
from agentq.queue.records import Phase
from agentq.queue.taskfile import Task
from agentq.sessions.pool import PoolSpec
from agentq.sessions.slots import SessionSettings, Slot, SlotState
from agentq.sessions.tmux import TmuxDriver

logger = logging.getLogger(__name__)

LAUNCH_TIMEOUT = 45.0
EXIT_TIMEOUT = 5.0
STOP_GRACE = 2.0


class SessionExecutor:
    """Runs tasks in our own range of tmux sessions; never touches any other session."""

    name = "local"

    def __init__(
        self,
        driver: TmuxDriver,
        profile: AgentProfile,
        pool: PoolSpec,
        settings: SessionSettings,
        state_dir: Path,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.driver = driver
        self.profile = profile
        self.pool = pool
        self.settings = settings
        self.state_dir = state_dir
        self.clock = clock
        self.slots = {name: Slot(name) for name in pool.names() if pool.owns(name)}
        self.session_ids: dict[str, str] = {}
        self._finished: list[Outcome] = []
        self.paused = False
        self.monitor = QuotaMonitor(settings.confirm_polls, timedelta(seconds=settings.cooldown))
        #: Set when the quota monitor decides the active account is exhausted.
        self.swap_request: Decision | None = None
        #: What this executor saw, for the API's metrics (see :meth:`tallies`).
        self._tallies: Counter[tuple[str, ...]] = Counter()
        (state_dir / "signals").mkdir(parents=True, exist_ok=True)
        settings.account_home.mkdir(parents=True, exist_ok=True)
        merge_hooks(settings.account_home / "settings.json", state_dir)
        self._adopt_live_sessions()

    # -- Executor protocol -------------------------------------------------------------

    def capacity(self) -> int:
        """Free slots (idle, or empty and launchable)."""
        if self.paused or self.swap_request is not None:
            return 0
        return sum(
            s.job is None and s.state in (SlotState.IDLE, SlotState.EMPTY)
            for s in self.slots.values()
        )

    def start(self, job: Job) -> None:
        """Assign ``job`` to a free slot, in the project folder, and begin delivery.

        Raises:
            AgentError: the task pins a session outside the pool, or no session could be
                launched for it (the slot is left free again).
        """
        cwd = job.claim.project.path
        pinned = job.task.meta.session
        if pinned and pinned not in self.slots:
            raise AgentError(f"session pin {pinned!r} is not one of the pool's sessions")
        slot = self._pick_slot(cwd, pinned)
        slot.job = job
        slot.tries = 0
        slot.notes = []
        slot.continuing = slot.submitted = False
        slot.resume_id = None
        if pinned and slot.name != pinned:
            slot.notes.append(("pin", f"{pinned} was busy; ran on {slot.name}"))
        try:
            if slot.state is SlotState.IDLE and slot.cwd == cwd and self.driver.is_alive(slot.name):
                self._paste(slot)
            else:
                self._kill(slot)
                self._launch(slot, cwd)
        except TmuxError as exc:
            slot.job = None
            self._kill_quietly(slot)
            raise AgentError(f"could not start an agent session: {exc}", slot.name) from exc

    def poll(self, now: datetime) -> Sequence[Outcome]:
        """Advance every slot; return the jobs that ended."""
        signals = self._take_signals()
        for slot in self.slots.values():
            try:
                self._advance(slot, signals.get(slot.name, []))
            except TmuxError as exc:
                logger.warning(
                    "tmux error while polling", extra={"session": slot.name, "error": str(exc)}
                )
                if slot.job is not None and not self.driver.has_session(slot.name):
                    self._end(
                        slot, OutcomeStatus.FAILED, error=f"session {slot.name} vanished: {exc}"
                    )
                    slot.state = SlotState.EMPTY
        done, self._finished = self._finished, []
        self._keep_minimum()
        return done

    def recover(self, claim: Claim, task: Task | None, now: datetime) -> Recovery:
        """Decide about a task in flight at start-up: untyped → requeue; typed → adopt or fail."""
        session = claim.record.session or ""
        if claim.record.phase is Phase.CLAIMED or not session:
            return Recovery(RecoveryKind.REQUEUE)
        slot = self.slots.get(session)
        if slot is not None and self.driver.is_alive(session) and task is not None:
            if self._turn_signalled(session, claim.record.claimed_at):
                return Recovery(RecoveryKind.ADOPT)  # its hooks said it took (or finished) the turn
            activity = self._activity(session)
            if activity in (Activity.BUSY, Activity.PERMISSION):
                return Recovery(RecoveryKind.ADOPT)
        return Recovery(
            RecoveryKind.FAIL,
            f"abandoned after restart: the prompt was already sent to {session} and its work "
            "could not be observed to completion",
        )

    def _turn_signalled(self, session: str, claimed_at: str) -> bool:
        """Whether hook signals left from before the restart show ``session`` took this turn."""
        try:
            since = datetime.fromisoformat(claimed_at).timestamp()
        except ValueError:
            return False
        events = {"UserPromptSubmit", "Stop", "StopFailure"}
        return any(
            sig.session == session and sig.event in events and sig.received_at >= since
            for sig in read_signals(self.state_dir)
        )

    def adopt(self, job: Job) -> None:
        """Watch a task that was already delivered before a restart until it completes."""
        session = job.claim.record.session or ""
        slot = self.slots[session]
        slot.job = job
        slot.stale = False
        slot.session_id = job.claim.record.session_id or slot.session_id
        slot.state = SlotState.BUSY
        slot.since = self.clock()
        slot.last_change = slot.since
        slot.delivered_ns = 0
        slot.cwd = job.claim.project.path

    def next_poll(self) -> float | None:
        """How soon :meth:`poll` wants to run again."""
        states = {s.state for s in self.slots.values()}
        if states & {SlotState.LAUNCHING, SlotState.PASTED, SlotState.SUBMITTED, SlotState.EXITING}:
            return 0.1
        if states & {SlotState.BUSY, SlotState.QUOTA}:
            return 0.5
        return None

    def close(self) -> None:
        """Leave sessions running: in-flight tasks stay claimed and are recovered on restart."""

    def status(self) -> list[dict[str, object]]:
        """Per-session status for ``state.json``."""
        out: list[dict[str, object]] = []
        for slot in self.slots.values():
            entry: dict[str, object] = {"session": slot.name, "state": slot.state.value}
            if slot.job is not None:
                entry["task"] = slot.job.claim.task_id
            # For the API (issue 12): the account, the agent's session id, the last activity.
            entry["account"] = self.settings.account
            entry["session_id"] = slot.session_id
            last = max(slot.since, slot.last_change)
            entry["last_activity"] = time.time() - (self.clock() - last) if last else None
            if slot.permission_since is not None:
                entry["waiting_on_permission_s"] = round(self.clock() - slot.permission_since)
            out.append(entry)
        return out

    # -- operator requests (issue 12: the API's cancel, pane lines, metrics) -----------

    def cancel(self, task_id: str) -> bool:
        """Interrupt the agent working on ``task_id``; its job ends failed ("cancelled")."""
        for slot in self.slots.values():
            if slot.job is not None and slot.job.claim.task_id == task_id:
                if self.driver.has_session(slot.name):
                    self.driver.send_keys(slot.name, "Escape")
                self._end(slot, OutcomeStatus.FAILED, error="cancelled")
                return True
        return False

    def pane_lines(self, name: str, count: int) -> list[str] | None:
        """The last ``count`` lines of pool session ``name``'s pane; None when it is not running."""
        if name not in self.slots or not self.driver.has_session(name):
            return None
        return self.driver.capture(name).rstrip("\n").splitlines()[-count:]

    def tallies(self) -> dict[tuple[str, ...], int]:
        """Delivery retries, hook signals by event and quota readings by account/source/kind."""
        return dict(self._tallies)

    # -- slots -------------------------------------------------------------------------

    def _adopt_live_sessions(self) -> None:
        """Sessions of ours left by a previous daemon: watched if a task is adopted, else recycled.

        A leftover session may hold half-typed input from before the restart; it is
        never reused for a new task (that would submit the old text with the new).
        """
        live = set(self.driver.list_sessions())
        for slot in self.slots.values():
            if slot.name in live:
                slot.state = SlotState.LAUNCHING
                slot.since = self.clock()
                slot.stale = True

    def _pick_slot(self, cwd: Path, pinned: str | None) -> Slot:
        free = [
            s
            for s in self.slots.values()
            if s.job is None and s.state in (SlotState.IDLE, SlotState.EMPTY)
        ]
        if pinned:
            free = [s for s in free if s.name == pinned] or free
        same = [s for s in free if s.state is SlotState.IDLE and s.cwd == cwd]
        empty = [s for s in free if s.state is SlotState.EMPTY]
        return (same or empty or free)[0]

    def _launch(self, slot: Slot, cwd: Path, resume: str | None = None) -> None:
        env = self.profile.session_env(self.settings.account_home, slot.name, self.state_dir)
        self.driver.new_session(slot.name, cwd, self.profile.launch_command(resume), env)
        slot.state = SlotState.LAUNCHING
        slot.cwd = cwd
        slot.since = self.clock()
        slot.session_id = resume  # a resumed agent keeps its id; a fresh one reports it
        slot.launched_ns = time.time_ns()
        slot.last_verdict = None
        slot.echo_baseline = ""
        logger.debug("session launched", extra={"session": slot.name, "cwd": str(cwd)})

    def _kill(self, slot: Slot) -> None:
        if self.driver.has_session(slot.name):
            self.driver.kill_session(slot.name)
        slot.state = SlotState.EMPTY

    def _keep_minimum(self) -> None:
        if self.paused or self.swap_request is not None:
            return
        now = self.clock()
        live = sum(s.state is not SlotState.EMPTY for s in self.slots.values())
        for slot in self.slots.values():
            if live >= self.pool.min:
                break
            if slot.state is not SlotState.EMPTY or slot.job is not None or slot.retry_at > now:
                continue
            cwd = slot.cwd if slot.cwd is not None and slot.cwd.is_dir() else None
            try:
                self._launch(slot, cwd or self.settings.default_cwd)
            except TmuxError as exc:
                self._launch_failed(slot, str(exc))
                continue
            live += 1

    def _launch_failed(self, slot: Slot, reason: str) -> None:
        """Back off a slot whose agent will not start (wrong command, bad folder…)."""
        slot.launch_failures += 1
        delay = min(60.0, 2.0**slot.launch_failures)
        slot.retry_at = self.clock() + delay
        slot.state = SlotState.EMPTY
        logger.warning(
            "agent session failed to start; backing off",
            extra={"session": slot.name, "reason": reason, "retry_in_s": delay},
        )

    def _kill_quietly(self, slot: Slot) -> None:
        try:
            self._kill(slot)
        except TmuxError:
            slot.state = SlotState.EMPTY

    def _activity(self, session: str) -> Activity:
        return self.profile.activity(self.driver.capture(session), self.driver.pane_title(session))

    # -- the state machine -------------------------------------------------------------

    def _advance(self, slot: Slot, signals: list[Signal]) -> None:
        signals = self._own_signals(slot, signals)
        if slot.state in (SlotState.EMPTY, SlotState.PARKED):
            return
        if not self.driver.is_alive(slot.name):
            self._session_gone(slot)
            return
        handler = {
            SlotState.LAUNCHING: self._on_launching,
            SlotState.PASTED: self._on_pasted,
            SlotState.SUBMITTED: self._on_submitted,
            SlotState.BUSY: self._on_busy,
            SlotState.QUOTA: self._on_quota,
            SlotState.EXITING: self._on_exiting,
        }.get(slot.state)
        if handler is not None:
            handler(slot, signals)

    def _own_signals(self, slot: Slot, signals: list[Signal]) -> list[Signal]:
        """Signals of the agent session that took our prompt.

        A pane may hold other agent processes: a nested ``claude -p`` the agent ran
        inherits ``AGENTQ_SESSION``, and a killed predecessor's hooks may land late.
        The slot binds to the session whose ``UserPromptSubmit`` carried our prompt;
        after that, turn-ending signals of any other session are ignored.
        """
        own = []
        expected = self._expected_prompt(slot)
        for sig in signals:
            if sig.received_at * 1e9 < slot.launched_ns:
                continue  # from the process this slot ran before
            sid = sig.session_id
            if (
                sid
                and sig.event == "UserPromptSubmit"
                and expected
                and (sig.prompt or "").startswith(expected)
            ):
                slot.bound_id = sid
            if sid and slot.bound_id and sid != slot.bound_id:
                logger.info(
                    "signal of another agent process ignored",
                    extra={"session": slot.name, "event": sig.event, "id": sid},
                )
                continue
            if sid and sig.event != "SessionEnd":
                slot.session_id = sid
            if sig.transcript_path:
                slot.transcript = sig.transcript_path
            own.append(sig)
        return own

    @staticmethod
    def _expected_prompt(slot: Slot) -> str:
        """The first line of what we typed into the slot ('' when nothing is typed)."""
        if slot.job is None:
            return ""
        text = CONTINUE_PROMPT if slot.continuing else prompt_text(slot.job)
        return text.split("\n", 1)[0]

    def _session_gone(self, slot: Slot) -> None:
        if slot.state is SlotState.LAUNCHING and slot.job is None:
            self._launch_failed(slot, "the agent exited while starting")
            return
        if slot.state is SlotState.EXITING or slot.job is None:
            slot.state = SlotState.EMPTY
            return
        if slot.state is SlotState.LAUNCHING and slot.tries < self.settings.delivery_retries:
            slot.tries += 1
            self._launch(slot, slot.job.claim.project.path, resume=slot.resume_id)
            return
        if slot.state is SlotState.LAUNCHING and slot.resume_id:
            self._end(
                slot,
                OutcomeStatus.FAILED,
                error=f"could not resume session {slot.resume_id} on account "
                f"{self.settings.account}: the agent exited at start",
                tail=screen_tail(slot.last_screen),
            )
            slot.state = SlotState.EMPTY
            return
        tail = screen_tail(slot.last_screen)
        self._end(
            slot,
            OutcomeStatus.FAILED,
            error=f"session {slot.name} ended while working on the task",
            tail=tail,
        )
        slot.state = SlotState.EMPTY

    def _on_launching(self, slot: Slot, signals: list[Signal]) -> None:
        if slot.stale and slot.job is None:
            self._kill(slot)
            slot.stale = False
            return
        activity = self._activity(slot.name)
        if activity is Activity.MENU:
            self.driver.send_keys(slot.name, "Escape")
            return
        if activity is Activity.IDLE:
            slot.state = SlotState.IDLE
            slot.launch_failures = 0
            if slot.job is not None:
                self._paste(slot)
            return
        if self.clock() - slot.since > LAUNCH_TIMEOUT:
            self._retry_or_fail(
                slot, f"the agent in {slot.name} did not become ready in {LAUNCH_TIMEOUT:.0f}s"
            )

    def _paste(self, slot: Slot) -> None:
        job = slot.job
        if job is None:
            return
        job.claim.progress(Phase.DELIVERING, session=slot.name)
        crashpoints.hit("before_tmux_send")
        slot.delivered_ns = time.time_ns()
        slot.bound_id = None
        slot.quota_hint = None
        slot.echo_baseline = last_echo(self.driver.capture(slot.name))
        self.driver.paste(slot.name, CONTINUE_PROMPT if slot.continuing else prompt_text(job))
        slot.state = SlotState.PASTED
        slot.since = self.clock()

    def _on_pasted(self, slot: Slot, signals: list[Signal]) -> None:
        if has_pending_input(self.driver.capture(slot.name)):
            self.driver.send_keys(slot.name, "Enter")
            crashpoints.hit("after_tmux_send")
            slot.state = SlotState.SUBMITTED
            slot.since = self.clock()
        elif self.clock() - slot.since > self.settings.delivery_timeout:
            self._retry_or_fail(slot, "the paste never showed in the agent's input line")

    def _on_submitted(self, slot: Slot, signals: list[Signal]) -> None:
        events = {s.event for s in signals}
        busy = "UserPromptSubmit" in events or bool(events & {"Stop", "StopFailure"})
        if not busy:
            busy = self._activity(slot.name) in (Activity.BUSY, Activity.PERMISSION)
        if busy:
            self._mark_busy(slot)
            if events & {"Stop", "StopFailure"}:
                self._on_busy(slot, signals)
            return
        if self.clock() - slot.since > self.settings.delivery_timeout:
            screen = self.driver.capture(slot.name)
            if last_echo(screen) != slot.echo_baseline:
                # Our prompt is echoed: it was submitted, whatever the hooks said. Watch it
                # from here; typing it again could run the task twice.
                self._mark_busy(slot)
                return
            if has_pending_input(screen) and slot.tries < self.settings.delivery_retries:
                slot.tries += 1
                self.driver.send_keys(
                    slot.name, "Enter"
                )  # the paste is still there: Enter was lost
                slot.since = self.clock()
                return
            self._retry_or_fail(slot, "the agent did not start working on the prompt")

    def _mark_busy(self, slot: Slot) -> None:
        if slot.job is None:
            return
        slot.state = SlotState.BUSY
        slot.since = slot.last_change = self.clock()
        slot.idle_seen_at = None
        if slot.session_id:
            slot.job.claim.progress(Phase.RUNNING, session_id=slot.session_id)
        else:
            slot.job.claim.progress(Phase.RUNNING)
        logger.info("task delivered", extra={"task": slot.job.claim.task_id, "session": slot.name})

    def _on_busy(self, slot: Slot, signals: list[Signal]) -> None:
        if slot.job is None:
            return
        for sig in signals:
            if sig.event == "Stop":
                slot.notes.append(("completed by", "Stop hook"))
                self._end(slot, OutcomeStatus.DONE, result=sig.last_assistant_message or "")
                return
            if sig.event == "StopFailure":
                self._on_stop_failure(slot, sig)
                return
        now = self.clock()
        screen = self.driver.capture(slot.name)
        if screen != slot.last_screen:
            slot.last_screen, slot.last_change = screen, now
        title = self.driver.pane_title(slot.name)
        at_limit = self._watch_quota(slot, screen, title)
        activity = self.profile.activity(screen, title)
        if self._check_limits(slot, now, activity):
            return
        if slot.quota_hint is not None and activity is Activity.BUSY and not at_limit:
            slot.quota_hint = None  # working again: the limit has gone
        if slot.quota_hint is not None and not at_limit:
            # The hook's reading still stands while the agent sits at its limit: this poll
            # confirms it again (a reading without a reset time needs confirm_polls).
            self._observe(slot, "hook", "quota", *slot.quota_hint)
        if at_limit or slot.quota_hint is not None:
            if activity is Activity.MENU:
                self.driver.send_keys(slot.name, "Escape")  # the rate-limit menu blocks input
            if self.swap_request is not None:
                slot.state = SlotState.QUOTA
            return  # at the account's limit: never "done" on the idle prompt
        if activity is Activity.IDLE:
            slot.idle_seen_at = slot.idle_seen_at or now
            if now - slot.idle_seen_at >= STOP_GRACE:
                slot.notes.append(("completed by", "idle prompt (answer from the transcript)"))
                self._end(slot, OutcomeStatus.DONE, result=self._transcript_answer(slot))
        else:
            slot.idle_seen_at = None

    def _check_limits(self, slot: Slot, now: float, activity: Activity) -> bool:
        if slot.job is None:
            return False
        timeout = slot.job.task.meta.timeout or self.settings.task_timeout
        if timeout and now - slot.since > timeout:
            self._end(
                slot,
                OutcomeStatus.FAILED,
                error=f"timed out after {timeout:g}s",
                tail=screen_tail(slot.last_screen),
            )
            self._kill(slot)
            return True
        if activity is Activity.PERMISSION:
            if slot.permission_since is None:
                slot.permission_since = now
                slot.permission_text = screen_tail(slot.last_screen, 8)
                logger.warning("agent waits on a permission dialog", extra={"session": slot.name})
            waited = now - slot.permission_since
            if waited >= self.settings.permission_timeout:
                return self._on_permission_timeout(slot, waited)
            return False
        slot.permission_since = None
        if now - slot.last_change > self.settings.idle_timeout:
            self._end(
                slot,
                OutcomeStatus.FAILED,
                error=f"stalled: no output for {self.settings.idle_timeout:g}s",
                tail=screen_tail(slot.last_screen),
            )
            self._kill(slot)
            return True
        return False

    def _on_permission_timeout(self, slot: Slot, waited: float) -> bool:
        note = f"waited {waited:.0f}s on a permission dialog"
        if self.settings.on_permission == "answer":
            slot.notes.append(
                ("permission", f"{note}; answered {self.settings.permission_answer!r}")
            )
            self.driver.send_keys(slot.name, self.settings.permission_answer, literal=True)
            slot.permission_since = None
            return False
        dialog = " ".join(slot.permission_text.split())[:300]
        self._end(slot, OutcomeStatus.FAILED, error=f"{note}: {dialog}")
        self._kill(slot)
        return True

    def _on_exiting(self, slot: Slot, signals: list[Signal]) -> None:
        if self.clock() - slot.since > EXIT_TIMEOUT:
            self._kill(slot)

    def _retry_or_fail(self, slot: Slot, reason: str) -> None:
        """Start over on a fresh session (nothing was submitted yet) or give up."""
        if slot.job is not None and slot.tries < self.settings.delivery_retries:
            slot.tries += 1
            self._tallies["delivery_retries",] += 1
            logger.warning("delivery retried", extra={"session": slot.name, "reason": reason})
            self._kill(slot)
            self._launch(slot, slot.job.claim.project.path, resume=slot.resume_id)
            return
        if slot.job is not None:
            self._end(
                slot,
                OutcomeStatus.FAILED,
                error=f"delivery failed: {reason}",
                tail=screen_tail(slot.last_screen),
            )
        self._kill(slot)

    # -- quota -------------------------------------------------------------------------

    def _on_stop_failure(self, slot: Slot, sig: Signal) -> None:
        reading = classify_hook_payload(
            {
                "hook_event_name": "StopFailure",
                "error": sig.error,
                "last_assistant_message": sig.last_assistant_message,
            }
        )
        if reading.kind == "quota":
            slot.quota_hint = (reading.reset_text, reading.evidence or "")
            self._observe(slot, "hook", "quota", *slot.quota_hint)
            if self.swap_request is not None:
                slot.state = SlotState.QUOTA
            return
        self._end_failure(slot, sig, reading.kind)

    def _watch_quota(self, slot: Slot, screen: str, title: str) -> bool:
        """Pane fallback: feed the monitor; True when the pane shows the account's limit.

        Until our prompt's echo is on screen, what the pane shows belongs to an earlier
        turn (a resumed session's history ends on the old account's limit line).
        """
        if last_echo(screen) == slot.echo_baseline:
            return False
        reading = classify_pane(screen, title)
        if reading.kind == "ok" or (reading.kind == "quota" and reading.retrying):
            if slot.quota_hint is None:  # a pane that says nothing does not clear the hook's word
                self._observe(slot, "pane", "ok", None, "")
            return False
        self._observe(slot, "pane", reading.kind, reading.reset_text, reading.evidence or "")
        return reading.kind == "quota"

    def _on_quota(self, slot: Slot, signals: list[Signal]) -> None:
        """A session at its account's limit waits for the swap; it may still finish or recover."""
        if any(sig.event == "Stop" for sig in signals):
            slot.state = SlotState.BUSY
            self._on_busy(slot, signals)
            return
        screen = self.driver.capture(slot.name)
        title = self.driver.pane_title(slot.name)
        activity = self.profile.activity(screen, title)
        if activity is Activity.MENU:
            self.driver.send_keys(slot.name, "Escape")  # the rate-limit menu blocks the input
        elif activity is Activity.BUSY:
            slot.state = SlotState.BUSY  # working again (the limit lifted or was misread)
            slot.quota_hint = None
            return
        if self._check_limits(slot, self.clock(), activity):
            return
        reading = classify_pane(screen, title)
        if reading.kind == "quota" and not reading.retrying:
            self._observe(slot, "pane", "quota", reading.reset_text, reading.evidence or "")
        elif slot.quota_hint is not None:
            self._observe(slot, "hook", "quota", *slot.quota_hint)

    def _observe(
        self, slot: Slot, source: str, kind: str, reset_text: str | None, text: str
    ) -> None:
        now = datetime.now(UTC)
        reset_at = parse_reset(reset_text, now, self.settings.timezone) if reset_text else None
        reading = Reading(slot.name, source, kind, reset_at, text[:120], now)  # type: ignore[arg-type]
        self._tallies["reading", self.settings.account, source, kind] += 1
        decision = self.monitor.observe(reading, now)
        if decision is None:
            return
        verdict = (decision.source, reading.kind, decision.swap)
        if verdict != slot.last_verdict:  # one forensic line per change, not one per poll
            slot.last_verdict = verdict
            logger.warning("quota monitor: %s", decision.forensic, extra={"session": slot.name})
        if decision.swap and self.swap_request is None:
            self.swap_request = decision

    # -- swap support (called by the switcher) --------------------------------------

    def park_all(self) -> list[Slot]:
        """Kill every session of ours; slots with a task keep it, parked, for a resume.

        The session ids come from the hooks (signals not yet read are read first); for a
        prompt submitted so recently that no hook spoke yet, from the transcript that
        holds it.
        """
        pending = self._take_signals()
        for slot in self.slots.values():
            self._own_signals(slot, pending.get(slot.name, []))
        parked = []
        for slot in self.slots.values():
            if slot.job is not None and slot.state in (
                SlotState.BUSY,
                SlotState.QUOTA,
                SlotState.SUBMITTED,
                SlotState.PASTED,
                SlotState.LAUNCHING,
            ):
                if self.driver.has_session(slot.name):
                    self.driver.kill_session(slot.name)
                slot.submitted = slot.continuing or slot.state in (
                    SlotState.BUSY,
                    SlotState.QUOTA,
                    SlotState.SUBMITTED,
                )
                if slot.submitted and not slot.session_id and slot.cwd is not None:
                    slot.session_id = find_session_by_prompt(
                        self.settings.account_home, slot.cwd, self._expected_prompt(slot)
                    )
                slot.state = SlotState.PARKED
                parked.append(slot)
            elif slot.state is not SlotState.PARKED:
                self._kill(slot)
        return parked

    def set_account(self, name: str, home: Path) -> None:
        """Launch every later session on ``name``'s home (hooks merged into it first)."""
        home.mkdir(parents=True, exist_ok=True)
        merge_hooks(home / "settings.json", self.state_dir)
        self.settings.account = name
        self.settings.account_home = home

    def resume_parked(self) -> None:
        """Relaunch each parked task's session with ``--resume <uuid>`` in its cwd; continue it."""
        for slot in self.slots.values():
            if slot.state is not SlotState.PARKED or slot.job is None:
                continue
            try:
                self._resume_one(slot)
            except (TmuxError, AgentError) as exc:  # one task's failure must not stop the others
                self._end(
                    slot, OutcomeStatus.FAILED, error=f"could not resume after the swap: {exc}"
                )
                slot.state = SlotState.EMPTY

    def _resume_one(self, slot: Slot) -> None:
        job = slot.job
        if job is None:
            return
        if not slot.submitted:
            # Nothing was submitted in the killed session: deliver afresh.
            self._launch(slot, job.claim.project.path)
            return
        if not slot.session_id or slot.cwd is None:
            self._end(
                slot,
                OutcomeStatus.FAILED,
                error="interrupted by the usage limit; its session id is unknown, so it "
                "cannot be resumed",
            )
            slot.state = SlotState.EMPTY
            return
        uuid = slot.resume_id = slot.session_id
        self._launch(slot, slot.cwd, resume=uuid)
        slot.continuing = True
        slot.tries = 0
        slot.notes.append(("resumed", f"{uuid} on account {self.settings.account}"))

    def dedicated_sessions(self) -> dict[str, str]:
        """The operator's sessions whose agent session id the hooks reported."""
        return {n: sid for n, sid in self.session_ids.items() if n in self.pool.dedicated}

    def relaunch_dedicated(self, name: str, session_id: str) -> bool:
        """Resume an operator's session on the active account, only if it is at its shell prompt."""
        if name not in self.pool.dedicated or not self.driver.has_session(name):
            return False
        if self.driver.pane_command(name) not in SHELLS:
            return False  # the agent (or something else) still runs there: never interrupt it
        env = {**self.profile.env, "CLAUDE_CONFIG_DIR": str(self.settings.account_home)}
        assignments = [f"{k}={shlex.quote(v)}" for k, v in env.items()]
        argv = [shlex.quote(a) for a in self.profile.launch_command(resume=session_id)]
        self.driver.send_keys(name, " ".join([*assignments, *argv]), literal=True)
        self.driver.send_keys(name, "Enter")
        return True

    def _end_failure(self, slot: Slot, sig: Signal, kind: str) -> None:
        message = (sig.last_assistant_message or "").strip().splitlines()
        text = message[0] if message else ""
        error = f"agent error ({sig.error or 'unknown'}, {kind}): {text}".rstrip(": ")
        self._end(slot, OutcomeStatus.FAILED, error=error[:500])

    def _end(
        self,
        slot: Slot,
        status: OutcomeStatus,
        result: str | None = None,
        error: str | None = None,
        tail: str = "",
    ) -> None:
        job = slot.job
        if job is None:
            return
        details = list(slot.notes)
        if slot.session_id:
            details.append(("session_id", slot.session_id))
        if slot.transcript:
            details.append(("transcript", slot.transcript))
        if tail and status is OutcomeStatus.FAILED:
            details.append(("last pane lines", " ⏎ ".join(tail.splitlines()[-TAIL_LINES:])[:1500]))
        self._finished.append(
            Outcome(
                job,
                status,
                datetime.now(UTC),
                result=result,
                error=error,
                target=slot.name,
                account=self.settings.account,
                cost="not reported (subscription session)",
                details=tuple(details),
            )
        )
        slot.job = None
        slot.permission_since = None
        slot.continuing = False
        slot.quota_hint = None
        if self.settings.recycle and self.driver.has_session(slot.name):
            self.driver.send_keys(slot.name, "Escape")
            self.driver.paste(slot.name, "/exit")
            self.driver.send_keys(slot.name, "Enter")
            slot.state = SlotState.EXITING
            slot.since = self.clock()
        elif self.driver.has_session(slot.name):
            slot.state = SlotState.IDLE

    def _transcript_answer(self, slot: Slot) -> str:
        """The last assistant text of the session's transcript (the fallback result)."""
        path: Path | None = Path(slot.transcript) if slot.transcript else None
        if path is None and slot.session_id and slot.cwd is not None:
            path = transcript_path(self.settings.account_home, slot.cwd, slot.session_id)
        if path is None:
            return ""
        return last_assistant_text(path)

    # -- signals -----------------------------------------------------------------------

    def _take_signals(self) -> dict[str, list[Signal]]:
        by_session: dict[str, list[Signal]] = {}
        for sig in read_signals(self.state_dir):
            consume(sig)
            self._tallies["signal", sig.event] += 1
            if not sig.session:
                continue
            if sig.session_id:
                self.session_ids[sig.session] = sig.session_id
            slot = self.slots.get(sig.session)
            if slot is None or (
                slot.delivered_ns and sig.received_at * 1e9 < slot.delivered_ns - 1e6
            ):
                continue  # another session's, or older than this delivery
            by_session.setdefault(sig.session, []).append(sig)
        return by_session
