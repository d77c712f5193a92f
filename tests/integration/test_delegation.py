"""The delegation manager against real HTTP fakes on 127.0.0.1 and real queue folders.

A small in-test driver plays the daemon's part (claim, route, start, collect, finish,
recover), so that crashes can be simulated in-process: ``crashpoints.hit`` is patched to
raise :class:`SimulatedCrash` at the armed point, the "process" is dropped, and a fresh
executor with fresh clients recovers from the folders alone.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentq.cli.delegate import run_delegate
from agentq.cli.status import collect_status
from agentq.config.load import config_from_dict
from agentq.config.models import Config
from agentq.core import crashpoints
from agentq.delegation.manager import (
    DelegationExecutor,
    build_clients,
    build_delegation,
)
from agentq.queue import protocol as q
from agentq.queue import taskfile
from agentq.queue.jobs import Job, Outcome, OutcomeStatus, RecoveryKind
from agentq.queue.records import ControlRecord, DelegationIntent, DelegationPhase
from agentq.queue.router import RouteDecision, RoutingPolicy, route
from agentq.queue.vetting import DELEGATED_SUFFIX, WORKING_SUFFIX
from tests.support.providers import (
    AFTER_PROCESSING_FAULTS,
    FakeAnthropic,
    FakeJobApi,
    FakeOpenAI,
    Faults,
    RecordedRequest,
    Reply,
    openai_error,
)

pytestmark = pytest.mark.integration

KEY_ENVS = {"jobs": "JOBS_KEY", "openai": "OPENAI_KEY", "claude": "CLAUDE_KEY"}
KINDS = {"jobs": "job-api", "openai": "openai-compatible", "claude": "anthropic"}
MODELS = {"jobs": None, "openai": "gpt-4.1", "claude": "claude-sonnet-4-5"}
PROCESSED = {None, *AFTER_PROCESSING_FAULTS}


class SimulatedCrash(BaseException):
    """Stands in for ``os._exit`` at an armed crash point."""


Arm = Callable[[str, int], None]


@pytest.fixture
def arm(monkeypatch: pytest.MonkeyPatch) -> Arm:
    """``arm(point, n)``: the n-th pass through ``point`` raises SimulatedCrash (once)."""
    lock = threading.Lock()
    armed: dict[str, Any] = {"name": None, "left": 0}

    def hit(name: str) -> None:
        with lock:
            if name != armed["name"]:
                return
            armed["left"] -= 1
            if armed["left"] > 0:
                return
            armed["name"] = None
        raise SimulatedCrash(name)

    monkeypatch.setattr(crashpoints, "hit", hit)

    def set_point(name: str, nth: int = 1) -> None:
        with lock:
            armed.update(name=name, left=nth)

    return set_point


@dataclass
class Fakes:
    """The three fake providers, by provider name."""

    jobs: FakeJobApi
    openai: FakeOpenAI
    claude: FakeAnthropic

    def url(self, name: str) -> str:
        """The base URL for a provider name."""
        fake: Any = getattr(self, name)
        return str(fake.base_url)


@pytest.fixture
def canary() -> str:
    """A secret canary used as every provider's API key."""
    return f"sk-CANARY-{uuid.uuid4()}"


def _fakes(key: str, faults: Faults | None = None, polls: int = 2, **jobs: Any) -> Fakes:
    return Fakes(
        FakeJobApi(faults=faults, api_key=key, polls_to_complete=polls, **jobs),
        FakeOpenAI(faults=faults, api_key=key),
        FakeAnthropic(faults=faults, api_key=key),
    )


@pytest.fixture
def fakes(canary: str) -> Iterator[Fakes]:
    """Fault-free fakes requiring the canary key."""
    found = _fakes(canary)
    with found.jobs, found.openai, found.claude:
        yield found


def _config(
    tmp_path: Path,
    fakes: Fakes,
    *,
    fallbacks: dict[str, list[str]] | None = None,
    key_files: dict[str, Path] | None = None,
    **overrides: Any,
) -> Config:
    providers = []
    for name, kind in KINDS.items():
        entry: dict[str, Any] = {
            "name": name,
            "kind": kind,
            "base_url": fakes.url(name),
            "timeout": 2.0,
            "max_retries": 4,
            "poll_interval": 0.01,
        }
        if MODELS[name]:
            entry["model"] = MODELS[name]
        if key_files:
            entry["api_key_file"] = str(key_files[name])
        else:
            entry["api_key_env"] = KEY_ENVS[name]
        entry.update(overrides)
        providers.append(entry)
    data = {
        "state_dir": str(tmp_path / "state"),
        "projects": {"paths": [str(tmp_path / "proj")]},
        "delegation": {
            "allow_by_default": True,
            "providers": providers,
            "fallbacks": fallbacks or {},
        },
    }
    return config_from_dict(data, {"HOME": str(tmp_path / "home")}, tmp_path)


