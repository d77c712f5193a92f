"""The command line as users run it: submit, route, validate, status, demo, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agentq.queue import taskfile

pytestmark = pytest.mark.integration


def agentq(*args: str, home: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m agentq`` with HOME in the test's temp folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTQ_", "TMUX"))}
    env["HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "agentq", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_submit_writes_through_tmp_into_the_inbox_and_prints_the_path(tmp_path: Path) -> None:
    """``agentq submit --text`` creates the queue, writes one task, prints its path."""
    project = tmp_path / "proj"
    project.mkdir()
    out = agentq(
        "submit",
        "--project",
        str(project),
        "--text",
        "# Fix the login\n\nplease",
        "--set",
        "priority=5",
        "--set",
        "needs_claude_code=true",
        home=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    path = Path(out.stdout.strip())
    assert path.parent == project / ".agent-queue" / "inbox"
    assert path.name.endswith("-fix-the-login.md")
    task = taskfile.parse_task(path.read_bytes(), path.name)
    assert task.meta.priority == 5 and task.meta.needs_claude_code is True
    assert task.body.strip() == "# Fix the login\n\nplease"
    assert list((project / ".agent-queue" / "tmp").iterdir()) == []


def test_submit_of_a_file_keeps_its_name_and_suffixes_a_collision(tmp_path: Path) -> None:
    """Submitting the same file twice gives ``x.md`` then ``x.1.md``; the first is unchanged."""
    project = tmp_path / "proj"
    project.mkdir()
    source = tmp_path / "fix-it.md"
    source.write_text("---\ntitle: fix it\n---\nbody\n")
    first = agentq("submit", "--project", str(project), "--file", str(source), home=tmp_path)
    second = agentq("submit", "--project", str(project), "--file", str(source), home=tmp_path)
    assert first.returncode == second.returncode == 0
    assert Path(first.stdout.strip()).name == "fix-it.md"
    assert Path(second.stdout.strip()).name == "fix-it.1.md"
    assert Path(first.stdout.strip()).read_text() == source.read_text()


def test_submit_refuses_bad_frontmatter_with_exit_1_and_one_line(tmp_path: Path) -> None:
    """A task the daemon would refuse is refused at submit time, with one clear line."""
    project = tmp_path / "proj"
    project.mkdir()
    out = agentq(
        "submit", "--project", str(project), "--text", "---\npriority: high\n---\nx", home=tmp_path
    )
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1 and "priority" in out.stderr


def test_submit_without_text_or_file_is_a_usage_error(tmp_path: Path) -> None:
    """Neither --file nor --text: exit 2."""
    assert agentq("submit", "--project", str(tmp_path), home=tmp_path).returncode == 2


@pytest.mark.parametrize(
    ("front", "executor", "warned"),
    [
        ("needs_claude_code: true\npreferred_ai: gpu", "local", False),
        ("preferred_ai: nobody\nallow_delegation: true", "local", True),
        ("preferred_ai: gpu\nallow_delegation: true", "provider", False),
    ],
    ids=["needs claude code wins", "unknown provider runs locally with a warning", "provider"],
)
def test_route_prints_the_decision_as_json(
    tmp_path: Path, front: str, executor: str, warned: bool
) -> None:
    """``agentq route FILE`` prints executor, provider, reason and warnings."""
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "delegation": {
                    "providers": [
                        {
                            "name": "gpu",
                            "kind": "openai-compatible",
                            "base_url": "http://127.0.0.1:9",
                            "model": "m",
                        }
                    ]
                }
            }
        )
    )
    task = tmp_path / "t.md"
    task.write_text(f"---\n{front}\n---\nbody\n")
    out = agentq("route", str(task), "--config", str(config), home=tmp_path)
    assert out.returncode == 0, out.stderr
    decision = json.loads(out.stdout)
    assert set(decision) == {"executor", "provider", "reason", "warnings"}
    assert decision["executor"] == executor
    assert bool(decision["warnings"]) is warned


def test_validate_lists_three_mistakes_at_once_and_exits_2(tmp_path: Path) -> None:
    """A config with three mistakes: all three reported in one run, exit 2."""
    config = tmp_path / "config.yaml"
    config.write_text(
        "pool:\n  max: 0\nquota:\n  confirm_pols: 2\ndispatch:\n  rescan_interval: soon\n"
    )
    out = agentq("validate", "--config", str(config), home=tmp_path)
    assert out.returncode == 2
    problems = [line for line in out.stderr.splitlines() if "line " in line]
    assert len(problems) == 3, out.stderr
    assert any("confirm_pols" in p for p in problems)


def test_validate_accepts_the_documented_example(tmp_path: Path) -> None:
    """The repository's config.yaml passes the schema (account homes aside)."""
    example = Path(__file__).parents[2] / "config.yaml"
    out = agentq("validate", "--config", str(example), home=tmp_path)
    assert "unknown key" not in out.stderr and "line " not in out.stderr


