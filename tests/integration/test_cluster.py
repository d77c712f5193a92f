"""The fleet against a real Temporal server: a submitting daemon and ``agentq worker`` hosts.

Every test gets task queues of its own (a random prefix), so the session's one server
serves them all. Hosts are subprocesses with their own state, HOME, tmux socket and
checkout of the project; heartbeats time out after 4 s so a lost host is noticed fast.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agentq.queue import taskfile
from tests.support.daemon import Daemon, drop, footer_count, inbox_left, make_projects, results
from tests.support.fleet import TemporalServer, WorkerHost, fleet_section, wait_started
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration

PROJECT = "proj00"


#: Runs ``agentq ARGS…`` as ``python -m agentq`` would and records, at exit, which
#: temporalio modules the process had imported.
_MODULES_PROBE = """
import atexit, json, os, runpy, sys

def report():
    names = sorted(m for m in sys.modules if m.split(".")[0] == "temporalio")
    with open(os.environ["MODULES_OUT"], "a") as out:
        out.write(json.dumps({"argv": sys.argv[1:3], "temporalio": names}) + "\\n")

atexit.register(report)
sys.argv = ["agentq", *sys.argv[1:]]
runpy.run_module("agentq", run_name="__main__", alter_sys=True)
"""


def test_without_a_cluster_section_nothing_imports_temporalio(tmp_path: Path) -> None:
    """agentq run (a task done), status, validate and the hook never load temporalio."""
    project = make_projects(tmp_path / "projects", 1)[0]
    drop(project, "plain.md", "runs on the instant executor")
    out = tmp_path / "modules.jsonl"
    daemon = Daemon(
        tmp_path,
        {"agent": {"profile": "instant"}, "projects": {"roots": [str(tmp_path / "projects")]}},
        env={"MODULES_OUT": str(out)},
    )
    env = daemon.env()

    def agentq(*args: str, wait: bool = True) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-c", _MODULES_PROBE, *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if wait:
            proc.wait(timeout=60)
        return proc

    run = agentq("run", "--config", str(daemon.config_path), wait=False)
    try:
        wait_until(lambda: "plain.md" in _done(project), 30, message="the task was not done")
    finally:
        run.terminate()
        assert run.wait(timeout=30) == 0
    agentq("status", "--config", str(daemon.config_path))
    agentq("validate", "--config", str(daemon.config_path))
    agentq("hook", "Stop", "--state-dir", str(daemon.state_dir))
    seen = [json.loads(line) for line in out.read_text().splitlines()]
    assert [s["argv"][0] for s in seen] == ["run", "status", "validate", "hook"]
    assert all(s["temporalio"] == [] for s in seen), seen


def _prefix() -> str:
    return f"t{secrets.token_hex(4)}"


def _submitter(root: Path, server: TemporalServer, prefix: str) -> tuple[Daemon, Path]:
    project = make_projects(root / "projects", 1)[0]
    config = {
        "projects": {"roots": [str(root / "projects")]},
        "dispatch": {"quiet_period": "0.1s", "rescan_interval": "2s"},
        "cluster": fleet_section(
            server.address, submit=True, host="submitter", task_queue_prefix=prefix
        ),
    }
    return Daemon(root, config), project


def _host(root: Path, name: str, server: TemporalServer, prefix: str, **config: Any) -> WorkerHost:
    cluster = fleet_section(server.address, host=name, task_queue_prefix=prefix)
    agent = {"profile": "sim", "env": {"AGENTQ_SIM_LOG": str(root / name / "prompts.jsonl")}}
    return WorkerHost(
        root / name, name, server.address, [PROJECT], {"cluster": cluster, "agent": agent, **config}
    )


def _footer(path: Path) -> taskfile.Footer:
    _, footer = taskfile.split_footer(path.read_text())
    assert footer is not None, path
    return footer


def _detail(footer: taskfile.Footer, key: str) -> str | None:
    return dict(footer.details).get(key)


def _done(project: Path) -> dict[str, Path]:
    return {p.name: p for p in results([project])["done"]}


def _workflows(server: TemporalServer, prefix: str) -> list[dict[str, Any]]:
    return server.workflows(f"TaskQueue = '{prefix}.{PROJECT}'")


def _listed(server: TemporalServer, prefix: str, at_least: int) -> list[dict[str, Any]]:
    """The test's workflows, once Temporal lists ``at_least`` (visibility lags a little)."""

    def enough() -> list[dict[str, Any]]:
        found = _workflows(server, prefix)
        return found if len(found) >= at_least else []

    try:
        return wait_until(enough, 20)
    except TimeoutError:
        return _workflows(server, prefix)  # fewer: the assertions say which