def _env(key: str) -> dict[str, str]:
    return dict.fromkeys(KEY_ENVS.values(), key)


def _project(tmp_path: Path) -> q.Project:
    project = q.Project(tmp_path / "proj")
    project.path.mkdir(exist_ok=True)
    project.ensure_dirs()
    return project


def _drop(project: q.Project, name: str, body: str, **meta: Any) -> None:
    front = f"---\n{yaml.safe_dump(meta, sort_keys=True)}---\n" if meta else ""
    tmp = project.tmp / f"{name}.tmp"
    tmp.write_text(f"{front}{body}\n")
    tmp.rename(project.inbox / name)


class Driver:
    """Plays the daemon for provider tasks: claim, route, start, collect, finish, recover."""

    def __init__(
        self,
        project: q.Project,
        config: Config,
        env: dict[str, str],
        *,
        workers: int = 4,
    ) -> None:
        self.project = project
        self.wake = threading.Event()
        executor, available, warnings = build_delegation(
            config, env, wake=self.wake.set, workers=workers, backoff_base=0.001
        )
        assert executor is not None
        self.executor: DelegationExecutor = executor
        self.available = available
        self.warnings = warnings
        self.policy = RoutingPolicy.from_config(config.delegation, available)
        self.local: dict[str, RouteDecision] = {}
        self.requeued: list[Outcome] = []

    # -- dispatch and completion (daemon._start_task / _complete) ----------------------

    def dispatch(self) -> None:
        """Claim every ready task not routed locally and start it on the executor."""
        for pending in self.project.scan(time.time_ns(), 0).ready:
            if pending.name in self.local or self.executor.capacity() <= 0:
                continue
            claim = self.project.claim(pending.name)
            if claim is None:
                continue
            unavailable = claim.record.unavailable
            started = datetime.now(UTC)
            self.project.begin_attempt(claim, "", started.isoformat())
            assert claim.record.unavailable == unavailable  # carried across claims
            task = taskfile.parse_task(self.project.read_claimed(claim), claim.name)
            decision = route(task.meta, self.policy, frozenset(unavailable))
            if decision.executor == "local":
                self.local[claim.name] = decision
                self.project.release(claim)
                continue
            claim.record.executor = self.executor.name
            self.executor.start(Job(claim, task, decision, started))

    def collect(self) -> None:
        """Finish what the executor reports, as the daemon does."""
        for outcome in self.executor.poll(datetime.now(UTC)):
            self.complete(outcome)

    def complete(self, outcome: Outcome) -> None:
        """daemon._complete: requeue, or move to done/failed with one footer."""
        claim = outcome.job.claim
        if outcome.status is OutcomeStatus.REQUEUE:
            self.requeued.append(outcome)
            claim.project.requeue(claim)
            return
        done = outcome.status is OutcomeStatus.DONE
        footer = taskfile.Footer(
            status="done" if done else "failed",
            executor=claim.record.executor or "local",
            target=outcome.target,
            started=outcome.job.started,
            finished=outcome.finished,
            attempts=claim.record.attempts,
            cost=outcome.cost,
            result=outcome.result,
            error=outcome.error,
            claim_id=claim.record.claim_id,
            details=outcome.details,
        )
        claim.project.finish(
            claim, done, outcome.job.task.text.encode(), taskfile.footer_bytes(footer)
        )

    # -- recovery (daemon._recover / _recover_one) -------------------------------------

    def recover(self) -> None:
        """Sweep, then recover every marker and every working file."""
        self.project.sweep(time.time(), 36 * 3600)
        found = self.project.scan(time.time_ns(), 0)
        for name in found.delegated:
            self._recover_one(name, DELEGATED_SUFFIX)
        for name in found.working:
            if name not in found.delegated:
                self._recover_one(name, WORKING_SUFFIX)

    def _recover_one(self, name: str, suffix: str) -> None:
        project = self.project
        record = project.load_record(name)
        claim = q.Claim(project, name, record or ControlRecord(name=name, ino=0), suffix)
        if suffix == DELEGATED_SUFFIX:
            (project.inbox / (name + WORKING_SUFFIX)).unlink(missing_ok=True)
        if record is None or not record.claim_id:
            project.requeue(claim)
            return
        if project.find_result(name, record.claim_id) is not None:
            project.drop(claim)
            return
        task = taskfile.parse_task(project.read_claimed(claim), name)
        decision = self.executor.recover(claim, task, datetime.now(UTC))
        if decision.kind is RecoveryKind.ADOPT:
            job_route = route(task.meta, self.policy)
            started = datetime.fromisoformat(record.claimed_at)
            self.executor.adopt(Job(claim, task, job_route, started))
        elif decision.kind is RecoveryKind.REQUEUE:
            project.requeue(claim)
        else:
            raise AssertionError(f"unexpected recovery {decision}")

    # -- running ---------------------------------------------------------------------

    def idle(self) -> bool:
        """Nothing pending (but local tasks), nothing claimed, nothing active."""
        found = self.project.scan(time.time_ns(), 0)
        pending = [p.name for p in found.ready if p.name not in self.local]
        return not (pending or found.working or found.delegated or self.executor.status()["active"])

    def run(self, timeout: float = 120.0) -> None:
        """Dispatch and collect until idle; the executor's wake-ups pace the loop."""
        deadline = time.monotonic() + timeout
        while True:
            self.wake.clear()
            self.dispatch()
            self.collect()
            if self.idle():
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"not idle after {timeout}s: {self.executor.status()}")
            delay = self.executor.next_poll()
            self.wake.wait(0.5 if delay is None else min(delay, 0.5))

    def close(self) -> None:
        """Close the executor (its worker pool and HTTP clients)."""
        self.executor.close()