def test_status_counts_per_project_and_oldest_pending_age(tmp_path: Path) -> None:
    """``agentq status --json`` counts pending/done/failed per project from the folders."""
    project = tmp_path / "code" / "proj"
    for sub in ("inbox", "done", "failed", "tmp"):
        (project / ".agent-queue" / sub).mkdir(parents=True)
    (project / ".agent-queue" / "inbox" / "a.md").write_text("x")
    (project / ".agent-queue" / "inbox" / "b.md").write_text("x")
    (project / ".agent-queue" / "done" / "c.md").write_text("x")
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {"projects": {"roots": [str(tmp_path / "code")]}, "state_dir": str(tmp_path / "state")}
        )
    )
    out = agentq("status", "--json", "--config", str(config), home=tmp_path)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    [entry] = doc["projects"]
    assert (entry["pending"], entry["done"], entry["failed"]) == (2, 1, 0)
    assert entry["oldest_pending_age"] is not None and entry["oldest_pending_age"] >= 0
    assert doc["running"] is False
    text = agentq("status", "--config", str(config), home=tmp_path)
    assert "2 pending" in text.stdout and "not running" in text.stdout


def test_detect_reads_a_pane_from_stdin(tmp_path: Path) -> None:
    """``agentq detect -`` prints one JSON line with the kind and the resolved reset."""
    pane = "❯ hello\n  ⎿  You've hit your session limit · resets 11pm (UTC)\n"
    out = agentq("detect", "-", "--now", "2026-11-21T20:00:00+00:00", home=tmp_path, stdin=pane)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["kind"] == "quota" and doc["reset_at"].startswith("2026-11-21T23:00")


def test_unreadable_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """A missing config file: exit 2, one line, no traceback."""
    out = agentq("run", "--config", str(tmp_path / "missing.yaml"), home=tmp_path)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and out.stderr.strip().count("\n") == 0


@pytest.mark.slow
def test_demo_finishes_the_sample_queues_and_prints_where_the_results_are(tmp_path: Path) -> None:
    """``agentq demo`` runs the simulated pool over fixtures/queues and reports the results."""
    env_home = tmp_path / "home"
    env_home.mkdir(exist_ok=True)
    out = subprocess.run(
        [sys.executable, "-m", "agentq", "demo", "--dir", str(tmp_path / "ws")],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(("AGENTQ_", "TMUX"))},
            "HOME": str(env_home),
            "TMUX_TMPDIR": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "finished: 7 done, 0 failed" in out.stdout
    assert "results: " in out.stdout
    for task in ("fix-login-redirect", "add-rate-limit-headers", "upgrade-deps"):
        assert f"webapp/{task}.md: branch agentq/{task}, 1 file(s) changed" in out.stdout
    done = list((tmp_path / "ws" / "projects").glob("*/.agent-queue/done/*.md"))
    assert len(done) == 7


def test_daemon_refuses_to_start_on_broken_account_links_listing_every_problem(
    tmp_path: Path,
) -> None:
    """Real folders with content where shared links belong: run exits 2, validate says the same."""
    homes = [tmp_path / "claude-a", tmp_path / "claude-b"]
    for home in homes:
        (home / "projects").mkdir(parents=True)
        (home / "projects" / "keep.jsonl").write_text("{}\n")
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "state_dir": str(tmp_path / "state"),
                "agent": {"profile": "sim"},
                "accounts": [
                    {"name": "a", "home": str(homes[0])},
                    {"name": "b", "home": str(homes[1])},
                ],
                "shared": {"root": str(tmp_path / "shared")},
            }
        )
    )
    run = agentq("run", "--config", str(config), home=tmp_path)
    validate = agentq("validate", "--config", str(config), home=tmp_path)
    assert run.returncode == 2 and validate.returncode == 2
    for out in (run.stderr, validate.stderr):
        assert "account a" in out and "account b" in out, out
    assert all((home / "projects" / "keep.jsonl").read_text() == "{}\n" for home in homes)
