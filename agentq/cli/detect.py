"""``agentq detect``: classify a pane capture and print the reading as one JSON line.

:func:`detect` is pure (text, time and zone in, a dict out); :func:`run_detect` is the thin
shell the CLI calls: it reads the file or stdin and the clock, and writes one line.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agentq.agents.classify import Login, classify_pane
from agentq.agents.resets import parse_reset

logger = logging.getLogger(__name__)

AGENTS = frozenset({"claude-code", "sim"})  # the simulator shows Claude Code's signatures
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def detect(
    text: str, now: datetime, tz: str, title: str | None = None, login: Login = Login.UNKNOWN
) -> dict[str, object]:
    """The pane reading as a dict, with ``reset_at`` (ISO 8601) when the reset resolves.

    A usage warning's reset resolves into ``warning.reset_at`` the same way.
    """
    reading = classify_pane(text, title, login=login)
    result = reading.to_dict()
    if reading.reset_text:
        reset_at = parse_reset(reading.reset_text, now, tz)
        if reset_at is not None:
            result["reset_at"] = reset_at.isoformat()
    if reading.warning is not None and reading.warning.reset_text:
        warned_at = parse_reset(reading.warning.reset_text, now, tz)
        if warned_at is not None and isinstance(result["warning"], dict):
            result["warning"]["reset_at"] = warned_at.isoformat()
    return result


def run_detect(
    source: str | None,
    now_iso: str | None,
    tz: str | None,
    stdin: TextIO,
    stdout: TextIO,
    *,
    stderr: TextIO | None = None,
    agent: str = "claude-code",
    login: str = "unknown",
) -> int:
    """Read a pane capture from ``source`` (a path, or ``-``/None for stdin) and print its reading.

    Returns 0 on success, 1 when the file cannot be read, 2 for a bad ``--now``/``--tz``/agent
    or ``--login``.
    """
    errors = stderr if stderr is not None else stdout
    zone = tz or "UTC"
    problem = _check_options(agent, zone)
    if problem is None and login not in set(Login):
        problem = f"--login: unknown login {login!r} (known: {', '.join(Login)})"
    now = None
    if problem is None:
        now = _parse_now(now_iso, zone) if now_iso else datetime.now(UTC)
        if now is None:
            problem = f"--now: not an ISO 8601 time: {now_iso!r}"
    if problem is not None or now is None:
        errors.write(f"agentq detect: {problem}\n")
        return EXIT_USAGE
    try:
        text = stdin.read() if source in (None, "-") else _read(Path(str(source)))
    except OSError as exc:
        errors.write(f"agentq detect: cannot read {source}: {exc.strerror or exc}\n")
        return EXIT_FAILURE
    reading = detect(text, now, zone, login=Login(login))
    stdout.write(json.dumps(reading, ensure_ascii=False) + "\n")
    return EXIT_OK


def _check_options(agent: str, zone: str) -> str | None:
    """A one-line problem with the agent name or the zone, or None."""
    if agent not in AGENTS:
        return f"--agent: unknown agent {agent!r} (known: {', '.join(sorted(AGENTS))})"
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return f"--tz: unknown time zone {zone!r}"
    return None


def _parse_now(now_iso: str, zone: str) -> datetime | None:
    """The ``--now`` time; a time without an offset is read in the configured zone."""
    try:
        now = datetime.fromisoformat(now_iso.strip())
    except ValueError:
        return None
    return now if now.tzinfo is not None else now.replace(tzinfo=ZoneInfo(zone))


def _read(path: Path) -> str:
    """A capture file's text; undecodable bytes become U+FFFD rather than an error."""
    return path.read_text(encoding="utf-8", errors="replace")