@pytest.fixture
def drivers() -> Iterator[list[Driver]]:
    """Drivers to close at teardown."""
    made: list[Driver] = []
    yield made
    for driver in made:
        driver.close()


def _driver(
    drivers: list[Driver],
    project: q.Project,
    config: Config,
    env: dict[str, str],
    workers: int = 4,
) -> Driver:
    driver = Driver(project, config, env, workers=workers)
    drivers.append(driver)
    return driver


def _results(project: q.Project) -> dict[str, list[Path]]:
    return {
        folder: sorted(p for p in (project.queue / folder).iterdir() if not p.name.startswith("."))
        for folder in ("done", "failed")
    }


def _footer(path: Path) -> taskfile.Footer:
    text = path.read_text()
    assert taskfile.count_footers(text) == 1, f"{path.name} has not exactly one footer"
    _, footer = taskfile.split_footer(text)
    assert footer is not None
    return footer


def _assert_clean(project: q.Project) -> None:
    """Nothing left in the inbox or the control records; no temp files anywhere."""
    assert sorted(p.name for p in project.inbox.iterdir()) == []
    assert sorted(p.name for p in project.control.iterdir()) == []
    temps = list(project.queue.rglob(".agentq-tmp-*"))
    assert temps == []


def _key_of(request: RecordedRequest) -> str:
    return request.headers.get("idempotency-key", "")


def _answered_per_key(requests: list[RecordedRequest]) -> dict[str, list[str | None]]:
    """Per idempotency key, the faults of the requests the server processed, in order."""
    seen: dict[str, list[str | None]] = defaultdict(list)
    for request in requests:
        if request.fault in PROCESSED and not request.scripted:
            seen[_key_of(request)].append(request.fault)
    return seen


# -- the happy path, one task per provider --------------------------------------------------


@pytest.mark.parametrize("provider", ["jobs", "openai", "claude"])
def test_task_is_delegated_and_finished_with_one_footer(
    tmp_path: Path, fakes: Fakes, canary: str, drivers: list[Driver], provider: str
) -> None:
    """A task goes intent → submit → marker → reap → done/ with provider, model, job id, cost."""
    project = _project(tmp_path)
    _drop(project, "write.md", "write a haiku about queues", preferred_ai=provider)
    driver = _driver(drivers, project, _config(tmp_path, fakes), _env(canary))
    driver.run()
    done = _results(project)["done"]
    assert [p.name for p in done] == ["write.md"]
    footer = _footer(done[0])
    details = dict(footer.details)
    assert footer.executor == "provider"
    assert footer.target == provider
    assert details["job id"]
    assert details["idempotency key"].startswith("agentq-")
    assert footer.result is not None and "write a haiku about queues" in footer.result
    assert footer.cost is not None and footer.cost.startswith("$")
    if provider != "jobs":
        assert details["model"] == MODELS[provider]
        assert int(details["input tokens"]) > 0
        assert int(details["output tokens"]) > 0
    head = done[0].read_text().split("<!-- agentq-footer")[0]
    info = yaml.safe_load(head.split("---")[1])["delegation"]
    assert info["provider"] == provider
    assert info["job_id"] == details["job id"]
    assert info["idempotency_key"] == details["idempotency key"]
    _assert_clean(project)
    status = driver.executor.status()
    assert status["active"] == 0
    assert status["submitted"] == status["completed"] == 1
    assert status["cost_total_usd"] > 0


