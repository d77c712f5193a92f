"""``agentq status``: counts per project from the folders, health from ``state.json``."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentq.accounts.book import account_status
from agentq.config.models import Config
from agentq.core.lock import is_locked
from agentq.daemon.state import StateFile
from agentq.queue import protocol as q
from agentq.queue.vetting import NameKind, classify_name

if TYPE_CHECKING:
    from agentq.api.client import ApiClient


def oldest_pending_age(project: q.Project, now: float) -> float | None:
    """Seconds since the oldest pending task arrived, or ``None`` when none is pending."""
    oldest: float | None = None
    try:
        entries = list(os.scandir(project.inbox))
    except OSError:
        return None
    for entry in entries:
        if classify_name(entry.name) is not NameKind.PENDING:
            continue
        try:
            ctime = entry.stat(follow_symlinks=False).st_ctime
        except FileNotFoundError:
            continue
        oldest = ctime if oldest is None else min(oldest, ctime)
    return None if oldest is None else max(0.0, now - oldest)


def api_client(config: Config) -> ApiClient | None:
    """The running daemon's API client; None when the daemon is not running or serves no API."""
    from agentq.api.client import discover

    if not config.api.enabled or not is_locked(config.state_dir / "lock"):
        return None
    return discover(config.state_dir, config.api.token_file)


def fetch_status(config: Config, now: float) -> dict[str, Any]:
    """The status from the running daemon's API, or read from the folders when there is none."""
    from agentq.api.client import ApiUnavailable

    client = api_client(config)
    if client is not None:
        try:
            return client.get("/api/status")
        except ApiUnavailable:
            pass  # stopped meanwhile, or an old daemon: the folders still tell
    return collect_status(config, now)


def collect_status(config: Config, now: float) -> dict[str, Any]:
    """Build the status document (folders are the truth; state adds health and counters)."""
    state = StateFile(config.state_dir).peek()
    projects: list[dict[str, Any]] = []
    paths = q.find_projects(config.projects.roots, config.projects.paths)
    for path in paths:
        project = q.Project(path)
        if not project.queue.is_dir():
            continue
        entry: dict[str, Any] = {"path": str(path), **project.counts()}
        entry["oldest_pending_age"] = oldest_pending_age(project, now)
        projects.append(entry)
    totals = {
        k: sum(p[k] for p in projects)
        for k in ("pending", "working", "delegated", "done", "failed")
    }
    recorded = state.get("accounts")
    accounts = recorded if isinstance(recorded, dict) else {}
    return {
        "running": is_locked(config.state_dir / "lock"),
        "daemon": state.get("daemon", {}),
        "projects": projects,
        "totals": totals,
        "counters": state.get("counters", {}),
        "watches": state.get("watches", {}),
        "incomplete": {k: v for k, v in state.get("incomplete", {}).items() if v},
        "refused_projects": state.get("refused_projects", {}),
        "sessions": state.get("sessions", []),
        "active_account": state.get("active_account"),
        "accounts": {name: account_status(entry) for name, entry in accounts.items()},
        "hold": state.get("hold"),
        "partial_swap": state.get("partial_swap"),
        "swaps": state.get("swaps", [])[-5:],
        "delegation": state.get("delegation", {}),
        "notifications": state.get("notifications", [])[-5:],
        "fleet": state.get("fleet", {}),
        "stale": _stale_from_state(state),
        "waiting": state.get("waiting", []),
        "project_config_problems": state.get("project_config_problems", {}),
    }