def _footer_workflows(project: Path) -> list[str]:
    """The workflow id each result's footer names (one per claim, all different)."""
    return [str(_detail(_footer(p), "workflow id")) for p in _done(project).values()]


def _prompts(root: Path, host: str) -> list[str]:
    path = root / host / "prompts.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["prompt"] for line in path.read_text().splitlines() if line]


@pytest.mark.slow
def test_a_host_lost_mid_run_hands_its_tasks_to_the_other_and_each_task_ends_once(
    tmp_path: Path, temporal_server: TemporalServer
) -> None:
    """40 tasks on h1 and h2; h1 SIGKILLed with its tmux server: all end once, cut ones on h2."""
    prefix = _prefix()
    submitter, project = _submitter(tmp_path / "submitter", temporal_server, prefix)
    h1, h2 = (_host(tmp_path, n, temporal_server, prefix) for n in ("h1", "h2"))
    names = [f"t{i:02d}.md" for i in range(40)]
    try:
        submitter.start()
        wait_started(submitter)
        for host in (h1, h2):
            host.start()
            wait_started(host)
        # Every fifth task works long enough to be surely cut when h1 is seen busy with it.
        long = {name for i, name in enumerate(names) if i % 5 == 4}
        for i, name in enumerate(names):
            drop(project, name, f"task {i}\nsim: work {'8s' if name in long else '2s'}")

        def h1_busy() -> list[str]:
            """h1's tasks, once some are done and one of its agents works on a long task."""
            state = h1.state()
            busy = [s.get("task") for s in state.get("sessions", []) if s.get("state") == "busy"]
            names_busy = {str(t).split("/")[1] for t in busy if t}
            cut_long = (names_busy & long) - set(_done(project))
            running = state.get("fleet", {}).get("running", [])
            return running if len(_done(project)) >= 6 and cut_long else []

        running_at_kill = set(wait_until(h1_busy, 180, interval=0.2, message="h1 never busy"))
        killed = time.monotonic()
        h1.kill()
        h1.kill_tmux()
        cut = {wid.split("/")[1] for wid in running_at_kill}
        unfinished = cut - set(_done(project))
        moved = {wid for wid in running_at_kill if wid.split("/")[1] in unfinished}

        def rescheduled(wid: str) -> bool:
            """Temporal scheduled the activity again (or the workflow is over already)."""
            described = json.loads(
                temporal_server.cli("workflow", "describe", "-w", wid, "-o", "json").stdout
            )
            pending = described.get("pendingActivities") or []
            return not pending or int(pending[0].get("attempt", 1)) >= 2

        wait_until(lambda: all(rescheduled(w) for w in moved), 60, interval=0.2, message="retry")
        detected = time.monotonic() - killed

        def rerun_on_h2() -> bool:
            running = set(h2.state().get("fleet", {}).get("running", []))
            return bool(moved & running) or unfinished <= set(_done(project))

        wait_until(rerun_on_h2, 120, interval=0.2, message="no cut task ran again on h2")
        rerun = time.monotonic() - killed
        wait_until(lambda: unfinished <= set(_done(project)), 120, interval=0.2, message="cut")
        recovered = time.monotonic() - killed
        wait_until(lambda: len(_done(project)) == len(names), 240, interval=0.5)
        wait_until(lambda: not inbox_left([project]), 30)
        workflows = _listed(temporal_server, prefix, len(names))
    finally:
        for daemon in (submitter, h1, h2):
            daemon.close()
    assert sorted(_done(project)) == names, "a task is missing or ended twice"
    assert results([project])["failed"] == []
    footers = {name: _footer(path) for name, path in _done(project).items()}
    assert all(footer_count(path) == 1 for path in _done(project).values())
    retried = {n for n, f in footers.items() if _detail(f, "retried")}
    on_h1_before = {n for n in cut if footers[n].target == "h1"}  # ended just before the kill
    assert retried, "no task was cut on h1"
    assert cut - on_h1_before <= retried
    for name in retried:
        assert footers[name].target == "h2"
        assert _detail(footers[name], "hosts") == "h1 → h2"
        assert footers[name].attempts == 2, "the run lost on h1 is not counted"
    assert {f.target for f in footers.values()} == {"h1", "h2"}
    assert {f.executor for f in footers.values()} == {"cluster"}
    assert all(_detail(f, "session") and f.account for f in footers.values())
    assert len(workflows) == len(names), "Temporal lists another number of workflows than tasks"
    assert unfinished <= retried
    print(
        f"\nhost loss: {len(retried)} task(s) cut on h1; retry scheduled {detected:.1f}s, "
        f"running again on h2 {rerun:.1f}s and done {recovered:.1f}s after the kill"
    )


