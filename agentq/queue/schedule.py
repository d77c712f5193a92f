"""Which pending tasks start now, which wait and why, which fail before they start (pure).

:func:`plan` looks at the scan result and decides; the daemon's dispatcher applies the
decision (claims and starts, or claims and fails). The rules, for the pending tasks of
every project taken in priority order (higher first, then arrival, then name):

1. **Dependencies.** Each name in a task's ``after:`` is looked up in the same project:
   in ``done/`` → satisfied; pending or in flight → the task waits ("waiting for a.md");
   in ``failed/`` → the task fails ("dependency failed: a.md"); nowhere → the task fails
   ("unknown dependency: a.md"). ``done/`` wins over the rest (a retried task that
   succeeded), pending wins over ``failed/`` (a failed task moved back to the inbox). A
   task on a cycle of pending tasks fails ("dependency cycle: a.md → b.md → a.md"); a
   task that only waits on such a task fails once that one is in ``failed/``.
2. **Concurrency per project**, by where a task works (:class:`Place`). With
   ``max_parallel`` unset, tasks in the project's checkout run one at a time, and the
   project's local tasks (checkout and worktree) up to the pool size; tasks that work
   in no folder of the project (at a remote provider) are not held. With
   ``max_parallel: N``, at most N tasks of the project run at once, wherever they work.

Waiting costs nothing: a task that waits stays a plain file in ``inbox/``.

Both rules look at one project at a time: :func:`plan` over several projects decides for
each what it would decide for that project alone, and only the order of ``start`` spans
projects (:func:`merge_starts`). The dispatcher relies on this to plan again only the
projects whose tasks or state changed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

#: (project, task name): how the plan names a task.
TaskKey = tuple[str, str]
#: How many names ``after:`` may list.
MAX_AFTER = 100
#: A task file name (the rule of ``agentq.queue.vetting.NAME_RE``): ``after:`` names tasks.
TASK_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+@=-]{0,196}\.md$")


def check_after(value: object) -> tuple[str, ...]:
    """Validate a task's ``after:`` (one name or a list; a frontmatter schema validator)."""
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list):
        raise ValueError("expected a list of task file names, like [a.md, b.md]")
    if len(names) > MAX_AFTER:
        raise ValueError(f"at most {MAX_AFTER} names")
    for name in names:
        if not isinstance(name, str) or not TASK_NAME_RE.fullmatch(name):
            raise ValueError(f"{name!r} is not a task file name of this project (x.md)")
    return tuple(dict.fromkeys(names))


class Place(Enum):
    """Where a task works while it runs."""

    #: In the project's own checkout (a local task without isolation).
    CHECKOUT = "checkout"
    #: In a git worktree of its own.
    WORKTREE = "worktree"
    #: In no folder of the project (a remote provider, or an executor that edits nothing).
    ELSEWHERE = "elsewhere"


@dataclass(frozen=True)
class Candidate:
    """A pending task that could be claimed now."""

    project: str
    name: str
    priority: int = 0
    arrival_ns: int = 0
    place: Place = Place.CHECKOUT
    after: tuple[str, ...] = ()

    @property
    def key(self) -> TaskKey:
        """``(project, name)``."""
        return (self.project, self.name)


@dataclass(frozen=True)
class Limits:
    """A project's concurrency settings."""

    max_parallel: int | None = None
    pool_size: int = 1

    @property
    def checkout(self) -> int:
        """How many tasks may work in the project's checkout at once."""
        return self.max_parallel or 1

    @property
    def total(self) -> int:
        """How many of the project's tasks may run at once (counted as :func:`_counts` says)."""
        return self.max_parallel or max(self.pool_size, 1)


@dataclass(frozen=True)
class ProjectState:
    """What the plan needs to know about one project besides its candidates.

    Attributes:
        in_flight: running tasks (claimed, local or delegated) and where they work.
        done: names in ``done/``.
        failed: names in ``failed/``.
        not_ready: names in the inbox that cannot be claimed yet (a file still being
            written, or in its quiet period): pending for the dependency rule.
        limits: the concurrency settings.
    """

    in_flight: Mapping[str, Place] = field(default_factory=dict)
    done: frozenset[str] = frozenset()
    failed: frozenset[str] = frozenset()
    not_ready: frozenset[str] = frozenset()
    limits: Limits = field(default_factory=Limits)


@dataclass
class Plan:
    """The decision: tasks to start (in order), tasks that wait and tasks that fail, with why."""

    start: list[Candidate] = field(default_factory=list)
    waiting: dict[TaskKey, str] = field(default_factory=dict)
    failing: dict[TaskKey, str] = field(default_factory=dict)


