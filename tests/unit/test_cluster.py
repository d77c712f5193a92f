"""The fleet's pure parts and the submitting executor against a fake workflow engine."""

from __future__ import annotations

from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agentq.cluster.bridge import Bridge, MessageKind, Ticket
from agentq.cluster.messages import (
    Progress,
    TaskReport,
    TaskSpec,
    exhausted_runs,
    parse_workflow_id,
    previous_progress,
    report_details,
    task_queue,
    workflow_id,
)
from agentq.cluster.submitter import ClusterExecutor, FleetSettings
from agentq.config.load import config_from_dict
from agentq.core.errors import ClusterError, ConfigError
from agentq.queue import protocol as q
from agentq.queue import taskfile
from agentq.queue.jobs import Job, OutcomeStatus, RecoveryKind
from agentq.queue.marker import read_info
from agentq.queue.router import RouteDecision

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _spec(max_runs: int = 3) -> TaskSpec:
    return TaskSpec("web", "fix.md", "c0ffee", 1, "fix it\n", "sub", max_runs, 30.0)


# -- messages ---------------------------------------------------------------------------


def test_a_workflow_id_names_project_task_and_claim() -> None:
    """The id is <project>/<name>/<claim id> and reads back; the queue is <prefix>.<project>."""
    wid = workflow_id("web", "fix.md", "c0ffee")
    assert wid == "web/fix.md/c0ffee"
    assert parse_workflow_id(wid) == ("web", "fix.md", "c0ffee")
    assert parse_workflow_id("web/fix.md") is None
    assert task_queue("agentq", "web") == "agentq.web"


def test_the_runs_before_come_from_the_last_heartbeat() -> None:
    """A first attempt has no runs; a retry reads the hosts of the previous heartbeat."""
    assert previous_progress([]).runs == 0
    before = previous_progress([{"hosts": ["h1"], "phase": "working"}])
    assert before.hosts == ["h1"] and before.runs == 1
    assert previous_progress(["garbage"]).runs == 0


def test_a_claim_started_max_runs_times_fails_instead_of_running_again() -> None:
    """Past max_runs the activity reports a failure naming the hosts that were lost."""
    spec = _spec(max_runs=2)
    assert exhausted_runs(spec, Progress(hosts=["h1"]), "h2") is None
    report = exhausted_runs(spec, Progress(hosts=["h1", "h2"]), "h3")
    assert report is not None and report.status == "failed"
    assert report.error is not None and "h1, h2" in report.error


@pytest.mark.parametrize(
    ("hosts", "retried"),
    [(["h2"], False), (["h1", "h2"], True)],
    ids=["a task run on one host names no retry", "a task cut on h1 names both hosts"],
)
def test_the_footer_rows_tell_where_a_task_ran(hosts: list[str], retried: bool) -> None:
    """Session, the hosts before a retry, the workflow id, then the host executor's rows."""
    report = TaskReport(
        "done", "h2", hosts=hosts, session="h2-0", details=[["completed by", "Stop hook"]]
    )
    rows = dict(report_details(report, "web/fix.md/c0ffee"))
    assert rows["session"] == "h2-0"
    assert rows["workflow id"] == "web/fix.md/c0ffee"
    assert rows["completed by"] == "Stop hook"
    assert ("retried" in rows) is retried
    if retried:
        assert rows["hosts"] == "h1 → h2"


# -- the bridge -------------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_poll_permits_follow_the_pools_free_room() -> None:
    """Permits only while reserved - started < free; a held pool (free 0) gives none."""
    bridge = Bridge(lambda: None, stale_after=5.0)
    assert not bridge.try_reserve(), "nothing published yet: no room"
    bridge.publish(free=2, started=0, progress={}, held_until=None)
    assert bridge.try_reserve() and bridge.try_reserve()
    assert not bridge.try_reserve()
    bridge.publish(free=1, started=1, progress={}, held_until=None)  # one activity started
    assert not bridge.try_reserve()
    bridge.release()  # the started activity ended and gave its permit back
    bridge.publish(free=2, started=0, progress={}, held_until=None)
    assert bridge.try_reserve()
    bridge.release()
    bridge.release()
    bridge.publish(free=0, started=0, progress={}, held_until="2026-11-30T15:00:00+00:00")
    assert not bridge.try_reserve()
    assert bridge.held_until() == "2026-11-30T15:00:00+00:00"


