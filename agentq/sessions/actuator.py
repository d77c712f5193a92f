"""Carrying out the session machine's actions, the apply half of the executor's poll.

:class:`Actuator` takes one slot's actions as :func:`agentq.sessions.machine.step`
returns them: launches, kills, pasted text and keys go to the tmux driver; delivery
progress and a found agent session id go to the task's control record through
:meth:`agentq.queue.protocol.Claim.progress`; a finished task becomes an
:class:`~agentq.queue.jobs.Outcome` with its footer's usage rows; a quota report becomes
a :class:`~agentq.agents.readings.Reading`; a stale flag becomes a ``task_stale`` event.

It owns what those actions produced until the executor takes it (the jobs that ended, the
deliveries, the readings, their tallies). Which job runs on which slot stays the
executor's: each call is handed the slot's job.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime
from pathlib import Path

from agentq.agents.profiles import AgentProfile
from agentq.agents.readings import Reading
from agentq.agents.transcript import find_session_by_prompt
from agentq.core import crashpoints
from agentq.core import events as ev
from agentq.queue.jobs import Job, Outcome, OutcomeStatus
from agentq.sessions import model as m
from agentq.sessions.observe import (
    reading_of,
    stale_fields,
    task_usage_footer,
    transcript_answer,
)
from agentq.sessions.settings import SessionSettings
from agentq.sessions.tmux import TmuxDriver

logger = logging.getLogger(__name__)


class Actuator:
    """Applies slots' actions to tmux and the tasks' records; keeps what they produced."""

    def __init__(
        self,
        driver: TmuxDriver,
        profile: AgentProfile,
        settings: SessionSettings,
        state_dir: Path,
        emit: ev.Emit | None = None,
    ) -> None:
        self._driver = driver
        self._profile = profile
        self._settings = settings
        self._state_dir = state_dir
        self._emit = emit
        self._finished: list[Outcome] = []
        self._deliveries: list[m.Delivery] = []
        self._readings: list[Reading] = []
        self._tallies: Counter[tuple[str, ...]] = Counter()

    def reconfigure(self, settings: SessionSettings) -> None:
        """Take reloaded settings (machine rules, time zone) for the actions that follow."""
        self._settings = settings

    def apply(
        self,
        slot: m.Slot,
        action: m.Action,
        task: tuple[Job, m.TaskView] | None,
        account: str,
        now: datetime,
    ) -> None:
        """Carry out one ``action`` of ``slot``.

        Args:
            task: the slot's job and its view (None: the slot has no task).
            account: the account new sessions launch on (a slot that has none ran there).

        Raises:
            TmuxError: tmux refused a command.
            AgentError: the agent could not be started.
        """
        name = slot.name
        job = task[0] if task is not None else None
        match action:
            case m.Launch(cwd=cwd, account=launch_on, resume=resume, retry=retry):
                self._tallies["delivery_retries",] += retry
                self._driver.kill_session(name, missing_ok=True)  # a leftover never blocks a launch
                home = self._settings.accounts[launch_on]
                env = self._profile.session_env(home, name, self._state_dir)
                self._driver.new_session(name, cwd, self._profile.launch_command(resume), env)
                logger.debug("session launched", extra={"session": name, "cwd": str(cwd)})
            case m.Kill():
                self._driver.kill_session(name, missing_ok=True)
            case m.Paste(text=text):
                crashpoints.hit("before_tmux_send")
                self._driver.paste(name, text)
            case m.Submit():
                self._driver.send_keys(name, "Enter")
                crashpoints.hit("after_tmux_send")
            case m.SendKeys(keys=keys, literal=literal):
                self._driver.send_keys(name, *keys, literal=literal)
            case m.Exit():
                self._driver.send_keys(name, "Escape")
                self._driver.paste(name, "/exit")
                self._driver.send_keys(name, "Enter")
            case m.Progress(phase=phase, session=session, session_id=session_id, at=at):
                if job is not None:
                    job.claim.progress(phase, session=session, session_id=session_id)
                    if at is not None:
                        on = slot.account or account
                        self._deliveries.append(m.Delivery(job.claim.task_id, name, on, at))
            case m.Finish():
                if task is not None:
                    self._finish(slot, action, task, account, now)
            case m.Report():
                tz = self._settings.timezone
                reading = reading_of(name, slot.account, slot.transcript, action, now, tz)
                self._tallies["reading", reading.account, reading.source, reading.kind] += 1
                self._readings.append(reading)
            case m.FindSessionId(account=on, cwd=cwd, first_line=first, hint=hint, since=since):
                home = self._settings.accounts[on]
                found = find_session_by_prompt(home, cwd, first, hint, since)
                if job is not None and found:
                    job.claim.progress(session_id=found)
            case m.Stale(idle_s=idle):  # the machine flags once per standstill
                if job is not None and self._emit is not None:
                    after = self._settings.rules.stale_after
                    self._emit(ev.STALE, **stale_fields(job.claim, name, idle, after))
            case m.Log(level=level, message=message, fields=fields):
                logger.log(level, message, extra=dict(fields))

    def _finish(
        self,
        slot: m.Slot,
        finish: m.Finish,
        task: tuple[Job, m.TaskView],
        account: str,
        now: datetime,
    ) -> None:
        """The outcome of the slot's task: its result, and what it used for the footer."""
        job, view = task
        result = finish.result
        if finish.answer_from is not None:
            result = transcript_answer(finish.answer_from, self._settings.accounts)
        status = OutcomeStatus.DONE if finish.ending is m.Ending.DONE else OutcomeStatus.FAILED
        on = slot.account or account
        cost, usage = task_usage_footer(finish, self._settings, on, job.cwd, view.prompt)
        self._finished.append(
            Outcome(
                job,
                status,
                now,
                result=result,
                error=finish.error,
                target=slot.name,
                account=on,
                cost=cost,
                details=(*usage, *finish.details),
            )
        )

    def take_finished(self) -> list[Outcome]:
        """The jobs that ended since the last call, in the order they ended."""
        finished, self._finished = self._finished, []
        return finished

    def take_deliveries(self) -> list[m.Delivery]:
        """The tasks the agents took since the last call (each when it went busy), oldest first."""
        deliveries, self._deliveries = self._deliveries, []
        return deliveries

    def take_readings(self) -> list[Reading]:
        """The quota readings taken since the last call (hook and pane), oldest first."""
        readings, self._readings = self._readings, []
        return readings

    def tallies(self) -> dict[tuple[str, ...], int]:
        """Delivery retries, and quota readings by account/source/kind."""
        return dict(self._tallies)
