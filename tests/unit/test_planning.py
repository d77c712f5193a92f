"""The dispatcher's plan kept per project: made again only where its inputs changed."""

from __future__ import annotations

from pathlib import Path

from agentq.config.models import DispatchConfig
from agentq.daemon.planning import Part, Planner
from agentq.daemon.workspaces import ProjectSettings
from agentq.queue import protocol as q
from agentq.queue import schedule
from agentq.queue.scan import Pending
from agentq.queue.taskfile import TaskMeta

CHECKOUT = schedule.Place.CHECKOUT


class Places:
    """A ``place_of`` that counts its calls (a task's place is worked out once)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, default: str | None, meta: TaskMeta) -> schedule.Place:
        self.calls += 1
        return CHECKOUT


def _setup(tmp_path: Path, count: int) -> tuple[Planner, Places, dict[Path, q.Project]]:
    places = Places()
    planner = Planner(ProjectSettings(DispatchConfig(), {}), 4, places)
    projects = {}
    for i in range(count):
        (tmp_path / f"p{i}").mkdir()
        project = q.Project(tmp_path / f"p{i}")
        project.ensure_dirs()
        projects[project.path] = project
    return planner, places, projects


def _ready(*names: str, after: list[str] | None = None) -> list[Pending]:
    meta = TaskMeta(after=after or [])
    return [Pending(n, 0, i, meta) for i, n in enumerate(names)]


def _decisions(parts: list[tuple[Part, bool]]) -> tuple[list[str], dict[str, str]]:
    starts = [c.name for c in schedule.merge_starts(part.plan for part, _ in parts)]
    waits = {name: reason for part, _ in parts for name, reason in part.waits.items()}
    return starts, waits


def test_an_unchanged_project_keeps_its_plan_and_a_changed_one_is_planned_again(
    tmp_path: Path,
) -> None:
    """A start in one project remakes that project's part only; the others are last pass's."""
    planner, places, projects = _setup(tmp_path, 2)
    p0, p1 = projects.values()
    pending = {p0.inbox: _ready("a.md", "b.md"), p1.inbox: _ready("c.md")}
    first = planner.plan(pending, projects, {}, {}, {}, "routing")
    assert [new for _, new in first] == [True, True]
    assert _decisions(first)[0] == ["a.md", "c.md"]
    again = planner.plan(pending, projects, {}, {}, {}, "routing")
    assert [(part, new) for part, new in again] == [(part, False) for part, _ in first]
    pending[p0.inbox] = pending[p0.inbox][1:]  # a.md was claimed
    running = {p0.path: {"a.md": CHECKOUT}}
    after = planner.plan(pending, projects, {}, {}, running, "routing")
    assert {part.project: new for part, new in after} == {str(p0.path): True, str(p1.path): False}
    starts, waits = _decisions(after)
    assert starts == ["c.md"]
    assert waits == {
        "b.md": "waiting: 1 task(s) already work in the project's checkout (max_parallel 1)"
    }
    assert places.calls == 3  # b.md's place was worked out once


def test_a_new_routing_works_every_place_out_again(tmp_path: Path) -> None:
    """After a reload changes the routing, each task's place is asked again."""
    planner, places, projects = _setup(tmp_path, 1)
    (project,) = projects.values()
    pending = {project.inbox: _ready("a.md", "b.md")}
    planner.plan(pending, projects, {}, {}, {}, "routing")
    planner.plan(pending, projects, {}, {}, {}, "other routing")
    assert places.calls == 4


def test_tasks_with_dependencies_are_planned_on_every_pass(tmp_path: Path) -> None:
    """``after:`` reads done/, which changes without a scan: that project is planned each time."""
    planner, _, projects = _setup(tmp_path, 1)
    (project,) = projects.values()
    pending = {project.inbox: _ready("b.md", after=["a.md"])}
    first = planner.plan(pending, projects, {}, {}, {}, "routing")
    assert first[0][0].plan.failing == {
        (
            str(project.path),
            "b.md",
        ): "unknown dependency: a.md (no task of that name in this project)"
    }
    (project.done / "a.md").write_text("done\n")
    again = planner.plan(pending, projects, {}, {}, {}, "routing")
    assert again[0][1] is True
    assert _decisions(again)[0] == ["b.md"]


def test_a_skipped_task_is_no_candidate_but_counts_as_pending(tmp_path: Path) -> None:
    """A task its executor had no room for is held back; a dependency on it waits."""
    planner, _, projects = _setup(tmp_path, 1)
    (project,) = projects.values()
    items = _ready("a.md") + _ready("b.md", after=["a.md"])
    skipped = {project.inbox: frozenset({"a.md"})}
    parts = planner.plan({project.inbox: items}, projects, {}, skipped, {}, "routing")
    assert _decisions(parts) == ([], {"b.md": "waiting for a.md"})


def test_projects_without_ready_tasks_are_not_planned(tmp_path: Path) -> None:
    """An empty inbox costs nothing: no part, not even a look at the project's settings."""
    planner, places, projects = _setup(tmp_path, 3)
    pending: dict[Path, list[Pending]] = {p.inbox: [] for p in projects.values()}
    assert planner.plan(pending, projects, {}, {}, {}, "routing") == []
    assert places.calls == 0
