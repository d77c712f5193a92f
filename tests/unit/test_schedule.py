"""The scheduler: dependencies and per-project concurrency, as tables."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentq.queue.schedule import (
    Candidate,
    Limits,
    Place,
    Plan,
    ProjectState,
    merge_starts,
    plan,
)

NONE, TREE, AWAY = Place.CHECKOUT, Place.WORKTREE, Place.ELSEWHERE


def task(name: str, *after: str, iso: Place = NONE, prio: int = 0, at: int = 0) -> Candidate:
    """A candidate of project ``p``."""
    return Candidate("p", name, prio, at, iso, after)


@dataclass
class Case:
    """One row: pending tasks and the project's state; what starts, waits and fails."""

    pending: list[Candidate]
    state: ProjectState = field(default_factory=ProjectState)
    start: list[str] = field(default_factory=list)
    waiting: dict[str, str] = field(default_factory=dict)
    failing: dict[str, str] = field(default_factory=dict)


DEFAULT = Limits(None, pool_size=3)
CASES = {
    "no constraints: the best plain task starts, the next waits for the checkout": Case(
        [task("a.md", at=2), task("b.md", prio=1, at=5)],
        ProjectState(limits=DEFAULT),
        start=["b.md"],
        waiting={
            "a.md": "waiting: 1 task(s) already work in the project's checkout (max_parallel 1)"
        },
    ),
    "a plain task waits while another plain task of the project runs": Case(
        [task("a.md")],
        ProjectState(in_flight={"x.md": NONE}, limits=DEFAULT),
        waiting={
            "a.md": "waiting: 1 task(s) already work in the project's checkout (max_parallel 1)"
        },
    ),
    "worktree tasks start up to the pool size, beside a plain one": Case(
        [task(f"w{i}.md", iso=TREE, at=i) for i in range(4)],
        ProjectState(in_flight={"x.md": NONE}, limits=DEFAULT),
        start=["w0.md", "w1.md"],
        waiting={
            "w2.md": "waiting: 3 task(s) of this project running (the pool's size)",
            "w3.md": "waiting: 3 task(s) of this project running (the pool's size)",
        },
    ),
    "tasks at a provider are not held by default, and do not hold local ones": Case(
        [task("r1.md", iso=AWAY), task("r2.md", iso=AWAY, at=1), task("a.md", at=2)],
        ProjectState(in_flight={"r0.md": AWAY, "w.md": TREE, "w2.md": TREE}, limits=DEFAULT),
        start=["r1.md", "r2.md", "a.md"],
    ),
    "max_parallel set: tasks at a provider count too": Case(
        [task("r1.md", iso=AWAY), task("a.md", at=1)],
        ProjectState(in_flight={"r0.md": AWAY}, limits=Limits(2)),
        start=["r1.md"],
        waiting={"a.md": "waiting: 2 task(s) of this project running (max_parallel 2)"},
    ),
    "a plain task still starts while worktree tasks run": Case(
        [task("a.md")],
        ProjectState(in_flight={"w.md": TREE}, limits=DEFAULT),
        start=["a.md"],
    ),
    "max_parallel set: that many tasks of the project, plain ones included": Case(
        [task(f"p{i}.md", at=i) for i in range(3)],
        ProjectState(limits=Limits(2, pool_size=8)),
        start=["p0.md", "p1.md"],
        waiting={"p2.md": "waiting: 2 task(s) of this project running (max_parallel 2)"},
    ),
    "a dependency in done/ is satisfied": Case(
        [task("b.md", "a.md")], ProjectState(done=frozenset({"a.md"})), start=["b.md"]
    ),
    "a pending dependency makes the task wait, naming it": Case(
        [task("a.md"), task("b.md", "a.md")],
        ProjectState(limits=Limits(4)),
        start=["a.md"],
        waiting={"b.md": "waiting for a.md"},
    ),
    "a running dependency makes the task wait": Case(
        [task("b.md", "a.md", iso=TREE)],
        ProjectState(in_flight={"a.md": TREE}, limits=DEFAULT),
        waiting={"b.md": "waiting for a.md"},
    ),
    "a dependency still being written makes the task wait": Case(
        [task("b.md", "a.md")],
        ProjectState(not_ready=frozenset({"a.md"})),
        waiting={"b.md": "waiting for a.md"},
    ),
    "several waits are all named, the done ones not": Case(
        [task("c.md", "a.md", "b.md", "d.md")],
        ProjectState(done=frozenset({"b.md"}), in_flight={"a.md": TREE, "d.md": TREE}),
        waiting={"c.md": "waiting for a.md, d.md"},
    ),
    "a failed dependency fails the task": Case(
        [task("b.md", "a.md")],
        ProjectState(failed=frozenset({"a.md"})),
        failing={"b.md": "dependency failed: a.md"},
    ),
    "a failed dependency fails the task even while another one is pending": Case(
        [task("c.md", "b.md", "a.md"), task("b.md")],
        ProjectState(failed=frozenset({"a.md"})),
        start=["b.md"],
        failing={"c.md": "dependency failed: a.md"},
    ),
    "done wins over failed (a retry that succeeded)": Case(
        [task("b.md", "a.md")],
        ProjectState(done=frozenset({"a.md"}), failed=frozenset({"a.md"})),
        start=["b.md"],
    ),
    "pending wins over failed (a failed task moved back to the inbox)": Case(
        [task("b.md", "a.md")],
        ProjectState(failed=frozenset({"a.md"}), in_flight={"a.md": TREE}),
        waiting={"b.md": "waiting for a.md"},
    ),
    "an unknown name fails the task": Case(
        [task("b.md", "nosuch.md")],
        failing={"b.md": "unknown dependency: nosuch.md (no task of that name in this project)"},
    ),
    "a task that waits on itself is a cycle": Case(
        [task("a.md", "a.md")], failing={"a.md": "dependency cycle: a.md → a.md"}
    ),
    "a cycle fails every task on it; a task waiting on it waits": Case(
        [task("a.md", "c.md"), task("b.md", "a.md"), task("c.md", "b.md"), task("d.md", "a.md")],
        failing={
            "a.md": "dependency cycle: a.md → c.md → b.md → a.md",
            "b.md": "dependency cycle: b.md → a.md → c.md → b.md",
            "c.md": "dependency cycle: c.md → b.md → a.md → c.md",
        },
        waiting={"d.md": "waiting for a.md"},
    ),
    "a diamond is no cycle": Case(
        [task("b.md", "a.md"), task("c.md", "a.md"), task("d.md", "b.md", "c.md")],
        ProjectState(done=frozenset({"a.md"}), limits=Limits(5)),
        start=["b.md", "c.md"],
        waiting={"d.md": "waiting for b.md, c.md"},
    ),
    "a task whose dependencies are done still obeys the limits": Case(
        [task("b.md", "a.md")],
        ProjectState(done=frozenset({"a.md"}), in_flight={"x.md": NONE}, limits=DEFAULT),
        waiting={
            "b.md": "waiting: 1 task(s) already work in the project's checkout (max_parallel 1)"
        },
    ),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_plan(case: Case) -> None:
    """Each row: the plan starts, holds and fails exactly the tasks it lists, with these words."""
    result = plan(case.pending, {"p": case.state})
    assert [c.name for c in result.start] == case.start
    assert {k[1]: v for k, v in result.waiting.items()} == case.waiting
    assert {k[1]: v for k, v in result.failing.items()} == case.failing


def test_projects_are_limited_one_by_one_and_started_in_priority_order() -> None:
    """Two projects with one plain slot each: the best task of each starts, best first."""
    pending = [
        Candidate("p", "low.md", 0, 1),
        Candidate("q", "mid.md", 5, 2),
        Candidate("p", "top.md", 9, 3),
        Candidate("q", "next.md", 1, 0),
    ]
    result = plan(pending, {"p": ProjectState(), "q": ProjectState()})
    assert [c.key for c in result.start] == [("p", "top.md"), ("q", "mid.md")]
    assert set(result.waiting) == {("p", "low.md"), ("q", "next.md")}


def test_names_are_looked_up_in_the_same_project_only() -> None:
    """``after: [a.md]`` does not see a.md of another project."""
    result = plan(
        [Candidate("q", "b.md", after=("a.md",))],
        {"p": ProjectState(done=frozenset({"a.md"})), "q": ProjectState()},
    )
    assert result.failing == {
        ("q", "b.md"): "unknown dependency: a.md (no task of that name in this project)"
    }


def test_an_empty_queue_plans_nothing() -> None:
    """No pending tasks: an empty plan."""
    assert plan([], {}) == Plan()


NAMES = [f"{c}.md" for c in "abcdef"]
_candidates = st.lists(
    st.builds(
        Candidate,
        project=st.sampled_from(["p", "q", "r"]),
        name=st.sampled_from(NAMES),
        priority=st.integers(0, 2),
        arrival_ns=st.integers(0, 3),
        place=st.sampled_from(list(Place)),
        after=st.lists(st.sampled_from(NAMES), max_size=2).map(tuple),
    ),
    max_size=12,
    unique_by=lambda c: c.key,
)
_states = st.builds(
    ProjectState,
    in_flight=st.dictionaries(
        st.sampled_from(["x.md", "y.md", "a.md"]), st.sampled_from(list(Place))
    ),
    done=st.frozensets(st.sampled_from(NAMES)),
    failed=st.frozensets(st.sampled_from(NAMES)),
    not_ready=st.frozensets(st.sampled_from(NAMES)),
    limits=st.builds(Limits, st.none() | st.integers(1, 3), st.integers(1, 3)),
)


@settings(max_examples=300, deadline=None)
@given(_candidates, st.fixed_dictionaries({"p": _states, "q": _states, "r": _states}))
def test_planning_each_project_alone_decides_as_planning_them_all(
    pending: list[Candidate], states: dict[str, ProjectState]
) -> None:
    """Per project, then starts merged: the same starts (in order), waits and failures."""
    whole = plan(pending, states)
    parts = [plan([c for c in pending if c.project == p], {p: s}) for p, s in states.items()]
    assert merge_starts(parts) == whole.start
    assert {k: v for part in parts for k, v in part.waiting.items()} == whole.waiting
    assert {k: v for part in parts for k, v in part.failing.items()} == whole.failing
