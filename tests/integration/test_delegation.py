"""Delegation through the real daemon (``python -m agentq run``) against HTTP fakes on 127.0.0.1.

Whatever needs the daemon's part (claim, route, start, collect, finish, recover) runs
the daemon itself: a crash is the daemon's own named crash point (``AGENTQ_CRASH_AT``),
a restart is a new process recovering from the folders alone. The fakes run in the test
process and record every request, so submissions are counted per idempotency key for
every provider kind. The local executor is ``instant`` (a task routed back home ends in
done/ with its answer). A few tests drive the delegation executor directly where the
daemon adds nothing: the reaper's pacing, the wiring of keys, the command line.
"""

from __future__ import annotations

import io
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentq.cli.delegate import run_delegate
from agentq.config.load import config_from_dict
from agentq.config.models import Config
from agentq.core import crashpoints
from agentq.delegation.manager import DelegationExecutor, build_clients, build_delegation
from agentq.queue import protocol as q
from agentq.queue import taskfile
from agentq.queue.jobs import Job
from agentq.queue.records import ControlRecord, DelegationIntent, DelegationPhase
from agentq.queue.router import RoutingPolicy, route
from tests.support.daemon import Daemon, drop, make_projects, wait_until
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

PROVIDERS = ("jobs", "openai", "claude")
KEY_ENVS = {"jobs": "JOBS_KEY", "openai": "OPENAI_KEY", "claude": "CLAUDE_KEY"}
KINDS = {"jobs": "job-api", "openai": "openai-compatible", "claude": "anthropic"}
MODELS = {"jobs": None, "openai": "gpt-4.1", "claude": "claude-sonnet-4-5"}
LOCAL_ANSWER = "instant answer"
#: Requests the fake processed (a job made, a completion billed), whatever became of the answer.
PROCESSED = {None, *AFTER_PROCESSING_FAULTS}

Fakes = dict[str, Any]


@pytest.fixture
def canary() -> str:
    """A secret canary used as every provider's API key."""
    return f"sk-CANARY-{uuid.uuid4()}"


def _fakes(key: str, faults: Faults | None = None, polls: int = 2, **jobs: Any) -> Fakes:
    return {
        "jobs": FakeJobApi(faults=faults, api_key=key, polls_to_complete=polls, **jobs),
        "openai": FakeOpenAI(faults=faults, api_key=key),
        "claude": FakeAnthropic(faults=faults, api_key=key),
    }


@pytest.fixture
def fakes(canary: str) -> Iterator[Fakes]:
    """Fault-free fakes requiring the canary key."""
    found = _fakes(canary)
    for fake in found.values():
        fake.start()
    yield found
    for fake in found.values():
        fake.stop()


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    """Daemons to kill at teardown."""
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.close()


