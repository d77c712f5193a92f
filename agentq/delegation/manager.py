"""The delegation manager: remote provider jobs behind the daemon's executor interface.

Per task (reliability R13, ARCHITECTURE.md §4):

1. persist the *intent* (provider, idempotency key ``agentq-<claim id>``) in the task's
   control record, before anything leaves the machine;
2. submit with that key (the same key on every retry and after every restart);
3. record the job id (and a synchronous provider's answer) in the control record, then
   write ``inbox/<name>.md.delegated`` atomically with a ``delegation:`` frontmatter block;
4. the reaper polls each job at most once per provider ``poll_interval`` and reports it
   exactly once as an :class:`~agentq.executor.Outcome`.

After a restart every ``.delegated`` marker is adopted and polled again; a ``.working``
file with a persisted intent is adopted too and re-submitted with the *same* key (a job
API returns the job it already made; a synchronous provider is asked again only when its
answer had not been recorded). A terminal provider error (bad key, quota, refusal)
requeues the task with the provider recorded in ``record.unavailable``, so the
router's fallback chain takes it next, ending at the local agent.

Network calls run on a small worker pool so the daemon loop never waits on HTTP. A
worker touches only its own task's record and files; all bookkeeping (the active set,
counters, outcomes) happens in the caller's thread inside :meth:`DelegationExecutor.poll`.

A job older than ``delegation.stale_after`` (by its own age, from the claim) is flagged
once: a ``task_stale`` event and the ``stale`` list of :meth:`DelegationExecutor.status`;
it keeps running. A reload hands in new clients (:meth:`DelegationExecutor.reconfigure`):
new tasks use them, while each job in flight keeps the client it started with until it
ends, so a changed key or URL never strands a job between two providers' views.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from agentq.config.models import Config
from agentq.core import crashpoints
from agentq.core import events as ev
from agentq.core.durations import format_duration
from agentq.core.errors import ConfigError, ProviderError
from agentq.core.secrets import redact, resolve_key
from agentq.delegation.counters import DelegationCounters
from agentq.delegation.http import DEFAULT_BACKOFF_BASE, Transport
from agentq.delegation.pricing import format_cost
from agentq.delegation.providers import JobResult, JobStatus, ProviderClient, make_client
from agentq.delegation.results import (
    decode_result,
    describe_failure,
    encode_result,
    failed_outcome,
    fallback_outcome,
    intent_of,
    result_details,
    retries_of,
    stale_fields,
)
from agentq.queue.jobs import Job, Outcome, OutcomeStatus, Recovery, RecoveryKind
from agentq.queue.marker import (
    DelegationInfo,
    claim_id_of,
    idempotency_key,
    read_info,
    with_delegation,
)
from agentq.queue.protocol import Claim
from agentq.queue.records import DelegationIntent, DelegationPhase
from agentq.queue.taskfile import Task
from agentq.queue.vetting import DELEGATED_SUFFIX, WORKING_SUFFIX

logger = logging.getLogger(__name__)

T = TypeVar("T")

EXECUTOR_NAME = "provider"
DEFAULT_POLL_INTERVAL = 1.0
DEFAULT_WORKERS = 8
#: Consecutive failed status polls (each after its own retries) before a job is given up.
MAX_POLL_FAILURES = 5
#: How often the daemon should look at in-flight calls when nobody wakes it.
IN_FLIGHT_RECHECK = 0.05
DEFAULT_STALE_AFTER = 7200.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Entry:
    """One delegated task in the active set."""

    job: Job
    provider: str
    key: str
    #: The provider's client when the job started: it keeps it across a reload.
    client: ProviderClient
    job_id: str | None = None
    due: float = 0.0
    poll_failures: int = 0
    stage: str = "submit"
    future: Future[Any] | None = None
    stale: bool = False


@dataclass(frozen=True)
class _Submitted:
    """What the submit step achieved: the marker claim, the job id, maybe the answer."""

    job: Job
    job_id: str
    result: JobResult | None
    fresh: bool


class DelegationExecutor:
    """Runs routed tasks on remote providers; the daemon's ``provider`` executor."""

    name = EXECUTOR_NAME

    def __init__(
        self,
        providers: Mapping[str, ProviderClient],
        state_dir: Path,
        max_active: int = 32,
        clock: Callable[[], float] = time.monotonic,
        *,
        poll_intervals: Mapping[str, float] | None = None,
        workers: int = DEFAULT_WORKERS,
        wake: Callable[[], None] | None = None,
        stop: threading.Event | None = None,
        utcnow: Callable[[], datetime] = _utcnow,
        stale_after: float = DEFAULT_STALE_AFTER,
        emit: ev.Emit | None = None,
    ) -> None:
        self._clients = dict(providers)
        self._stale_after = stale_after
        self._emit = emit
        self._state_dir = state_dir
        self._max_active = max_active
        self._clock = clock
        self._intervals = dict(poll_intervals or {})
        self._wake = wake
        self._stop = stop or threading.Event()
        self._utcnow = utcnow
        self._pool = ThreadPoolExecutor(workers, "agentq-delegation") if workers > 0 else None
        self._entries: dict[str, _Entry] = {}
        self._ready: list[Outcome] = []
        self._counters = DelegationCounters.load(state_dir)

    # -- the executor protocol ----------------------------------------------------------

    def capacity(self) -> int:
        """How many more tasks may be delegated now."""
        return max(0, self._max_active - len(self._entries))

    def start(self, job: Job) -> None:
        """Persist the intent, then submit in the background (the outcome comes from poll)."""
        claim = job.claim
        provider = job.route.provider or ""
        if provider not in self._clients:
            why = "not configured" if not provider else "not available (no usable API key?)"
            self._finish(None, self._fallback(job, provider, f"provider '{provider}' is {why}"))
            return
        key = idempotency_key(claim.record.claim_id)
        claim.record.executor = self.name
        claim.record.delegation = DelegationIntent(
            provider, key, DelegationPhase.INTENT, intent_at=self._utcnow().isoformat()
        )
        try:
            claim.project.save_record(claim.record)
        except OSError as exc:
            reason = f"cannot persist the delegation intent: {exc.strerror or exc}"
            self._finish(None, self._failed(job, provider, None, reason))
            return
        crashpoints.hit("after_intent")
        logger.info("delegating task", extra={"task": claim.task_id, "provider": provider})
        self._track(_Entry(job, provider, key, self._clients[provider]))

    def poll(self, now: datetime) -> Sequence[Outcome]:
        """Reap: collect finished calls, poll the jobs that are due, return what ended."""
        self._harvest(now)
        self._schedule_polls(now)
        self._harvest(now)
        outcomes, self._ready = self._ready, []
        self._counters.save(self._state_dir)
        return outcomes

    def recover(self, claim: Claim, task: Task | None, now: datetime) -> Recovery:
        """A marker or a persisted intent is adopted; a claim with no intent is requeued."""
        intent = claim.record.delegation
        if claim.suffix == DELEGATED_SUFFIX:
            info = read_info(task.meta.model_extra) if task is not None else None
            provider = (intent.provider if intent else "") or (info.provider if info else "")
            recorded_job = intent.job_id if intent else None
            if task is None or not provider or not (recorded_job or info):
                return Recovery(RecoveryKind.FAIL, "delegation marker unreadable: no job id")
            if provider not in self._clients:
                job_id = recorded_job or (info.job_id if info else "?")
                reason = (
                    f"delegated to provider '{provider}' (job {job_id}), which is not "
                    "available after the restart"
                )
                return Recovery(RecoveryKind.FAIL, reason)
            return Recovery(RecoveryKind.ADOPT)
        if task is not None and intent and intent.key and intent.provider in self._clients:
            return Recovery(RecoveryKind.ADOPT)
        return Recovery(RecoveryKind.REQUEUE, "no delegation was submitted")

    def adopt(self, job: Job) -> None:
        """Resume a delegated task after a restart: re-submit with the same key, or poll."""
        claim = job.claim
        intent = intent_of(job)
        if intent is None:
            return
        provider, key, job_id = intent.provider, intent.key, intent.job_id
        if key in self._entries:
            return
        # The key embeds the claim id, so this works even when the record was rebuilt.
        claim_id = claim_id_of(key)
        if claim.project.find_result(claim.name, claim_id) is not None:
            claim.project.drop(claim)  # already finished before the crash: only the marker goes
            logger.info("stale delegation marker removed", extra={"task": claim.task_id})
            return
        if claim.record.delegation is not intent:
            claim.record.executor = self.name
            claim.record.claim_id = claim_id
            claim.record.delegation = intent
            claim.project.save_record(claim.record)
        logger.info(
            "delegated task adopted",
            extra={"task": claim.task_id, "provider": provider, "job_id": job_id},
        )
        if provider not in self._clients:  # recover() checks this; never re-run a submitted job
            reason = f"delegated to provider '{provider}' (job {job_id}), which is not available"
            self._finish(None, self._failed(job, provider, job_id, reason))
            return
        self._track(_Entry(job, provider, key, self._clients[provider]))

    def next_poll(self) -> float | None:
        """Seconds until the reaper has something to do; None when nothing is active."""
        if self._ready:
            return 0.0
        delays: list[float] = []
        now = self._clock()
        for entry in self._entries.values():
            if entry.future is not None:
                if entry.future.done():
                    return 0.0
                if self._wake is None:
                    delays.append(IN_FLIGHT_RECHECK)
            elif entry.job_id is not None:
                delays.append(max(0.0, entry.due - now))
        return min(delays) if delays else None

    def close(self) -> None:
        """Stop retry waits, let in-flight calls end, close the HTTP clients."""
        self._stop.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        for client in {id(c): c for c in self._in_use()}.values():
            client.close()
        self._counters.save(self._state_dir)

    def reconfigure(
        self,
        clients: Mapping[str, ProviderClient],
        poll_intervals: Mapping[str, float],
        stale_after: float,
    ) -> None:
        """Use ``clients`` for new tasks; each job in flight keeps its client until it ends."""
        old, self._clients = self._clients, dict(clients)
        self._intervals = dict(poll_intervals)
        self._stale_after = stale_after
        used = {id(c) for c in self._in_use()}
        for client in old.values():
            if id(client) not in used:
                client.close()

    def retry_wait(self, seconds: float) -> None:
        """A retry wait of the clients: it ends at once when the executor closes."""
        self._stop.wait(seconds)

    def status(self) -> dict[str, Any]:
        """Counters for ``agentq status`` (no secrets, no task text), and the stale jobs."""
        stale = [
            {
                "project": e.job.claim.project.path.name,
                "task": e.job.claim.name,
                "provider": e.provider,
                "job_id": e.job_id,
                "since": e.job.started.timestamp(),
                "stale_after": self._stale_after,
            }
            for e in self._entries.values()
            if e.stale
        ]
        return {
            "active": len(self._entries),
            **self._counters.as_dict(),
            "providers": sorted(self._clients),
            "stale": stale,
        }

    def _in_use(self) -> list[ProviderClient]:
        return [*self._clients.values(), *(e.client for e in self._entries.values())]

    # -- background steps (worker threads) ----------------------------------------------

    def _submit_step(self, entry: _Entry) -> _Submitted:
        """Submit (unless the job id and any answer are recorded), then write the marker."""
        job = entry.job
        claim, task = job.claim, job.task
        intent = claim.record.delegation
        if intent is None:  # start() and adopt() record it before the entry exists
            raise RuntimeError(f"no delegation intent recorded for {claim.task_id}")
        client = entry.client
        result = decode_result(intent.answer)
        job_id = intent.job_id
        fresh = False
        if not job_id or (client.synchronous and result is None):
            metadata = {"task": claim.task_id, "title": task.meta.title or ""}
            submission = client.submit(task.body, metadata, entry.key)
            crashpoints.hit("after_submit_before_marker")
            job_id, result, fresh = submission.job_id, submission.result, True
            intent.phase = DelegationPhase.SUBMITTED
            intent.job_id = job_id
            intent.submitted_at = self._utcnow().isoformat()
            intent.answer = encode_result(result)
            claim.project.save_record(claim.record)
        if claim.suffix == WORKING_SUFFIX:
            info = DelegationInfo(entry.provider, str(job_id), intent.submitted_at, entry.key)
            text = with_delegation(task.text, info)
            claim = claim.project.mark_delegated(claim, text.encode("utf-8", "surrogatepass"))
            task = dataclasses.replace(task, text=text)
        return _Submitted(
            dataclasses.replace(job, claim=claim, task=task), str(job_id), result, fresh
        )

    def _poll_step(self, entry: _Entry) -> JobStatus:
        return entry.client.poll(entry.job_id or "")

    # -- bookkeeping (the caller's thread) ----------------------------------------------

    def _track(self, entry: _Entry) -> None:
        self._entries[entry.key] = entry
        entry.stage = "submit"
        entry.future = self._run(self._submit_step, entry)

    def _run(self, step: Callable[[_Entry], T], entry: _Entry) -> Future[T]:
        """Run a step on the pool, or inline when there is no pool (crash tests)."""
        if self._pool is not None:
            future = self._pool.submit(step, entry)
            if self._wake is not None:
                wake = self._wake
                future.add_done_callback(lambda _f: wake())
            return future
        done: Future[T] = Future()
        try:
            done.set_result(step(entry))
        except Exception as exc:  # a BaseException (a simulated crash) propagates
            done.set_exception(exc)
        return done

    def _harvest(self, now: datetime) -> None:
        for entry in list(self._entries.values()):
            future = entry.future
            if future is None or not future.done():
                continue
            entry.future = None
            failure = future.exception()
            if failure is not None and not isinstance(failure, Exception):
                raise failure  # a simulated crash in a worker: let it end this "process"
            if entry.stage == "submit":
                self._after_submit(entry, future, now)
            else:
                self._after_poll(entry, future, now)

    def _after_submit(self, entry: _Entry, future: Future[_Submitted], now: datetime) -> None:
        failure = future.exception()
        if failure is not None:
            self._counters.add("retried", retries_of(failure))
        if isinstance(failure, ProviderError) and failure.terminal:
            self._finish(
                entry, self._fallback(entry.job, entry.provider, describe_failure(failure))
            )
        elif failure is not None:
            reason = (
                f"delegation to provider '{entry.provider}' failed: {describe_failure(failure)}"
            )
            attempts = getattr(failure, "attempts", None)
            outcome = self._failed(entry.job, entry.provider, entry.job_id, reason, attempts)
            self._finish(entry, outcome)
        else:
            done = future.result()
            entry.job, entry.job_id = done.job, done.job_id
            self._counters.add("submitted", int(done.fresh))
            if done.result is not None:
                self._complete(entry, done.result, now)
            else:
                entry.stage, entry.due = "poll", self._clock()

    def _after_poll(self, entry: _Entry, future: Future[JobStatus], now: datetime) -> None:
        failure = future.exception()
        if failure is None:
            status = future.result()
            if status.state == "completed" and status.result is not None:
                self._complete(entry, status.result, now)
            elif status.state == "failed":
                reason = f"provider '{entry.provider}' job {entry.job_id} failed: {status.error}"
                self._reaped(entry, self._failed(entry.job, entry.provider, entry.job_id, reason))
            else:
                entry.due = self._clock() + self._interval(entry.provider)
            return
        entry.poll_failures += 1
        self._counters.add("retried", retries_of(failure))
        terminal = isinstance(failure, ProviderError) and failure.terminal
        if terminal or entry.poll_failures >= MAX_POLL_FAILURES:
            reason = (
                f"polling job {entry.job_id} at provider '{entry.provider}' failed "
                f"{entry.poll_failures} time(s): {describe_failure(failure)}"
            )
            self._finish(entry, self._failed(entry.job, entry.provider, entry.job_id, reason))
        else:
            logger.warning(
                "job status poll failed; will retry",
                extra={"provider": entry.provider, "job_id": entry.job_id},
            )
            entry.due = self._clock() + self._interval(entry.provider)

    def _schedule_polls(self, now: datetime) -> None:
        moment = self._clock()
        for entry in list(self._entries.values()):
            if entry.future is not None or entry.stage != "poll" or entry.job_id is None:
                continue
            limit = entry.job.task.meta.timeout
            elapsed = (now - entry.job.started).total_seconds()
            if elapsed >= self._stale_after and not entry.stale:
                self._flag_stale(entry, elapsed)
            if limit is not None and elapsed > limit:
                reason = (
                    f"timed out after {format_duration(limit)}: job {entry.job_id} at "
                    f"provider '{entry.provider}' had not finished"
                )
                self._finish(entry, self._failed(entry.job, entry.provider, entry.job_id, reason))
            elif entry.due <= moment:
                entry.future = self._run(self._poll_step, entry)

    def _flag_stale(self, entry: _Entry, age: float) -> None:
        """A job older than ``stale_after``: reported once, left running."""
        entry.stale = True
        fields = stale_fields(entry.job, entry.provider, entry.job_id, age, self._stale_after)
        logger.warning("delegated job stale", extra={"task": entry.job.claim.task_id})
        if self._emit is not None:
            self._emit(ev.STALE, **fields)

    def _complete(self, entry: _Entry, result: JobResult, now: datetime) -> None:
        self._counters.add("retried", retries_of(result))
        if result.cost_usd is not None:
            self._counters.add("cost_total_usd", result.cost_usd)
        outcome = Outcome(
            entry.job,
            OutcomeStatus.DONE,
            now,
            result=result.text,
            target=entry.provider,
            cost=format_cost(result.cost_usd, result.cost_source),
            details=result_details(entry.job_id, entry.key, result),
        )
        self._reaped(entry, outcome)

    def _reaped(self, entry: _Entry, outcome: Outcome) -> None:
        crashpoints.hit("mid_reap")  # the result is known, the outcome not yet handed over
        self._finish(entry, outcome)

    def _finish(self, entry: _Entry | None, outcome: Outcome) -> None:
        """Hand an outcome over (next poll) and count it; the entry leaves the active set."""
        if entry is not None:
            self._entries.pop(entry.key, None)
            if id(entry.client) not in {id(c) for c in self._in_use()}:
                entry.client.close()  # retired by a reload; its last job ended
        names = {OutcomeStatus.DONE: "completed", OutcomeStatus.FAILED: "failed"}
        self._counters.add(names.get(outcome.status, "fallbacks"))
        self._ready.append(outcome)

    def _fallback(self, job: Job, provider: str, reason: str) -> Outcome:
        return fallback_outcome(job, provider, reason, self._utcnow())

    def _failed(
        self, job: Job, provider: str, job_id: str | None, reason: str, attempts: int | None = None
    ) -> Outcome:
        return failed_outcome(job, provider, job_id, reason, self._utcnow(), attempts)

    def _interval(self, provider: str) -> float:
        return self._intervals.get(provider, DEFAULT_POLL_INTERVAL)


