"""The janitor on real folders: archives tar can read, SIGKILL at every step, dry runs, sweeps."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from agentq.core.crashpoints import POINTS
from agentq.core.lock import InstanceLock
from tests.support.daemon import Daemon, drop, make_projects, wait_until

pytestmark = pytest.mark.integration

DAY = 86400


def write_config(root: Path, **janitor: object) -> Path:
    """A config serving every project under ``root/projects``."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "config.yaml"
    config = {
        "state_dir": str(root / "state"),
        "projects": {"roots": [str(root / "projects")]},
        "agent": {"profile": "instant"},
        "janitor": janitor,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def janitor(
    config: Path, *args: str, crash_at: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``agentq janitor`` as a subprocess (optionally armed to die at a crash point)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTQ_", "TMUX"))}
    env["HOME"] = str(config.parent / "home")
    if crash_at:
        env["AGENTQ_CRASH_AT"] = crash_at
    return subprocess.run(
        [sys.executable, "-m", "agentq", "janitor", "--config", str(config), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def summary(out: subprocess.CompletedProcess[str]) -> dict[str, int]:
    """The counts of the command's last line: ``janitor: 3 archived, 0 removed, …``."""
    last = out.stdout.strip().splitlines()[-1]
    return {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", last)}


def age(path: Path, days: float, plus_seconds: int = 0) -> None:
    """Set a file's mtime ``days`` back (plus a few seconds, to keep files apart)."""
    when = time.time_ns() - int(days * DAY * 1e9) + plus_seconds * 1_000_000_000
    os.utime(path, ns=(when, when), follow_symlinks=False)


def aged_results(folder: Path, count: int, days: float, prefix: str = "task") -> dict[str, bytes]:
    """Write ``count`` distinct result files aged ``days``; returns name → bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for i in range(count):
        name = f"{prefix}-{i:04d}.md"
        body = f"# {prefix} {i}\n\ndo thing {i}\n\n---\nagentq result: done\nclaim: {i:08x}\n"
        (folder / name).write_bytes(body.encode())
        age(folder / name, days, i)
        written[name] = body.encode()
    return written


def snapshot(*roots: Path) -> dict[str, tuple[str, int, int, str]]:
    """Every entry under ``roots``: kind, size, mtime and content hash (links not followed)."""
    found = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            st = path.lstat()
            kind = "dir" if path.is_dir() and not path.is_symlink() else "file"
            if path.is_symlink():
                kind = "link"
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if kind == "file" else ""
            found[str(path)] = (kind, st.st_size, st.st_mtime_ns, digest)
    return found


def archive_members(archive_dir: Path, scratch: Path) -> list[tuple[str, str, bytes]]:
    """(archive, member, bytes) for every member, listed and extracted by the real ``tar``."""
    members = []
    for archive in sorted(archive_dir.glob("*.tar.gz")):
        listed = subprocess.run(["tar", "-tzf", str(archive)], capture_output=True, text=True)
        assert listed.returncode == 0 and listed.stderr == "", listed.stderr
        names = listed.stdout.splitlines()
        assert len(names) == len(set(names)), f"{archive.name} repeats a member name"
        out = scratch / archive.name
        out.mkdir(parents=True)
        subprocess.run(["tar", "-xzf", str(archive), "-C", str(out)], check=True)
        members += [(archive.name, n, (out / n).read_bytes()) for n in names]
    return members


def assert_each_original_archived_once(
    originals: dict[str, bytes], queue: Path, scratch: Path
) -> None:
    """Every original is in exactly one archive, byte for byte, and nowhere else."""
    members = archive_members(queue / "archive", scratch)
    by_content = Counter(data for _, _, data in members)
    missing = [n for n, data in originals.items() if by_content[data] == 0]
    twice = [n for n, data in originals.items() if by_content[data] > 1]
    assert missing == [], f"{len(missing)} files lost, e.g. {missing[:3]}"
    assert twice == [], f"{len(twice)} files archived twice, e.g. {twice[:3]}"
    assert sorted(n for _, n, _ in members) == sorted(originals)
    assert [p.name for p in (queue / "done").iterdir()] == []
    assert [p.name for p in (queue / "archive").iterdir() if not p.name.endswith(".tar.gz")] == []


@pytest.fixture
def queue(tmp_path: Path) -> Path:
    """The queue folder of one project under ``tmp_path/projects``."""
    q = tmp_path / "projects" / "p1" / ".agent-queue"
    for sub in ("inbox", "tmp", "done", "failed"):
        (q / sub).mkdir(parents=True)
    return q


# -- crash safety --------------------------------------------------------------------------

CRASHES = [
    ("janitor_mid_archive:1", {"archived": 1000, "removed": 0}),
    ("janitor_mid_archive:600", {"archived": 1000, "removed": 0}),
    ("janitor_before_rename", {"archived": 1000, "removed": 0}),
    ("janitor_after_archive", {"archived": 0, "removed": 1000}),
    ("janitor_mid_remove:1", {"archived": 0, "removed": 999}),
    ("janitor_mid_remove:437", {"archived": 0, "removed": 563}),
    ("janitor_mid_remove:1000", {"archived": 0, "removed": 0}),
]


def test_the_crash_points_used_here_are_offered_by_the_code() -> None:
    """Every janitor crash point the tests arm exists in the code base's list."""
    assert {c.partition(":")[0] for c, _ in CRASHES} <= set(POINTS)


@pytest.mark.parametrize(
    ("crash_at", "rerun"), CRASHES, ids=[c.replace(":", " hit ") for c, _ in CRASHES]
)
def test_sigkill_at_a_janitor_step_then_a_rerun_archives_each_file_exactly_once(
    tmp_path: Path, queue: Path, crash_at: str, rerun: dict[str, int]
) -> None:
    """1,000 files 40 days old; killed at one step; one re-run finishes: none lost, none twice."""
    config = write_config(tmp_path)
    originals = aged_results(queue / "done", 1000, 40)
    killed = janitor(config, crash_at=crash_at)
    assert killed.returncode == 137, killed.stderr
    again = janitor(config)
    assert again.returncode == 0, again.stderr
    assert_each_original_archived_once(originals, queue, tmp_path / "x")
    counts = summary(again)
    assert {k: counts[k] for k in rerun} == rerun
    assert summary(janitor(config))["archived"] == summary(janitor(config))["removed"] == 0


@pytest.mark.parametrize(
    "crash_at",
    [
        "janitor_mid_archive:200",
        "janitor_mid_archive:700",
        "janitor_before_rename",
        "janitor_mid_remove:250",
    ],
    ids=["copying old members", "adding new files", "before rename", "mid remove"],
)
def test_sigkill_while_an_archive_grows_keeps_its_old_members_and_archives_nothing_twice(
    tmp_path: Path, queue: Path, crash_at: str
) -> None:
    """A month's archive rewritten with more files: the old one stands until the rename."""
    config = write_config(tmp_path)
    first = aged_results(queue / "done", 400, 45, "early")
    assert janitor(config).returncode == 0
    (archive,) = (queue / "archive").iterdir()
    before = archive.read_bytes()
    later = aged_results(queue / "done", 600, 45, "late")
    killed = janitor(config, crash_at=crash_at)
    assert killed.returncode == 137
    if crash_at != "janitor_mid_remove:250":
        assert archive.read_bytes() == before, "the finished archive was changed in place"
    assert janitor(config).returncode == 0
    assert [p.name for p in (queue / "archive").iterdir()] == [archive.name]
    assert_each_original_archived_once({**first, **later}, queue, tmp_path / "x")


def _start_and_wait_for_work(config: Path, queue: Path) -> tuple[subprocess.Popen[bytes], float]:
    """Start ``agentq janitor``; return it once its work shows (``archive/``), and when."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTQ_", "TMUX"))}
    env["HOME"] = str(config.parent / "home")
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentq", "janitor", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until(lambda: (queue / "archive").exists() or proc.poll() is not None, 60, 0.002)
    return proc, time.monotonic()


@pytest.mark.slow
def test_sigkill_at_random_moments_of_a_pass_then_a_rerun_loses_nothing(tmp_path: Path) -> None:
    """Killed at a random moment of its work (not at a named point), five times over."""
    trial = tmp_path / "trial"
    aged_results(trial / "projects/p1/.agent-queue/done", 1000, 40)
    proc, began = _start_and_wait_for_work(write_config(trial), trial / "projects/p1/.agent-queue")
    assert proc.wait(timeout=120) == 0
    work = time.monotonic() - began  # how long a pass works once it has begun
    rng = random.Random(20261201)
    for fraction in (0.1, 0.3, 0.5, 0.7, 0.9):
        root = tmp_path / f"kill-{fraction}"
        config = write_config(root)
        queue = root / "projects/p1/.agent-queue"
        originals = aged_results(queue / "done", 1000, 40)
        proc, began = _start_and_wait_for_work(config, queue)
        delay = work * rng.uniform(fraction - 0.1, fraction + 0.1)
        while time.monotonic() - began < delay and proc.poll() is None:
            time.sleep(0.001)  # the chosen moment, not a wait for a condition
        proc.kill()
        proc.wait(timeout=60)
        assert janitor(config).returncode == 0
        assert_each_original_archived_once(originals, queue, root / "x")


# -- what a pass does ----------------------------------------------------------------------


def test_a_pass_keeps_young_files_and_uses_each_folders_keep_age(
    tmp_path: Path, queue: Path
) -> None:
    """done/ after keep_done, failed/ after keep_failed; a file just younger than keep stays."""
    config = write_config(tmp_path, keep_done="30d", keep_failed="90d")
    old_done = aged_results(queue / "done", 3, 31, "old")
    young = aged_results(queue / "done", 2, 29.99, "young")
    failed_kept = aged_results(queue / "failed", 2, 60, "failed-young")
    failed_old = aged_results(queue / "failed", 2, 91, "failed-old")
    out = janitor(config)
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (queue / "done").iterdir()) == sorted(young)
    assert sorted(p.name for p in (queue / "failed").iterdir()) == sorted(failed_kept)
    members = archive_members(queue / "archive", tmp_path / "x")
    assert {n: data for _, n, data in members} == {**old_done, **failed_old}
    assert {a for a, _, _ in members} == {
        n
        for n in os.listdir(queue / "archive")
        if re.fullmatch(r"(done|failed)-\d{4}-\d\d\.tar\.gz", n)
    }
    assert out.stdout.count("archived ") == 5 and out.stdout.count("wrote ") == 2


def test_archive_false_deletes_old_results(tmp_path: Path, queue: Path) -> None:
    """With ``archive: false`` old results are deleted and no archive is made."""
    config = write_config(tmp_path, archive=False)
    aged_results(queue / "done", 3, 31)
    young = aged_results(queue / "done", 1, 1, "young")
    out = janitor(config)
    assert out.returncode == 0, out.stderr
    assert [p.name for p in (queue / "done").iterdir()] == list(young)
    assert not (queue / "archive").exists()
    assert summary(out)["deleted"] == 3
    assert out.stdout.count("(older than keep_done, 30d)") == 3


def test_quarantine_entries_are_deleted_after_keep_failed_never_read(
    tmp_path: Path, queue: Path
) -> None:
    """A quarantined link is removed, not followed; a folder goes with what it holds."""
    config = write_config(tmp_path, keep_failed="1ms")
    canary = tmp_path / "canary.txt"
    canary.write_text("CANARY-SECRET")
    quarantine = queue / "quarantine"
    quarantine.mkdir()
    (quarantine / "evil.md").symlink_to(canary)
    (quarantine / "hard.md").hardlink_to(canary)
    (quarantine / "dir.md").mkdir()
    (quarantine / "dir.md" / "inside").symlink_to(canary)
    out = janitor(config)
    assert out.returncode == 0, out.stderr
    assert list(quarantine.iterdir()) == []
    assert canary.read_text() == "CANARY-SECRET"
    assert not (queue / "archive").exists(), "quarantined entries are never archived"
    assert summary(out)["swept"] == 3
    assert out.stdout.count("(quarantined longer than keep_failed, 1ms)") == 3


def test_orphan_tmp_files_records_and_signals_are_swept(tmp_path: Path, queue: Path) -> None:
    """Old tmp/ files, records without a task and day-old signals go; the rest stays."""
    config = write_config(tmp_path)
    (queue / "tmp" / "producer.part").write_text("half")
    age(queue / "tmp" / "producer.part", 2)
    (queue / "tmp" / "fresh.part").write_text("being written")
    control = queue / ".agentq"
    control.mkdir()
    (control / "gone.md.json").write_text("{}")
    age(control / "gone.md.json", 1)
    (control / "alive.md.json").write_text("{}")
    age(control / "alive.md.json", 1)
    (control / "new.md.json").write_text("{}")  # a claim made just now: within the grace
    (queue / "inbox" / "alive.md.working").write_text("in flight")
    signals = tmp_path / "state" / "signals"
    signals.mkdir(parents=True)
    (signals / "1-Stop-ab.json").write_text("{}")
    age(signals / "1-Stop-ab.json", 2)
    (signals / "2-Stop-cd.json").write_text("{}")
    out = janitor(config)
    assert out.returncode == 0, out.stderr
    assert [p.name for p in (queue / "tmp").iterdir()] == ["fresh.part"]
    assert sorted(p.name for p in control.iterdir()) == [
        "alive.md.json",
        "janitor.lock",
        "new.md.json",
    ]
    assert [p.name for p in signals.iterdir()] == ["2-Stop-cd.json"]
    assert summary(out)["swept"] == 3


def test_dry_run_changes_nothing_and_prints_what_it_would_do(tmp_path: Path, queue: Path) -> None:
    """A full listing with hashes is identical before and after ``--dry-run``."""
    config = write_config(tmp_path)
    aged_results(queue / "done", 50, 40)
    aged_results(queue / "failed", 5, 100, "f")
    assert janitor(config).returncode == 0  # an archive to read, and leftovers below
    aged_results(queue / "done", 20, 40, "more")
    (queue / "tmp" / "old.part").write_text("x")
    age(queue / "tmp" / "old.part", 3)
    signals = tmp_path / "state" / "signals"
    signals.mkdir(parents=True)
    (signals / "old.json").write_text("{}")
    age(signals / "old.json", 3)
    before = snapshot(tmp_path / "projects", tmp_path / "state")
    out = janitor(config, "--dry-run")
    assert out.returncode == 0, out.stderr
    assert snapshot(tmp_path / "projects", tmp_path / "state") == before
    lines = out.stdout.splitlines()
    assert sum(line.startswith("would archive ") for line in lines) == 20
    assert sum(line.startswith("would delete ") for line in lines) == 2
    assert lines[-1].startswith("janitor (dry run): 20 archived")


def test_a_file_already_in_the_archive_is_removed_not_archived_again(
    tmp_path: Path, queue: Path
) -> None:
    """An original put back by hand (extracted with its mtime) is recognised and removed."""
    config = write_config(tmp_path)
    originals = aged_results(queue / "done", 10, 40)
    assert janitor(config).returncode == 0
    (archive,) = (queue / "archive").iterdir()
    subprocess.run(["tar", "-xzf", str(archive), "-C", str(queue / "done")], check=True)
    out = janitor(config)
    assert summary(out)["removed"] == 10 and summary(out)["archived"] == 0
    assert_each_original_archived_once(originals, queue, tmp_path / "x")


def test_a_damaged_archive_is_left_alone_and_its_month_goes_on_in_the_next_number(
    tmp_path: Path, queue: Path
) -> None:
    """An unreadable archive is never rewritten; new files go into ``<month>.1.tar.gz``."""
    config = write_config(tmp_path)
    aged_results(queue / "done", 5, 40)
    assert janitor(config).returncode == 0
    (archive,) = (queue / "archive").iterdir()
    damaged = archive.read_bytes()[:-20]
    archive.write_bytes(damaged)
    aged_results(queue / "done", 5, 40, "next")
    assert janitor(config).returncode == 0
    assert archive.read_bytes() == damaged
    second = archive.with_name(archive.name.replace(".tar.gz", ".1.tar.gz"))
    listed = subprocess.run(["tar", "-tzf", str(second)], capture_output=True, text=True)
    assert sorted(listed.stdout.split()) == [f"next-{i:04d}.md" for i in range(5)]


def test_a_project_another_janitor_holds_is_skipped(tmp_path: Path, queue: Path) -> None:
    """Two janitors never write the same archive: the second one skips the project."""
    config = write_config(tmp_path)
    originals = aged_results(queue / "done", 5, 40)
    (queue / ".agentq").mkdir()
    lock = InstanceLock(queue / ".agentq" / "janitor.lock")
    lock.acquire()
    try:
        out = janitor(config)
    finally:
        lock.release()
    assert summary(out)["skipped"] == 1 and "another janitor" in out.stdout
    assert sorted(p.name for p in (queue / "done").iterdir()) == sorted(originals)


def test_a_restored_task_is_byte_identical(tmp_path: Path, queue: Path) -> None:
    """The README's restore: extract one file into tmp/ (fresh mtime), move it into inbox/."""
    config = write_config(tmp_path)
    originals = aged_results(queue / "done", 3, 40)
    assert janitor(config).returncode == 0
    (archive,) = (queue / "archive").iterdir()
    restore = ["tar", "-xzmf", str(archive), "-C", str(queue / "tmp"), "task-0001.md"]
    subprocess.run(restore, check=True)
    (queue / "tmp" / "task-0001.md").rename(queue / "inbox" / "task-0001.md")
    assert (queue / "inbox" / "task-0001.md").read_bytes() == originals["task-0001.md"]
    assert time.time() - (queue / "inbox" / "task-0001.md").stat().st_mtime < DAY


# -- in the daemon -------------------------------------------------------------------------


def test_the_daemon_archives_old_results_while_it_works_and_counts_it(tmp_path: Path) -> None:
    """Tiny keep ages and a short interval: results are archived as new tasks keep coming."""
    projects = make_projects(tmp_path / "projects", 2)
    config = {
        "agent": {"profile": "instant", "answer": "instant answer"},
        "projects": {"roots": [str(tmp_path / "projects")]},
        "dispatch": {"rescan_interval": "2s", "quiet_period": "0.1s"},
        "janitor": {"keep_done": "1s", "keep_failed": "1s", "interval": "0.2s"},
    }
    daemon = Daemon(tmp_path, config)
    names = {f"{p.name}/t{i:02d}.md" for p in projects for i in range(40)}
    try:
        daemon.start()
        assert daemon.wait_ready()
        for i in range(20):
            for p in projects:
                drop(p, f"t{i:02d}.md")
        drop(projects[0], "bad name.md")  # refused: a stub in failed/, the file in quarantine
        wait_until(lambda: list((projects[0] / ".agent-queue" / "archive").glob("done-*")))
        for i in range(20, 40):  # more work while the janitor is busy archiving
            for p in projects:
                drop(p, f"t{i:02d}.md")

        def archived_names() -> set[str]:
            found = set()
            for p in projects:
                queue = p / ".agent-queue"
                if any(list((queue / sub).iterdir()) for sub in ("inbox", "done", "failed")):
                    return set()
                for archive in (queue / "archive").glob("*.tar.gz"):
                    listed = subprocess.run(
                        ["tar", "-tzf", str(archive)], capture_output=True, text=True, check=True
                    )
                    found |= {f"{p.name}/{n}" for n in listed.stdout.split()}
            return found

        wait_until(lambda: archived_names() >= names, timeout=60)
        assert archived_names() == names | {f"{projects[0].name}/bad_name.md"}
        wait_until(lambda: not list((projects[0] / ".agent-queue" / "quarantine").iterdir()))
        assert daemon.stop() == 0
    finally:
        daemon.close()
    counters = json.loads((daemon.state_dir / "state.json").read_text())["counters"]
    assert counters["janitor_archived"] == 81
    assert counters["janitor_swept"] >= 1
    assert counters["janitor_passes"] >= 2 and counters.get("janitor_errors", 0) == 0
    status = subprocess.run(
        [sys.executable, "-m", "agentq", "status", "--json", "--config", str(daemon.config_path)],
        env=daemon.env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(status.stdout)["counters"]["janitor_archived"] == 81