@pytest.mark.slow
def test_the_submitter_killed_mid_run_reattaches_without_a_second_workflow_or_footer(
    tmp_path: Path, temporal_server: TemporalServer
) -> None:
    """SIGKILL the submitting daemon with tasks on the fleet: one workflow and one run per claim."""
    prefix = _prefix()
    submitter, project = _submitter(tmp_path / "submitter", temporal_server, prefix)
    h1 = _host(tmp_path, "h1", temporal_server, prefix)
    names = [f"r{i:02d}.md" for i in range(12)]
    try:
        h1.start()
        wait_started(h1)
        submitter.start()
        wait_started(submitter)
        drop(project, "again.md", "first of two claims of one name\nsim: work 0.2s")
        wait_until(lambda: "again.md" in _done(project), 60, message="again.md")
        drop(project, "again.md", "second of two claims of one name\nsim: work 0.2s")
        for i, name in enumerate(names):
            drop(project, name, f"task {i}\nsim: work 1s")
        inbox = project / ".agent-queue" / "inbox"
        wait_until(lambda: len(list(inbox.glob("*.md.delegated"))) >= 4, 60, interval=0.1)
        submitter.kill()
        in_flight = sorted(p.name for p in inbox.glob("*.md.delegated"))
        submitter.start()
        wait_started(submitter)
        expected = [*names, "again.1.md", "again.md"]
        wait_until(lambda: sorted(_done(project)) == sorted(expected), 180, interval=0.5)
        workflows = _listed(temporal_server, prefix, len(expected))
    finally:
        submitter.close()
        h1.close()
    assert in_flight, "nothing was in flight when the submitter died"
    assert results([project])["failed"] == []
    assert all(footer_count(path) == 1 for path in _done(project).values())
    in_footers = _footer_workflows(project)
    assert len(set(in_footers)) == len(in_footers), "two claims share a workflow"
    ids = [w["execution"]["workflowId"] for w in workflows]
    assert len(ids) == len(set(ids)) == len(expected), ids
    prompts = _prompts(tmp_path, "h1")
    for name in names:
        assert sum(f"[agentq task {name} " in p for p in prompts) == 1, name
    assert sum("[agentq task again.md " in p for p in prompts) == 2, "a claim did not run"
    for path in _done(project).values():
        footer = _footer(path)
        assert _detail(footer, "workflow id") == f"{PROJECT}/{path.name.split('.')[0]}.md/" + str(
            footer.claim_id
        )