def test_heartbeats_stop_when_the_loop_stops_publishing() -> None:
    """A wedged main loop stops the heartbeat, so Temporal moves the task elsewhere."""
    clock = _Clock()
    woken: list[int] = []
    bridge = Bridge(lambda: woken.append(1), stale_after=5.0, clock=clock)
    ticket = Ticket(_spec(), "web/fix.md/c0ffee", "h1", Progress())
    bridge.submit(ticket)
    bridge.cancel(ticket, handback=True)
    kinds = [(m.kind, m.handback) for m in bridge.take()]
    assert kinds == [(MessageKind.START, False), (MessageKind.CANCEL, True)]
    assert len(woken) == 2 and bridge.take() == []
    progress = {"web/fix.md/c0ffee": Progress(hosts=["h1"], phase="working", session="h1-0")}
    bridge.publish(free=0, started=1, progress=progress, held_until=None)
    seen = bridge.progress("web/fix.md/c0ffee")
    assert seen is not None and seen.session == "h1-0"
    clock.now += 6.0
    assert bridge.progress("web/fix.md/c0ffee") is None


# -- the submitting executor ----------------------------------------------------------------


class _Fleet:
    """A fake engine: records calls; the test resolves the futures."""

    def __init__(self, project: q.Project) -> None:
        self.project = project
        self.starts: list[tuple[str, str, str | None]] = []
        self.waits: dict[str, Future[TaskReport]] = {}
        self.started: dict[str, Future[None]] = {}
        self.cancelled: list[str] = []

    def start_workflow(self, spec: TaskSpec, workflow_id: str, task_queue: str) -> Future[None]:
        record = self.project.load_record(spec.name)
        intent = record.delegation if record is not None else None
        self.starts.append((workflow_id, task_queue, intent.phase.value if intent else None))
        self.started[workflow_id] = Future()
        return self.started[workflow_id]

    def result(self, workflow_id: str) -> Future[TaskReport]:
        self.waits[workflow_id] = Future()
        return self.waits[workflow_id]

    def cancel(self, workflow_id: str) -> Future[None]:
        self.cancelled.append(workflow_id)
        done: Future[None] = Future()
        done.set_result(None)
        return done

    def close(self) -> None:
        pass


def _claimed(tmp_path: Path, name: str = "fix.md") -> tuple[q.Project, Job]:
    (tmp_path / "web").mkdir()
    project = q.Project(tmp_path / "web")
    project.ensure_dirs()
    (project.inbox / name).write_text("---\ntitle: Fix\n---\nfix it\n")
    claim = project.claim(name)
    assert claim is not None
    project.begin_attempt(claim, "", NOW.isoformat())
    task = taskfile.parse_task(project.read_claimed(claim), name)
    return project, Job(claim, task, RouteDecision("local", None, "default"), NOW)


def _executor(fleet: _Fleet, max_in_flight: int = 4) -> ClusterExecutor:
    settings = FleetSettings("sub", "agentq", 30.0, max_in_flight=max_in_flight)
    return ClusterExecutor(fleet, settings, utcnow=lambda: NOW)


