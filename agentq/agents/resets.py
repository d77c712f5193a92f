"""Turn an agent's quota reset text ("11:30pm (Europe/Paris)", "Nov 24, 5am (UTC)") into a datetime.

Pure: the current time and the configured zone are parameters. Every form Claude Code has
printed is accepted: a time of day, a month and day with or without a year and with or
without a time, a zone in parentheses or none (then the configured zone applies), the retry
line's bare ``(11:30pm)``, and the old ``…|<unix epoch>`` form. A text without a year means
its next occurrence after ``now``; wall-clock times are resolved with zoneinfo, so DST
changes and year roll-overs come out right.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agentq.core.durations import parse_duration

logger = logging.getLogger(__name__)

_MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)

# A date part ("Nov 24", "Jan 2, 2027"), then a time ("5am", "11:30 PM", "17:00"), then a zone
# in parentheses; each part optional, at least a date or a time required (checked below).
_RESET_RE = re.compile(
    r"""
    ^(?:resets?\s+(?:at\s+)?)?
    (?:(?P<month>[A-Za-z]{3,9})\.?\s+(?P<day>\d{1,2})(?:st|nd|rd|th)?
       (?:\s*,?\s*(?P<year>\d{4})\b)?
       (?:\s*,?\s*(?:at\s+)?)?
    )?
    (?:(?P<hour>\d{1,2})(?::(?P<minute>\d{2}))?\s?(?P<ampm>[ap])\.?m\.?
      |(?P<h24>\d{1,2}):(?P<m24>\d{2})
    )?
    \s*(?:\((?P<zone>[^()]{1,64})\))?$
    """,
    re.VERBOSE | re.IGNORECASE,
)
_EPOCH_RE = re.compile(r"^\|?\s*(?P<epoch>\d{9,13})$")
# "in 5m", "in 2h 30m", "in 3 hours" (newer banners count down instead of naming a time).
_RELATIVE_RE = re.compile(r"^in\s+(?P<span>(?:\d{1,4}\s*[a-z]{1,7}\s*){1,4})$", re.IGNORECASE)
_RELATIVE_PART = re.compile(r"(\d{1,4})\s*([a-z]{1,7})", re.IGNORECASE)
_UNIT_ALIASES = {"d": "d", "day": "d", "days": "d", "h": "h", "hr": "h", "hrs": "h", "hour": "h"}
_UNIT_ALIASES |= {"hours": "h", "m": "m", "min": "m", "mins": "m", "minute": "m", "minutes": "m"}
_UNIT_ALIASES |= {"s": "s", "sec": "s", "secs": "s", "second": "s", "seconds": "s"}
# "2026-04-01 at 00:00 UTC" (the API's own "regain access on …" wording).
_ISO_RE = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})(?:(?:\s+at\s+|[ T])(?P<clock>\d{1,2}:\d{2})(?::\d{2})?)?"
    r"\s*\(?(?P<zone>[A-Za-z][\w/+:-]{0,40})?\)?$"
)
_OFFSET_ZONE_RE = re.compile(
    r"^(?:UTC|GMT)\s*(?P<sign>[+-])(?P<h>\d{1,2})(?::?(?P<m>\d{2}))?$", re.I
)
# A year is searched this far ahead for a month/day that exists (Feb 29).
_YEARS_AHEAD = 8


def parse_reset(reset_text: str, now: datetime, tz: str) -> datetime | None:
    """Return the reset moment named by ``reset_text`` (aware), or None when it cannot be read."""
    text = _clean(reset_text)
    try:
        epoch = _EPOCH_RE.match(text)
        if epoch:
            return _from_epoch(int(epoch["epoch"]), tz)
        relative = _RELATIVE_RE.match(text)
        if relative:
            return _after(relative["span"], now, tz)
        iso = _ISO_RE.match(text)
        if iso:
            return _from_iso(iso, tz)
        match = _RESET_RE.match(text)
        return _from_wall_text(match, now, tz) if match else None
    except (OverflowError, ValueError):
        # Out-of-range dates (year 9999 roll-over, a bogus epoch) are unreadable, not errors.
        return None


def _from_wall_text(match: re.Match[str], now: datetime, tz: str) -> datetime | None:
    """The next moment matching a month/day and/or a time of day, in its zone or ``tz``."""
    if not (match["month"] or match["hour"] or match["h24"]):
        return None
    zone = _zone(match["zone"].strip()) if match["zone"] else _zone(tz)
    if zone is None:
        return None
    clock = _clock(match)
    if now.tzinfo is None:
        now = now.replace(tzinfo=zone)
    if match["month"]:
        month = _month(match["month"])
        if month is None:
            return None
        year = int(match["year"]) if match["year"] else None
        return _next_date(month, int(match["day"]), year, clock, now=now, zone=zone)
    if clock is None:  # unreachable: a time is required above when there is no date
        return None
    return _next_time(clock, now, zone)


def _clean(reset_text: str) -> str:
    """Trim whitespace, a trailing period and the retry line's surrounding parentheses."""
    text = " ".join(reset_text.split()).rstrip(".").strip()
    if text.startswith("(") and text.endswith(")") and text.count("(") == 1:
        text = text[1:-1].strip()
    return text