def test_marker_holds_the_job_and_keeps_the_task_text(
    tmp_path: Path, fakes: Fakes, canary: str, drivers: list[Driver]
) -> None:
    """While a job runs, inbox/x.md.delegated is the task plus a delegation: block."""
    fakes.jobs.polls_to_complete = 10**6  # never finishes during this test
    project = _project(tmp_path)
    original = "---\ntitle: Long job  # keep me\npreferred_ai: jobs\n---\n\nBody text.\n"
    (project.inbox / "long.md").write_text(original)
    driver = _driver(drivers, project, _config(tmp_path, fakes), _env(canary))
    marker = project.inbox / "long.md.delegated"

    def submitted() -> bool:
        driver.dispatch()
        driver.collect()
        return marker.exists() and not (project.inbox / "long.md.working").exists()

    deadline = time.monotonic() + 30
    while not submitted():
        assert time.monotonic() < deadline, "no marker"
        driver.wake.wait(0.05)
        driver.wake.clear()
    text = marker.read_text()
    assert text.startswith("---\ntitle: Long job  # keep me\npreferred_ai: jobs\ndelegation:\n")
    assert text.endswith("---\n\nBody text.\n")
    info = yaml.safe_load(text.split("---")[1])["delegation"]
    record = project.load_record("long.md")
    assert record is not None and record.delegation is not None
    assert info == {
        "provider": "jobs",
        "job_id": record.delegation.job_id,
        "submitted_at": record.delegation.submitted_at,
        "idempotency_key": f"agentq-{record.claim_id}",
    }
    assert record.delegation.phase is DelegationPhase.SUBMITTED
    assert fakes.jobs.jobs_created == 1


def test_reaper_polls_at_most_once_per_interval(tmp_path: Path, fakes: Fakes, canary: str) -> None:
    """With the clock standing still, repeated reaper passes send one status request."""
    fakes.jobs.polls_to_complete = 10**6
    project = _project(tmp_path)
    _drop(project, "a.md", "slow job", preferred_ai="jobs")
    config = _config(tmp_path, fakes)
    clients, _ = build_clients(config, _env(canary))
    now = [1000.0]
    manual = DelegationExecutor(
        clients,
        tmp_path / "state",
        clock=lambda: now[0],
        poll_intervals={"jobs": 5.0},
        workers=0,
    )
    try:
        claim = project.claim("a.md")
        assert claim is not None
        project.begin_attempt(claim, "", datetime.now(UTC).isoformat())
        task = taskfile.parse_task(project.read_claimed(claim), "a.md")
        decision = route(
            task.meta, RoutingPolicy.from_config(config.delegation, frozenset(clients))
        )
        manual.start(Job(claim, task, decision, datetime.now(UTC)))
        for _ in range(10):
            assert manual.poll(datetime.now(UTC)) == []
        assert len(fakes.jobs.requests_to("GET", "/jobs/")) == 1
        assert manual.next_poll() == pytest.approx(5.0)
        now[0] += 5.0
        manual.poll(datetime.now(UTC))
        assert len(fakes.jobs.requests_to("GET", "/jobs/")) == 2
    finally:
        manual.close()


# -- 100 tasks, three providers, random faults -----------------------------------------------


