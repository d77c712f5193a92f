"""The daemon's side of :class:`agentq.api.view.DaemonView`: snapshots, the index, requests.

The main loop calls :meth:`LoopView.begin_pass` and :meth:`LoopView.end_pass`
around each pass, :meth:`LoopView.take_requests` inside it, and
:meth:`LoopView.publish` at its end, which builds a fresh immutable
:class:`~agentq.api.view.Snapshot` from the daemon's collaborators. API threads
only read published snapshots and the thread-safe index and event log; anything
that changes daemon state is queued and answered here, on the loop's thread.
"""

from __future__ import annotations

import copy
import logging
import os
import queue
import secrets
import stat
from concurrent.futures import Future
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from agentq.accounts.book import account_status
from agentq.api.routes import footer_doc
from agentq.api.view import Answer, Request, Snapshot, TaskDetail, TaskEntry, TaskPage
from agentq.daemon.index import DELIVERED, TaskIndex
from agentq.daemon.operator import Operator
from agentq.queue import submit as producer
from agentq.queue.taskfile import split_footer

if TYPE_CHECKING:
    from agentq.api.view import EventSource
    from agentq.daemon.loop import Daemon
    from agentq.sessions.model import Delivery

logger = logging.getLogger(__name__)

#: ``done/`` and ``failed/`` are listed again (for files removed or added by others) this often.
FINISHED_RECONCILE = 300.0
#: Task files larger than this are not shown whole (footers included).
MAX_SHOWN_BYTES = 4 * 1024 * 1024
SWAPS_SHOWN = 20


@runtime_checkable
class Tallies(Protocol):
    """An executor that counts what it saw (delivery retries, hook signals, quota readings)."""

    def tallies(self) -> dict[tuple[str, ...], int]: ...


@runtime_checkable
class Deliveries(Protocol):
    """An executor whose agents take tasks: which did since the last call, and when."""

    def take_deliveries(self) -> list[Delivery]: ...