def _settings(
    root: Path,
    fakes: Fakes,
    *,
    fallbacks: dict[str, list[str]] | None = None,
    key_files: dict[str, Path] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """The daemon's configuration: the three fakes as providers, the instant executor."""
    providers = []
    for name, kind in KINDS.items():
        entry: dict[str, Any] = {
            "name": name,
            "kind": kind,
            "base_url": fakes[name].base_url,
            "timeout": "2s",
            "max_retries": 4,
            "poll_interval": "0.01s",
        }
        if MODELS[name]:
            entry["model"] = MODELS[name]
        if key_files:
            entry["api_key_file"] = str(key_files[name])
        else:
            entry["api_key_env"] = KEY_ENVS[name]
        entry.update(overrides)
        providers.append(entry)
    return {
        "agent": {"profile": "instant", "answer": LOCAL_ANSWER},
        "projects": {"roots": [str(root / "projects")]},
        # Nothing here may depend on a periodic rescan: the executor's wake-ups drive it.
        "dispatch": {"rescan_interval": "1h", "quiet_period": "0.1s"},
        "delegation": {
            "allow_by_default": True,
            "providers": providers,
            "fallbacks": fallbacks or {},
        },
    }


def _config(root: Path, settings: dict[str, Any]) -> Config:
    """The same configuration as a model, for what runs in the test process."""
    data = {"state_dir": str(root / "state"), **settings}
    return config_from_dict(data, {"HOME": str(root / "home")}, root)


def _env(key: str) -> dict[str, str]:
    return dict.fromkeys(KEY_ENVS.values(), key)


def _daemon(
    daemons: list[Daemon],
    root: Path,
    settings: dict[str, Any],
    env: dict[str, str],
    tweaks: tuple[str, ...] = ("fast-retries",),
) -> Daemon:
    """A daemon (not started); retry waits are milliseconds unless ``tweaks`` say otherwise."""
    daemon = Daemon(root, settings, env, tweaks=tweaks)
    daemons.append(daemon)
    return daemon


def _run(daemon: Daemon, project: Path, count: int, timeout: float = 120) -> None:
    """Start the daemon and wait until ``count`` tasks ended and the inbox is empty."""
    daemon.start()
    assert daemon.wait_ready(), daemon.log()
    wait_until(lambda: _finished(project, count), timeout, message=daemon.log()[-3000:])


def _queue(project: Path) -> Path:
    return project / ".agent-queue"


def _results(project: Path) -> dict[str, list[Path]]:
    return {
        folder: sorted(
            p for p in (_queue(project) / folder).iterdir() if not p.name.startswith(".")
        )
        for folder in ("done", "failed")
    }


def _finished(project: Path, count: int) -> bool:
    found = _results(project)
    inbox = list((_queue(project) / "inbox").iterdir())
    return len(found["done"]) + len(found["failed"]) >= count and not inbox


def _footer(path: Path) -> taskfile.Footer:
    text = path.read_text()
    assert taskfile.count_footers(text) == 1, f"{path.name} has not exactly one footer"
    _, footer = taskfile.split_footer(text)
    assert footer is not None
    return footer


def _records(project: Path) -> dict[str, ControlRecord]:
    """Every control record by task name."""
    return {
        p.name.removesuffix(".json"): ControlRecord.from_json(p.read_bytes())
        for p in (_queue(project) / ".agentq").glob("*.json")
    }


def _assert_clean(project: Path) -> None:
    """Nothing left in the inbox, no control record, no temp file anywhere."""
    assert sorted(p.name for p in (_queue(project) / "inbox").iterdir()) == []
    assert _records(project) == {}
    assert list(_queue(project).rglob(".agentq-tmp-*")) == []


def _key_of(request: RecordedRequest) -> str:
    return request.headers.get("idempotency-key", "")


def _submissions(fake: Any) -> list[RecordedRequest]:
    """The requests that ask for work (job-api ``POST /jobs``, a completion, a message)."""
    requests: list[RecordedRequest] = fake.requests_to("POST")
    return requests


def _processed_per_key(fake: Any) -> Counter[str]:
    """Per idempotency key, the submissions the fake processed (faults before processing not)."""
    return Counter(
        _key_of(r) for r in _submissions(fake) if r.fault in PROCESSED and not r.scripted
    )


def _delegation_status(daemon: Daemon) -> dict[str, Any]:
    status: dict[str, Any] = daemon.state().get("delegation", {})
    return status


# -- the happy path, one task per provider --------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_task_is_delegated_and_finished_with_one_footer(
    tmp_path: Path, fakes: Fakes, canary: str, daemons: list[Daemon], provider: str
) -> None:
    """A task goes intent → submit → marker → reap → done/ with provider, model, job id, cost."""
    project = make_projects(tmp_path / "projects", 1)[0]
    drop(project, "write.md", "write a haiku about queues", preferred_ai=provider)
    daemon = _daemon(daemons, tmp_path, _settings(tmp_path, fakes), _env(canary))
    _run(daemon, project, 1)
    assert daemon.stop() == 0
    status = _delegation_status(daemon)  # the final counters, saved on the way out
    done = _results(project)["done"]
    assert [p.name for p in done] == ["write.md"]
    footer = _footer(done[0])
    details = dict(footer.details)
    assert footer.executor == "provider"
    assert footer.target == provider
    assert details["idempotency key"].startswith("agentq-")
    assert footer.result is not None and "write a haiku about queues" in footer.result
    assert footer.cost is not None and footer.cost.startswith("$")
    submitted = _submissions(fakes[provider])
    assert [_key_of(r) for r in submitted] == [details["idempotency key"]]
    if provider == "jobs":
        assert details["job id"] == fakes["jobs"].jobs[details["job id"]].job_id
        assert fakes["jobs"].jobs[details["job id"]].key == details["idempotency key"]
    else:
        assert details["model"] == MODELS[provider]
        assert int(details["input tokens"]) > 0
        assert int(details["output tokens"]) > 0
    head = done[0].read_text().split("<!-- agentq-footer")[0]
    info = yaml.safe_load(head.split("---")[1])["delegation"]
    assert info["provider"] == provider
    assert info["job_id"] == details["job id"]
    assert info["idempotency_key"] == details["idempotency key"]
    _assert_clean(project)
    assert status["active"] == 0
    assert status["submitted"] == status["completed"] == 1
    assert status["cost_total_usd"] > 0