def test_hundred_tasks_under_random_faults(
    tmp_path: Path, canary: str, drivers: list[Driver]
) -> None:
    """500s, 429s, timeouts, resets, malformed JSON at random: each task ends once, precisely."""
    faults = Faults(rate=0.25, seed=20261121, retry_after=0.01, slow_seconds=0.6)
    found = _fakes(canary, faults, fail=lambda p: "the model refused" if "REFUSE" in p else None)
    never = Reply(
        500,
        openai_error("injected outage", "server_error"),
        when=lambda r: "ALWAYS-500" in json.dumps(r.body),
    )
    found.openai.script(never)
    project = _project(tmp_path)
    expected: dict[str, str] = {}
    for i in range(100):
        provider = ("jobs", "openai", "claude")[i % 3]
        body = f"task number {i} for {provider}"
        if i in (0, 3):
            body += " REFUSE"
        if i in (1, 4):
            body += " ALWAYS-500"
        name = f"t{i:03d}.md"
        _drop(project, name, body, preferred_ai=provider)
        expected[name] = provider
    with found.jobs, found.openai, found.claude:
        config = _config(tmp_path, found, timeout=0.3, max_retries=4)
        driver = _driver(drivers, project, config, _env(canary), workers=8)
        driver.run(timeout=300)
    results = _results(project)
    names = Counter(p.name for p in results["done"] + results["failed"])
    assert sorted(names) == sorted(expected)
    assert set(names.values()) == {1}
    _assert_clean(project)
    failed = {p.name: _footer(p) for p in results["failed"]}
    assert {"t000.md", "t003.md", "t001.md", "t004.md"} <= set(failed)
    for name, footer in failed.items():
        provider = expected[name]
        assert footer.error is not None and f"'{provider}'" in footer.error, footer.error
        assert "failed" in footer.error
    assert "the model refused" in (failed["t000.md"].error or "")
    assert "gave up after 5 attempts" in (failed["t001.md"].error or "")
    assert "HTTP 500" in (failed["t001.md"].error or "")
    job_ids: list[str] = []
    for path in results["done"]:
        footer = _footer(path)
        assert footer.target == expected[path.name]
        job_ids.append(dict(footer.details)["job id"])
    assert len(job_ids) == len(set(job_ids))
    _check_job_api_idempotency(found.jobs, sum(1 for p in expected.values() if p == "jobs"))
    for fake in (found.openai, found.claude):
        _check_sync_asked_again_only_when_unanswered(fake.requests)
    status = driver.executor.status()
    assert status["completed"] == len(results["done"])
    assert status["failed"] == len(results["failed"])
    assert status["retried"] > 0


def _check_job_api_idempotency(fake: FakeJobApi, tasks: int) -> None:
    posts = fake.requests_to("POST", "/jobs")
    assert all(_key_of(r) for r in posts), "a submission without an Idempotency-Key"
    assert len({_key_of(r) for r in posts}) == tasks  # every task sent, one key each
    processed = {_key_of(r) for r in posts if r.fault in PROCESSED}
    assert fake.jobs_created == fake.distinct_keys == len(processed)
    assert fake.submissions >= fake.jobs_created


def _check_sync_asked_again_only_when_unanswered(requests: list[RecordedRequest]) -> None:
    assert all(_key_of(r) for r in requests), "a request without an Idempotency-Key"
    for key, faults in _answered_per_key(requests).items():
        # Every answered request but the last lost its answer on the way back.
        assert all(f in AFTER_PROCESSING_FAULTS for f in faults[:-1]), (key, faults)


# -- crash points and restarts -----------------------------------------------------------------


CRASH_POINTS = ("after_intent", "after_submit_before_marker", "mid_marker_write", "after_marker")


@pytest.mark.parametrize("provider", ["jobs", "openai", "claude"])
@pytest.mark.parametrize("point", [*CRASH_POINTS, "mid_reap", "after_move_before_cleanup"])
def test_crash_point_then_restart(
    tmp_path: Path,
    fakes: Fakes,
    canary: str,
    drivers: list[Driver],
    arm: Arm,
    point: str,
    provider: str,
) -> None:
    """A crash at each point, then a fresh executor: no loss, no duplicate job or footer."""
    assert point in crashpoints.POINTS
    project = _project(tmp_path)
    names = [f"c{i}.md" for i in range(4)]
    for i, name in enumerate(names):
        _drop(project, name, f"crash test task {i}", preferred_ai=provider)
    config = _config(tmp_path, fakes)
    first = _driver(drivers, project, config, _env(canary), workers=0)
    arm(point, 2)
    with pytest.raises(SimulatedCrash):
        first.run(timeout=60)
    second = _driver(drivers, project, config, _env(canary), workers=0)
    second.recover()
    second.run(timeout=60)
    done = _results(project)["done"]
    assert [p.name for p in done] == names
    assert _results(project)["failed"] == []
    for path in done:
        _footer(path)
    _assert_clean(project)
    if provider == "jobs":
        assert fakes.jobs.jobs_created == fakes.jobs.distinct_keys == len(names)
        return
    fake: FakeOpenAI | FakeAnthropic = getattr(fakes, provider)
    answered = Counter({k: len(v) for k, v in _answered_per_key(fake.requests).items()})
    assert len(answered) == len(names)
    # Asked twice only when the answer arrived but was not recorded before the crash.
    twice = 1 if point == "after_submit_before_marker" else 0
    assert sorted(answered.values()) == [1] * (len(names) - twice) + [2] * twice


