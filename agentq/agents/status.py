"""The grammar of Claude Code's own status messages (quota, API errors, retry lines).

Private to :mod:`agentq.agents.classify`. Every function here reads one *logical* status
line: the text after its ``⎿``/``●`` prefix with wrapped continuation lines appended, each
wrap kept as a ``\\n`` so that a reset text can stop where the message's line ended. A line
must be a whole status message, not merely contain one: prose such as "You've hit your limit ·
resets 3pm is what the CLI prints" is rejected by the tail grammar.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    """What a status says about the account: usable, out of quota, or a server-side failure."""

    OK = "ok"
    QUOTA = "quota"
    SERVER_ERROR = "server_error"


@dataclass(frozen=True)
class Status:
    """One status message found in agent output."""

    kind: Kind
    reset_text: str | None
    evidence: str
    retrying: bool = False


_SEP = r"[·∙•]"
_APOS = "['’]"
# A word of a limit's label ("session", "Opus weekly", "5-hour", "Fable 5"); never a context,
# token or request-rate limit, which are not the account's quota.
_WORD = r"(?!(?:context|tokens?|output|prompt|rate|requests?|length|size)\b)[\w'’./+-]+"
# The headline of an exhaustion message, anchored at the start of the status text. Usage
# *warnings* ("You've used 92% of …", "Approaching … limit") deliberately do not match.
_QUOTA_HEAD = re.compile(
    rf"(?:You{_APOS}ve|You have) (?:hit|reached) your (?:{_WORD} ){{0,4}}?limit"
    rf"|(?:You{_APOS}re|You are) out of (?:[\w-]+ ){{0,3}}?credits"
    rf"|(?:{_WORD} ){{0,4}}?limit (?:reached|exceeded)",
    re.IGNORECASE,
)
# What may follow the headline. Anything else (", now using Sonnet 4", "is what the CLI prints")
# means the line is not the agent's status message.
_QUOTA_TAIL = re.compile(
    r"\s*[.!]?\s*$"
    r"|\s*\|\s*(?P<epoch>\d{9,13})\s*$"
    r"|[.,]?\s+(?:Your limit will reset at|resets?(?: at)?)\s+(?P<at>.+?)\s*$"
    rf"|\s*{_SEP}(?P<segments>.*)$",
    re.IGNORECASE | re.DOTALL,
)
# Where a segment names the reset: "resets 11pm", "reset at 5pm", and the auto-continue banner
# of newer versions, "continuing automatically at 3:45pm".
_RESETS = re.compile(r"\s*(?:resets?\s+(?:at\s+)?|continuing automatically at\s+)", re.IGNORECASE)
_AUTO_CONTINUE = re.compile(rf"Usage limit reached\s*{_SEP}\s*continuing automatically\b", re.I)
# The limit has already reset (newer versions' banner): a final "ok" status.
_RESET_DONE = re.compile(r"(?:Your )?usage limit (?:has )?reset\b(?!s)(?!\s+at\b)", re.IGNORECASE)
_SEGMENT_SPLIT = re.compile(rf"\s{_SEP}\s*|\s*{_SEP}\s")
_RETRY = re.compile(rf"(?:^|\s{_SEP}\s*)Retrying in\b", re.IGNORECASE)
_RETRY_RESET = re.compile(r"Retrying in[^()·∙•\n]*?\((?P<reset>[^()]{1,64}(?:\([^()]{1,64}\))?)\)")
_API_ERROR = re.compile(r"^API Error\b\s*:?\s*", re.IGNORECASE)
_NOT_OUR_LIMIT = re.compile(
    r"not\s+your\s+usage\s+limit|temporarily\s+limiting\s+requests", re.IGNORECASE
)
_HTTP_STATUS = re.compile(r"(?<![\d.])([45]\d\d)(?![\d.])")
_SERVER_WORDS = re.compile(
    r"overloaded|internal server error|service unavailable|bad gateway|gateway time-?out"
    r"|\bapi_error\b|server-side issue|connection error|timed out|ECONNRESET|ECONNREFUSED"
    r"|fetch failed|socket hang up",
    re.IGNORECASE,
)
_QUOTA_WORDS = re.compile(
    r"request rejected \(429\)|rate_limit_error|reached your (?:specified )?API usage limits?",
    re.IGNORECASE,
)
_REGAIN = re.compile(r"regain access on\s+(?P<reset>[^.\"\\]{1,60}?)\s*(?:\.|\\|\"|$)", re.I)
# A billing stop blocks the account until someone pays: for agentq that is quota (see classify).
_BILLING = re.compile(r"credit balance is too low|out of (?:usage |extra usage )?credits", re.I)
_CREDIT_HEAD = re.compile(r"^(?:Your )?credit balance is too low", re.IGNORECASE)


def flat(text: str) -> str:
    """The logical line with its wraps turned back into spaces (same length, same offsets)."""
    return text.replace("\n", " ")


def parse_status(text: str, *, bullet: bool = False) -> Status | None:
    """Read a status line (``⎿`` content, bare line).

    A ``bullet`` (●) line is usually the assistant's prose, so it counts only as an API error
    or as the auto-continue banner of newer versions.
    """
    line = flat(text).strip()
    if not line:
        return None
    if _RETRY.search(line):
        return parse_retry(text, spinner=False)
    if _API_ERROR.match(line):
        return parse_api_error(text)
    if bullet and not _AUTO_CONTINUE.match(line):
        return None
    quota = parse_quota(text)
    if quota is not None:
        return quota
    if _RESET_DONE.match(line):
        return Status(Kind.OK, None, _evidence(text))
    if _CREDIT_HEAD.match(line):
        return Status(Kind.QUOTA, None, _evidence(text))
    return None


def parse_retry(text: str, *, spinner: bool) -> Status | None:
    """Read a retry line ("✻ API error · Retrying in 19s · attempt 6/10"); never final."""
    line = flat(text).strip()
    found = _RETRY.search(line)
    if found is None:
        return None
    headline = line[: found.start()].strip()
    quota = parse_quota(headline) if headline else None
    if quota is not None:
        reset = _RETRY_RESET.search(line)
        reset_text = quota.reset_text
        if reset and not reset["reset"].lower().startswith("attempt"):
            reset_text = reset["reset"].strip()
        return Status(Kind.QUOTA, reset_text, _evidence(text), retrying=True)
    if _API_ERROR.match(headline):
        api = parse_api_error(headline)
        kind = api.kind if api.kind is not Kind.OK else Kind.SERVER_ERROR
        return Status(kind, None, _evidence(text), retrying=True)
    if not spinner and not _HTTP_STATUS.match(headline) and not _SERVER_WORDS.search(headline):
        # Outside a spinner line only an error-like headline makes "Retrying in" a status.
        return None
    kind = Kind.QUOTA if _QUOTA_WORDS.search(headline) else Kind.SERVER_ERROR
    return Status(kind, None, _evidence(text), retrying=True)


def parse_api_error(text: str) -> Status:
    """Read a final "API Error: …" line: 5xx and throttling are server errors, 429 is quota."""
    line = flat(text).strip()
    payload = _API_ERROR.sub("", line, count=1)
    evidence = _evidence(text)
    if _NOT_OUR_LIMIT.search(payload):
        return Status(Kind.SERVER_ERROR, None, evidence)
    status = _HTTP_STATUS.search(payload)
    code = int(status.group(1)) if status else None
    if code is not None and code >= 500:
        return Status(Kind.SERVER_ERROR, None, evidence)
    quota = parse_quota(payload)
    if quota is not None:
        return Status(Kind.QUOTA, quota.reset_text, evidence)
    if code == 429 or _QUOTA_WORDS.search(payload) or _BILLING.search(payload):
        regain = _REGAIN.search(payload)
        return Status(Kind.QUOTA, regain["reset"].strip() if regain else None, evidence)
    if _SERVER_WORDS.search(payload):
        return Status(Kind.SERVER_ERROR, None, evidence)
    return Status(Kind.OK, None, evidence)


def parse_quota(text: str) -> Status | None:
    """Read an exhaustion message ("You've hit your session limit · resets 11pm (UTC)").

    The message may go on with hint lines ("/upgrade to increase your usage limit."): when
    the whole block does not parse, it is cut at its line ends, longest first.
    """
    line = flat(text)
    offset = len(line) - len(line.lstrip())
    head = _QUOTA_HEAD.match(line, offset)
    if head is None:
        return None
    breaks = [index for index, char in enumerate(text) if char == "\n" and index >= head.end()]
    for cut in [len(text), *reversed(breaks)]:
        tail = _QUOTA_TAIL.match(line, head.end(), cut)
        if tail is not None:
            return Status(Kind.QUOTA, _tail_reset(text[:cut], tail), _evidence(text[:cut]))
    return None


def _tail_reset(text: str, tail: re.Match[str]) -> str | None:
    """The reset text named by a matched quota tail, if any."""
    if tail["epoch"]:
        return tail["epoch"]
    if tail["at"]:
        return _reset_span(text, tail.start("at"), tail.end("at"))
    if tail["segments"] is not None:
        return _reset_from_segments(text, tail.start("segments"))
    return None


def parse_banner(text: str) -> Status | None:
    """Read a footer banner: an exhaustion message ("⚠ Usage limit reached · …") or its end."""
    line = flat(text).strip().lstrip("⚠").strip()
    if _RESET_DONE.match(line):
        return Status(Kind.OK, None, _evidence(line))
    return parse_quota(line)


def has_server_veto(text: str) -> bool:
    """True when a message says outright that it is not the account's usage limit."""
    return bool(_NOT_OUR_LIMIT.search(flat(text)))