def test_the_intent_is_on_disk_before_the_workflow_starts_and_the_marker_after(
    tmp_path: Path,
) -> None:
    """Intent, then start, then the .delegated marker naming the workflow, then the report."""
    project, job = _claimed(tmp_path)
    fleet = _Fleet(project)
    executor = _executor(fleet)
    executor.start(job)
    wid = f"web/fix.md/{job.claim.record.claim_id}"
    assert [(w, tq) for w, tq, _ in fleet.starts] == [(wid, "agentq.web")]
    assert fleet.starts[0][2] == "intent", "the intent was not on disk before the start"
    assert executor.capacity() == 3
    fleet.started[wid].set_result(None)
    assert executor.poll(NOW) == []
    marker = project.inbox / "fix.md.delegated"
    info = read_info(taskfile.parse_task(marker.read_bytes(), "fix.md").meta.model_extra)
    assert info is not None and (info.provider, info.job_id) == ("cluster", wid)
    assert not (project.inbox / "fix.md.working").exists()
    fleet.waits[wid].set_result(
        TaskReport("done", "h2", hosts=["h1", "h2"], result="fixed", session="h2-0", account="a")
    )
    (outcome,) = executor.poll(NOW)
    assert outcome.status is OutcomeStatus.DONE
    assert (outcome.target, outcome.account, outcome.result) == ("h2", "a", "fixed")
    assert dict(outcome.details)["hosts"] == "h1 → h2"
    assert outcome.job.claim.record.attempts == 2, "the lost run on h1 counts as an attempt"
    assert outcome.job.claim.suffix == ".delegated"
    assert executor.capacity() == 4


def test_a_restart_recomputes_the_same_workflow_id_from_the_claim(tmp_path: Path) -> None:
    """Adopting after a restart starts the same id again (idempotent), never a new one."""
    project, job = _claimed(tmp_path)
    first = _Fleet(project)
    executor = _executor(first)
    executor.start(job)
    wid = first.starts[0][0]
    record = project.load_record("fix.md")
    assert record is not None
    claim = q.Claim(project, "fix.md", record)
    assert executor.recover(claim, job.task, NOW).kind is RecoveryKind.ADOPT
    again = _Fleet(project)
    _executor(again).adopt(Job(claim, job.task, job.route, NOW))
    assert [w for w, _, _ in again.starts] == [wid]


def test_a_claim_with_no_intent_is_requeued_and_a_finished_one_only_loses_its_marker(
    tmp_path: Path,
) -> None:
    """Nothing handed over: requeue. A result already in done/: drop the claim, no start."""
    project, job = _claimed(tmp_path)
    fleet = _Fleet(project)
    executor = _executor(fleet)
    decision = executor.recover(job.claim, job.task, NOW)
    assert decision.kind is RecoveryKind.REQUEUE
    footer = taskfile.Footer(status="done", executor="cluster", claim_id=job.claim.record.claim_id)
    (project.done / "fix.md").write_bytes(b"fix it\n" + taskfile.footer_bytes(footer))
    executor.adopt(job)
    assert fleet.starts == []
    assert not job.claim.path.exists()


def test_an_engine_refusal_fails_the_task_and_cancel_reaches_the_workflow(
    tmp_path: Path,
) -> None:
    """A terminal engine error fails the task with its reason; cancel asks the engine."""
    project, job = _claimed(tmp_path)
    fleet = _Fleet(project)
    executor = _executor(fleet)
    executor.start(job)
    wid = fleet.starts[0][0]
    assert executor.cancel("web/fix.md") and fleet.cancelled == [wid]
    assert not executor.cancel("web/other.md")
    fleet.started[wid].set_exception(ClusterError("namespace not found", terminal=True))
    (outcome,) = executor.poll(NOW)
    assert outcome.status is OutcomeStatus.FAILED
    assert outcome.error == "namespace not found"


# -- configuration ------------------------------------------------------------------------


def test_without_a_cluster_section_there_is_no_fleet(tmp_path: Path) -> None:
    """No cluster: key means None; an empty mapping means the defaults."""
    env = {"HOME": str(tmp_path)}
    assert config_from_dict({}, env, tmp_path).cluster is None
    cluster = config_from_dict({"cluster": {}}, env, tmp_path).cluster
    assert cluster is not None
    assert (cluster.address, cluster.namespace, cluster.submit) == (
        "127.0.0.1:7233",
        "default",
        False,
    )
    assert (cluster.heartbeat_timeout, cluster.task_queue_prefix, cluster.tls) == (
        30.0,
        "agentq",
        None,
    )


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ({"address": "temporal"}, "cluster.address"),
        ({"tls": {"cert_file": "c.pem"}}, "cluster.tls.key_file"),
        ({"engine": "kafka"}, "cluster.engine"),
        ({"heartbeat_timeout": "0s"}, "cluster.heartbeat_timeout"),
        ({"task_queue_prefix": "a b"}, "cluster.task_queue_prefix"),
    ],
    ids=[
        "an address needs a port",
        "a client certificate needs its key",
        "temporal is the only engine",
        "a heartbeat timeout of zero is refused",
        "a queue prefix is a plain name",
    ],
)
def test_a_bad_cluster_section_is_refused_naming_the_key(
    tmp_path: Path, section: dict[str, object], problem: str
) -> None:
    """Each problem names its key."""
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"cluster": section}, {"HOME": str(tmp_path)}, tmp_path)
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