def test_restart_while_jobs_are_running(
    tmp_path: Path, fakes: Fakes, canary: str, drivers: list[Driver]
) -> None:
    """Stop with every job submitted and running; the next executor polls them to the end."""
    fakes.jobs.polls_to_complete = 3
    project = _project(tmp_path)
    for i in range(10):
        _drop(project, f"r{i}.md", f"running job {i}", preferred_ai="jobs")
    config = _config(tmp_path, fakes)
    first = _driver(drivers, project, config, _env(canary), workers=0)
    first.dispatch()
    first.collect()
    assert len(list(project.inbox.glob("*.delegated"))) == 10
    first.close()
    second = _driver(drivers, project, config, _env(canary), workers=0)
    second.recover()
    second.run()
    assert len(_results(project)["done"]) == 10
    _assert_clean(project)
    assert fakes.jobs.jobs_created == fakes.jobs.distinct_keys == 10
    assert len(fakes.jobs.requests_to("POST", "/jobs")) == 10


def test_marker_survives_a_lost_control_record(
    tmp_path: Path, fakes: Fakes, canary: str, drivers: list[Driver]
) -> None:
    """Without its control record a marker is adopted from its own delegation: block."""
    fakes.jobs.polls_to_complete = 3
    project = _project(tmp_path)
    _drop(project, "lost.md", "record will be lost", preferred_ai="jobs")
    config = _config(tmp_path, fakes)
    first = _driver(drivers, project, config, _env(canary), workers=0)
    first.dispatch()
    first.collect()
    assert (project.inbox / "lost.md.delegated").exists()
    project.remove_record("lost.md")
    claim = q.Claim(project, "lost.md", ControlRecord("lost.md", 0), DELEGATED_SUFFIX)
    second = _driver(drivers, project, config, _env(canary), workers=0)
    task = taskfile.parse_task(project.read_claimed(claim), "lost.md")
    assert second.executor.recover(claim, task, datetime.now(UTC)).kind is RecoveryKind.ADOPT
    second.executor.adopt(Job(claim, task, route(task.meta, second.policy), datetime.now(UTC)))
    outcomes: list[Outcome] = []
    deadline = time.monotonic() + 30
    while not outcomes:
        assert time.monotonic() < deadline
        outcomes += second.executor.poll(datetime.now(UTC))
    assert outcomes[0].status is OutcomeStatus.DONE
    assert fakes.jobs.jobs_created == 1
    assert len(fakes.jobs.requests_to("POST", "/jobs")) == 1


@pytest.mark.parametrize("record_lost", [False, True])
def test_adopt_removes_a_marker_whose_result_exists(
    tmp_path: Path, fakes: Fakes, canary: str, drivers: list[Driver], record_lost: bool
) -> None:
    """A marker whose task is already in done/ is only removed: no poll, no second footer."""
    project = _project(tmp_path)
    _drop(project, "twice.md", "finish me once", preferred_ai="jobs")
    driver = _driver(drivers, project, _config(tmp_path, fakes), _env(canary), workers=0)
    driver.run()
    done = _results(project)["done"][0]
    claim_id = _footer(done).claim_id or ""
    marker = project.inbox / "twice.md.delegated"
    marker.write_text(done.read_text().split("\n<!-- agentq-footer")[0])  # the old marker
    record = ControlRecord("twice.md", 0, attempts=1, claim_id="recovered")
    if not record_lost:
        record.claim_id = claim_id
        record.delegation = DelegationIntent("jobs", f"agentq-{claim_id}")
    project.save_record(record)
    polls = len(fakes.jobs.requests_to("GET"))
    claim = q.Claim(project, "twice.md", record, DELEGATED_SUFFIX)
    task = taskfile.parse_task(marker.read_bytes(), "twice.md")
    assert driver.executor.recover(claim, task, datetime.now(UTC)).kind is RecoveryKind.ADOPT
    driver.executor.adopt(Job(claim, task, route(task.meta, driver.policy), datetime.now(UTC)))
    assert not marker.exists()
    assert driver.executor.poll(datetime.now(UTC)) == []
    assert len(fakes.jobs.requests_to("GET")) == polls
    assert _results(project)["done"] == [done]
    _assert_clean(project)


