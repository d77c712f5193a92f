"""The API's documents, built from the daemon's view: pure functions of a snapshot and a time.

The HTTP layer (:mod:`agentq.api.app`) parses a request, checks the token, and
calls these; they validate names and build the JSON shapes that ``docs/api.md``
documents. Nothing here reads a clock or a file: ``now`` is a parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agentq.api.view import TASK_STATES, Snapshot, TaskDetail, TaskPage, iso
from agentq.queue.taskfile import Footer
from agentq.queue.vetting import NAME_RE

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
#: The loop counts as stuck when a pass runs longer than this (or none ran for this long
#: while work was due).
STUCK_AFTER = 60.0
#: Pane lines shown per session (with the token).
PANE_LINES = 20


class BadRequest(ValueError):
    """A parameter is invalid; ``status`` is 400 or 404."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def check_project(project: str, served: Mapping[str, Any]) -> str:
    """A served project's folder name, or 404 (never a path: no traversal)."""
    if project not in served:
        raise BadRequest(f"no served project named {project[:80]!r}", 404)
    return project


def check_name(name: str) -> str:
    """A task file name by the queue's own rule (``NAME_RE``), or 400."""
    if not NAME_RE.fullmatch(name):
        raise BadRequest("invalid task name: letters, digits and . _ + @ = - ending in .md")
    return name