def test_the_documented_cluster_example_is_valid(tmp_path: Path) -> None:
    """The commented cluster: block of config.yaml loads once uncommented."""
    import yaml

    text = (Path(__file__).resolve().parents[2] / "config.yaml").read_text()
    block = text[text.index("# cluster:") :]
    lines = [line[2:] for line in block.splitlines() if line.startswith("# ")]
    section = yaml.safe_load("\n".join(lines))
    config = config_from_dict(section, {"HOME": str(tmp_path)}, tmp_path)
    assert config.cluster is not None and config.cluster.tls is not None
    assert config.cluster.tls.cert_file == tmp_path / ".config/agentq/temporal-client.pem"


def test_tls_files_and_the_api_key_file_are_read_and_the_key_never_shown(tmp_path: Path) -> None:
    """mTLS material is read at start; the key comes from a 0600 file and stays out of repr."""
    from agentq.cluster.temporal import connection_from_config

    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_bytes(f"-----{name}-----\n".encode())
    key = tmp_path / "temporal.key"
    key.write_text("tmprl-key-0123456789abcdef\n")
    key.chmod(0o600)
    section = {
        "address": "ns.acct.example:7233",
        "tls": {"ca_file": "ca.pem", "cert_file": "client.pem", "key_file": "client.key"},
        "api_key_file": str(key),
    }
    config = config_from_dict({"cluster": section}, {"HOME": str(tmp_path)}, tmp_path)
    assert config.cluster is not None
    connection = connection_from_config(config.cluster, {}, "h1")
    assert connection.tls is not None
    assert connection.tls.client_cert == b"-----client.pem-----\n"
    assert connection.api_key == "tmprl-key-0123456789abcdef"
    assert "tmprl-key" not in repr(connection)
    key.chmod(0o644)
    with pytest.raises(ConfigError):
        connection_from_config(config.cluster, {}, "h1")


def test_validate_names_what_keeps_the_fleet_from_working(tmp_path: Path) -> None:
    """Missing TLS files and an unsafe API key file are reported, each with its key."""
    from agentq.daemon.wiring import cluster_problems

    key = tmp_path / "temporal.key"
    key.write_text("tmprl-key-0123456789abcdef\n")
    key.chmod(0o644)
    section = {"tls": {"ca_file": "missing-ca.pem"}, "api_key_file": str(key)}
    config = config_from_dict({"cluster": section}, {"HOME": str(tmp_path)}, tmp_path)
    problems = cluster_problems(config, {})
    assert [p.split(":")[0] for p in problems] == ["cluster.tls", "cluster.api_key_file"]
    assert cluster_problems(config_from_dict({}, {"HOME": str(tmp_path)}, tmp_path), {}) == []


def test_without_the_extra_a_worker_and_validate_say_what_to_install(tmp_path: Path) -> None:
    """temporalio missing: agentq worker exits 2 and validate reports the extra to install."""
    import subprocess
    import sys

    (tmp_path / "checkouts" / "web").mkdir(parents=True)
    config = tmp_path / "config.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"projects: {{roots: [{tmp_path / 'checkouts'}]}}\n"
        "agent: {profile: instant}\n"
        "cluster: {address: '127.0.0.1:1'}\n"
    )
    blocked = "import sys; sys.modules['temporalio'] = None; from agentq.cli.main import main; "
    for command in ("worker", "validate"):
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                blocked + f"sys.exit(main(['{command}', '--config', '{config}']))",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert "pip install 'agentq[cluster]'" in done.stderr, done.stderr