# -- fallback ----------------------------------------------------------------------------------


def test_401_falls_back_down_the_chain_to_the_next_provider(
    tmp_path: Path, fakes: Fakes, canary: str, drivers: list[Driver]
) -> None:
    """jobs 401 → openai 401 → claude answers; each hop recorded as unavailable."""
    deny = Reply(401, openai_error("Incorrect API key provided.", "authentication_error"))
    fakes.jobs.script(deny)
    fakes.openai.script(
        Reply(401, openai_error("Incorrect API key provided.", "authentication_error"))
    )
    project = _project(tmp_path)
    _drop(project, "hop.md", "please answer", preferred_ai="jobs")
    chain = {"jobs": ["openai", "local"], "openai": ["claude"]}
    config = _config(tmp_path, fakes, fallbacks=chain)
    driver = _driver(drivers, project, config, _env(canary))
    driver.run()
    footer = _footer(_results(project)["done"][0])
    assert footer.target == "claude"
    assert footer.attempts == 3
    assert [o.target for o in driver.requeued] == ["jobs", "openai"]
    assert all("HTTP 401" in (o.error or "") for o in driver.requeued)
    meta = taskfile.TaskMeta.model_validate({"preferred_ai": "jobs"})
    policy = driver.policy
    assert route(meta, policy, frozenset()).provider == "jobs"
    assert route(meta, policy, frozenset({"jobs"})).provider == "openai"
    assert route(meta, policy, frozenset({"jobs", "openai"})).provider == "claude"
    assert route(meta, policy, frozenset({"jobs", "openai", "claude"})).executor == "local"
    assert fakes.jobs.jobs_created == 0


def test_401_everywhere_ends_at_the_local_agent(
    tmp_path: Path, fakes: Fakes, canary: str, drivers: list[Driver]
) -> None:
    """When every provider refuses the key the task is back in inbox/ for a local session."""
    for fake in (fakes.jobs, fakes.openai):
        fake.script(Reply(401, openai_error("Incorrect API key provided.", "invalid_api_key")))
    fakes.claude.script(
        Reply(401, {"type": "error", "error": {"type": "authentication_error", "message": "no"}})
    )
    project = _project(tmp_path)
    original = "---\npreferred_ai: jobs\n---\nrun me somewhere\n"
    (project.inbox / "home.md").write_text(original)
    chain = {"jobs": ["openai", "claude", "local"]}
    driver = _driver(drivers, project, _config(tmp_path, fakes, fallbacks=chain), _env(canary))
    driver.run()
    assert _results(project) == {"done": [], "failed": []}
    assert list(driver.local) == ["home.md"]
    assert driver.local["home.md"].executor == "local"
    assert (project.inbox / "home.md").read_text() == original
    record = project.load_record("home.md")
    assert record is not None
    assert record.unavailable == ("claude", "jobs", "openai")
    assert driver.executor.status()["fallbacks"] == 3


def test_missing_key_disables_a_provider(tmp_path: Path, fakes: Fakes, canary: str) -> None:
    """A provider whose key variable is unset is not available, with a warning naming it."""
    env = _env(canary)
    del env["OPENAI_KEY"]
    executor, available, warnings = build_delegation(_config(tmp_path, fakes), env)
    assert executor is not None
    try:
        assert available == frozenset({"jobs", "claude"})
        assert warnings == [
            "provider 'openai' disabled: environment variable OPENAI_KEY is not set or empty"
        ]
    finally:
        executor.close()


def test_exhausted_retries_fail_with_the_reason(
    tmp_path: Path, fakes: Fakes, canary: str, drivers: list[Driver]
) -> None:
    """A provider that keeps answering 503 fails the task after the retry budget, precisely."""
    fakes.openai.script(Reply(503, openai_error("upstream overloaded", "server_error")))
    project = _project(tmp_path)
    _drop(project, "busy.md", "are you there", preferred_ai="openai")
    driver = _driver(drivers, project, _config(tmp_path, fakes, max_retries=2), _env(canary))
    driver.run()
    footer = _footer(_results(project)["failed"][0])
    assert footer.error == (
        "delegation to provider 'openai' failed: gave up after 3 attempts: HTTP 503 from "
        "openai-compatible provider 'openai': upstream overloaded (server_error)"
    )
    assert dict(footer.details)["provider attempts"] == "3"
    assert len(fakes.openai.requests) == 3


