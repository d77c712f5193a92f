"""Isolation keys in task files and project configs, the worktree record, the sim's changes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agentq.config.load import load_project_config
from agentq.config.models import DispatchConfig, ProjectConfig
from agentq.core.errors import ConfigError, TaskFileError
from agentq.queue import vetting
from agentq.queue.isolation import Worktree
from agentq.queue.protocol import ControlRecord
from agentq.queue.schedule import TASK_NAME_RE
from agentq.queue.submit import compose
from agentq.queue.taskfile import TaskMeta, parse_task, peek_meta
from agentq.sim.actions import write_inside
from agentq.sim.rules import Action, parse_script, relative_parts
from agentq.workspace.git import Commit, DiffStat
from agentq.workspace.worktrees import Report, branch_stem, report_details


def meta(front: str) -> TaskMeta:
    """Parse a frontmatter block."""
    return parse_task(f"---\n{front}\n---\nbody\n".encode(), "t.md").meta


def test_the_three_keys_parse() -> None:
    """``isolation``, ``base`` and ``after`` (a list, or one name)."""
    m = meta("isolation: worktree\nbase: release/2.0\nafter: [a.md, b.md, a.md]")
    assert (m.isolation, m.base, m.after) == ("worktree", "release/2.0", ("a.md", "b.md"))
    assert meta("after: a.md").after == ("a.md",)
    assert meta("title: x").after == () and meta("title: x").isolation is None


@pytest.mark.parametrize(
    ("front", "words"),
    [
        ("isolation: container", "isolation"),
        ("base: -x", "leading '-'"),
        ("base: 'main branch'", "without blanks"),
        ("base: 12", "base"),
        ("after: [../x.md]", "not a task file name"),
        ("after: [a]", "not a task file name"),
        ("after: [/etc/passwd]", "not a task file name"),
        ("after: {a: 1}", "a list of task file names"),
        ("after: [1]", "not a task file name"),
    ],
    ids=[
        "an unknown isolation",
        "a base that looks like an option",
        "a base with a blank",
        "a base that is a number",
        "a dependency with a path",
        "a dependency without .md",
        "an absolute path as a dependency",
        "a mapping as dependencies",
        "a number as a dependency",
    ],
)
def test_bad_values_are_refused_with_the_key(front: str, words: str) -> None:
    """A bad isolation, base or after is an invalid frontmatter naming the problem."""
    with pytest.raises(TaskFileError) as err:
        meta(front)
    assert "invalid frontmatter" in err.value.reason and words in err.value.reason


def test_the_task_name_rule_is_the_queues() -> None:
    """``after:`` names follow exactly the inbox's name rule."""
    assert TASK_NAME_RE.pattern == vetting.NAME_RE.pattern


def test_peek_reads_scheduling_keys_and_is_lenient() -> None:
    """The pre-claim peek: the keys when readable, the defaults otherwise."""
    head = b"---\nafter: [a.md]\nisolation: worktree\n---\nbody\n"
    assert (peek_meta(head).after, peek_meta(head).isolation) == (("a.md",), "worktree")
    assert peek_meta(b"---\nafter: [../x]\n---\n") == TaskMeta()
    assert peek_meta(b"---\nafter: [a.md]\n") == TaskMeta()  # unclosed
    assert peek_meta(b"no frontmatter, after: is prose\n") == TaskMeta()
    assert peek_meta(b"---\npreferred_ai: gemini\n---\n").preferred_ai == "gemini"


def test_submit_compose_sets_the_keys_and_keeps_a_list() -> None:
    """``agentq submit --after --isolation --base`` round-trip through the frontmatter."""
    text = compose("---\nafter: [x.md]\n---\nbody", {"isolation": "worktree", "base": "main"})
    parsed = parse_task(text.encode(), "t.md").meta
    assert (parsed.after, parsed.isolation, parsed.base) == (("x.md",), "worktree", "main")


def test_the_control_record_keeps_the_worktree() -> None:
    """A record with a worktree intent survives JSON; one without reads as before."""
    tree = Worktree(Path("/p/.agent-queue/worktrees/a"), "agentq/a", "f" * 40, "main", "sub")
    record = ControlRecord(name="a.md", ino=7, attempts=1, worktree=tree)
    again = ControlRecord.from_json(record.to_json())
    assert again.worktree == tree and again.worktree.cwd == tree.path / "sub"
    assert ControlRecord.from_json(ControlRecord(name="b.md", ino=1).to_json()).worktree is None