def test_marker_holds_the_job_and_keeps_the_task_text(
    tmp_path: Path, fakes: Fakes, canary: str, daemons: list[Daemon]
) -> None:
    """While a job runs, inbox/x.md.delegated is the task plus a delegation: block."""
    fakes["jobs"].polls_to_complete = 10**6  # never finishes during this test
    project = make_projects(tmp_path / "projects", 1)[0]
    inbox = _queue(project) / "inbox"
    original = "---\ntitle: Long job  # keep me\npreferred_ai: jobs\n---\n\nBody text.\n"
    (_queue(project) / "tmp" / "long.md").write_text(original)
    (_queue(project) / "tmp" / "long.md").rename(inbox / "long.md")
    daemon = _daemon(daemons, tmp_path, _settings(tmp_path, fakes), _env(canary))
    daemon.start()
    assert daemon.wait_ready()
    marker = inbox / "long.md.delegated"
    wait_until(lambda: marker.exists() and not (inbox / "long.md.working").exists(), 30)
    text = marker.read_text()
    record = _records(project)["long.md"]
    assert text.startswith("---\ntitle: Long job  # keep me\npreferred_ai: jobs\ndelegation:\n")
    assert text.endswith("---\n\nBody text.\n")
    info = yaml.safe_load(text.split("---")[1])["delegation"]
    [job] = fakes["jobs"].jobs.values()
    assert record.delegation is not None
    assert info == {
        "provider": "jobs",
        "job_id": job.job_id,
        "submitted_at": record.delegation.submitted_at,
        "idempotency_key": f"agentq-{record.claim_id}",
    }
    assert job.key == info["idempotency_key"]
    assert record.delegation.phase is DelegationPhase.SUBMITTED


def test_reaper_polls_at_most_once_per_interval(tmp_path: Path, fakes: Fakes, canary: str) -> None:
    """With the clock standing still, repeated reaper passes send one status request."""
    fakes["jobs"].polls_to_complete = 10**6
    project = q.Project(tmp_path / "proj")
    project.path.mkdir()
    project.ensure_dirs()
    (project.inbox / "a.md").write_text("---\npreferred_ai: jobs\n---\nslow job\n")
    config = _config(tmp_path, _settings(tmp_path, fakes))
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
        assert len(fakes["jobs"].requests_to("GET", "/jobs/")) == 1
        assert manual.next_poll() == pytest.approx(5.0)
        now[0] += 5.0
        manual.poll(datetime.now(UTC))
        assert len(fakes["jobs"].requests_to("GET", "/jobs/")) == 2
    finally:
        manual.close()


# -- 100 tasks, three providers, random faults -----------------------------------------------


@pytest.mark.slow
def test_hundred_tasks_under_random_faults(
    tmp_path: Path, canary: str, daemons: list[Daemon]
) -> None:
    """500s, 429s, timeouts, resets, malformed JSON at random: each task ends once, precisely."""
    faults = Faults(rate=0.25, seed=20261121, retry_after=0.01, slow_seconds=0.6)
    found = _fakes(canary, faults, fail=lambda p: "the model refused" if "REFUSE" in p else None)
    never = Reply(
        500,
        openai_error("injected outage", "server_error"),
        when=lambda r: "ALWAYS-500" in json.dumps(r.body),
    )
    found["openai"].script(never)
    project = make_projects(tmp_path / "projects", 1)[0]
    expected: dict[str, str] = {}
    for i in range(100):
        provider = PROVIDERS[i % 3]
        body = f"task number {i} for {provider}"
        if i in (0, 3):
            body += " REFUSE"
        if i in (1, 4):
            body += " ALWAYS-500"
        name = f"t{i:03d}.md"
        drop(project, name, body, preferred_ai=provider)
        expected[name] = provider
    for fake in found.values():
        fake.start()
    try:
        settings = _settings(tmp_path, found, timeout="0.3s", max_retries=4)
        daemon = _daemon(daemons, tmp_path, settings, _env(canary))
        _run(daemon, project, 100, timeout=300)
        assert daemon.stop() == 0
        # Read after the stop: the daemon saves its final counters on the way out, while a
        # read as soon as the last file lands may see state.json from one pass earlier.
        status = _delegation_status(daemon)
    finally:
        for fake in found.values():
            fake.stop()
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
    keys: dict[str, str] = {}
    for path in results["done"]:
        footer = _footer(path)
        assert footer.target == expected[path.name]
        keys[path.name] = dict(footer.details)["idempotency key"]
    assert len(set(keys.values())) == len(keys), "two tasks share an idempotency key"
    _check_job_api_idempotency(found["jobs"], sum(1 for p in expected.values() if p == "jobs"))
    for provider in ("openai", "claude"):
        _check_sync_asked_again_only_when_unanswered(found[provider].requests)
    assert status["completed"] == len(results["done"])
    assert status["failed"] == len(results["failed"])
    assert status["retried"] > 0


