"""The health rules behind the watchdog pings, and the ``STATUS=`` line."""

from __future__ import annotations

from typing import Any

import pytest

from agentq.daemon.health import Health, Summary, assess, status_line


@pytest.mark.parametrize(
    ("watches", "probe_error", "problems"),
    [
        ({}, None, ()),
        ({"/p/inbox": {"mode": "inotify", "reason": ""}}, None, ()),
        ({"/p/inbox": {"mode": "polling", "reason": "inotify unavailable: ENOSPC"}}, None, ()),
        ({"/p/inbox": {"mode": "polling", "reason": ""}}, None, ("inbox /p/inbox is polling",)),
        ({"/p/inbox": {"mode": "lost"}}, None, ("inbox /p/inbox is lost",)),
        ({"/p/inbox": {}}, None, ("inbox /p/inbox is not watched",)),
        ({}, "No space left on device", ("state dir not writable: No space left on device",)),
    ],
    ids=[
        "nothing watched yet is healthy",
        "an inotify watch is healthy",
        "the declared polling fallback is healthy",
        "polling without a reason is not",
        "an unknown watch state is not",
        "an inbox without a mode is not",
        "a failed disk write is not",
    ],
)
def test_assess(
    watches: dict[str, dict[str, Any]], probe_error: str | None, problems: tuple[str, ...]
) -> None:
    """Each rule, one row."""
    health = assess(watches, probe_error)
    assert health.problems == problems
    assert health.ok is (not problems)


@pytest.mark.parametrize(
    ("summary", "health", "line"),
    [
        (Summary(pending=0), Health(), "0 pending, 0 working"),
        (
            Summary(
                pending=3,
                working=1,
                delegated=2,
                sessions=[{"session": "a", "task": "p/x.md"}, {"session": "b"}],
                account="work",
            ),
            Health(),
            "3 pending, 1 working, 2 delegated, sessions 1/2 busy, account work",
        ),
        (
            Summary(pending=1, sessions=[], account="b", hold_until="2026-01-01T15:00:00+00:00"),
            Health(),
            "1 pending, 0 working, sessions 0/0 busy, account b, "
            "hold until 2026-01-01T15:00:00+00:00 (all accounts exhausted)",
        ),
        (
            Summary(pending=0, partial_swap=True),
            Health(("state dir not writable: EROFS",)),
            "unhealthy (state dir not writable: EROFS): 0 pending, 0 working, "
            "partial swap: run agentq swap --clear",
        ),
    ],
    ids=["idle", "busy with sessions and providers", "holding", "unhealthy in a partial swap"],
)
def test_status_line(summary: Summary, health: Health, line: str) -> None:
    """One line, nothing in it that moves by itself."""
    assert status_line(summary, health) == line