def test_project_defaults_win_over_the_global_ones() -> None:
    """A project's config.yaml first, then ``dispatch``; unset stays unset."""
    glob = DispatchConfig(isolation="worktree", keep_worktree=True)
    assert glob.for_project(None) == ProjectConfig(
        isolation="worktree", max_parallel=None, keep_worktree=True
    )
    own = ProjectConfig(isolation="none", max_parallel=2, keep_worktree=False)
    assert glob.for_project(own) == own


def test_a_bad_project_config_lists_every_problem_with_its_line(tmp_path: Path) -> None:
    """Unknown keys and bad values: every one, each with its line; a link is not read."""
    path = tmp_path / "config.yaml"
    path.write_text("isolation: container\nmax_parallel: 0\npool: {max: 3}\n")
    with pytest.raises(ConfigError) as err:
        load_project_config(path, {})
    problems = err.value.problems
    assert len(problems) == 3
    assert problems[0].startswith("line 1: isolation")
    assert problems[1].startswith("line 2: max_parallel")
    assert problems[2].startswith("line 3: pool: unknown key") or "line 3" in problems[2]
    link = tmp_path / "link.yaml"
    os.symlink(path, link)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_project_config(link, {})


def test_sim_directives_write_and_commit_parse_in_order() -> None:
    """``sim: write PATH TEXT`` and ``sim: commit MESSAGE``, in the prompt's order."""
    script = parse_script("x\nsim: write a/b.txt hello world\nsim: commit add b\nsim: commit")
    assert script.actions == (
        Action("write", "a/b.txt", "hello world"),
        Action("commit", text="add b"),
        Action("commit", text="agentq sim commit"),
    )


@pytest.mark.parametrize(
    ("path", "parts"),
    [
        ("a.txt", ("a.txt",)),
        ("./a/./b.txt", ("a", "b.txt")),
        ("/etc/passwd", None),
        ("../x", None),
        ("a/../../x", None),
        ("", None),
        ("a\0b", None),
    ],
    ids=["plain", "dots", "absolute", "parent", "parent inside", "empty", "NUL"],
)
def test_sim_paths_stay_inside(path: str, parts: tuple[str, ...] | None) -> None:
    """Only relative paths without ``..`` are allowed."""
    assert relative_parts(path) == parts


def test_sim_write_refuses_links_that_lead_out(tmp_path: Path) -> None:
    """A link as a folder on the way, or as the file itself: refused, nothing written outside."""
    inside, outside = tmp_path / "cwd", tmp_path / "outside"
    inside.mkdir()
    outside.mkdir()
    os.symlink(outside, inside / "out")
    os.symlink(outside / "victim.txt", inside / "file.txt")
    assert write_inside(inside, "sub/new.txt", "ok").read_text() == "ok\n"
    with pytest.raises(ValueError, match="link"):
        write_inside(inside, "out/x.txt", "no")
    with pytest.raises(OSError):
        write_inside(inside, "file.txt", "no")
    with pytest.raises(ValueError):
        write_inside(inside, "../outside/y.txt", "no")
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("fix-login.md", "fix-login"),
        ("a..b.md", "a.b"),
        ("x.lock.md", "x-lock"),
        ("a+b@c=d.md", "a-b-c-d"),
        ("1.md", "1"),
    ],
)
def test_branch_stems_are_valid_branch_names(name: str, stem: str) -> None:
    """A task name becomes a branch-safe stem."""
    assert branch_stem(name) == stem


def test_report_rows_for_the_footer() -> None:
    """Branch, base, commits, diffstat, uncommitted and what became of the folder."""
    tree = Worktree(Path("/p/wt/a"), "agentq/a", "0123456789abcdef" * 2, "HEAD", ready=True)
    report = Report(
        tree,
        (Commit("abc1234", "first"), Commit("def5678", "second")),
        DiffStat(2, 5, 1),
        ("notes.txt",),
        "uncommitted changes",
    )
    assert dict(report_details(report)) == {
        "branch": "agentq/a",
        "base": "0123456789ab (HEAD)",
        "commits": "2: abc1234 first; def5678 second",
        "diffstat": "2 file(s) changed, 5 insertion(s)(+), 1 deletion(s)(-)",
        "uncommitted": "1: notes.txt",
        "worktree": "kept at /p/wt/a (uncommitted changes)",
    }
    clean = dict(report_details(Report(tree)))
    assert clean["commits"] == "0" and clean["uncommitted"] == "none"
    assert clean["worktree"] == "removed"
