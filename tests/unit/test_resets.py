"""Tests for parse_reset: every reset wording Claude Code printed, DST and year roll-over."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentq.agents.resets import parse_reset

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2025, 11, 20, 22, 0, tzinfo=UTC)  # 23:00 in Paris


def _at(zone: str, stamp: str) -> datetime:
    """An aware datetime in ``zone`` from a naive ISO stamp."""
    return datetime.fromisoformat(stamp).replace(tzinfo=ZoneInfo(zone))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("11pm (UTC)", _at("UTC", "2025-11-20T23:00")),
        ("11:30pm (Europe/Paris)", _at("Europe/Paris", "2025-11-20T23:30")),
        ("12:30am (Europe/Paris)", _at("Europe/Paris", "2025-11-21T00:30")),
        ("Nov 24, 5am (UTC)", _at("UTC", "2025-11-24T05:00")),
        ("Nov 24, 12am (America/New_York)", _at("America/New_York", "2025-11-24T00:00")),
        ("Jan 2, 2027, 5am (UTC)", _at("UTC", "2027-01-02T05:00")),
        ("11:30pm", _at("Europe/Paris", "2025-11-20T23:30")),
        ("(11:30pm)", _at("Europe/Paris", "2025-11-20T23:30")),
        ("Oct 24, 1 PM (Asia/Dubai)", _at("Asia/Dubai", "2026-10-24T13:00")),
        ("Oct 24", _at("Europe/Paris", "2026-10-24T00:00")),
        ("Oct 31, 9am", _at("Europe/Paris", "2026-10-31T09:00")),
        ("Dec 2, 7pm (Europe/Moscow)", _at("Europe/Moscow", "2025-12-02T19:00")),
        ("1755615600", datetime.fromtimestamp(1755615600, UTC)),
        ("5pm (Europe/Warsaw).", _at("Europe/Warsaw", "2025-11-21T17:00")),
        ("2pm", _at("Europe/Paris", "2025-11-21T14:00")),
        ("2pm (Pacific/Auckland)", _at("Pacific/Auckland", "2025-11-21T14:00")),
        ("8:30pm (Asia/Tokyo)", _at("Asia/Tokyo", "2025-11-21T20:30")),
        ("17:00", _at("Europe/Paris", "2025-11-21T17:00")),
        ("in 2h 30m", NOW + timedelta(hours=2, minutes=30)),
        ("in 45 minutes", NOW + timedelta(minutes=45)),
        ("2026-04-01 at 00:00 UTC", _at("UTC", "2026-04-01T00:00")),
    ],
    ids=str,
)
def test_every_reset_format_resolves_to_its_next_occurrence(text: str, expected: datetime) -> None:
    """Each printed wording gives the expected instant, zone-less ones in the configured zone."""
    result = parse_reset(text, NOW, "Europe/Paris")
    assert result == expected
    assert result is not None and result.tzinfo is not None


@pytest.mark.parametrize(
    "text", ["", "soon", "13pm", "25:00", "Foo 3, 5pm", "5pm (Mars/Olympus_Mons)", "in 3 parsecs"]
)
def test_unreadable_reset_text_gives_none(text: str) -> None:
    """Text that names no time, or an unknown zone (never guessed), gives None."""
    assert parse_reset(text, NOW, "UTC") is None


def test_a_time_already_past_today_is_tomorrow() -> None:
    """A clock time earlier than now means the same time tomorrow."""
    now = datetime(2025, 11, 20, 23, 30, tzinfo=UTC)
    assert parse_reset("11pm (UTC)", now, "UTC") == datetime(2025, 11, 21, 23, 0, tzinfo=UTC)


def test_the_exact_current_time_is_not_after_now() -> None:
    """ "After now" is strict: a reset equal to now is tomorrow's."""
    now = datetime(2025, 11, 20, 23, 0, tzinfo=UTC)
    assert parse_reset("11pm (UTC)", now, "UTC") == datetime(2025, 11, 21, 23, 0, tzinfo=UTC)


def test_a_month_and_day_after_new_year_rolls_into_next_year() -> None:
    """On Dec 31, "Jan 2, 5am" is two days ahead, in the next year."""
    now = datetime(2025, 12, 31, 20, 0, tzinfo=UTC)
    assert parse_reset("Jan 2, 5am (UTC)", now, "UTC") == datetime(2026, 1, 2, 5, tzinfo=UTC)


