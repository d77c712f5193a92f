"""Notifications, the pure parts: event mapping, coalescing, message text, signature, config."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentq.config.load import config_from_dict
from agentq.config.models import NOTIFICATION_EVENTS, NotificationEvent
from agentq.core import events as ev
from agentq.core.errors import ConfigError
from agentq.daemon.notify import message as msg
from agentq.daemon.notify.apprise_sender import apprise_url
from agentq.daemon.notify.rules import (
    MAX_ITEMS,
    Arrived,
    Coalescer,
    Delivered,
    Flush,
    Message,
    Notice,
    Observation,
    Overflowed,
    Tick,
    Undelivered,
    backoff,
    next_due,
    step,
    to_notice,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _event(kind: str, **fields: Any) -> ev.Event:
    return ev.Event(1, T0, kind, fields)


# --- mapping ------------------------------------------------------------------------------------

MAPPING = [
    pytest.param(
        _event(ev.TASK, project="web", task="a.md", state="failed", reason="bad"),
        ("task_failed", {"project": "web", "task": "a.md", "reason": "bad"}),
        id="a failed task is task_failed with project, task and reason",
    ),
    pytest.param(
        _event(ev.TASK, project="web", task="a.md", state="failed"),
        ("task_failed", {"project": "web", "task": "a.md", "reason": ""}),
        id="a failure without a reason still names the task",
    ),
    pytest.param(
        _event(ev.TASK, project="web", task="a.md", state="done", result="a.md"),
        None,
        id="a done task is nobody's business",
    ),
    pytest.param(
        _event(ev.TASK, project="web", task="a.md", state="pending"), None, id="nor a pending one"
    ),
    pytest.param(
        _event(ev.SWAP, **{"from": "a", "to": "b", "trigger": "quota"}),
        ("swap", {"from": "a", "to": "b", "trigger": "quota"}),
        id="a swap is swap",
    ),
    pytest.param(
        _event(ev.PARTIAL_SWAP, message="stuck"),
        ("partial_swap", {"message": "stuck"}),
        id="a partial swap is partial_swap",
    ),
    pytest.param(
        _event(ev.HOLD, active=True, since="noon", until="2026-01-01T13:00:00+00:00"),
        ("accounts_exhausted", {"since": "noon", "until": "2026-01-01T13:00:00+00:00"}),
        id="a hold is accounts_exhausted, without its active flag",
    ),
    pytest.param(
        _event(ev.PARTIAL_SWAP, active=False),
        None,
        id="a partial swap that was cleared is no news",
    ),
    pytest.param(
        _event(ev.ACCOUNTS_AVAILABLE, account="b"),
        ("accounts_available", {"account": "b"}),
        id="accounts available is accounts_available",
    ),
    pytest.param(
        _event(ev.STALE, project="web", task="a.md", reason="no output for 30m"),
        ("task_stale", {"project": "web", "task": "a.md", "reason": "no output for 30m"}),
        id="a stale task is task_stale",
    ),
    pytest.param(
        _event(ev.DAEMON, state="degraded", reason="watch fallback"),
        ("daemon_degraded", {"reason": "watch fallback"}),
        id="a degraded daemon is daemon_degraded, without its state",
    ),
    pytest.param(
        _event(ev.DAEMON, state="started", pid=7, projects=2),
        ("daemon_started", {"pid": 7, "projects": 2}),
        id="a started daemon is daemon_started",
    ),
    pytest.param(
        _event(ev.DAEMON, state="stopping"), None, id="other daemon states are not notified"
    ),
    pytest.param(
        _event(ev.NOTIFICATION, target="ops", event="swap", count=1, ok=True),
        None,
        id="a notification is never notified (no loop)",
    ),
    pytest.param(_event("something-new", x=1), None, id="an unknown kind is ignored"),
]


@pytest.mark.parametrize(("event", "expected"), MAPPING)
def test_events_map_to_notifications(
    event: ev.Event, expected: tuple[str, dict[str, Any]] | None
) -> None:
    """Each event kind maps to its notification event (or to none)."""
    notice = to_notice(event)
    if expected is None:
        assert notice is None
        return
    assert notice is not None
    assert (notice.event, dict(notice.item)) == (
        expected[0],
        {**expected[1], "time": T0.isoformat()},
    )


def test_every_notification_event_has_a_source() -> None:
    """The mapping reaches every configurable event."""
    reached = {n.event for p in MAPPING if (n := to_notice(p.values[0])) is not None}
    assert reached == set(NOTIFICATION_EVENTS)


# --- coalescing ---------------------------------------------------------------------------------


def _n(event: NotificationEvent = "task_failed", i: int = 0) -> Notice:
    return Notice(event, {"task": f"t{i}.md"})


def _run(
    timeline: list[tuple[float, Observation]], interval: float = 60.0
) -> list[tuple[float, str, int, int]]:
    """Step through ``(time, observation)``; return ``(time, event, count, listed)`` sent."""
    state = Coalescer(interval)
    out = []
    for now, observation in timeline:
        state, messages = step(state, observation, now)
        out += [(now, m.event, m.count, len(m.items)) for m in messages]
    return out


def _in(now: float, *notices: Notice) -> list[tuple[float, Observation]]:
    """Notices taken in together at ``now``, then the tick the shell always follows with."""
    return [(now, Arrived(n)) for n in notices or (_n(),)] + [(now, Tick())]


COALESCING = [
    pytest.param(_in(0), [(0, "task_failed", 1, 1)], id="the first notice goes out at once"),
    pytest.param(
        [(0, Arrived(_n())), (0, Arrived(_n()))],
        [],
        id="a notice alone sends nothing: the tick after it does",
    ),
    pytest.param(
        _in(0, *(_n(i=i) for i in range(3))),
        [(0, "task_failed", 3, 3)],
        id="notices taken in together make one message",
    ),
    pytest.param(
        _in(0) + _in(1) + _in(2) + [(30, Tick())],
        [(0, "task_failed", 1, 1)],
        id="later ones wait for the interval",
    ),
    pytest.param(
        _in(0) + _in(1) + _in(2) + [(60, Tick())],
        [(0, "task_failed", 1, 1), (60, "task_failed", 2, 2)],
        id="after the interval one message stands for all that waited",
    ),
    pytest.param(
        _in(0) + _in(1) + _in(61),
        [(0, "task_failed", 1, 1), (61, "task_failed", 2, 2)],
        id="a notice after the interval takes the waiting ones along",
    ),
    pytest.param(
        _in(0) + _in(100),
        [(0, "task_failed", 1, 1), (100, "task_failed", 1, 1)],
        id="after a quiet interval the next notice goes out at once again",
    ),
    pytest.param(
        _in(0) + _in(1, _n("swap")),
        [(0, "task_failed", 1, 1), (1, "swap", 1, 1)],
        id="each event kind has its own interval",
    ),
    pytest.param(
        _in(0) + _in(1, *(_n(i=i) for i in range(25))) + [(60, Tick())],
        [(0, "task_failed", 1, 1), (60, "task_failed", 25, MAX_ITEMS)],
        id="a message lists ten notices and counts all of them",
    ),
    pytest.param(
        _in(0) + _in(1) + [(2, Flush())],
        [(0, "task_failed", 1, 1), (2, "task_failed", 1, 1)],
        id="stopping flushes what waits, interval or not",
    ),
    pytest.param([(0, Flush()), (1, Tick())], [], id="nothing waiting, nothing sent"),
    pytest.param(
        [(0, Overflowed("task_failed", 40)), (0, Tick())],
        [(0, "task_failed", 40, 0)],
        id="notices the buffer could not hold are counted without items",
    ),
    pytest.param(
        _in(0) + _in(1) + [(2, Overflowed("task_failed", 40)), (2, Tick()), (60, Tick())],
        [(0, "task_failed", 1, 1), (60, "task_failed", 41, 1)],
        id="overflow joins the waiting message and the count stays exact",
    ),
    pytest.param(
        [(0, Overflowed("task_failed", 0)), (0, Tick())], [], id="an empty overflow is no message"
    ),
]


@pytest.mark.parametrize(("timeline", "expected"), COALESCING)
def test_coalescing(
    timeline: list[tuple[float, Observation]], expected: list[tuple[float, str, int, int]]
) -> None:
    """At most one message per event kind per interval; counts say how many it stands for."""
    assert _run(timeline) == expected


def test_min_interval_zero_sends_every_tick() -> None:
    """With no interval every tick that finds notices sends them."""
    timeline = _in(0, _n(i=0)) + _in(0, _n(i=1)) + _in(1, _n(i=2), _n(i=3))
    assert _run(timeline, interval=0) == [
        (0, "task_failed", 1, 1),
        (0, "task_failed", 1, 1),
        (1, "task_failed", 2, 2),
    ]


def test_next_due_is_the_earliest_waiting_kind() -> None:
    """The shell sleeps until the earliest waiting message is due, or forever when none waits."""
    state = Coalescer(60)
    assert next_due(state) is None
    for now, observation in _in(0) + _in(10, _n("swap")) + _in(20) + _in(30, _n("swap")):
        state, _ = step(state, observation, now)
    assert next_due(state) == 60


def test_thirty_failures_in_ten_seconds_make_at_most_three_messages() -> None:
    """30 failures within 10 s (interval 5 s): at most 3 messages whose counts add up to 30."""
    timeline: list[tuple[float, Observation]] = []
    for i in range(30):
        timeline += _in(i * 10 / 29, _n(i=i))
    timeline.append((100, Tick()))
    sent = _run(timeline, interval=5)
    assert len(sent) <= 3
    assert sum(count for _, _, count, _ in sent) == 30


_OBSERVATIONS = st.one_of(
    st.builds(Arrived, st.builds(_n, st.sampled_from(["task_failed", "swap"]), st.integers(0, 99))),
    st.builds(Overflowed, st.sampled_from(["task_failed", "swap"]), st.integers(0, 50)),
    st.builds(Tick),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0, 30), _OBSERVATIONS, st.booleans()), max_size=80),
    st.floats(0, 20),
)
def test_counts_add_up_and_intervals_hold(
    steps: list[tuple[float, Observation, bool]], interval: float
) -> None:
    """Whatever happens and fails: delivered counts add up exactly, one per kind per interval."""
    now = 0.0
    state = Coalescer(interval)
    delivered_at: dict[str, list[float]] = {"task_failed": [], "swap": []}
    delivered: dict[str, int] = {"task_failed": 0, "swap": 0}
    expected: dict[str, int] = {"task_failed": 0, "swap": 0}
    for dt, observation, ok in steps:
        now += dt
        if isinstance(observation, Arrived):
            expected[observation.notice.event] += 1
        elif isinstance(observation, Overflowed):
            expected[observation.event] += observation.count
        state, out = step(state, observation, now)
        for message in out:
            assert message.count > 0 and len(message.items) <= min(message.count, MAX_ITEMS)
            if ok:
                delivered[message.event] += message.count
                delivered_at[message.event].append(now)
            state, _ = step(state, Delivered(message) if ok else Undelivered(message), now)
    state, out = step(state, Flush(), now + 1)
    for message in out:
        delivered[message.event] += message.count
    assert not state.pending
    assert delivered == expected
    for times in delivered_at.values():
        assert all(a + interval <= b for a, b in itertools.pairwise(times))


def test_an_undelivered_message_is_kept_and_the_target_rests() -> None:
    """A failed message goes back in front; the target rests 1 s, 2 s, …; success resets."""
    state = Coalescer(0)
    sent: list[tuple[float, int, tuple[str, ...]]] = []

    def at(now: float, *observations: Observation) -> list[Message]:
        nonlocal state
        out: list[Message] = []
        for observation in observations:
            state, messages = step(state, observation, now)
            out += messages
        sent.extend((now, m.count, tuple(i["task"] for i in m.items)) for m in out)
        return out

    [first] = at(0, Arrived(_n(i=1)), Tick())
    at(0, Undelivered(first))
    assert (state.failures, state.resume_at, next_due(state)) == (1, 1.0, 1.0)
    assert at(0.5, Arrived(_n(i=2)), Tick()) == []
    [second] = at(1.0, Tick())
    at(1.0, Undelivered(second))
    assert (state.failures, state.resume_at) == (2, 3.0)
    [third] = at(3.0, Tick())
    at(3.0, Delivered(third))
    assert (state.failures, state.pending) == (0, {})
    assert sent == [
        (0, 1, ("t1.md",)),
        (1.0, 2, ("t1.md", "t2.md")),
        (3.0, 2, ("t1.md", "t2.md")),
    ]


def test_a_round_that_fails_twice_rests_once_and_retries_after_the_rest() -> None:
    """Two messages failing in one round count as one failure; the retry waits for the rest."""
    state = Coalescer(60)
    for observation in (Arrived(_n()), Arrived(_n("swap"))):
        state, _ = step(state, observation, 0)
    state, messages = step(state, Tick(), 0)
    assert len(messages) == 2
    for message in messages:
        state, _ = step(state, Undelivered(message), 0)
    assert (state.failures, state.resume_at) == (1, 1.0)
    assert next_due(state) == 1.0  # nobody received them: min_interval does not apply


@pytest.mark.parametrize(
    ("failures", "seconds"),
    [(1, 1.0), (2, 2.0), (3, 4.0), (9, 256.0), (10, 300.0), (10_000, 300.0)],
    ids=["one", "two", "three", "nine", "capped at five minutes", "no overflow"],
)
def test_backoff_doubles_up_to_five_minutes(failures: int, seconds: float) -> None:
    """The rest after failures in a row doubles from 1 s and stops at 5 min."""
    assert backoff(failures) == seconds


# --- messages -----------------------------------------------------------------------------------


def test_webhook_body_has_the_documented_fields_and_a_verifiable_signature() -> None:
    """The body is the documented JSON; the signature is the HMAC-SHA256 of those bytes."""
    items = tuple({"project": "web", "task": f"t{i}.md", "reason": "boom"} for i in range(10))
    message = Message("task_failed", 30, items)
    body = msg.webhook_body(message, "build-1", T0)
    doc = json.loads(body)
    assert set(doc) == {"event", "count", "items", "text", "host", "time"}
    assert (doc["event"], doc["count"], len(doc["items"]), doc["host"]) == (
        "task_failed",
        30,
        10,
        "build-1",
    )
    assert doc["text"].startswith("30 tasks failed: web/t0.md: boom; ")
    assert doc["text"].endswith("and 20 more")
    secret = "s3cret-s3cret-s3cret"  # noqa: S105 - a test value
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert msg.signature(body, secret) == f"sha256={expected}"


@pytest.mark.parametrize(
    ("message", "text"),
    [
        pytest.param(
            Message("task_failed", 1, ({"project": "p", "task": "a.md", "reason": "bad"},)),
            "task failed: p/a.md: bad",
            id="one failure names the task and its reason",
        ),
        pytest.param(
            Message("swap", 1, ({"from": "a", "to": "b", "trigger": "quota"},)),
            "account swap: a → b (quota)",
            id="a swap says from where to where and why",
        ),
        pytest.param(
            Message("accounts_exhausted", 1, ({"since": "noon", "until": "13:00"},)),
            "every account is exhausted, the queue holds: until 13:00",
            id="a hold says until when",
        ),
        pytest.param(
            Message("daemon_started", 1, ({"pid": 7, "projects": 2, "time": "x"},)),
            "daemon started: pid=7, projects=2",
            id="other events list their fields",
        ),
        pytest.param(
            Message("task_failed", 50, ({"task": "a.md"},), overflowed=49),
            "50 tasks failed: a.md; and 49 more (49 not listed: the notification buffer was full)",
            id="an overflow says so",
        ),
        pytest.param(
            Message("task_failed", 1, ({"task": "a.md", "reason": "line one\nline two"},)),
            "task failed: a.md: line one line two",
            id="the text stays on one line",
        ),
    ],
)
def test_message_text(message: Message, text: str) -> None:
    """The text says what happened, how often, and lists the items on one line."""
    assert msg.text(message) == text


@pytest.mark.parametrize(
    ("kind", "url", "expected"),
    [
        pytest.param(
            "ntfy",
            "https://ntfy.example.test/agentq",
            "ntfys://ntfy.example.test/agentq",
            id="an https ntfy topic is ntfys",
        ),
        pytest.param(
            "ntfy",
            "http://127.0.0.1:8080/agentq",
            "ntfy://127.0.0.1:8080/agentq",
            id="an http ntfy topic is ntfy",
        ),
        pytest.param(
            "slack",
            "https://hooks.slack.com/services/T/B/X",
            "https://hooks.slack.com/services/T/B/X",
            id="a slack webhook is kept",
        ),
        pytest.param("apprise", "tgram://bot/chat", "tgram://bot/chat", id="apprise is kept"),
    ],
)
def test_shorthand_kinds_become_apprise_urls(kind: str, url: str, expected: str) -> None:
    """kind ntfy and slack are Apprise URLs in disguise."""
    assert apprise_url(kind, url) == expected


# --- configuration ------------------------------------------------------------------------------


def _problems(data: dict[str, Any], tmp_path: Path) -> list[str]:
    try:
        config_from_dict(data, {"HOME": str(tmp_path)}, tmp_path)
    except ConfigError as exc:
        return exc.problems
    return []


def _secret(tmp_path: Path, mode: int, text: str = "0123456789abcdef0123") -> Path:
    path = tmp_path / f"secret-{mode:o}"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_targets_get_names_events_and_intervals_by_default(tmp_path: Path) -> None:
    """A target without a name is <kind>-<index>; all events; one message a minute."""
    config = config_from_dict(
        {
            "notifications": [
                {"kind": "apprise", "url": "json://127.0.0.1/x"},
                {"kind": "webhook", "url": "https://h.example.test/x", "name": "ops"},
                {"kind": "ntfy", "url": "https://ntfy.example.test/t", "min_interval": "5s"},
            ]
        },
        {"HOME": str(tmp_path)},
        tmp_path,
    )
    targets = config.notifications
    assert [t.name for t in targets] == ["apprise-0", "ops", "ntfy-2"]
    assert targets[0].events == list(NOTIFICATION_EVENTS)
    assert [t.min_interval for t in targets] == [60.0, 60.0, 5.0]


def test_a_webhook_secret_file_must_be_private(tmp_path: Path) -> None:
    """A group- or world-readable secret file is refused with the chmod that fixes it."""
    good = _secret(tmp_path, 0o600)
    loose = _secret(tmp_path, 0o640)
    short = tmp_path / "short"
    short.write_text("tiny")
    short.chmod(0o600)
    base = {"kind": "webhook", "url": "https://h.example.test/x"}
    assert _problems({"notifications": [{**base, "secret_file": str(good)}]}, tmp_path) == []
    data = {
        "notifications": [
            {**base, "secret_file": str(loose)},
            {**base, "secret_file": str(tmp_path / "missing")},
            {**base, "secret_file": str(short)},
            {"kind": "apprise", "url": "json://h/x", "secret_file": str(good)},
        ]
    }
    assert _problems(data, tmp_path) == [
        f"notifications[0].secret_file: secret file {loose} is open to group or others "
        f"(mode 0640); it must be 0600 or stricter (chmod 600 {loose})",
        f"notifications[1].secret_file: secret file {tmp_path / 'missing'} does not exist",
        f"notifications[2].secret_file: secret file {short} holds fewer than 16 characters "
        "(e.g. openssl rand -hex 32)",
        "notifications[3].secret_file: only a webhook target signs its messages",
    ]


def test_url_problems_never_echo_the_url(tmp_path: Path) -> None:
    """A bad URL is reported without its text (it often carries a token)."""
    token = "TOKEN-abc123xyz"  # noqa: S105 - a test value
    data = {
        "notifications": [
            {"kind": "webhook", "url": f"ftp://h/{token}"},
            {"kind": "apprise", "url": f"no scheme {token}"},
            {"kind": "slack", "url": f"hooks.slack.com/{token}"},
        ]
    }
    problems = _problems(data, tmp_path)
    assert problems == [
        "notifications[0].url: must be an http:// or https:// URL",
        "notifications[1].url: must be an Apprise URL (scheme://..., e.g. ntfys://ntfy.sh/topic)",
        "notifications[2].url: must be an http:// or https:// URL",
    ]
    assert token not in repr(
        config_from_dict(
            {"notifications": [{"kind": "webhook", "url": f"https://h/{token}"}]},
            {"HOME": str(tmp_path)},
            tmp_path,
        ).notifications
    )


def test_target_names_are_unique_and_unknown_keys_are_errors(tmp_path: Path) -> None:
    """Two targets with one name, or a misspelt key, are configuration errors."""
    data = {
        "notifications": [
            {"kind": "webhook", "url": "https://h/x", "name": "ops"},
            {"kind": "apprise", "url": "json://h/x", "name": "ops"},
        ]
    }
    assert _problems(data, tmp_path) == [
        "notifications[1].name: duplicate target name 'ops' (also item 0)"
    ]
    data = {"notifications": [{"kind": "webhook", "url": "https://h/x", "min_intervall": "5s"}]}
    assert _problems(data, tmp_path) == ["notifications[0].min_intervall: unknown key"]