def http_status(text: str) -> int | None:
    """The first HTTP error status (4xx/5xx) written in a message, if any."""
    found = _HTTP_STATUS.search(flat(text))
    return int(found.group(1)) if found else None


def _reset_from_segments(text: str, start: int) -> str | None:
    """The reset text of the first "resets …" segment at or after ``start``."""
    line = flat(text)
    cuts = list(_SEGMENT_SPLIT.finditer(line, start))
    starts = [start] + [cut.end() for cut in cuts]
    ends = [cut.start() for cut in cuts] + [len(line)]
    for begin, end in zip(starts, ends, strict=True):
        lead = _RESETS.match(line, begin)
        if lead:
            return _reset_span(text, lead.end(), end)
    return None


def _reset_span(text: str, start: int, end: int) -> str | None:
    """The reset text in ``text[start:end]``, stopping where the message's line ended.

    A wrap is followed only while the reset is visibly unfinished (an open parenthesis, a
    trailing comma, nothing yet) or the next line opens the zone's parenthesis; otherwise the
    next line is a hint such as "/upgrade to increase your usage limit."
    """
    rows = text[start:end].split("\n")
    kept = rows[0].strip()
    for row in rows[1:]:
        following = row.strip()
        unfinished = not kept or kept.endswith(",") or kept.count("(") > kept.count(")")
        if not (unfinished or following.startswith("(")):
            break
        kept = f"{kept} {following}".strip()
    kept = kept.rstrip(" ·∙•").rstrip(".").strip()
    return kept or None


def _evidence(text: str) -> str:
    """The status as one line, for logs and the detect output."""
    return " ".join(flat(text).split())[:300]