def _check_job_api_idempotency(fake: FakeJobApi, tasks: int) -> None:
    posts = _submissions(fake)
    assert all(_key_of(r) for r in posts), "a submission without an Idempotency-Key"
    assert len({_key_of(r) for r in posts}) == tasks  # every task sent, one key each
    processed = {_key_of(r) for r in posts if r.fault in PROCESSED}
    assert fake.jobs_created == fake.distinct_keys == len(processed)
    assert {job.key for job in fake.jobs.values()} == processed, "a key made two jobs"


def _check_sync_asked_again_only_when_unanswered(requests: list[RecordedRequest]) -> None:
    assert all(_key_of(r) for r in requests), "a request without an Idempotency-Key"
    seen: dict[str, list[str | None]] = {}
    for request in requests:
        if request.fault in PROCESSED and not request.scripted:
            seen.setdefault(_key_of(request), []).append(request.fault)
    for key, faults in seen.items():
        # Every processed request but the last lost its answer on the way back.
        assert all(f in AFTER_PROCESSING_FAULTS for f in faults[:-1]), (key, faults)


# -- the daemon crashed at every delegation point, for every provider kind ------------------

#: The delegation's own crash points, in the order a task passes them.
DELEGATION_POINTS = (
    "after_intent",
    "after_submit_before_marker",
    "mid_marker_write",
    "after_marker",
    "mid_reap",
)
#: The completion's points, which a delegated task passes too.
COMPLETION_POINTS = ("mid_footer_write", "after_move_before_dir_fsync", "after_move_before_cleanup")
CRASH_TASKS = 4


def test_every_crash_point_of_the_matrix_is_offered_by_the_code() -> None:
    """The crash matrix uses only crash points the code base offers."""
    assert {*DELEGATION_POINTS, *COMPLETION_POINTS} <= set(crashpoints.POINTS)


def _answered_at_crash(project: Path, provider: str) -> dict[str, bool]:
    """Per idempotency key on disk at the crash: was its answer recorded by then?

    A job API's answer is its job id; a synchronous provider's is its reply. A task
    already in done/ has its answer on disk by definition.
    """
    found = {}
    for record in _records(project).values():
        intent = record.delegation
        if intent is not None:
            found[intent.key] = bool(intent.job_id if provider == "jobs" else intent.answer)
    for path in _results(project)["done"]:
        found[dict(_footer(path).details)["idempotency key"]] = True
    return found