def _clock(match: re.Match[str]) -> time | None:
    """The time of day in the match, or None when there is none; ValueError when invalid."""
    if match["hour"]:
        hour, minute = int(match["hour"]), int(match["minute"] or 0)
        if not 1 <= hour <= 12 or minute > 59:
            raise ValueError(match[0])
        hour = hour % 12 + (12 if match["ampm"].lower() == "p" else 0)
        return time(hour, minute)
    if match["h24"]:
        hour, minute = int(match["h24"]), int(match["m24"])
        return time(hour, minute)  # ValueError when out of range
    return None


def _month(name: str) -> int | None:
    """The month number of an English month name or abbreviation ("Nov", "Sept", "November")."""
    lowered = name.lower()
    for number, full in enumerate(_MONTHS, start=1):
        if len(lowered) >= 3 and full.startswith(lowered):
            return number
    return None


def _zone(name: str) -> tzinfo | None:
    """A tzinfo for an IANA name, UTC/GMT, or a "UTC+2"-style offset; None when unknown."""
    if name.upper() in {"UTC", "GMT", "Z"}:
        return UTC
    offset = _OFFSET_ZONE_RE.match(name)
    if offset:
        delta = timedelta(hours=int(offset["h"]), minutes=int(offset["m"] or 0))
        if delta >= timedelta(hours=15):
            return None
        return timezone(-delta if offset["sign"] == "-" else delta)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # An unknown zone must not be guessed: a wrong zone moves the reset by hours.
        logger.debug("unknown time zone in reset text", extra={"zone": name})
        return None


def _from_epoch(value: int, tz: str) -> datetime | None:
    """An epoch in seconds (or milliseconds, 13 digits) shown in the configured zone."""
    seconds = value / 1000 if value >= 10**12 else value
    zone = _zone(tz) or UTC
    try:
        return datetime.fromtimestamp(seconds, tz=zone)
    except (OverflowError, OSError, ValueError):
        return None


def _after(span: str, now: datetime, tz: str) -> datetime | None:
    """``now`` plus a written duration ("2h 30m", "3 hours"), in the configured zone."""
    parts = [
        (number, _UNIT_ALIASES.get(unit.lower())) for number, unit in _RELATIVE_PART.findall(span)
    ]
    if not parts or any(unit is None for _, unit in parts):
        return None
    seconds = parse_duration("".join(f"{number}{unit}" for number, unit in parts))
    zone = _zone(tz) or UTC
    start = now if now.tzinfo is not None else now.replace(tzinfo=zone)
    return (start + timedelta(seconds=seconds)).astimezone(zone)


def _from_iso(match: re.Match[str], tz: str) -> datetime | None:
    """A calendar date (and time) written the ISO way, in its zone or the configured one."""
    zone = _zone(match["zone"]) if match["zone"] else _zone(tz)
    if zone is None:
        return None
    try:
        day = date.fromisoformat(match["date"])
        clock = time.fromisoformat(match["clock"].zfill(5)) if match["clock"] else time(0)
    except ValueError:
        return None
    return _wall(day, clock, zone)


def _wall(day: date, clock: time, zone: tzinfo) -> datetime:
    """The aware datetime at a wall-clock time; a time inside a DST gap moves forward."""
    naive = datetime.combine(day, clock)
    return naive.replace(tzinfo=zone).astimezone(UTC).astimezone(zone)


def _next_time(clock: time, now: datetime, zone: tzinfo) -> datetime:
    """The first moment after ``now`` at which the zone's clock shows ``clock``."""
    today = now.astimezone(zone).date()
    for offset in range(3):
        candidate = _wall(today + timedelta(days=offset), clock, zone)
        if candidate > now:
            return candidate
    return _wall(today + timedelta(days=3), clock, zone)


def _next_date(
    month: int, day: int, year: int | None, clock: time | None, *, now: datetime, zone: tzinfo
) -> datetime | None:
    """The month/day (at ``clock``, or the start of that day) in ``year`` or its next occurrence.

    A date without a time stays current for the whole day it names, so "Oct 24" read on Oct 24
    is that day's midnight (already due), not next year's.
    """
    first = year if year is not None else now.astimezone(zone).year
    last = first if year is not None else first + _YEARS_AHEAD
    for candidate_year in range(first, last + 1):
        try:
            target = date(candidate_year, month, day)
        except ValueError:
            continue
        start = _wall(target, clock or time(0), zone)
        over = start if clock is not None else _wall(target + timedelta(days=1), time(0), zone)
        if year is not None or over > now:
            return start
    return None