def order_key(candidate: Candidate) -> tuple[int, int, str, str]:
    """The order tasks are taken in: higher priority first, then arrival, then name."""
    return (-candidate.priority, candidate.arrival_ns, candidate.name, candidate.project)


def plan(pending: Sequence[Candidate], projects: Mapping[str, ProjectState]) -> Plan:
    """Decide which of ``pending`` start now, wait (and for what) or fail (and why)."""
    result = Plan()
    ordered = sorted(pending, key=order_key)
    by_project: dict[str, list[Candidate]] = {}
    for candidate in ordered:
        by_project.setdefault(candidate.project, []).append(candidate)
    ready: list[Candidate] = []
    for project, candidates in by_project.items():
        state = projects.get(project, ProjectState())
        ready += _dependencies(candidates, state, result)
    running = {p: list(projects.get(p, ProjectState()).in_flight.values()) for p in by_project}
    # Rule 2 depends on where a task works and on what its project runs, which changes only
    # when one of its tasks starts: a backlog held by the same limit is told so once.
    reasons: dict[tuple[str, Place], str] = {}
    for candidate in sorted(ready, key=order_key):
        held = (candidate.project, candidate.place)
        reason = reasons.get(held)
        if reason is None:
            limits = projects.get(candidate.project, ProjectState()).limits
            reason = reasons[held] = _limit_reason(candidate.place, running[held[0]], limits)
        if reason:
            result.waiting[candidate.key] = reason
            continue
        running[candidate.project].append(candidate.place)
        result.start.append(candidate)
        reasons = {k: v for k, v in reasons.items() if k[0] != candidate.project}
    return result


def merge_starts(parts: Iterable[Plan]) -> list[Candidate]:
    """The tasks to start of plans made one project at a time, in the order :func:`plan` gives."""
    return sorted((c for part in parts for c in part.start), key=order_key)


def _dependencies(candidates: list[Candidate], state: ProjectState, out: Plan) -> list[Candidate]:
    """Apply rule 1 to one project's candidates; return those whose dependencies are done."""
    if not any(c.after for c in candidates):
        return list(candidates)  # the usual backlog: nothing to look up
    pending = {c.name for c in candidates} | set(state.in_flight) | set(state.not_ready)
    cycles = _cycles({c.name: c.after for c in candidates})
    ready = []
    for candidate in candidates:
        if candidate.name in cycles:
            out.failing[candidate.key] = f"dependency cycle: {cycles[candidate.name]}"
            continue
        waits: list[str] = []
        failure = None
        for name in candidate.after:
            if name in state.done:
                continue
            if name in pending:
                waits.append(name)
            elif name in state.failed:
                failure = f"dependency failed: {name}"
            else:
                failure = f"unknown dependency: {name} (no task of that name in this project)"
            if failure:
                break
        if failure:
            out.failing[candidate.key] = failure
        elif waits:
            out.waiting[candidate.key] = "waiting for " + ", ".join(waits)
        else:
            ready.append(candidate)
    return ready


def _cycles(edges: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """Every task on a dependency cycle among ``edges``' keys → the cycle, written out."""
    graph = {name: [d for d in deps if d in edges] for name, deps in edges.items()}
    found: dict[str, str] = {}
    for start in sorted(name for name, deps in graph.items() if deps):  # none: on no cycle
        path = _path_back(start, graph)
        if path is not None:
            found[start] = " → ".join([start, *path])
    return found


def _path_back(start: str, graph: Mapping[str, Sequence[str]]) -> list[str] | None:
    """The shortest walk from ``start`` along dependencies back to ``start`` (BFS), if any."""
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for dep in graph[node]:
                if dep == start:
                    walk, step = [dep], node
                    while step != start:
                        walk.append(step)
                        step = parents[step]
                    return walk[::-1]
                if dep not in parents:
                    parents[dep] = node
                    following.append(dep)
        frontier = following
    return None


def _limit_reason(place: Place, running: list[Place], limits: Limits) -> str:
    """Why rule 2 holds a task that would work at ``place`` back now ('' when it may start)."""
    if limits.max_parallel is None:
        if place is Place.ELSEWHERE:
            return ""
        local = sum(p is not Place.ELSEWHERE for p in running)
        if local >= limits.total:
            return f"waiting: {local} task(s) of this project running (the pool's size)"
    elif len(running) >= limits.total:
        return (
            f"waiting: {len(running)} task(s) of this project running (max_parallel {limits.total})"
        )
    checkout = running.count(Place.CHECKOUT)
    if place is Place.CHECKOUT and checkout >= limits.checkout:
        return (
            f"waiting: {checkout} task(s) already work in the project's checkout "
            f"(max_parallel {limits.checkout})"
        )
    return ""