@pytest.mark.slow
@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("point", [*DELEGATION_POINTS, *COMPLETION_POINTS])
def test_daemon_crash_at_each_point_then_restart(
    tmp_path: Path,
    fakes: Fakes,
    canary: str,
    daemons: list[Daemon],
    point: str,
    provider: str,
) -> None:
    """The daemon dies at a crash point; a new one finishes: no loss, no duplicate job or footer.

    Submissions are counted per idempotency key. A key is asked again after the restart
    only if the crash left its answer (a synchronous provider's reply, a job API's job id)
    unrecorded, and then once; every key that reached a provider had its intent on disk.
    """
    project = make_projects(tmp_path / "projects", 1)[0]
    names = [f"c{i}.md" for i in range(CRASH_TASKS)]
    for i, name in enumerate(names):
        drop(project, name, f"crash test task {i}", preferred_ai=provider)
    fake = fakes[provider]
    daemon = _daemon(daemons, tmp_path, _settings(tmp_path, fakes), _env(canary), tweaks=())
    daemon.start(crash_at=f"{point}:2")
    assert daemon.wait_exit(60) == 137, daemon.log()
    answered = _answered_at_crash(project, provider)
    before = _processed_per_key(fake)
    _run(daemon, project, CRASH_TASKS)
    assert daemon.stop() == 0
    results = _results(project)
    assert [p.name for p in results["done"]] == names
    assert results["failed"] == []
    footer_keys = {p.name: dict(_footer(p).details)["idempotency key"] for p in results["done"]}
    _assert_clean(project)
    after = _processed_per_key(fake) - before
    assert set(before) <= set(answered), "a request left before its intent was on disk"
    assert set(before + after) == set(footer_keys.values()), "a task was sent under two keys"
    asked_again = {key: after[key] for key in answered if after[key] > (0 if answered[key] else 1)}
    assert asked_again == {}, f"asked again although answered, or twice: {asked_again}"
    fresh = {key: n for key, n in after.items() if key not in answered and n != 1}
    assert fresh == {}, f"a task first sent after the restart was sent more than once: {fresh}"
    if provider == "jobs":
        jobs = fakes["jobs"]
        assert jobs.jobs_created == jobs.distinct_keys == CRASH_TASKS
        ids = {p.name: dict(_footer(p).details)["job id"] for p in results["done"]}
        assert {n: jobs.jobs[ids[n]].key for n in names} == footer_keys
    else:
        assert all(n <= 2 for n in (before + after).values())


def test_restart_while_jobs_are_running(
    tmp_path: Path, fakes: Fakes, canary: str, daemons: list[Daemon]
) -> None:
    """Stopped with every job submitted and running; the next daemon polls them to the end."""
    jobs = fakes["jobs"]
    jobs.polls_to_complete = 10**6
    project = make_projects(tmp_path / "projects", 1)[0]
    for i in range(10):
        drop(project, f"r{i}.md", f"running job {i}", preferred_ai="jobs")
    daemon = _daemon(daemons, tmp_path, _settings(tmp_path, fakes), _env(canary))
    daemon.start()
    assert daemon.wait_ready()
    inbox = _queue(project) / "inbox"
    wait_until(lambda: len(list(inbox.glob("*.md.delegated"))) == 10, 30)
    wait_until(lambda: all(j.polls >= 1 for j in jobs.jobs.values()), 30)
    assert daemon.stop() == 0
    jobs.polls_to_complete = 3
    _run(daemon, project, 10)
    assert daemon.stop() == 0
    assert len(_results(project)["done"]) == 10
    _assert_clean(project)
    assert jobs.jobs_created == jobs.distinct_keys == 10
    assert len(_submissions(jobs)) == 10, "a running job was submitted again after the restart"


def test_marker_survives_a_lost_control_record(
    tmp_path: Path, fakes: Fakes, canary: str, daemons: list[Daemon]
) -> None:
    """Without its control record a marker is adopted from its own delegation: block."""
    jobs = fakes["jobs"]
    jobs.polls_to_complete = 10**6
    project = make_projects(tmp_path / "projects", 1)[0]
    drop(project, "lost.md", "record will be lost", preferred_ai="jobs")
    daemon = _daemon(daemons, tmp_path, _settings(tmp_path, fakes), _env(canary))
    daemon.start()
    assert daemon.wait_ready()
    wait_until((_queue(project) / "inbox" / "lost.md.delegated").exists, 30)
    daemon.kill()
    (_queue(project) / ".agentq" / "lost.md.json").unlink()
    jobs.polls_to_complete = 1
    _run(daemon, project, 1)
    assert daemon.stop() == 0
    [done] = _results(project)["done"]
    assert _footer(done).target == "jobs"
    [job] = jobs.jobs.values()
    assert dict(_footer(done).details)["job id"] == job.job_id
    assert len(_submissions(jobs)) == 1
    _assert_clean(project)