def _stale_from_state(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The stale tasks ``state.json`` shows: sessions whose task stands still, old jobs."""
    out: list[dict[str, Any]] = []
    for s in state.get("sessions", []):
        task = s.get("task")
        if s.get("stale_since") is not None and isinstance(task, str) and "/" in task:
            project, name = task.split("/", 1)
            rule = {"rule": "no progress", "session": s.get("session")}
            out.append({"project": project, "name": name, **rule, "since": s["stale_since"]})
    delegation = state.get("delegation", {})
    for job in delegation.get("stale", []) if isinstance(delegation, dict) else []:
        rule = {"rule": "job age", "provider": job.get("provider")}
        out.append({"project": job.get("project"), "name": job.get("task"), **rule, **job})
    return out


def render_status(doc: dict[str, Any]) -> str:
    """Human-readable status."""
    lines = [f"daemon: {'running' if doc['running'] else 'not running'}"]
    for p in doc["projects"]:
        age = p["oldest_pending_age"]
        age_text = f", oldest pending {age:.0f}s" if age is not None else ""
        lines.append(
            f"{p['path']}: {p['pending']} pending, {p['working']} working, "
            f"{p['delegated']} delegated, {p['done']} done, {p['failed']} failed{age_text}"
        )
    t = doc["totals"]
    lines.append(
        f"total: {t['pending']} pending, {t['working']} working, "
        f"{t['done']} done, {t['failed']} failed"
    )
    counters = doc["counters"]
    if counters:
        lines.append("counters: " + ", ".join(f"{k}={v}" for k, v in sorted(counters.items())))
    polling = [p for p, w in doc["watches"].items() if w.get("mode") == "polling"]
    for inbox in polling:
        lines.append(f"{inbox}: polling ({doc['watches'][inbox].get('reason', '')})")
    for path, reason in doc["refused_projects"].items():
        lines.append(f"{path}: refused ({reason})")
    if doc["active_account"]:
        lines.append(f"active account: {doc['active_account']}")
    for name, entry in sorted(doc["accounts"].items()):
        lines += _account_lines(name, entry)
    if doc["hold"]:
        lines.append(f"QUEUE HELD: every account is exhausted until {doc['hold']['until']}")
    if doc["partial_swap"]:
        ps = doc["partial_swap"]
        lines.append(
            f"PARTIAL SWAP {ps['from']} -> {ps['to']}: {ps['error']}; run `agentq swap --clear`"
        )
    for swap in doc["swaps"]:
        lines.append(f"swap {swap['time']}: {swap['from']} -> {swap['to']} ({swap['trigger']})")
    for session in doc["sessions"]:
        task = f" working on {session['task']}" if session.get("task") else ""
        wait = session.get("waiting_on_permission_s")
        perm = f", waiting on a permission dialog for {wait}s" if wait is not None else ""
        account = f" on {session['account']}" if session.get("account") else ""
        lines.append(f"session {session['session']}: {session['state']}{task}{account}{perm}")
    if doc["delegation"]:
        d = {k: v for k, v in doc["delegation"].items() if k != "stale"}
        lines.append("delegation: " + ", ".join(f"{k}={v}" for k, v in sorted(d.items())))
    fleet = doc.get("fleet") or {}
    if fleet:
        shown = {k: v for k, v in sorted(fleet.items()) if not isinstance(v, list | dict)}
        lines.append("fleet: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    for stale in doc.get("stale", []):
        where = stale.get("session") or stale.get("provider") or ""
        lines.append(
            f"STALE {stale.get('project')}/{stale.get('name')} ({stale.get('rule')}"
            f"{', ' + str(where) if where else ''}) since {_when(stale.get('since'))}"
        )
    for sent in doc.get("notifications", []):
        outcome = "sent" if sent.get("ok") else f"FAILED ({sent.get('error')})"
        lines.append(
            f"notification {sent.get('time')}: {sent.get('event')} x{sent.get('count')} "
            f"to {sent.get('target')}: {outcome}"
        )
    for wait in doc.get("waiting", []):
        lines.append(f"{wait['project']}/{wait['task']}: {wait['reason']}")
    for path, problems in sorted(doc.get("project_config_problems", {}).items()):
        for problem in problems:
            lines.append(f"{path}: project config: {problem} (global defaults apply)")
    for inbox, names in doc["incomplete"].items():
        lines.append(f"{inbox}: still being written: {', '.join(names)}")
    return "\n".join(lines)


def _when(value: object) -> str:
    """A time as the status shows it (an ISO string as it is, epoch seconds in UTC)."""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC).isoformat(timespec="seconds")
    return str(value)


def _account_lines(name: str, entry: dict[str, Any]) -> list[str]:
    """An account's exhaustion, preemption and each window it has readings of."""
    lines = []
    if entry.get("exhausted_until"):
        lines.append(f"account {name}: exhausted until {entry['exhausted_until']}")
    if entry.get("preempted"):
        lines.append(f"account {name}: takes no new task ({entry['preempted']})")
    for row in entry.get("windows") or []:
        used = row.get("used")
        shown = "?" if used is None else f"{'over ' if row.get('over') else ''}{used}%"
        text = f"account {name}: {row.get('window')} window {shown} used"
        if row.get("exhausted_until"):
            text += f", out until {row['exhausted_until']}"
        elif row.get("resets_at"):
            text += f", resets {row['resets_at']}"
        lines.append(text)
    return lines


def state_path(config: Config) -> Path:
    """Where the daemon keeps its state file."""
    return config.state_dir / "state.json"
