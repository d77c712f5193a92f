"""The health rules behind the watchdog pings, and the ``STATUS=`` line."""

from __future__ import annotations

from typing import Any

import pytest

from agentq.daemon.health import (
    DISK,
    LAG,
    OVERFLOW,
    POLLED,
    Health,
    HealthMonitor,
    Summary,
    assess,
    conditions,
    status_line,
)


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


POLLED_INBOX = {"/p/inbox": {"mode": "polling", "reason": "inotify unavailable: ENOSPC"}}
WATCHED_INBOX = {"/p/inbox": {"mode": "inotify", "reason": ""}}


@pytest.mark.parametrize(
    ("watches", "probe_error", "overflows", "lag", "found"),
    [
        (WATCHED_INBOX, None, 0, 0.1, set()),
        (POLLED_INBOX, None, 0, 0.1, {POLLED}),
        (WATCHED_INBOX, None, 3, 0.1, {OVERFLOW}),
        (WATCHED_INBOX, None, 0, 10.5, {LAG}),
        (WATCHED_INBOX, None, 0, 10.0, set()),
        (WATCHED_INBOX, "Read-only file system", 0, 0.1, {DISK}),
        (POLLED_INBOX, "EIO", 1, 30.0, {POLLED, OVERFLOW, LAG, DISK}),
    ],
    ids=[
        "watched, written, quick and no overflow is not degraded",
        "an inbox polled is degraded, even as the declared fallback",
        "an inotify overflow since the last check is",
        "a pass slower than the limit is",
        "a pass exactly at the limit is not",
        "a failed write probe is",
        "every condition at once is reported apart",
    ],
)
def test_degraded_conditions(
    watches: dict[str, dict[str, Any]],
    probe_error: str | None,
    overflows: int,
    lag: float,
    found: set[str],
) -> None:
    """Each degraded condition, one row."""
    assert set(conditions(watches, probe_error, overflows, lag, 10.0)) == found


def test_each_condition_is_reported_once_when_it_begins_and_once_when_it_ends() -> None:
    """degraded at the first check that finds it, nothing while it lasts, recovered after."""
    emitted: list[tuple[str, dict[str, Any]]] = []
    monitor = HealthMonitor(lambda kind, /, **fields: emitted.append((kind, fields)), 10.0)
    checks: list[tuple[dict[str, Any], str | None, int, float]] = [
        (WATCHED_INBOX, None, 0, 0.1),
        (POLLED_INBOX, None, 0, 0.1),  # polling begins
        (POLLED_INBOX, None, 0, 0.1),  # goes on: no news
        (POLLED_INBOX, None, 2, 0.1),  # an overflow (cumulative count 2)
        (POLLED_INBOX, None, 2, 0.1),  # none since: the overflow recovered
        (WATCHED_INBOX, None, 2, 12.0),  # watched again; a slow pass
        (WATCHED_INBOX, None, 2, 0.1),
    ]
    for watches, probe, overflows, lag in checks:
        monitor.check(watches, probe, overflows, lag)
    assert [(k, f["state"], f["condition"]) for k, f in emitted] == [
        ("daemon", "degraded", POLLED),
        ("daemon", "degraded", OVERFLOW),
        ("daemon", "recovered", OVERFLOW),
        ("daemon", "degraded", LAG),
        ("daemon", "recovered", POLLED),
        ("daemon", "recovered", LAG),
    ]
    assert all(f["reason"] for _, f in emitted)