@pytest.mark.parametrize("record", ["matching", "stale", "missing"])
def test_marker_whose_result_exists_is_only_removed(
    tmp_path: Path, fakes: Fakes, canary: str, daemons: list[Daemon], record: str
) -> None:
    """A marker whose task is already in done/: removed at start-up, no poll, no second footer."""
    project = make_projects(tmp_path / "projects", 1)[0]
    drop(project, "twice.md", "finish me once", preferred_ai="jobs")
    daemon = _daemon(daemons, tmp_path, _settings(tmp_path, fakes), _env(canary))
    _run(daemon, project, 1)
    assert daemon.stop() == 0
    [done] = _results(project)["done"]
    finished = done.read_bytes()
    claim_id = _footer(done).claim_id or ""
    marker = _queue(project) / "inbox" / "twice.md.delegated"
    marker.write_text(done.read_text().split("\n<!-- agentq-footer")[0])  # the old marker
    if record != "missing":
        kept = ControlRecord("twice.md", marker.stat().st_ino, attempts=1, claim_id="recovered")
        if record == "matching":
            kept.claim_id = claim_id
            kept.delegation = DelegationIntent("jobs", f"agentq-{claim_id}")
        q.Project(project).save_record(kept)
    polls = len(fakes["jobs"].requests_to("GET"))
    daemon.start()
    assert daemon.wait_ready()
    wait_until(lambda: not marker.exists(), 10)
    assert daemon.stop() == 0
    assert _results(project) == {"done": [done], "failed": []}
    assert done.read_bytes() == finished
    assert len(fakes["jobs"].requests_to("GET")) == polls
    assert len(_submissions(fakes["jobs"])) == 1
    _assert_clean(project)


# -- fallback ----------------------------------------------------------------------------------


def test_401_falls_back_down_the_chain_to_the_next_provider(
    tmp_path: Path, fakes: Fakes, canary: str, daemons: list[Daemon]
) -> None:
    """jobs 401 → openai 401 → claude answers; each hop marks the provider unavailable."""
    for name in ("jobs", "openai"):
        fakes[name].script(
            Reply(401, openai_error("Incorrect API key provided.", "authentication_error"))
        )
    project = make_projects(tmp_path / "projects", 1)[0]
    drop(project, "hop.md", "please answer", preferred_ai="jobs")
    chain = {"jobs": ["openai", "local"], "openai": ["claude"]}
    settings = _settings(tmp_path, fakes, fallbacks=chain)
    daemon = _daemon(daemons, tmp_path, settings, _env(canary))
    _run(daemon, project, 1)
    assert daemon.stop() == 0
    footer = _footer(_results(project)["done"][0])
    assert footer.target == "claude"
    assert footer.attempts == 3
    refused = {name: [r.scripted for r in _submissions(fakes[name])] for name in PROVIDERS}
    assert refused == {"jobs": [True], "openai": [True], "claude": [False]}
    assert fakes["jobs"].jobs_created == 0
    policy = RoutingPolicy.from_config(_config(tmp_path, settings).delegation, frozenset(PROVIDERS))
    meta = taskfile.TaskMeta.model_validate({"preferred_ai": "jobs"})
    assert route(meta, policy, frozenset()).provider == "jobs"
    assert route(meta, policy, frozenset({"jobs"})).provider == "openai"
    assert route(meta, policy, frozenset({"jobs", "openai"})).provider == "claude"
    assert route(meta, policy, frozenset({"jobs", "openai", "claude"})).executor == "local"


def test_401_everywhere_ends_at_the_local_agent(
    tmp_path: Path, fakes: Fakes, canary: str, daemons: list[Daemon]
) -> None:
    """When every provider refuses the key the task runs locally, its text unchanged."""
    for name in ("jobs", "openai"):
        fakes[name].script(
            Reply(401, openai_error("Incorrect API key provided.", "invalid_api_key"))
        )
    fakes["claude"].script(
        Reply(401, {"type": "error", "error": {"type": "authentication_error", "message": "no"}})
    )
    project = make_projects(tmp_path / "projects", 1)[0]
    original = "---\npreferred_ai: jobs\n---\nrun me somewhere\n"
    (_queue(project) / "tmp" / "home.md").write_text(original)
    (_queue(project) / "tmp" / "home.md").rename(_queue(project) / "inbox" / "home.md")
    chain = {"jobs": ["openai", "claude", "local"]}
    settings = _settings(tmp_path, fakes, fallbacks=chain)
    # Each hop down the chain is a claim and counts an attempt: four hops need four.
    settings["dispatch"]["max_attempts"] = 4
    daemon = _daemon(daemons, tmp_path, settings, _env(canary))
    _run(daemon, project, 1)
    assert daemon.stop() == 0
    status = _delegation_status(daemon)  # the final counters, saved on the way out
    [done] = _results(project)["done"]
    footer = _footer(done)
    assert footer.executor != "provider" and footer.result == LOCAL_ANSWER
    assert footer.attempts == 4
    assert done.read_text().startswith(original)
    assert [len(_submissions(fakes[n])) for n in PROVIDERS] == [1, 1, 1]
    assert status["fallbacks"] == 3


