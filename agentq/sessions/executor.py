"""The local-session executor: tasks typed into a pool of agent sessions in tmux.

The shell around :mod:`agentq.sessions.machine`: each poll it observes (one batched
``list-panes`` for every session, a capture only for the slots whose state reads the
screen, the hook signal files), steps each slot's machine and has the actions it returns
applied by :class:`agentq.sessions.actuator.Actuator` (which keeps what they produced:
ended jobs, deliveries, quota readings). It decides nothing itself. What it holds: which
job runs on which slot, the slots (owned by the machine's steps), the account new
sessions launch on, and whether dispatch is paused.

The task's delivery phase and agent session id belong to its control record: progress
goes there through :meth:`agentq.queue.protocol.Claim.progress`, persisted before a key
is typed. Hooks are installed into every account home once, here, at construction.

The account swap drives the executor through the pool interface the accounts side
defines (:class:`agentq.accounts.pool.SessionPool`): ``pause_dispatch``/``resume_dispatch``,
``park``, ``use_account``, ``use_accounts`` (spread), ``resume_parked``,
``operator_sessions`` and ``resume_operator_session``. Which account a launch uses is
:func:`agentq.sessions.pool.pick_account`'s choice.

A task the machine flags stale (its pane and transcript stood still for
``completion.stale_after``) is reported as a ``task_stale`` event through the ``emit``
callable and shown in :meth:`SessionExecutor.status`; nothing else happens to it. A reload
reaches the executor through :meth:`SessionExecutor.reconfigure`.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from agentq.agents.classify import Activity, Login
from agentq.agents.hooks import consume, merge_hooks, read_signals
from agentq.agents.profiles import AgentProfile, make_profile
from agentq.agents.readings import Reading
from agentq.config.models import Config
from agentq.core import events as ev
from agentq.core.clock import Clock, SystemClock
from agentq.core.errors import AgentError, TmuxError
from agentq.queue.jobs import Job, Outcome, Recovery, RecoveryKind
from agentq.queue.protocol import Claim
from agentq.queue.records import Phase
from agentq.queue.taskfile import Task
from agentq.sessions import cadence
from agentq.sessions import model as m
from agentq.sessions.actuator import Actuator
from agentq.sessions.delivery import SHELLS, prompt_text
from agentq.sessions.machine import needs_screen, step
from agentq.sessions.observe import hook_of, transcript_stamp, turn_signalled
from agentq.sessions.pool import (
    PoolSpec,
    away_from_home,
    pick_account,
    pick_slot,
    plan_launches,
)
from agentq.sessions.settings import SessionSettings, session_setup
from agentq.sessions.tmux import PaneInfo, TmuxDriver

logger = logging.getLogger(__name__)


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
        clock: Clock | None = None,
        emit: ev.Emit | None = None,
    ) -> None:
        self.driver = driver
        self.profile = profile
        self.pool = pool
        self.settings = settings
        self.state_dir = state_dir
        self._clock: Clock = clock or SystemClock()
        self._rules = settings.rules
        self._slots = {name: m.Slot(name) for name in pool.names() if pool.owns(name)}
        self._tasks: dict[str, tuple[Job, m.TaskView]] = {}
        self._actuator = Actuator(driver, profile, settings, state_dir, emit)
        #: Per slot: when it is next looked at, and when something last happened to it (mono).
        self._due: dict[str, float] = {}
        self._event_at: dict[str, float] = {}
        self._operator_ids: dict[str, str] = {}
        #: Hook signals by event, for the API's metrics (the actuator counts the rest).
        self._tallies: Counter[tuple[str, ...]] = Counter()
        self._paused = False
        self._account = settings.account
        #: The accounts launches are spread over (spread mode); empty: all on ``_account``.
        self._spread: tuple[str, ...] = ()
        (state_dir / "signals").mkdir(parents=True, exist_ok=True)
        for home in settings.accounts.values():
            # The one place hooks are merged: every home a session may start on, at start-up,
            # so a broken settings.json stops the daemon instead of failing mid-swap.
            home.mkdir(parents=True, exist_ok=True)
            merge_hooks(home / "settings.json", state_dir)
        self._adopt_live_sessions()

    @classmethod
    def from_config(
        cls,
        config: Config,
        env: Mapping[str, str],
        state_dir: Path,
        clock: Clock | None = None,
        emit: ev.Emit | None = None,
    ) -> SessionExecutor:
        """The pool, profile and tmux server ``config`` describes."""
        agent = config.agent
        profile = make_profile(agent.profile, agent.command, agent.args, agent.env)
        pool, settings = session_setup(config, env, state_dir)
        driver = TmuxDriver(config.tmux.socket_name)
        return cls(driver, profile, pool, settings, state_dir, clock, emit)

    def reconfigure(self, pool: PoolSpec, settings: SessionSettings) -> None:
        """Take a reloaded pool size, machine rules (tasks in flight too) and time zone.

        A larger ``pool.max`` adds slots; a smaller one retires those beyond it: an idle
        one is stopped at the next poll, a busy one once its task ended.

        Raises:
            AgentError: the pool's names or the account homes changed (those need a restart).
        """
        kept = (self.pool.prefix, self.pool.start_index, self.pool.dedicated)
        if (pool.prefix, pool.start_index, pool.dedicated) != kept:
            raise AgentError("the pool's names and dedicated sessions change only on a restart")
        if dict(settings.accounts) != dict(self.settings.accounts):
            raise AgentError("the account homes change only on a restart")
        self.pool = pool
        self._rules = settings.rules
        self.settings = replace(
            self.settings,
            rules=settings.rules,
            timezone=settings.timezone,
            default_cwd=settings.default_cwd,
        )
        self._actuator.reconfigure(self.settings)
        added = [n for n in pool.names() if pool.owns(n) and n not in self._slots]
        if added:
            live, mono = self.driver.list_panes(), self._clock.monotonic()
            for name in added:
                self._slots[name] = self._leftover(name, mono) if name in live else m.Slot(name)
        retiring = sorted(n for n in self._slots if not pool.owns(n))
        logger.info(
            "session pool reconfigured",
            extra={"min": pool.min, "max": pool.max, "added": added, "retiring": retiring},
        )

    # -- the executor protocol -------------------------------------------------------------

    def capacity(self) -> int:
        """Free slots (idle, or empty and launchable); none while dispatch is paused."""
        if self._paused:
            return 0
        return sum(s.state in (m.SlotState.IDLE, m.SlotState.EMPTY) for s in self._owned())

    def start(self, job: Job) -> None:
        """Assign ``job`` to a free slot, in the job's folder (``job.cwd``), and begin delivery.

        Raises:
            AgentError: the task pins a session outside the pool, or no session could be
                launched for it (the slot is left free again).
        """
        cwd = job.cwd
        pinned = job.task.meta.session
        if pinned and not self.pool.owns(pinned):
            raise AgentError(f"session pin {pinned!r} is not one of the pool's sessions")
        slot = pick_slot(self._owned(), cwd, pinned, self._spread)
        if slot is None:
            raise AgentError("no free agent session")
        note = None
        if pinned and pinned != slot.name:
            note = ("pin", f"{pinned} was busy; ran on {slot.name}")
        view = self._task_view(job)
        self._tasks[slot.name] = (job, view)
        pane = None
        if slot.state is m.SlotState.IDLE:  # reused if its agent runs; its screen sets the echo
            pane = self._pane(slot, self.driver.list_panes().get(slot.name), screen=True)
        assign = m.Assign(view, self._launch_account(slot.name), pane, note)
        failure = self._run(slot.name, assign, *self._moment(), drop_task=True)
        if failure is not None:
            raise AgentError(f"could not start an agent session: {failure}", slot.name) from failure

    def poll(self, now: datetime) -> Sequence[Outcome]:
        """Observe the slots that are due or heard from, step them, apply their actions.

        Returns the jobs that ended. A slot is due on its own cadence (see
        :mod:`agentq.sessions.cadence`); a hook of its agent makes it due at once. When
        none is, tmux is not asked at all: the daemon wakes for every file that moves.
        """
        instant = self._instant(now)
        hooks = self._take_signals()
        due = {n for n in self._slots if n in hooks or self._due.get(n, 0.0) <= instant.mono}
        settled = {n for n, s in self._slots.items() if s.state is m.SlotState.EMPTY}
        panes = self.driver.list_panes() if due else {}
        for name, slot in self._slots.items():
            if name not in due and (not due or cadence.next_wait(slot, 0.0) is not None):
                continue  # not due: looked at on its own cadence (idle ones ride along)
            info = panes.get(name)
            try:
                pane = self._pane(slot, info)
            except TmuxError as exc:
                if self.driver.has_session(name):
                    extra = {"session": name, "error": str(exc)}
                    logger.warning("tmux error while polling", extra=extra)
                    continue
                pane = None  # it went between the listing and the capture
            view = self._view(name)
            stamp = transcript_stamp(slot, view, self.settings.accounts)
            self._run(name, m.Tick(pane, hooks.get(name, ()), view, stamp), instant, now)
        self._retire(instant, now)
        self._send_home(instant, now)
        self._keep_minimum(instant, now, settled)
        return self._actuator.take_finished()

    def recover(self, claim: Claim, task: Task | None, now: datetime) -> Recovery:
        """Decide about a task in flight at start-up: untyped → requeue; typed → adopt or fail.

        The record's phase, the hook signals since the claim and the pane decide; the time
        does not (a hook that lands after the restart is evidence too).
        """
        session = claim.record.session or ""
        if claim.record.phase is Phase.CLAIMED or not session:
            return Recovery(RecoveryKind.REQUEUE)
        info = self.driver.list_panes().get(session)
        if session in self._slots and info is not None and info.alive and task is not None:
            if turn_signalled(self.state_dir, session, claim.record.claimed_at):
                return Recovery(RecoveryKind.ADOPT)  # its hooks said it took (or finished) the turn
            activity = self.profile.activity(self.driver.capture(session), info.title)
            if activity in (Activity.BUSY, Activity.PERMISSION):
                return Recovery(RecoveryKind.ADOPT)
        return Recovery(
            RecoveryKind.FAIL,
            f"abandoned after restart: the prompt was already sent to {session} and its work "
            "could not be observed to completion",
        )

    def adopt(self, job: Job) -> None:
        """Watch a task that was already delivered before a restart until it completes."""
        session = job.claim.record.session or ""
        view = self._task_view(job)
        self._tasks[session] = (job, view)
        adopt = m.Adopt(replace(view, session_id=job.claim.record.session_id), self._account)
        self._run(session, adopt, *self._moment())

    def next_poll(self) -> float | None:
        """How soon :meth:`poll` wants to run again (an empty slot to warm counts too)."""
        mono = self._clock.monotonic()
        waits = [at - mono for at in self._due.values() if at != math.inf]
        slots = self._slots.items()
        live = [n for n, s in slots if s.state is not m.SlotState.EMPTY]
        empty = {n: s.retry_at for n, s in slots if s.state is m.SlotState.EMPTY}
        warm = [] if self._paused else plan_launches(self.pool, live, empty)
        if warm:
            waits.append(max(cadence.FAST_CAP, min(empty[n] for n in warm) - mono))
        if self._strays():
            waits.append(0.0)
        return max(0.0, min(waits)) if waits else None

    def close(self) -> None:
        """Leave sessions running: in-flight tasks stay claimed and are recovered on restart."""

    def status(self) -> list[dict[str, object]]:
        """Per-session status for ``state.json`` and the API."""
        mono, wall = self._clock.monotonic(), self._clock.now().timestamp()
        out: list[dict[str, object]] = []
        for name, slot in self._slots.items():
            entry: dict[str, object] = {"session": name, "state": slot.state.value}
            view = self._view(name)
            if view is not None:
                entry["task"] = view.key
            entry["account"] = slot.account or self._account
            entry["session_id"] = view.session_id if view is not None else None
            last = max(slot.since, slot.last_change)
            entry["last_activity"] = wall - (mono - last) if last else None
            if slot.permission_since is not None:
                entry["waiting_on_permission_s"] = round(mono - slot.permission_since)
            if slot.flagged_stale and view is not None:  # when its task last moved
                entry["stale_since"] = round(wall - (mono - slot.progress_at), 1)
            out.append(entry)
        return out

    def cancel(self, task_id: str) -> bool:
        """Interrupt the agent working on ``task_id``; its job ends failed ("cancelled")."""
        name = next(
            (n for n, (job, _) in self._tasks.items() if job.claim.task_id == task_id), None
        )
        if name is None:
            return False
        pane = self._pane(self._slots[name], self.driver.list_panes().get(name))
        self._run(name, m.Cancel(self._view(name), pane), *self._moment())
        return True

    def pane_lines(self, name: str, count: int) -> list[str] | None:
        """The last ``count`` lines of pool session ``name``'s pane; None when it is not running."""
        if name not in self._slots or not self.driver.has_session(name):
            return None
        return self.driver.capture(name).rstrip("\n").splitlines()[-count:]

    def tallies(self) -> dict[tuple[str, ...], int]:
        """Delivery retries, hook signals by event and quota readings by account/source/kind."""
        return {**self._tallies, **self._actuator.tallies()}

    def take_deliveries(self) -> list[m.Delivery]:
        """The tasks the agents took since the last call (each when it went busy), oldest first."""
        return self._actuator.take_deliveries()

    def take_readings(self) -> list[Reading]:
        """The quota readings taken since the last call (hook and pane), oldest first."""
        return self._actuator.take_readings()

    # -- the pool interface (driven by the account swap) ---------------------------------

    def pause_dispatch(self) -> None:
        """Take no new task and launch no session until :meth:`resume_dispatch`."""
        self._paused = True

    def resume_dispatch(self) -> None:
        """Take tasks and keep the pool's minimum again."""
        self._paused = False

    def park(self, account: str | None = None) -> int:
        """Kill our sessions (those on ``account``, or all); their tasks stay, parked.

        Signals not read yet are read first: they may name a task's session id. For a
        prompt submitted so recently that no hook spoke yet, the transcript holding it
        names it. Returns how many tasks were parked.
        """
        hooks = self._take_signals()
        instant, now = self._moment()
        for name, slot in self._slots.items():
            if account is None or slot.account in (account, ""):
                self._run(name, m.Park(hooks.get(name, ()), self._view(name)), instant, now)
        return sum(s.state is m.SlotState.PARKED for s in self._slots.values())

    def use_account(self, name: str) -> None:
        """Launch later sessions on account ``name`` (its hooks were installed at start-up).

        In spread mode it is the operator's account (dedicated sessions resume there).
        """
        if name not in self.settings.accounts:
            raise AgentError(f"unknown account {name!r} for the session pool")
        self._account = name

    def use_accounts(self, names: Sequence[str]) -> None:
        """Spread later launches over accounts ``names`` (see :func:`pick_account`)."""
        unknown = [name for name in names if name not in self.settings.accounts]
        if unknown:
            raise AgentError(f"unknown account(s) {', '.join(unknown)} for the session pool")
        self._spread = tuple(names)

    def resume_parked(self) -> int:
        """Relaunch each parked task on a usable account: ``--resume`` it or deliver afresh."""
        instant, now = self._moment()
        resumed = 0
        for name, slot in self._slots.items():
            if slot.state is m.SlotState.PARKED:
                resume = m.Resume(self._view(name), self._launch_account(name))
                self._run(name, resume, instant, now)
                resumed += self._slots[name].state is m.SlotState.LAUNCHING
        return resumed

    def operator_sessions(self) -> dict[str, str]:
        """The operator's sessions whose agent session id the hooks reported."""
        return dict(self._operator_ids)

    def resume_operator_session(self, name: str, session_id: str) -> bool:
        """Resume an operator's session on the current account, only if it is at its shell."""
        info = self.driver.list_panes().get(name)
        if name not in self.pool.dedicated or info is None:
            return False
        if info.command not in SHELLS:
            return False  # the agent (or something else) still runs there: never interrupt it
        line = self.profile.operator_line(self.settings.accounts[self._account], session_id)
        self.driver.send_keys(name, line, literal=True)
        self.driver.send_keys(name, "Enter")
        return True

    # -- observe, step, apply ------------------------------------------------------------

    def _instant(self, now: datetime) -> m.Instant:
        """The machine's clock reading at the wall time ``now``."""
        return m.Instant(self._clock.monotonic(), now.timestamp())

    def _moment(self) -> tuple[m.Instant, datetime]:
        """One reading of the injected clock, for calls that are not handed a ``now``."""
        now = self._clock.now()
        return self._instant(now), now

    def _pane(self, slot: m.Slot, info: PaneInfo | None, *, screen: bool = False) -> m.Pane | None:
        """What the machine sees of a slot's session; the screen only when its state reads it."""
        if info is None:
            return None
        wanted = info.alive and (screen or needs_screen(slot))
        text = self.driver.capture(slot.name) if wanted else ""
        login = self.settings.logins.get(slot.account, Login.UNKNOWN)
        return m.Pane(info.alive, info.title, text, login)

    def _run(
        self,
        name: str,
        observation: m.Observation,
        instant: m.Instant,
        now: datetime,
        *,
        drop_task: bool = False,
    ) -> TmuxError | AgentError | None:
        """Step one slot and apply the actions; a failure is stepped too, then returned."""
        before = self._slots[name].state
        slot, actions = step(self._slots[name], observation, instant, self._rules)
        self._slots[name] = slot
        heard = isinstance(observation, m.Tick) and bool(observation.hooks)
        try:
            for action in actions:
                self._apply(name, action, now)
        except (TmuxError, AgentError) as exc:
            logger.warning("tmux error while applying", extra={"session": name, "error": str(exc)})
            if drop_task:
                self._tasks.pop(name, None)
            failed = m.Failed(str(exc), self.driver.has_session(name), self._view(name))
            slot, actions = step(self._slots[name], failed, instant, self._rules)
            self._slots[name] = slot
            for action in actions:
                try:
                    self._apply(name, action, now)
                except (TmuxError, AgentError) as again:  # the slot is failing already
                    logger.warning("tmux error", extra={"session": name, "error": str(again)})
            return exc
        finally:
            state = self._slots[name].state
            quick = state is not before and cadence.starts_quick(state)
            self._schedule(name, instant.mono, heard or quick)
        return None

    def _schedule(self, name: str, mono: float, event: bool) -> None:
        """When to look at slot ``name`` next (see :mod:`agentq.sessions.cadence`)."""
        if event:
            self._event_at[name] = mono
        quiet_for = mono - self._event_at.get(name, mono)
        wait = cadence.next_wait(self._slots[name], quiet_for)
        self._due[name] = math.inf if wait is None else mono + wait

    def _apply(self, name: str, action: m.Action, now: datetime) -> None:
        # A finished task leaves its slot before its outcome is built.
        drop = isinstance(action, m.Finish)
        task = self._tasks.pop(name, None) if drop else self._tasks.get(name)
        self._actuator.apply(self._slots[name], action, task, self._account, now)

    # -- slots and tasks -----------------------------------------------------------------

    def _adopt_live_sessions(self) -> None:
        """Sessions of ours left by a previous daemon: watched if a task is adopted, else recycled.

        A leftover session may hold half-typed input from before the restart; it is
        never reused for a new task (that would submit the old text with the new).
        """
        live = self.driver.list_panes()
        mono = self._clock.monotonic()
        for name in self._slots:
            if name in live:
                self._slots[name] = self._leftover(name, mono)

    def _leftover(self, name: str, mono: float) -> m.Slot:
        """A slot for a session of ours found running: recycled unless a task is adopted."""
        return m.Slot(name, m.SlotState.LAUNCHING, self._account, since=mono, stale=True)

    def _owned(self) -> list[m.Slot]:
        """The slots in the pool's range now (slots beyond a reduced ``max`` are retiring)."""
        return [s for s in self._slots.values() if self.pool.owns(s.name)]

    def _retire(self, instant: m.Instant, now: datetime) -> None:
        """Stop retiring slots without a task; forget them once their session is gone."""
        for name in [n for n in self._slots if not self.pool.owns(n)]:
            slot = self._slots[name]
            if slot.state is m.SlotState.IDLE or (
                slot.state is m.SlotState.LAUNCHING and self._view(name) is None
            ):
                self._run(name, m.Park(), instant, now)  # no task: kill, EMPTY
            if self._slots[name].state is m.SlotState.EMPTY:
                del self._slots[name]
                logger.info("pool session retired", extra={"session": name})

    def _strays(self) -> list[str]:
        """Idle slots away from a home account the pool may launch on again (spread)."""
        if self._paused or len(self._spread) < 2:
            return []
        order = list(self.settings.accounts)
        return away_from_home(self.pool, self._slots.values(), self._spread, order)

    def _send_home(self, instant: m.Instant, now: datetime) -> None:
        """Stop idle sessions borrowed from another account; they are warmed up at home next."""
        for name in self._strays():
            slot = self._slots[name]
            logger.info("pool session goes home", extra={"session": name, "from": slot.account})
            self._run(name, m.Park(), instant, now)  # no task: kill, EMPTY

    def _launch_account(self, name: str) -> str:
        """The account slot ``name``'s next launch uses (its home while usable, …)."""
        accounts = self._spread or (self._account,)
        order = list(self.settings.accounts)
        return pick_account(self.pool, self._slots[name], self._slots.values(), accounts, order)

    def _keep_minimum(self, instant: m.Instant, now: datetime, settled: set[str]) -> None:
        """Warm empty slots up to the pool's minimum, those ``settled`` (empty before this poll).

        A slot freed by this poll is left for one dispatch: a waiting task then starts its
        agent in its own folder, instead of a warm one starting elsewhere first.
        """
        if self._paused:
            return
        live = [n for n, s in self._slots.items() if s.state is not m.SlotState.EMPTY]
        ready = [
            n
            for n, s in self._slots.items()
            if n in settled and s.state is m.SlotState.EMPTY and s.retry_at <= instant.mono
        ]
        for name in plan_launches(self.pool, live, ready):
            cwd = self._slots[name].cwd
            if cwd is None or not cwd.is_dir():
                cwd = self.settings.default_cwd
            self._run(name, m.Warm(cwd, self._launch_account(name)), instant, now)

    def _view(self, name: str) -> m.TaskView | None:
        """The slot's task, with the session id its control record holds now."""
        entry = self._tasks.get(name)
        if entry is None:
            return None
        job, view = entry
        return replace(view, session_id=job.claim.record.session_id)

    @staticmethod
    def _task_view(job: Job) -> m.TaskView:
        claim = job.claim
        project = claim.project.path
        prompt = prompt_text(claim.name, project.name, claim.record.attempts, job.task.body)
        return m.TaskView(claim.task_id, job.cwd, prompt, job.task.meta.timeout)

    # -- signals ---------------------------------------------------------------------------

    def _take_signals(self) -> dict[str, tuple[m.Hook, ...]]:
        """Read and consume the hook signal files; ours by slot, the operator's ids kept."""
        by_session: dict[str, list[m.Hook]] = {}
        for sig in read_signals(self.state_dir):
            consume(sig)
            self._tallies["signal", sig.event] += 1
            if not sig.session:
                continue
            if sig.session in self.pool.dedicated and sig.session_id:
                self._operator_ids[sig.session] = sig.session_id
            if sig.session in self._slots:
                by_session.setdefault(sig.session, []).append(hook_of(sig))
        return {name: tuple(hooks) for name, hooks in by_session.items()}
