"""The dispatcher's plan, project by project, made again only where something changed.

:func:`agentq.queue.schedule.plan` decides each project on its own (only the order of the
tasks to start spans projects), so the plan is kept per project with what it was made
from: the inbox's ready list, the names held back, the tasks in flight, the project's
settings and the routing. A pass plans again only the projects whose inputs differ; with
thousands of tasks waiting, a start or an end costs the one project it touched, not the
whole backlog. A project whose tasks name dependencies (``after:``) is planned on every
pass: ``done/`` and ``failed/`` are read then, and they change without a scan.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from agentq.config.models import ProjectConfig
from agentq.daemon.workspaces import ProjectSettings
from agentq.queue import protocol as q
from agentq.queue import schedule
from agentq.queue.scan import Pending
from agentq.queue.taskfile import TaskMeta

#: Where a pending task would work: (the project's default isolation, its frontmatter) → place.
PlaceOf = Callable[[str | None, TaskMeta], schedule.Place]


@dataclass(frozen=True)
class _Inputs:
    """What one project's plan is made from (equal inputs, equal plan)."""

    items: list[Pending]
    not_ready: frozenset[str]
    skipped: frozenset[str]
    in_flight: dict[str, schedule.Place]
    settings: ProjectConfig
    routing: object


@dataclass(frozen=True)
class Part:
    """One project's part of the plan.

    Attributes:
        project: the project folder, as the plan names it.
        items: the inbox's ready list it was made from.
        plan: what starts, waits and fails.
        waits: name → why it waits (the plan's ``waiting`` of this project, by name).
        best: the order key of the project's best candidate, when it fails tasks: projects
            fail theirs in that order, as one plan over every project does.
    """

    project: str
    items: list[Pending]
    plan: schedule.Plan
    waits: dict[str, str]
    best: tuple[int, int, str, str] | None


@dataclass
class _Entry:
    """A project's part, what it was made from, and its candidates to reuse."""

    inputs: _Inputs
    part: Part
    #: name → (the pending task, its candidate): reused while the task and the routing stay.
    candidates: dict[str, tuple[Pending, schedule.Candidate]]
    #: A task names dependencies: planned on every pass (``done/`` changes without a scan).
    needs_names: bool


class Planner:
    """Keeps each project's plan and makes it again when its inputs change."""

    def __init__(self, settings: ProjectSettings, pool_size: int, place_of: PlaceOf) -> None:
        self._settings = settings
        self._pool_size = pool_size
        self._place_of = place_of
        self._entries: dict[Path, _Entry] = {}

    def plan(
        self,
        pending: Mapping[Path, list[Pending]],
        project_of: Mapping[Path, q.Project],
        not_ready: Mapping[Path, set[str]],
        skipped: Mapping[Path, frozenset[str]],
        running: Mapping[Path, Mapping[str, schedule.Place]],
        routing: object,
    ) -> list[tuple[Part, bool]]:
        """Each project's part of the plan, and whether it is new (those failing tasks first).

        A part that is not new is the one returned last time: nothing it was made from
        changed (its waiting tasks wait for the same reasons).

        Args:
            pending: inbox → its ready tasks, best first.
            project_of: project folder → project.
            not_ready: inbox → names that cannot be claimed yet (pending for dependencies).
            skipped: inbox → ready names not to claim now (held back, pending too).
            running: project folder → name → where it works, for every task in flight.
            routing: what decides where tasks work (compared by equality).
        """
        entries: dict[Path, _Entry] = {}
        parts: list[tuple[Part, bool]] = []
        for project in project_of.values():
            inbox = project.inbox
            items = pending.get(inbox)
            if not items:
                continue
            inputs = _Inputs(
                items,
                frozenset(not_ready.get(inbox, ())),
                skipped.get(inbox, frozenset()),
                dict(running.get(project.path, {})),
                self._settings.get(project.path),
                routing,
            )
            old = self._entries.get(project.path)
            if old is not None and not old.needs_names and old.inputs == inputs:
                # Kept with the scan's list: compared by identity next time, not item by item.
                old.inputs = inputs
                entries[project.path] = old
                parts.append((old.part, False))
                continue
            entry = self._make(project, inputs, old)
            entries[project.path] = entry
            parts.append((entry.part, True))
        self._entries = entries
        return sorted(parts, key=_best_first)

    def _make(self, project: q.Project, inputs: _Inputs, old: _Entry | None) -> _Entry:
        needs_names = any(item.meta.after for item in inputs.items)
        known = old.candidates if old is not None and _same_places(old.inputs, inputs) else {}
        folder = str(project.path)
        candidates: dict[str, tuple[Pending, schedule.Candidate]] = {}
        held = set(inputs.not_ready)
        for item in inputs.items:
            if item.name in inputs.skipped:
                held.add(item.name)
                continue
            seen = known.get(item.name)
            if seen is None or seen[0] != item:
                place = self._place_of(inputs.settings.isolation, item.meta)
                seen = (item, _candidate(folder, item, place))
            candidates[item.name] = seen
        state = schedule.ProjectState(
            in_flight=inputs.in_flight,
            done=_names(project.done) if needs_names else frozenset(),
            failed=_names(project.failed) if needs_names else frozenset(),
            not_ready=frozenset(held),
            limits=schedule.Limits(inputs.settings.max_parallel, self._pool_size),
        )
        listed = [candidate for _, candidate in candidates.values()]
        decided = schedule.plan(listed, {folder: state})
        waits = {name: reason for (_, name), reason in decided.waiting.items()}
        best = min(map(schedule.order_key, listed)) if decided.failing else None
        part = Part(folder, inputs.items, decided, waits, best)
        return _Entry(inputs, part, candidates, needs_names)


def _same_places(old: _Inputs, new: _Inputs) -> bool:
    """Whether a task's place is decided the same way (its candidate can be reused)."""
    return old.settings.isolation == new.settings.isolation and old.routing == new.routing


def _candidate(folder: str, item: Pending, place: schedule.Place) -> schedule.Candidate:
    return schedule.Candidate(
        folder, item.name, item.priority, item.arrival_ns, place, item.meta.after
    )


def _best_first(entry: tuple[Part, bool]) -> tuple[bool, tuple[int, int, str, str] | None]:
    best = entry[0].best
    return (best is None, best)


def _names(folder: Path) -> frozenset[str]:
    """The task names in a result folder (``done/``, ``failed/``)."""
    try:
        with os.scandir(folder) as entries:
            return frozenset(e.name for e in entries if not e.name.startswith("."))
    except OSError:
        return frozenset()