class LoopView:
    """What the API sees of one daemon; see the module docstring for who calls what."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon
        self.index = TaskIndex(lambda: daemon.clock.now().timestamp())
        self._operator = Operator(daemon, self.index)
        self._requests: queue.SimpleQueue[tuple[Request, Future[Answer]]] = queue.SimpleQueue()
        self._epoch = secrets.token_hex(4)
        self._started = daemon.clock.now().timestamp()
        self._pass_started: float | None = None
        self._loop: dict[str, Any] = {"passes": 0}
        #: What the API shows that bumps the snapshot version when it changes.
        self._fingerprint: object = None
        self._snapshot = Snapshot(0, self._started, self._started, {}, [], {}, {}, {}, {}, {}, [])
        self._delivered: set[str] = set()
        self._rescans = -1
        self._next_finished = 0.0
        daemon.events.subscribe(self.index.apply)

    # -- DaemonView (any thread) ------------------------------------------------------------

    @property
    def events(self) -> EventSource:
        return self._daemon.events

    @property
    def epoch(self) -> str:
        return self._epoch

    def snapshot(self) -> Snapshot:
        return self._snapshot

    def loop_lag(self) -> float:
        started = self._pass_started  # one read: the loop may clear it meanwhile
        return 0.0 if started is None else max(0.0, self._daemon.clock.monotonic() - started)

    def tasks(
        self, project: str | None, state: str | None, limit: int, cursor: str | None
    ) -> TaskPage:
        return self.index.page(project, state, limit, cursor)

    def task(self, project: str, name: str) -> TaskDetail | None:
        for _ in range(3):  # the file may move on between finding and reading it
            found = self.index.find(project, name)
            if found is None:
                return None
            entry, path = found
            data = _read_file(path)
            if data is not None:
                text, footer = split_footer(data.decode("utf-8", "replace"))
                return TaskDetail(entry, text, footer_doc(footer))
        return None

    def submit(self, project: str, text: str, name: str | None) -> TaskEntry:
        queue_dir = self.index.projects()[project]
        now = self._daemon.clock.now()
        chosen = name or producer.choose_name(text, None, now.replace(tzinfo=None))
        path = producer.submit(queue_dir.path, text, chosen)
        at = now.timestamp()
        return TaskEntry(project, path.name, "pending", at, at)

    def request(self, request: Request) -> Future[Answer]:
        future: Future[Answer] = Future()
        self._requests.put((request, future))
        self._daemon.wake.set()
        return future

    # -- the main loop ------------------------------------------------------------------------

    def begin_pass(self) -> None:
        """A pass starts (its duration so far is the loop's lag)."""
        self._pass_started = self._daemon.clock.monotonic()

    def end_pass(self) -> None:
        """A pass ended."""
        started, end = self._pass_started, self._daemon.clock.monotonic()
        self._pass_started = None
        wall = self._daemon.clock.now().timestamp()
        self._loop = {
            "passes": self._loop["passes"] + 1,
            "last_pass_end": wall,
            "last_pass_s": round(end - started, 6) if started is not None else 0.0,
        }

    @property
    def last_pass_s(self) -> float:
        """How long the last finished pass took (the loop's own lag measure)."""
        return float(self._loop.get("last_pass_s") or 0.0)

    def take_requests(self) -> int:
        """Answer every queued API request (one the API gave up on is skipped); how many."""
        answered = 0
        while True:
            try:
                request, future = self._requests.get_nowait()
            except queue.Empty:
                return answered
            if not future.set_running_or_notify_cancel():
                continue
            answered += 1
            future.set_result(self.answer(request))

    def answer(self, request: Request) -> Answer:
        """Answer one request now (request files come through here too)."""
        return self._operator.answer(request)

    def publish(self) -> None:
        """Bring the index up to date and publish a fresh snapshot (end of each pass)."""
        d = self._daemon
        now, mono = d.clock.now().timestamp(), d.clock.monotonic()
        self._sync_index(mono)
        sessions = self._sessions(now)
        self._note_deliveries(sessions)
        counts = self.index.counts()
        accounts = self._accounts()
        delegation = _status_of(d.dispatcher.remote) if d.dispatcher is not None else {}
        # Compared as data, not as JSON: equal values, equal documents (and no encoding per pass).
        public = (counts, sessions, accounts, delegation)
        version = self._snapshot.version + (public != self._fingerprint)
        self._fingerprint = public
        local = d.dispatcher.local if d.dispatcher is not None else None
        self._snapshot = Snapshot(
            version=version,
            taken_at=now,
            started_at=self._started,
            projects=counts,
            sessions=sessions,
            accounts=accounts,
            delegation=delegation if isinstance(delegation, dict) else {},
            counters=d.counters.as_dict(),
            watches=d.watcher.summary(),  # a fresh mapping on every call
            loop={
                **self._loop,
                "started_at": self._started,
                "errors": d.counters.get("loop_errors"),
            },
            stale=self._stale(now, sessions, delegation),
            tallies=dict(local.tallies()) if isinstance(local, Tallies) else {},
            health={
                "pid": os.getpid(),
                "refused_projects": dict(d.scanner.refused),
                "incomplete": {k: list(v) for k, v in d.scanner.incomplete.items() if v},
                "notifications": d.notifications.history()[-5:] if d.notifications else [],
                "waiting": d.dispatcher.waits() if d.dispatcher else [],
                "project_config_problems": copy.deepcopy(d.settings.problems),
            },
            pool=[str(s.get("name")) for s in sessions],
            account_names=[a.name for a in d.config.accounts] or ["default"],
        )

    # -- building the snapshot -----------------------------------------------------------------

    def _sync_index(self, mono: float) -> None:
        d = self._daemon
        known = self.index.projects()
        served = {project.path.name: project for project in d.scanner.projects.values()}
        for name, project in served.items():
            if name not in known:
                self.index.load(project)
        for name in set(known) - set(served):
            self.index.drop(name)  # released after a reload removed it
            known.pop(name)
        rescans = d.counters.get("rescans")
        if rescans != self._rescans:
            self._rescans = rescans
            for name in known:
                self.index.reconcile(name, "inbox")
        if mono >= self._next_finished:
            self._next_finished = mono + FINISHED_RECONCILE
            for name in known:
                self.index.reconcile(name, "failed")
                self.index.reconcile(name, "done")

    def _sessions(self, now: float) -> list[dict[str, Any]]:
        d = self._daemon
        local = d.dispatcher.local if d.dispatcher is not None else None
        status = _status_of(local)
        active = str(d.state.get("active_account") or "") or None
        out = []
        for s in status if isinstance(status, list) else []:
            task = s.get("task")
            entry = {
                "name": s.get("session"),
                "state": s.get("state"),
                "task": task,
                "account": s.get("account") or active,
                "session_id": s.get("session_id"),
                "last_activity": s.get("last_activity"),
                "waiting_on_permission_s": s.get("waiting_on_permission_s"),
                "stale_since": s.get("stale_since"),
            }
            out.append(entry)
            if isinstance(task, str) and "/" in task:
                project, name = task.split("/", 1)
                self.index.note_session(project, name, str(entry["name"]), entry["account"])
        return out

    def _note_deliveries(self, sessions: list[dict[str, Any]]) -> None:
        """Emit ``delivered`` the first time an agent took a task (``at``: when it went busy).

        The executor reports each delivery with the time the agent's own hook gave, so a
        task that finished within the same poll is counted too; a task resumed after a
        swap (still in flight) is not counted twice.
        """
        d = self._daemon
        local = d.dispatcher.local if d.dispatcher is not None else None
        if not isinstance(local, Deliveries):
            return
        current = {s.get("task") for s in sessions}
        for delivery in local.take_deliveries():
            if delivery.task in self._delivered or "/" not in delivery.task:
                continue
            self._delivered.add(delivery.task)
            project, name = delivery.task.split("/", 1)
            d.events.emit(
                DELIVERED,
                project=project,
                task=name,
                session=delivery.session,
                account=delivery.account,
                at=delivery.at,
            )
        self._delivered &= current

    def _accounts(self) -> dict[str, Any]:
        d = self._daemon
        names = [a.name for a in d.config.accounts] or ["default"]
        book = d.state.get("accounts", {})
        accounts = []
        for name in names:
            entry = account_status(book.get(name))
            raw = entry["exhausted_until"]
            accounts.append({"name": name, **entry, "exhausted_until_ts": _timestamp(raw)})
        return {
            "active": d.state.get("active_account") or names[0],
            "policy": d.config.pool.account_policy,
            "accounts": accounts,
            "hold": copy.deepcopy(d.state.get("hold")),
            "partial_swap": copy.deepcopy(d.state.get("partial_swap")),
            "swaps": copy.deepcopy(d.state.get("swaps", [])[-SWAPS_SHOWN:]),
        }

    def _stale(
        self, now: float, sessions: list[dict[str, Any]], delegation: Any
    ) -> list[dict[str, Any]]:
        """Tasks flagged stale: local work by its pane and transcript standing still (the
        session machine's rule), delegated work by its job's age only."""
        entries = {(e.project, e.name): e for e in self.index.in_flight()}
        found: list[tuple[str, str, dict[str, Any]]] = []
        after = self._daemon.config.completion.stale_after
        for s in sessions:
            task, since = s.get("task"), s.get("stale_since")
            if isinstance(since, int | float) and isinstance(task, str) and "/" in task:
                project, name = task.split("/", 1)
                why = {"rule": "no progress", "since": since, "limit_s": after}
                found.append((project, name, why))
        jobs = delegation.get("stale", []) if isinstance(delegation, dict) else []
        for job in jobs:
            why = {"rule": "job age", "since": job.get("since"), "limit_s": job.get("stale_after")}
            found.append((str(job.get("project")), str(job.get("task")), why))
        out = []
        for project, name, why in found:
            entry = entries.get((project, name))
            base = entry.to_dict(now) if entry is not None else {"project": project, "name": name}
            out.append({**base, **why})
        return out


def _status_of(executor: object) -> Any:
    status = getattr(executor, "status", None)
    return status() if callable(status) else {}


def _timestamp(raw: object) -> float | None:
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return datetime.fromisoformat(raw).timestamp()
    except ValueError:
        return None


def _read_file(path: os.PathLike[str]) -> bytes | None:
    """A task file's bytes (never through a link); ``None`` when it is gone."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, MAX_SHOWN_BYTES)
    finally:
        os.close(fd)