def test_a_zone_ahead_of_utc_crosses_new_year_first() -> None:
    """At 23:30 UTC on Dec 31 it is already Jan 1 in Tokyo: "Jan 1, 9am (Asia/Tokyo)" is today."""
    now = datetime(2025, 12, 31, 23, 30, tzinfo=UTC)
    result = parse_reset("Jan 1, 9am (Asia/Tokyo)", now, "UTC")
    assert result == datetime(2026, 1, 1, 9, tzinfo=ZoneInfo("Asia/Tokyo"))


def test_a_date_only_reset_is_current_for_its_whole_day() -> None:
    """Read on Oct 24 itself, "Oct 24" is that day (already due), not next year's."""
    now = datetime(2026, 10, 24, 15, 0, tzinfo=PARIS)
    assert parse_reset("Oct 24", now, "Europe/Paris") == datetime(2026, 10, 24, tzinfo=PARIS)


def test_feb_29_waits_for_a_leap_year() -> None:
    """A day that does not exist this year is found in the next year that has it."""
    now = datetime(2025, 3, 1, tzinfo=UTC)
    assert parse_reset("Feb 29, 5am (UTC)", now, "UTC") == datetime(2028, 2, 29, 5, tzinfo=UTC)


def test_an_explicit_year_is_taken_as_written() -> None:
    """With a year the date is exact, even when it is not in the future."""
    result = parse_reset("Jan 2, 2025, 5am (UTC)", NOW, "UTC")
    assert result == datetime(2025, 1, 2, 5, tzinfo=UTC)


def test_spring_forward_gap_moves_the_reset_to_the_first_real_instant() -> None:
    """2:30am does not exist in Paris on 2026-03-29; the reset is 3:30am CEST (01:30 UTC)."""
    now = datetime(2026, 3, 28, 22, 0, tzinfo=UTC)
    result = parse_reset("2:30am (Europe/Paris)", now, "UTC")
    assert result is not None
    assert result.astimezone(UTC) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)


def test_fall_back_keeps_the_wall_clock_time_on_the_next_day() -> None:
    """Across the October change "11pm" tomorrow is 23:00 CET: 23.5 clock hours + the extra hour."""
    now = datetime(2026, 10, 24, 21, 30, tzinfo=UTC)  # 23:30 CEST
    result = parse_reset("11pm (Europe/Paris)", now, "UTC")
    assert result == datetime(2026, 10, 25, 23, 0, tzinfo=PARIS)
    assert result is not None
    assert result - now == timedelta(hours=24, minutes=30)


def test_zone_less_text_uses_the_configured_zone_across_dst() -> None:
    """ "5am" with tz America/New_York on the November change is 5am EST (10:00 UTC)."""
    now = datetime(2025, 11, 2, 4, 0, tzinfo=UTC)  # 00:00 EDT, the day clocks fall back
    result = parse_reset("5am", now, "America/New_York")
    assert result is not None
    assert result.astimezone(UTC) == datetime(2025, 11, 2, 10, 0, tzinfo=UTC)


def test_epoch_in_milliseconds_is_accepted() -> None:
    """The old ``|<epoch>`` form also arrives in milliseconds from some tools."""
    assert parse_reset("1755615600000", NOW, "UTC") == datetime.fromtimestamp(1755615600, UTC)


def test_a_naive_now_is_read_in_the_configured_zone() -> None:
    """A naive ``now`` is taken as wall time in ``tz`` rather than rejected."""
    result = parse_reset("11pm", datetime(2025, 11, 20, 22, 0), "Europe/Paris")
    assert result == datetime(2025, 11, 20, 23, 0, tzinfo=PARIS)


@settings(max_examples=300)
@given(
    text=st.text(max_size=40),
    now=st.datetimes(timezones=st.just(UTC)),
    tz=st.sampled_from(["UTC", "Europe/Paris", "Pacific/Chatham", "Not/AZone"]),
)
def test_parse_reset_never_raises_and_returns_aware_datetimes(
    text: str, now: datetime, tz: str
) -> None:
    """Any text, any time (year 1 to 9999), any zone: None or an aware datetime."""
    result = parse_reset(text, now, tz)
    assert result is None or result.tzinfo is not None


@settings(max_examples=300)
@given(
    hour=st.integers(1, 12),
    minute=st.integers(0, 59),
    half=st.sampled_from(["am", "pm"]),
    now=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    zone=st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Australia/Sydney"]),
)
def test_a_time_of_day_is_always_within_a_day_after_now(
    hour: int, minute: int, half: str, now: datetime, zone: str
) -> None:
    """The next occurrence of a wall-clock time is after now and at most ~a day (DST) ahead."""
    result = parse_reset(f"{hour}:{minute:02d}{half} ({zone})", now, "UTC")
    assert result is not None
    assert now < result <= now + timedelta(hours=25)