def test_missing_key_disables_a_provider(tmp_path: Path, fakes: Fakes, canary: str) -> None:
    """A provider whose key variable is unset is not available, with a warning naming it."""
    env = _env(canary)
    del env["OPENAI_KEY"]
    executor, available, warnings = build_delegation(
        _config(tmp_path, _settings(tmp_path, fakes)), env
    )
    assert executor is not None
    try:
        assert available == frozenset({"jobs", "claude"})
        assert warnings == [
            "provider 'openai' disabled: environment variable OPENAI_KEY is not set or empty"
        ]
    finally:
        executor.close()


def test_exhausted_retries_fail_with_the_reason(
    tmp_path: Path, fakes: Fakes, canary: str, daemons: list[Daemon]
) -> None:
    """A provider that keeps answering 503 fails the task after the retry budget, precisely."""
    fakes["openai"].script(Reply(503, openai_error("upstream overloaded", "server_error")))
    project = make_projects(tmp_path / "projects", 1)[0]
    drop(project, "busy.md", "are you there", preferred_ai="openai")
    daemon = _daemon(daemons, tmp_path, _settings(tmp_path, fakes, max_retries=2), _env(canary))
    _run(daemon, project, 1)
    assert daemon.stop() == 0
    footer = _footer(_results(project)["failed"][0])
    assert footer.error == (
        "delegation to provider 'openai' failed: gave up after 3 attempts: HTTP 503 from "
        "openai-compatible provider 'openai': upstream overloaded (server_error)"
    )
    assert dict(footer.details)["provider attempts"] == "3"
    assert len(fakes["openai"].requests) == 3


# -- secrets --------------------------------------------------------------------------------


@pytest.mark.slow
def test_secret_canary_appears_nowhere(tmp_path: Path, canary: str, daemons: list[Daemon]) -> None:
    """The API key (from 0600 files) never reaches done/, failed/, records, state, log, status."""
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
    found["openai"].script(echo)
    project = make_projects(tmp_path / "projects", 1)[0]
    for i in range(30):
        marker = " ECHO" if i < 6 else ""
        drop(project, f"s{i:02d}.md", f"secret test {i}{marker}", preferred_ai=PROVIDERS[i % 3])
    out = io.StringIO()
    for fake in found.values():
        fake.start()
    try:
        settings = _settings(tmp_path, found, key_files=key_files, timeout="0.3s")
        daemon = _daemon(daemons, tmp_path, settings, {})
        _run(daemon, project, 30, timeout=300)
        status = json.dumps(daemon.status())
        assert daemon.stop() == 0
        config = _config(tmp_path, settings)
        run_delegate(["get", "--provider", "jobs", "job-000001"], config, out, out, env={})
        run_delegate(["get", "--provider", "jobs", "job-999999"], config, out, out, env={})
    finally:
        for fake in found.values():
            fake.stop()
    results = _results(project)
    assert len(results["done"]) + len(results["failed"]) == 30
    assert results["failed"], "the echoing job errors should have failed some tasks"
    local = sorted(p.name for p in results["done"] if _footer(p).result == LOCAL_ANSWER)
    assert local == ["s01.md", "s04.md"], "the echoing 400s fall back to local"
    texts = {
        "files": "".join(
            p.read_text(errors="replace")
            for root in (_queue(project), tmp_path / "state")
            for p in root.rglob("*")
            if p.is_file()
        ),
        "log": daemon.log(),
        "status": status,
        "cli": out.getvalue(),
    }
    assert {k: canary in v for k, v in texts.items()} == dict.fromkeys(texts, False)
    assert any(canary in str(r.headers) for r in found["jobs"].requests), "the key was never sent"


# -- the command line ----------------------------------------------------------------------------


def test_cli_submit_get_result_decide(tmp_path: Path, fakes: Fakes, canary: str) -> None:
    """``agentq delegate`` submits idempotently, shows status and result, and routes."""
    config = _config(tmp_path, _settings(tmp_path, fakes))
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
    assert fakes["jobs"].jobs_created == 1
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