@pytest.mark.slow
@pytest.mark.parametrize(
    "crash_at",
    ["after_intent:3", "after_submit_before_marker:3", "mid_reap:2"],
    ids=[
        "killed after the intent, before the workflow started",
        "killed after the workflow started, before the marker",
        "killed with the report in hand, before the footer",
    ],
)
def test_a_submitter_crash_at_each_step_of_a_handover_makes_one_workflow_per_claim(
    tmp_path: Path, temporal_server: TemporalServer, crash_at: str
) -> None:
    """A crash point on the way to the fleet, a restart: every claim one workflow, one run."""
    prefix = _prefix()
    submitter, project = _submitter(tmp_path / "submitter", temporal_server, prefix)
    h1 = _host(tmp_path, "h1", temporal_server, prefix, agent={"profile": "instant"})
    names = [f"c{i:02d}.md" for i in range(8)]
    try:
        h1.start()
        wait_started(h1)
        submitter.start(crash_at=crash_at)
        wait_started(submitter)
        for name in names:
            drop(project, name, f"task {name}")
        assert submitter.wait_exit(60) == 137, "the crash point was not reached"
        submitter.start()
        wait_started(submitter)
        wait_until(lambda: sorted(_done(project)) == names, 120, interval=0.3)
        workflows = _listed(temporal_server, prefix, len(names))
    finally:
        submitter.close()
        h1.close()
    assert results([project])["failed"] == []
    assert all(footer_count(path) == 1 for path in _done(project).values())
    ids = [w["execution"]["workflowId"] for w in workflows]
    assert sorted(ids) == sorted(_footer_workflows(project)), "another workflow than the claims'"
    assert len(ids) == len(set(ids)) == len(names), ids
    ledger = h1.state_dir / "instant-ledger.jsonl"
    runs = [json.loads(line) for line in ledger.read_text().splitlines()]
    claims = [(r["task"], r["claim"]) for r in runs]
    assert len(claims) == len(set(claims)) == len(names), claims


@pytest.mark.slow
def test_a_host_whose_accounts_are_exhausted_takes_nothing_until_its_reset(
    tmp_path: Path, temporal_server: TemporalServer
) -> None:
    """h1 hits its only account's limit: it holds, h2 takes every other task; h1 resumes later."""
    prefix = _prefix()
    submitter, project = _submitter(tmp_path / "submitter", temporal_server, prefix)
    home = tmp_path / "h1" / "claude-a"
    home.mkdir(parents=True)
    # The limit lifts after 30 s; unparsed ("soon"), the hold lasts default_exhausted.
    lifts = int(time.time()) + 30
    (home / "sim-quota").write_text(f"{lifts} resets soon")
    h1 = _host(
        tmp_path,
        "h1",
        temporal_server,
        prefix,
        accounts=[{"name": "a", "home": str(home)}],
        quota={"confirm_polls": 1, "default_exhausted": "45s", "cooldown": "1s"},
    )
    h2 = _host(tmp_path, "h2", temporal_server, prefix)
    names = [f"e{i:02d}.md" for i in range(10)]
    try:
        submitter.start()
        wait_started(submitter)
        h1.start()
        wait_started(h1)
        drop(project, "probe.md", "the first task meets the limit\nsim: work 0.5s")
        wait_until(
            lambda: h1.state().get("fleet", {}).get("held_until"), 60, message="h1 never held"
        )
        h2.start()
        wait_started(h2)
        for i, name in enumerate(names):
            drop(project, name, f"task {i}\nsim: work 0.5s")
        wait_until(lambda: set(names) <= set(_done(project)), 120, interval=0.5)
        wait_until(lambda: "probe.md" in _done(project), 120, interval=0.5, message="probe")
        h1_fleet = h1.state().get("fleet", {})
    finally:
        for daemon in (submitter, h1, h2):
            daemon.close()
    footers = {name: _footer(path) for name, path in _done(project).items()}
    assert {footers[n].target for n in names} == {"h2"}
    assert footers["probe.md"].target == "h1"
    assert results([project])["failed"] == []
    assert h1_fleet.get("accepted") == 1, h1_fleet  # only the probe ran on h1
    print(
        f"\nheld host: accepted {h1_fleet.get('accepted')}, handed back unrun "
        f"{h1_fleet.get('handed_back')}; h2 ran all {len(names)} others"
    )
    assert not [p for p in _prompts(tmp_path, "h1") if "[agentq task e" in p]