def parse_limit(raw: str | None) -> int:
    """``limit`` in 1..MAX_LIMIT (default DEFAULT_LIMIT)."""
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadRequest(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


def parse_state(raw: str | None) -> str | None:
    """``state``: one of the task states, or absent."""
    if raw is None or raw == "":
        return None
    if raw not in TASK_STATES:
        raise BadRequest(f"state must be one of {', '.join(TASK_STATES)}")
    return raw


# -- documents ------------------------------------------------------------------------------


def health_doc(snap: Snapshot, lag: float, now: float) -> dict[str, Any]:
    """``GET /healthz``: ok while the main loop is not stuck."""
    stuck = lag > STUCK_AFTER
    return {
        "ok": not stuck,
        "status": "stuck" if stuck else "ok",
        "loop_lag_s": round(lag, 3),
        "snapshot_age_s": round(max(0.0, now - snap.taken_at), 3),
    }


def loop_doc(snap: Snapshot, lag: float, now: float) -> dict[str, Any]:
    """The main loop's health."""
    loop = dict(snap.loop)
    for key in ("started_at", "last_pass_end"):
        if isinstance(loop.get(key), int | float):
            loop[key] = iso(loop[key])
    loop["lag_s"] = round(lag, 3)
    loop["stuck"] = lag > STUCK_AFTER
    loop["uptime_s"] = round(max(0.0, now - snap.started_at), 3)
    return loop


def watchdog_doc(snap: Snapshot, lag: float, now: float) -> dict[str, Any]:
    """``GET /watchdog/status``: loop health, watches, stale tasks, swap state, delegation."""
    polling = {k: dict(v) for k, v in snap.watches.items() if v.get("mode") == "polling"}
    return {
        "ok": lag <= STUCK_AFTER and not snap.accounts.get("partial_swap") and not snap.stale,
        "loop": loop_doc(snap, lag, now),
        "watches": {
            "total": len(snap.watches),
            "polling": polling,
            "rescans": snap.counters.get("rescans", 0),
            "overflows": snap.counters.get("overflows", 0),
        },
        "stale_tasks": stale_doc(snap, now),
        "partial_swap": snap.accounts.get("partial_swap"),
        "hold": snap.accounts.get("hold"),
        "delegation": delegation_counters(snap),
    }


def stale_doc(snap: Snapshot, now: float) -> list[dict[str, Any]]:
    """The stale tasks: ``since`` (when it last moved, or its job started) and ``idle_s``."""
    out = []
    for stale in snap.stale:
        entry = dict(stale)
        since = entry.get("since")
        if isinstance(since, int | float):
            entry["since"] = iso(since)
            entry["idle_s"] = round(max(0.0, now - since), 3)
        out.append(entry)
    return out


def delegation_counters(snap: Snapshot) -> dict[str, Any]:
    """The delegation counters (zeros when no provider is configured)."""
    names = ("active", "submitted", "completed", "failed", "fallbacks", "retried")
    doc: dict[str, Any] = {k: int(snap.delegation.get(k, 0) or 0) for k in names}
    doc["cost_total_usd"] = float(snap.delegation.get("cost_total_usd", 0.0) or 0.0)
    doc["providers"] = list(snap.delegation.get("providers", []))
    return doc


def delegated_doc(snap: Snapshot, page: TaskPage, now: float) -> dict[str, Any]:
    """``GET /api/delegated/status``: the jobs in flight and the counters."""
    return {
        "counters": delegation_counters(snap),
        "jobs": [
            {
                "project": e.project,
                "name": e.name,
                "title": e.title,
                "since": e.to_dict(now)["changed"],
                "age_s": e.to_dict(now)["in_state_s"],
                "attempts": e.attempts,
            }
            for e in page.items
        ],
    }


def tasks_doc(page: TaskPage, now: float) -> dict[str, Any]:
    """``GET /api/tasks``."""
    return {
        "tasks": [e.to_dict(now) for e in page.items],
        "total": page.total,
        "cursor": page.cursor,
    }


def task_doc(detail: TaskDetail, now: float) -> dict[str, Any]:
    """``GET /api/tasks/{project}/{name}``: the listing entry plus its text and footer."""
    return {**detail.entry.to_dict(now), "body": detail.text, "footer": detail.footer}


def footer_doc(footer: Footer | None) -> dict[str, Any] | None:
    """A result footer as JSON."""
    if footer is None:
        return None
    return {
        "status": footer.status,
        "executor": footer.executor,
        "target": footer.target,
        "account": footer.account,
        "started": footer.started.isoformat() if footer.started else None,
        "finished": footer.finished.isoformat() if footer.finished else None,
        "attempts": footer.attempts,
        "cost": footer.cost,
        "result": footer.result,
        "error": footer.error,
        "details": [list(d) for d in footer.details],
    }


def sessions_doc(
    snap: Snapshot, now: float, panes: Mapping[str, list[str]] | None = None
) -> dict[str, Any]:
    """``GET /api/sessions``; ``panes`` (token only) adds each session's last pane lines."""
    sessions = []
    for s in snap.sessions:
        entry = dict(s)
        last = entry.get("last_activity")
        if isinstance(last, int | float):
            entry["last_activity"] = iso(last)
            entry["idle_s"] = round(max(0.0, now - last), 3)
        else:
            entry["idle_s"] = None
        stale = entry.get("stale_since")
        entry["stale_since"] = iso(stale) if isinstance(stale, int | float) else None
        if panes is not None:
            entry["pane"] = panes.get(str(entry.get("name")))
        sessions.append(entry)
    return {"sessions": sessions, "active_account": snap.accounts.get("active")}


def status_doc(snap: Snapshot, now: float) -> dict[str, Any]:
    """``GET /api/status``: what ``agentq status`` shows, in the shape of its folder reading."""
    states = ("pending", "working", "delegated", "done", "failed")
    projects = []
    for row in snap.projects.values():
        oldest = row.get("oldest_pending")
        age = None if oldest is None else round(max(0.0, now - oldest), 3)
        projects.append({"path": row.get("path"), **{s: row.get(s, 0) for s in states}})
        projects[-1]["oldest_pending_age"] = age
    book = {
        a["name"]: {k: a.get(k) for k in ("exhausted_until", "windows", "preempted")}
        for a in snap.accounts.get("accounts", [])
    }
    return {
        "running": True,
        "daemon": {"pid": snap.health.get("pid"), "started_at": iso(snap.started_at)},
        "projects": projects,
        "totals": {s: sum(p[s] for p in projects) for s in states},
        "counters": dict(snap.counters),
        "watches": {k: dict(v) for k, v in snap.watches.items()},
        "incomplete": dict(snap.health.get("incomplete", {})),
        "refused_projects": dict(snap.health.get("refused_projects", {})),
        "sessions": [{"session": s.get("name"), **s} for s in snap.sessions],
        "active_account": snap.accounts.get("active"),
        "accounts": book,
        "hold": snap.accounts.get("hold"),
        "partial_swap": snap.accounts.get("partial_swap"),
        "swaps": list(snap.accounts.get("swaps", []))[-5:],
        "delegation": dict(snap.delegation),
        "notifications": list(snap.health.get("notifications", [])),
        "stale": stale_doc(snap, now),
        "waiting": [dict(w) for w in snap.health.get("waiting", [])],
        "project_config_problems": dict(snap.health.get("project_config_problems", {})),
    }


def accounts_doc(snap: Snapshot) -> dict[str, Any]:
    """``GET /api/accounts``: the active account, the policy, each one's windows and reset
    time, holds and swaps."""
    return dict(snap.accounts)