# -- secrets --------------------------------------------------------------------------------


def test_secret_canary_appears_nowhere(
    tmp_path: Path, canary: str, drivers: list[Driver], caplog: pytest.LogCaptureFixture
) -> None:
    """The API key (from 0600 files) never reaches done/, failed/, records, state, logs, status."""
    caplog.set_level(logging.DEBUG)
    key_files = {}
    for name in KINDS:
        path = tmp_path / f"{name}.key"
        path.write_text(canary + "\n")
        path.chmod(0o600)
        key_files[name] = path
    faults = Faults(rate=0.2, seed=7, retry_after=0.01, slow_seconds=0.6)
    found = _fakes(canary, faults, fail=lambda p: f"bad key {canary}" if "ECHO" in p else None)
    echo = Reply(400, openai_error(f"key {canary} is not allowed here", "invalid_request_error"))
    echo.when = lambda r: "ECHO" in json.dumps(r.body)
    found.openai.script(echo)
    project = _project(tmp_path)
    for i in range(30):
        provider = ("jobs", "openai", "claude")[i % 3]
        _drop(
            project,
            f"s{i:02d}.md",
            f"secret test {i}{' ECHO' if i < 6 else ''}",
            preferred_ai=provider,
        )
    out = io.StringIO()
    with found.jobs, found.openai, found.claude:
        config = _config(tmp_path, found, key_files=key_files, timeout=0.3)
        driver = _driver(drivers, project, config, {}, workers=6)
        driver.run(timeout=300)
        run_delegate(["get", "--provider", "jobs", "job-000001"], config, out, out, env={})
        run_delegate(["get", "--provider", "jobs", "job-999999"], config, out, out, env={})
    results = _results(project)
    assert len(results["done"]) + len(results["failed"]) + len(driver.local) == 30
    assert results["failed"], "the echoing job errors should have failed some tasks"
    assert sorted(driver.local) == ["s01.md", "s04.md"], "the echoing 400s fall back to local"
    status = json.dumps(driver.executor.status()) + json.dumps(collect_status(config, time.time()))
    texts = {
        "files": "".join(
            p.read_text(errors="replace")
            for root in (project.queue, tmp_path / "state")
            for p in root.rglob("*")
            if p.is_file()
        ),
        "logs": caplog.text + "".join(str(r.__dict__) for r in caplog.records),
        "status": status,
        "cli": out.getvalue(),
        "requeued": "".join(str(o.error) for o in driver.requeued),
    }
    assert {k: canary in v for k, v in texts.items()} == dict.fromkeys(texts, False)
    assert any(canary in str(r.headers) for r in found.jobs.requests), "the key was never sent"


# -- the command line ----------------------------------------------------------------------------


def test_cli_submit_get_result_decide(tmp_path: Path, fakes: Fakes, canary: str) -> None:
    """``agentq delegate`` submits idempotently, shows status and result, and routes."""
    config = _config(tmp_path, fakes)
    task = tmp_path / "cli.md"
    task.write_text("---\npreferred_ai: jobs\n---\nsummarise the README\n")
    env = _env(canary)

    def run(*args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = run_delegate(list(args), config, out, err, env=env)
        return code, out.getvalue(), err.getvalue()

    code, out, err = run("decide", str(task))
    assert (code, json.loads(out)["provider"]) == (0, "jobs"), err
    code, out, _ = run("submit", str(task))
    first = json.loads(out)
    assert code == 0 and first["provider"] == "jobs" and first["state"] == "submitted"
    code, out, _ = run("submit", str(task))
    assert json.loads(out)["job_id"] == first["job_id"]
    assert fakes.jobs.jobs_created == 1
    code, out, err = run("result", first["job_id"])
    assert code == 3 and "still" in err
    code, out, _ = run("get", first["job_id"])
    assert code == 0 and json.loads(out)["state"] == "completed"
    code, out, _ = run("result", first["job_id"])
    assert (code, out) == (0, "done: summarise the README\n")
    code, out, _ = run("submit", "--provider", "claude", str(task))
    answer = json.loads(out)
    assert answer["state"] == "completed" and answer["result"] == "echo: summarise the README"
    code, _, err = run("get", "--provider", "nope", "x")
    assert code == 2 and "nope" in err
    code, _, err = run("frobnicate")
    assert code == 2
    canary_free = json.dumps([first, answer])
    assert canary not in canary_free