@pytest.mark.slow
def test_a_cancelled_workflow_interrupts_the_agent_and_fails_the_task(
    tmp_path: Path, temporal_server: TemporalServer
) -> None:
    """Temporal cancels a running task's workflow: the agent is interrupted, failed "cancelled"."""
    prefix = _prefix()
    submitter, project = _submitter(tmp_path / "submitter", temporal_server, prefix)
    h1 = _host(tmp_path, "h1", temporal_server, prefix)
    try:
        submitter.start()
        wait_started(submitter)
        h1.start()
        wait_started(h1)
        drop(project, "long.md", "never ends by itself\nsim: hang")
        wid = wait_until(lambda: h1.state().get("fleet", {}).get("running"), 60)[0]
        wait_until(lambda: h1.state().get("sessions") and _busy(h1), 30)
        temporal_server.cli("workflow", "cancel", "--workflow-id", wid)
        failed = wait_until(lambda: results([project])["failed"], 60, message="not failed")
    finally:
        submitter.close()
        h1.close()
    footer = _footer(failed[0])
    assert footer.error is not None and "cancelled" in footer.error
    assert footer.target == "h1"
    assert _detail(footer, "session")


def _busy(host: WorkerHost) -> bool:
    return any(s.get("state") == "busy" for s in host.state().get("sessions", []))


@pytest.mark.slow
def test_tasks_stay_delegated_while_temporal_is_away_and_resume_when_it_returns(
    tmp_path: Path,
) -> None:
    """Temporal stopped mid-run (tasks dropped meanwhile), started again: every task ends once."""
    server = TemporalServer(tmp_path / "temporal")
    server.start()
    prefix = _prefix()
    submitter, project = _submitter(tmp_path / "submitter", server, prefix)
    h1 = _host(tmp_path, "h1", server, prefix)
    before = [f"b{i}.md" for i in range(4)]
    during = [f"d{i}.md" for i in range(3)]
    try:
        submitter.start()
        wait_started(submitter)
        h1.start()
        wait_started(h1)
        for name in before:
            drop(project, name, f"{name}\nsim: work 1s")
        wait_until(lambda: _done(project), 60, interval=0.2, message="nothing done before")
        server.stop()
        for name in during:
            drop(project, name, f"{name}\nsim: work 0.5s")
        inbox = project / ".agent-queue" / "inbox"

        def waiting() -> set[str]:
            claimed = {p.name.rsplit(".", 1)[0] for p in inbox.glob("*.md.*")}
            return claimed if set(during) <= claimed else set()

        wait_until(waiting, 30, message="the new tasks were not claimed")
        assert h1.proc is not None and h1.proc.poll() is None, "the worker gave up"
        server.start()
        everything = sorted(before + during)
        wait_until(lambda: sorted(_done(project)) == everything, 180, interval=0.5)
        workflows = _listed(server, prefix, len(everything))
    finally:
        submitter.close()
        h1.close()
        server.stop()
    assert results([project])["failed"] == []
    assert all(footer_count(path) == 1 for path in _done(project).values())
    ids = [w["execution"]["workflowId"] for w in workflows]
    assert sorted(ids) == sorted(_footer_workflows(project))


@pytest.mark.slow
def test_a_stopped_worker_hands_its_running_task_back_to_the_fleet(
    tmp_path: Path, temporal_server: TemporalServer
) -> None:
    """SIGTERM on a busy worker: it exits 0, its agent interrupted; the task then ends on h2."""
    prefix = _prefix()
    submitter, project = _submitter(tmp_path / "submitter", temporal_server, prefix)
    h1, h2 = (_host(tmp_path, n, temporal_server, prefix) for n in ("h1", "h2"))
    try:
        submitter.start()
        wait_started(submitter)
        h1.start()
        wait_started(h1)
        drop(project, "moved.md", "started on h1, finished elsewhere\nsim: work 8s")
        wait_until(lambda: _busy(h1), 60, message="h1 never busy")
        assert h1.stop(timeout=60) == 0
        h2.start()
        wait_started(h2)
        done = wait_until(lambda: _done(project).get("moved.md"), 120, message="never done")
    finally:
        for daemon in (submitter, h1, h2):
            daemon.close()
    footer = _footer(done)
    assert footer.target == "h2"
    assert _detail(footer, "hosts") == "h1 → h2"
    assert results([project])["failed"] == []
    assert "fleet task interrupted" in h1.log()
    status = subprocess.run(
        [sys.executable, "-m", "agentq", "status", "--config", str(h1.config_path)],
        env=h1.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "fleet: " in status and "host=h1" in status and "accepted=1" in status, status