# -- wiring ------------------------------------------------------------------------------


def build_clients(
    config: Config,
    env: Mapping[str, str],
    transport: Transport | None = None,
    *,
    sleep: Callable[[float], None] | None = None,
    backoff_base: float = DEFAULT_BACKOFF_BASE,
) -> tuple[dict[str, ProviderClient], list[str]]:
    """One client per configured provider whose key resolves; warnings for the others."""
    clients: dict[str, ProviderClient] = {}
    warnings: list[str] = []

    def key_for(provider: Any) -> str | None:
        return resolve_key(provider.api_key_env, provider.api_key_file, env)

    for provider in config.delegation.providers:
        try:
            client = make_client(
                provider, key_for, transport, sleep=sleep or time.sleep, backoff_base=backoff_base
            )
        except ConfigError as exc:
            problems = "; ".join(redact(p) for p in exc.problems)
            warnings.append(f"provider '{provider.name}' disabled: {problems}")
            continue
        clients[provider.name] = client
    return clients, warnings


def build_delegation(
    config: Config,
    env: Mapping[str, str],
    transport: Transport | None = None,
    *,
    wake: Callable[[], None] | None = None,
    workers: int = DEFAULT_WORKERS,
    backoff_base: float = DEFAULT_BACKOFF_BASE,
    emit: ev.Emit | None = None,
) -> tuple[DelegationExecutor | None, frozenset[str], list[str]]:
    """The provider executor for ``config``, the providers it can use, and warnings.

    Returns ``(None, frozenset(), [])`` when no provider is configured. A provider whose
    key is missing is left out of the available set, with a warning naming the variable
    or file (never a key).
    """
    if not config.delegation.providers:
        return None, frozenset(), []
    stop = threading.Event()

    def sleep(seconds: float) -> None:
        stop.wait(seconds)  # a retry wait that ends at once when the daemon stops

    clients, warnings = build_clients(
        config, env, transport, sleep=sleep, backoff_base=backoff_base
    )
    executor = DelegationExecutor(
        clients,
        config.state_dir,
        poll_intervals=poll_intervals(config),
        workers=workers,
        wake=wake,
        stop=stop,
        stale_after=config.delegation.stale_after,
        emit=emit,
    )
    return executor, frozenset(clients), warnings


def poll_intervals(config: Config) -> dict[str, float]:
    """How often each provider's jobs are polled."""
    return {p.name: p.poll_interval for p in config.delegation.providers}


def reconfigure_delegation(
    executor: DelegationExecutor,
    config: Config,
    env: Mapping[str, str],
    transport: Transport | None = None,
) -> tuple[frozenset[str], list[str]]:
    """Rebuild the clients for a reloaded ``delegation:`` and hand them to ``executor``.

    Returns the providers now available and warnings for the others (as at start-up).
    """
    clients, warnings = build_clients(config, env, transport, sleep=executor.retry_wait)
    executor.reconfigure(clients, poll_intervals(config), config.delegation.stale_after)
    return frozenset(clients), warnings
