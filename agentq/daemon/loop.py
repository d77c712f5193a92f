"""The daemon: start-up order, the level-triggered main loop, graceful stop.

Start-up (ARCHITECTURE.md §2): single-instance lock → install watches → sweep
stale temp files → recover in-flight tasks → scan every inbox → ``READY=1``.
The loop waits on one :class:`threading.Event` with a timeout; watch events,
timers and signals only set it. Each pass reconciles: rescan when due, list the
dirty inboxes, claim what is ready, collect what executors finished.

Who does what: :class:`~agentq.daemon.scanning.ProjectScanner` (projects and
inboxes), :class:`~agentq.daemon.dispatch.Dispatcher` (claim, route, start,
finish), :class:`~agentq.daemon.recovery.Recovery` (start-up), the switcher
(accounts), :mod:`~agentq.daemon.wiring` (building them from the config).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentq.api.view import Request
from agentq.config.models import Config
from agentq.core import durable
from agentq.core.clock import Clock, SystemClock
from agentq.core.events import DAEMON, EventLog
from agentq.core.lock import InstanceLock
from agentq.daemon.dispatch import Dispatcher
from agentq.daemon.health import (
    Health,
    HealthMonitor,
    Summary,
    assess,
    probe_write,
    status_line,
)
from agentq.daemon.notify.notifier import Notifier as EventNotifier
from agentq.daemon.recovery import Recovery
from agentq.daemon.reload import Parts, Reloaded, Reloader
from agentq.daemon.scanning import ProjectScanner
from agentq.daemon.sdnotify import Notifier, forget_environment
from agentq.daemon.signals import SignalRelay
from agentq.daemon.state import Counters, StateFile
from agentq.daemon.view import LoopView
from agentq.daemon.wiring import (
    Context,
    LocalFactory,
    PoolExecutor,
    RemoteFactory,
    WatcherFactory,
    build_notifier,
    default_local,
    default_remote,
)
from agentq.daemon.workspaces import ProjectSettings, TaskWorkspaces, build_janitor
from agentq.queue.janitor.plan import Limits
from agentq.queue.router import RoutingPolicy
from agentq.queue.watcher import InboxWatcher
from agentq.workspace.git import Git
from agentq.workspace.worktrees import Worktrees

if TYPE_CHECKING:
    from agentq.accounts.switcher import AccountLinks, Switcher
    from agentq.api.server import ApiServer

logger = logging.getLogger(__name__)

#: ``state.json`` is rewritten at most this often, unless the account book changed.
STATE_SAVE_INTERVAL = 1.0
#: The keys of ``state.json`` the account book owns (a change is written at once).
BOOK_KEYS = ("active_account", "accounts", "swaps", "hold", "partial_swap", "last_swap_at")
#: The pause after a failed pass before the next one.
ERROR_PAUSE = 1.0
#: How soon the janitor goes on when its last pass hit its limits (a backlog of old files).
JANITOR_BACKLOG_PAUSE = 1.0
#: How often health is checked when systemd's watchdog does not set the pace.
HEALTH_PERIOD = 5.0


class Daemon:
    """Wires the queue, the watcher, the executors and the state file together."""

    def __init__(
        self,
        config: Config,
        env: Mapping[str, str],
        local_executor: LocalFactory | None = None,
        remote_executor: RemoteFactory | None = None,
        clock: Clock | None = None,
        account_links: AccountLinks | None = None,
        watcher: WatcherFactory | None = None,
        config_path: Path | None = None,
    ) -> None:
        self.config = config
        #: The file a reload re-reads (None: started from a mapping; nothing to re-read).
        self._config_path = config_path
        self._reloader: Reloader | None = None
        self.env = env
        self.clock: Clock = clock or SystemClock()
        self.state_dir = config.state_dir
        self.wake = threading.Event()
        self.stopping = False
        self.watcher = (watcher or InboxWatcher)(self.wake)
        self.notifier = Notifier(env, os.getpid())
        self.state_file = StateFile(self.state_dir)
        self.state: dict[str, Any] = {}
        self.counters = Counters()
        self.events = EventLog(self.clock.now)
        self.scanner = ProjectScanner(
            config.projects.roots,
            config.projects.paths,
            config.dispatch.quiet_period,
            self.watcher,
            self.counters,
            self.clock,
            self.events,
            poll=config.dispatch.watch == "poll",
            poll_interval=config.dispatch.poll_interval,
        )
        self.settings = ProjectSettings(config.dispatch, env)
        self._make_local = local_executor or default_local
        self._make_remote = remote_executor or default_remote
        self.dispatcher: Dispatcher | None = None
        self.switcher: Switcher | None = None
        #: The local executor as a session pool: its quota readings go to the switcher.
        self._pool: PoolExecutor | None = None
        self._account_links = account_links
        self.notifications: EventNotifier | None = None
        self._next_rescan = 0.0
        self._last_saved = b""
        self._saved_book = ""
        self._next_save = 0.0
        self._save_pending = False
        self.janitor = build_janitor(config, Git(env))
        self._next_janitor = 0.0
        #: What the API sees: snapshots, the task index, the operator request queue.
        self.view = LoopView(self)
        self.api: ApiServer | None = None
        self._reload_requested = False
        self._health = Health()
        self._monitor = HealthMonitor(self.events.emit)
        #: When the loop next checks its health and, if healthy, pings the watchdog.
        self._next_check = 0.0

    # -- lifecycle ------------------------------------------------------------------

    def run(self) -> int:
        """Run until SIGTERM/SIGINT (or :meth:`stop`); returns the process exit code."""
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = InstanceLock(self.state_dir / "lock")
        lock.acquire()
        from agentq.accounts.setup import ensure_accounts

        for step in ensure_accounts(self.config):  # raises AccountError listing every problem
            logger.info("account set-up: %s", step)
        with self._signals():
            # Read by the notifier already; the tmux server and the agents must not inherit them.
            forget_environment(os.environ)
            try:
                self.start()
                self._loop()
            finally:
                self._shutdown()
                lock.release()
        logger.info("agentq stopped")
        return 0

    def _shutdown(self) -> None:
        self.notifier.stopping()
        if self.api is not None:
            self.api.stop()
        self.watcher.stop()
        if self.dispatcher is not None:
            for executor in self.dispatcher.executors():
                executor.close()
        if self.notifications is not None:
            self.notifications.stop()  # flushes what is pending, within a short deadline
        self._save_state(force=True)
        self.scanner.release()

    def stop(self) -> None:
        """Ask the loop to stop after the current pass (thread-safe)."""
        self.stopping = True
        self.wake.set()

    def request_reload(self) -> None:
        """Ask the loop to run :meth:`reload` before its next pass (thread-safe)."""
        self._reload_requested = True
        self.wake.set()

    def _signals(self) -> SignalRelay:
        """Signals act on the relay's thread: a handler setting ``wake`` could deadlock the loop."""
        actions = {
            signal.SIGTERM: self.stop,
            signal.SIGINT: self.stop,
            # systemctl reload (ExecReload=kill -HUP); SIGHUP's default action would end the daemon.
            signal.SIGHUP: self.request_reload,
        }
        # The writer probe takes a read lease for a moment; a writer opening the file in
        # that moment sends SIGIO, whose default action would kill the daemon.
        return SignalRelay(actions, ignored=(signal.SIGIO,))

    def start(self) -> None:
        """Build the collaborators, recover, scan every inbox, then report ready."""
        token = self._api_token()
        self.notifications = build_notifier(self.config, self.clock, self.events)
        self.events.subscribe(self.notifications.offer)
        self.notifications.start()
        self.state = self.state_file.load()
        self.counters.restore(self.state.get("counters"))
        self.state["daemon"] = {"pid": os.getpid(), "started_at": self.clock.now().isoformat()}
        ctx = Context(self.config, self.env, self.clock, self.wake.set, self.events.emit)
        local = self._make_local(ctx)
        remote = self._make_remote(ctx)
        self._reloader = Reloader(
            self._config_path,
            self.env,
            self.clock,
            self.wake.set,
            self.events.emit,
            remote,
            self._make_remote,
        )
        for provider in self.config.delegation.providers:
            if provider.api_key_env:
                # Keys are in the clients now; tmux and every agent pane inherit our environment.
                os.environ.pop(provider.api_key_env, None)
        for warning in remote.warnings:
            logger.warning("delegation: %s", warning)
        available = remote.available if remote.executor is not None else frozenset()
        policy = RoutingPolicy.from_config(self.config.delegation, available)
        self.dispatcher = Dispatcher(
            local.executor,
            remote.executor,
            policy,
            self.config.dispatch.max_attempts,
            self.counters,
            self.clock,
            self.events,
            self.settings,
            TaskWorkspaces(Worktrees(Git(self.env)), self.settings),
            pool_size=self.config.pool.max,
            folderless_local=self.config.agent.profile == "instant"
            or (self.config.cluster is not None and self.config.cluster.submit),
        )
        self._start_switcher(local.pool)
        self.watcher.start()
        for folder in ("signals", "requests"):
            path = self.state_dir / folder
            path.mkdir(mode=0o700, exist_ok=True)
            self.watcher.watch(path, moves_only=True)
        self.scanner.discover()
        for path in self.scanner.projects:
            self.settings.get(path)  # every project config problem is logged at start-up
        self._sweep()
        recovery = Recovery(self.dispatcher, self.counters, self.clock)
        for project in list(self.scanner.projects.values()):
            recovery.recover(project)
        for inbox in self.watcher.take_dirty() | {p.inbox for p in self.scanner.projects.values()}:
            self.scanner.scan(inbox)
        self._dispatch()
        self.dispatcher.collect()
        self._record_accounts()
        self.view.publish()
        self._start_api(token)
        self._save_state(force=True)
        self._next_rescan = self.clock.monotonic() + self.config.dispatch.rescan_interval
        self._next_janitor = self.clock.monotonic()  # the first pass comes right after READY
        projects = len(self.scanner.projects)
        self.notifier.ready(self._status_line())
        self._next_check = self.clock.monotonic()  # the first ping follows the first pass
        logger.info("agentq ready", extra={"projects": projects})
        self.events.emit(DAEMON, state="started", pid=os.getpid(), projects=projects)

    def _api_token(self) -> str | None:
        """The API's bearer token (created on first start); None when the API is off."""
        if not self.config.api.enabled:
            return None
        from agentq.api.security import load_or_create_token

        return load_or_create_token(self.config.api.token_file)  # ConfigError stops start-up

    def _start_api(self, token: str | None) -> None:
        """Serve the API; a bind failure is logged and the daemon runs on without it."""
        self.state["api"] = {"url": None, "error": None}
        if token is None:
            return
        from agentq.api.server import ApiServer

        server = ApiServer(self.config.api, self.view, token)
        try:
            self.state["api"]["url"] = server.start()
        except OSError as exc:
            reason = exc.strerror or str(exc)
            self.state["api"]["error"] = f"cannot listen on {self.config.api.listen}: {reason}"
            logger.error(
                "API not started", extra={"listen": self.config.api.listen, "error": reason}
            )
            return
        self.api = server

    def reload(self) -> tuple[bool, str]:
        """Apply a re-read configuration (SIGHUP, ``agentq reload``, ``POST /api/reload``).

        Runs on the loop and tells systemd: ``RELOADING=1`` (with ``MONOTONIC_USEC=``), the
        work, then ``READY=1`` even if the work fails, or systemd would wait for it until its
        timeout. The work: re-read the configuration file and apply what can change live
        (:mod:`agentq.daemon.reload`; an invalid file changes nothing), then rescan every
        project. Returns whether the file was applied, and what was applied and what needs
        a restart (or every problem of the file).
        """
        self._reload_requested = False
        self.notifier.reloading()
        logger.info("reload requested")
        try:
            answer = self._reconfigure()
            self.scanner.rescan()
            self._next_rescan = self.clock.monotonic() + self.config.dispatch.rescan_interval
        finally:
            self.notifier.ready(self._status_line())
        return answer.ok, answer.message

    def _reconfigure(self) -> Reloaded:
        """Re-read the configuration and hand each collaborator its part."""
        if self._reloader is None or self.notifications is None:
            return Reloaded(False, "the daemon has not started")
        parts = Parts(
            self.scanner,
            self._dispatcher(),
            self.notifications,
            self.janitor,
            self.switcher,
            self._pool,
        )
        answer = self._reloader.reload(self.config, parts)
        if answer.config is not None:
            self.config = answer.config
            soonest = self.clock.monotonic() + self.config.janitor.interval
            self._next_janitor = min(self._next_janitor, soonest)
        return answer

    def _sweep(self) -> None:
        now = self.clock.now().timestamp()
        max_age = self.config.dispatch.tmp_max_age
        swept = sum(p.sweep(now, max_age) for p in self.scanner.projects.values())
        swept += durable.sweep_temp_files(self.state_dir, self.state_dir / "signals")
        if swept:
            logger.info("stale temp files swept", extra={"count": swept})
        self.counters.bump("swept", swept)

    def _loop(self) -> None:
        while not self.stopping:
            self.wake.wait(self._timeout())
            self.wake.clear()
            if self.stopping:
                break
            self.view.begin_pass()
            try:
                if self._reload_requested:
                    self.reload()
                self._pass()
            except Exception:
                # The daemon must outlive any one failure (a full disk, a tmux hiccup): log it,
                # skip the watchdog ping for this pass, and try again after a short pause.
                logger.exception("main loop pass failed; retrying")
                self.counters.bump("loop_errors")
                self.view.end_pass()
                self.wake.wait(ERROR_PAUSE)
                continue
            self.view.end_pass()
            self._report()

    def _report(self) -> None:
        """After a good pass: ``STATUS=`` when it changed; ``WATCHDOG=1`` only while healthy.

        Health is checked (a disk write included) once per ping period, not every pass;
        the same check reports degraded conditions as ``daemon`` events.
        """
        bound = self.notifier.watchdog_bound
        now = self.clock.monotonic()
        if now >= self._next_check:
            # A quarter of WATCHDOG_USEC: half the allowed gap, the other half is margin
            # for a slow pass.
            self._next_check = now + (bound / 2 if bound is not None else HEALTH_PERIOD)
            watches, probe = self.watcher.summary(), probe_write(self.state_dir)
            self._set_health(assess(watches, probe))
            overflows = self.counters.get("overflows")
            self._monitor.check(watches, probe, overflows, self.view.last_pass_s)
            if self._health.ok and bound is not None:
                self.notifier.watchdog()
        self.notifier.status(self._status_line())

    def _set_health(self, health: Health) -> None:
        if health.ok != self._health.ok:
            if health.ok:
                logger.warning("daemon healthy again; watchdog pings resume")
            else:
                logger.warning(
                    "daemon unhealthy; watchdog pings withheld",
                    extra={"problems": "; ".join(health.problems)},
                )
        self._health = health

    def _status_line(self) -> str:
        hold = self.state.get("hold")
        sessions = self.state.get("sessions")
        in_flight = self.scanner.in_flight.values()
        summary = Summary(
            pending=sum(len(names) for names in self.scanner.pending.values()),
            working=sum(working for working, _ in in_flight),
            delegated=sum(delegated for _, delegated in in_flight),
            sessions=sessions if isinstance(sessions, list) else None,
            account=self.state.get("active_account"),
            hold_until=str(hold.get("until")) if isinstance(hold, dict) else None,
            partial_swap=bool(self.state.get("partial_swap")),
        )
        return status_line(summary, self._health)

    def _start_switcher(self, pool: PoolExecutor | None) -> None:
        """The account book from ``state.json`` and its owner, driving ``pool`` (if any)."""
        if pool is None:
            return  # no agent sessions (the instant executor): no accounts to swap
        from agentq.accounts.book import AccountBook
        from agentq.accounts.switcher import Switcher

        book = AccountBook.from_dict(self.state, [a.name for a in self.config.accounts])
        emit = self.events.emit
        self.switcher = Switcher(self.config, pool, book, emit, links=self._account_links)
        self.switcher.tick(self.clock.now())  # spread: the accounts to start sessions on
        self._pool = pool
        self._record_accounts()

    def _record_accounts(self) -> None:
        """Copy the account book into ``state.json`` (its owner is the switcher)."""
        if self.switcher is not None:
            self.state.update(self.switcher.book.to_dict())

    def _pass(self) -> None:
        overflows = self.watcher.take_overflows()
        if overflows:
            # The kernel dropped events, nobody knows which: list every inbox now.
            self.counters.bump("overflows", overflows)
            self.scanner.rescan(periodic=False)
            self._next_rescan = self.clock.monotonic() + self.config.dispatch.rescan_interval
        elif self.clock.monotonic() >= self._next_rescan:
            self.scanner.rescan()
            for path in self.scanner.projects:
                self.settings.get(path)  # a bad project config shows up in status soon
            self._next_rescan = self.clock.monotonic() + self.config.dispatch.rescan_interval
        self._take_requests()
        if self.view.take_requests():
            self.counters.changed = True  # an answered request may have changed the state
        for inbox in self.watcher.take_dirty() | self.scanner.due():
            self.scanner.scan(inbox)
        self._dispatch()
        self._dispatcher().collect()
        if self.switcher is not None and self._pool is not None:
            now = self.clock.now()
            self.switcher.observe(self._pool.take_readings(), now)
            self.switcher.tick(now)
        if any(self.scanner.pending.values()):
            # What this poll finished made room: the waiting tasks go now, not on the next wake.
            self._dispatch()
        self._tidy()
        self._record_accounts()
        self.view.publish()
        self._save_state()

    def _tidy(self) -> None:
        """A janitor pass when one is due, bounded so the loop is never held up for long.

        It runs here rather than in a thread: the loop stays the one writer of the queue
        folders and counters, and a bounded pass (``Limits``: 200 files, 4 MiB of them; an
        archive is rewritten only below 8 MiB) takes a second or two at worst.
        """
        now = self.clock.monotonic()
        if now < self._next_janitor:
            return
        self._next_janitor = now + self.config.janitor.interval  # also when the pass fails
        report = self.janitor.run(self.scanner.projects.values(), self.clock.now(), limits=Limits())
        if report.deferred:
            self._next_janitor = now + JANITOR_BACKLOG_PAUSE
        for name, value in report.counters().items():
            self.counters.bump(name, value)

    def _dispatcher(self) -> Dispatcher:
        if self.dispatcher is None:
            raise RuntimeError("the daemon has not started")
        return self.dispatcher

    def _dispatch(self) -> None:
        self._dispatcher().dispatch(
            self.scanner.pending, self.scanner.projects, self.stopping, self.scanner.not_ready
        )

    def _take_requests(self) -> None:
        """Request files (``agentq swap``/``reload`` without the API) in ``state_dir/requests``."""
        folder = self.state_dir / "requests"
        # A listing, not a glob: this runs on every pass, and a glob compiles its pattern.
        try:
            names = sorted(e.name for e in os.scandir(folder) if e.name.endswith(".request.json"))
        except FileNotFoundError:
            names = []
        for path in (folder / name for name in names):
            try:
                request = json.loads(path.read_text())
            except (OSError, ValueError):
                path.unlink(missing_ok=True)
                continue
            # The request is answered and removed whatever happens: a failing swap must not
            # be replayed on every pass.
            path.unlink(missing_ok=True)
            answer = self.view.answer(_file_request(request))
            result = path.with_name(path.name.replace(".request.json", ".result.json"))
            doc = {"ok": answer.ok, "message": answer.message}
            durable.write_atomic(result, json.dumps(doc).encode())
            self.counters.changed = True

    def _timeout(self) -> float:
        delays = [
            self._next_rescan - self.clock.monotonic(),
            self._next_janitor - self.clock.monotonic(),
        ]
        due = self.scanner.next_due()
        if due is not None:
            delays.append(due)
        if self.notifier.watchdog_bound is not None:
            delays.append(self._next_check - self.clock.monotonic())
        if self._save_pending:
            delays.append(self._next_save - self.clock.monotonic())
        if self.switcher is not None:
            wake = self.switcher.next_wakeup(self.clock.now())
            if wake is not None:
                delays.append(wake)
        if self.dispatcher is not None:
            for executor in self.dispatcher.executors():
                wanted = executor.next_poll()
                if wanted is not None:
                    delays.append(wanted)
        return max(0.01, min(delays))

    # -- state ----------------------------------------------------------------------

    def _save_state(self, force: bool = False) -> None:
        """Write ``state.json`` when anything in it changed (never on an idle pass).

        It is a cache: while a busy queue changes counters and session states on every
        pass, it is rewritten at most every :data:`STATE_SAVE_INTERVAL` (the loop comes
        back for what is left); a change of the account book is written at once.
        """
        now = self.clock.monotonic()
        book = json.dumps([self.state.get(k) for k in BOOK_KEYS], sort_keys=True, default=str)
        self._save_pending = not force and book == self._saved_book and now < self._next_save
        if self._save_pending:
            return
        self.state["counters"] = self.counters.as_dict()
        self.state["watches"] = self.watcher.summary()
        self.state["refused_projects"] = dict(self.scanner.refused)
        self.state["projects"] = sorted(str(p) for p in self.scanner.projects)
        self.state["incomplete"] = {k: v for k, v in self.scanner.incomplete.items() if v}
        if self.notifications is not None:
            self.state["notifications"] = self.notifications.history()
        self.state["project_config_problems"] = dict(self.settings.problems)
        if self.dispatcher is not None:
            self.state["waiting"] = self.dispatcher.waits()
            for key, executor in (
                ("sessions", self.dispatcher.local),
                ("delegation", self.dispatcher.remote),
            ):
                status = getattr(executor, "status", None)
                if callable(status):
                    self.state[key] = status()
            fleet = getattr(self.dispatcher.local, "fleet_status", None)
            if callable(fleet):
                self.state["fleet"] = fleet()
        snapshot = self.state_file.encode(self.state)  # compared, and written when it changed
        if not force and not self.counters.changed and snapshot == self._last_saved:
            return
        self.state_file.write(snapshot)
        self._last_saved = snapshot
        self._saved_book = book
        self._next_save = now + STATE_SAVE_INTERVAL
        self.counters.changed = False


def _file_request(doc: Any) -> Request:
    """The operator request a request file holds (``{"action": "swap", "to": …}``)."""
    action = doc.get("action") if isinstance(doc, dict) else None
    if action in ("clear", "reload"):
        return Request(action)
    to = doc.get("to") if isinstance(doc, dict) else None
    return Request("swap", to=str(to) if to else None)
