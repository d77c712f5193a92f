"""The grammar of Claude Code's own status messages (quota, API errors, retries, warnings).

Private to :mod:`agentq.agents.classify` (which re-exports the public types). Every function
here reads one *logical* status line: the text after its ``⎿``/``●`` prefix with wrapped
continuation lines appended, each wrap kept as a ``\\n`` so that a reset text can stop where
the message's line ended. A line must be a whole status message, not merely contain one:
prose such as "You've hit your limit · resets 3pm is what the CLI prints" is rejected by the
tail grammar.

Wordings by version (see docs/compatibility.md):

* limits: ``You've hit your session limit · resets …`` (2.1.197), ``You've hit your 5-hour
  limit · resets …`` (2.1.332), ``… weekly / Opus / Sonnet limit``, ``You've hit your limit``
  (overage), ``You're out of usage credits``, ``You've hit your monthly spend limit · raise it
  at … [· your 5-hour limit resets …]``, older ``5-hour limit reached ∙ resets …``;
* warnings: ``You've used 92% of your session|5-hour|weekly limit · resets …``,
  ``Over 75% of your weekly limit used · resets …``, ``Approaching weekly limit · resets …``;
* retries: ``API error · Retrying in 19s · attempt 6/10`` (2.1.197), lower-case ``retrying``
  and the formatted error from attempt 3 in 2.1.332 (``500 Internal server error · retrying
  in 18s · attempt 6/10``, ``429 <message> · retrying …``).
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


class Window(StrEnum):
    """The usage window a limit or a warning is about.

    ``five_hour``/``seven_day``/``opus``/``sonnet``/``overage`` are the API's representative
    claims (``seven_day_opus`` → ``opus``); ``spend`` is a money cap (monthly spend limit, API
    spend limit, no credit left); ``unknown`` when the wording does not say.
    """

    FIVE_HOUR = "five_hour"
    SEVEN_DAY = "seven_day"
    OPUS = "opus"
    SONNET = "sonnet"
    OVERAGE = "overage"
    SPEND = "spend"
    UNKNOWN = "unknown"


class Login(StrEnum):
    """How the session's account signs in: it decides what a *retried* 429 means.

    Claude Code does not retry a claude.ai subscriber's usage-limit 429 (Pro, Max, Team), so
    for them a "limit reached · retrying" line is a 5xx carrying a claim header or a server
    throttle. It does retry the 429s of API keys and of Enterprise subscriptions: there the
    same line is a limit in progress.
    """

    UNKNOWN = "unknown"
    SUBSCRIBER = "subscriber"
    ENTERPRISE = "enterprise"
    API_KEY = "api_key"

    @property
    def retries_rate_limits(self) -> bool:
        """True when Claude Code retries this login's 429s before showing the limit."""
        return self in {Login.ENTERPRISE, Login.API_KEY}


class AutoContinue(StrEnum):
    """Claude Code 2.1.332's automatic continue after a usage limit, as far as it is seen.

    ``armed``: the CLI will start a turn by itself after the reset (Esc cancels it);
    ``fired``: it did (a turn runs that nobody typed); ``cancelled``: Esc cancelled it.
    """

    ARMED = "armed"
    FIRED = "fired"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class UsageWarning:
    """A usage warning: the account still works but a window is filling up.

    ``percent`` is the share used (``92`` for "You've used 92%"); with ``over`` it is a
    threshold already passed ("Over 75% of your weekly limit used"); None when the wording
    gives no number ("Approaching weekly limit").
    """

    window: Window
    percent: int | None
    over: bool
    reset_text: str | None
    evidence: str

    def to_dict(self) -> dict[str, object]:
        """The warning as plain JSON-ready data."""
        return {
            "window": str(self.window),
            "percent": self.percent,
            "over": self.over,
            "reset_text": self.reset_text,
            "evidence": self.evidence,
        }


@dataclass(frozen=True)
class Status:
    """One status message found in agent output.

    ``fallback`` marks a repeat of the limit in the auto-continue notice or the footer banner
    ("Usage limit reached · limit resets 4:32pm"): it counts only when the turn shows no limit
    line of its own, whose reset names the zone.
    """

    kind: Kind
    reset_text: str | None
    evidence: str
    retrying: bool = False
    window: Window | None = None
    fallback: bool = False


_SEP = r"[·∙•]"
_APOS = "['’]"
# A word of a limit's label ("session", "Opus weekly", "5-hour", "Fable 5"); never a context,
# token or request-rate limit, which are not the account's quota.
_WORD = r"(?!(?:context|tokens?|output|prompt|rate|requests?|length|size)\b)[\w'’./+-]+"
# The headline of an exhaustion message, anchored at the start of the status text. Usage
# *warnings* ("You've used 92% of …", "Approaching … limit") deliberately do not match.
_QUOTA_HEAD = re.compile(
    rf"(?:You{_APOS}ve|You have) (?:hit|reached) your (?P<label>(?:{_WORD} ){{0,4}}?)limit"
    rf"|(?P<credits>(?:You{_APOS}re|You are) out of (?:[\w-]+ ){{0,3}}?credits)"
    rf"|(?P<reached>(?:{_WORD} ){{0,4}}?)limit (?:reached|exceeded)",
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
# Where a segment names the reset: "resets 11pm", "reset at 5pm", "your 5-hour limit resets
# 4:54pm" (2.1.332's spend limit), "limit resets 4:32pm" (its footer banner), and the banner of
# a pre-release build, "continuing automatically at 3:45pm".
_RESETS = re.compile(
    rf"\s*(?:(?:your\s+)?(?P<label>(?:{_WORD}\s+){{0,3}}?)limit\s+)?(?:resets?\s+(?:at\s+)?"
    r"|continuing automatically at\s+)",
    re.IGNORECASE,
)
# 2.1.332's auto-continue notices (● lines, and transcript ``system`` entries).
_ARMED_NOTICE = re.compile(
    rf"^Usage limit reached\s*{_SEP}\s*(?:set to continue|continuing) automatically at\s+"
    r"(?P<at>\S.{0,60}?)\s*$",
    re.IGNORECASE | re.DOTALL,
)
_FIRED_NOTICE = re.compile(rf"^Usage limit reset\s*{_SEP}\s*Continuing automatically\b", re.I)
_CANCELLED_NOTICE = re.compile(r"^Automatic continue cancelled\b", re.IGNORECASE)
# The reply to "Wait here, then continue automatically" in the limit menu, and the banner's
# second line under the input box.
_ARMED_REPLY = re.compile(r"^Claude Code will continue automatically at\b", re.IGNORECASE)
_ARMED_BANNER = re.compile(
    rf"^Continuing (?:automatically at\b.*|shortly)\s*{_SEP}\s*Esc to cancel\b", re.I
)
# The limit has already reset (newer versions' banner): a final "ok" status.
_RESET_DONE = re.compile(r"(?:Your )?usage limit (?:has )?reset\b(?!s)(?!\s+at\b)", re.IGNORECASE)
_SEGMENT_SPLIT = re.compile(rf"\s{_SEP}\s*|\s*{_SEP}\s")
_RETRY = re.compile(rf"(?:^|\s{_SEP}\s*)Retrying in\b", re.IGNORECASE)
_RETRY_RESET = re.compile(
    r"Retrying in[^()·∙•\n]*?\((?P<reset>[^()]{1,64}(?:\([^()]{1,64}\))?)\)", re.IGNORECASE
)
_API_ERROR = re.compile(r"^API Error\b\s*:?\s*", re.IGNORECASE)
_NOT_OUR_LIMIT = re.compile(
    r"not\s+your\s+usage\s+limit|temporarily\s+limiting\s+requests", re.IGNORECASE
)
_HTTP_STATUS = re.compile(r"(?<![\d.])([45]\d\d)(?![\d.])")
# 2.1.332's retry headline for a 429: "429 <the API's message>".
_RATE_LIMIT_HEADLINE = re.compile(r"^429\b")
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
_API_SPEND = re.compile(r"reached your (?:specified )?API usage limits?", re.IGNORECASE)
_REGAIN = re.compile(r"regain access on\s+(?P<reset>[^.\"\\]{1,60}?)\s*(?:\.|\\|\"|$)", re.I)
# A billing stop blocks the account until someone pays: for agentq that is quota (see classify).
_BILLING = re.compile(r"credit balance is too low|out of (?:usage |extra usage )?credits", re.I)
_CREDIT_HEAD = re.compile(r"^(?:Your )?credit balance is too low", re.IGNORECASE)
_WARNING_HEAD = re.compile(
    rf"(?:You{_APOS}ve|You have) used (?P<used>\d{{1,3}})% of your (?P<label>(?:{_WORD} ){{0,4}}?)"
    rf"limit|Over (?P<over>\d{{1,3}})% of your (?P<over_label>(?:{_WORD} ){{0,4}}?)limit used"
    rf"|Approaching (?P<near_label>(?:{_WORD} ){{0,4}}?)limit",
    re.IGNORECASE,
)
_WARNING_TAIL = re.compile(rf"\s*[.!]?\s*$|\s*{_SEP}(?P<segments>.*)$", re.DOTALL)
# Label words → window, first match wins ("Opus weekly" is Opus, not the weekly window).
_WINDOW_WORDS: tuple[tuple[re.Pattern[str], Window], ...] = (
    (re.compile(r"\bopus\b", re.IGNORECASE), Window.OPUS),
    (re.compile(r"\bsonnet\b", re.IGNORECASE), Window.SONNET),
    (re.compile(r"\bsession\b|\b5[- ]?h(?:ou)?r\b|\bfive[- ]hour\b", re.I), Window.FIVE_HOUR),
    (re.compile(r"\bweekly\b|\b7[- ]?day\b|\bseven[- ]day\b", re.IGNORECASE), Window.SEVEN_DAY),
    (re.compile(r"\bspend\b", re.IGNORECASE), Window.SPEND),
)
# The API's representative claims (``rateLimitType``) → window.
CLAIM_WINDOWS = {
    "five_hour": Window.FIVE_HOUR,
    "seven_day": Window.SEVEN_DAY,
    "seven_day_opus": Window.OPUS,
    "seven_day_sonnet": Window.SONNET,
    "overage": Window.OVERAGE,
}


def flat(text: str) -> str:
    """The logical line with its wraps turned back into spaces (same length, same offsets)."""
    return text.replace("\n", " ")


def window_of(label: str) -> Window:
    """The window a limit's label names ("5-hour", "Opus weekly"); an empty label is overage.

    Claude Code names the ``overage`` claim plainly: "You've hit your limit".
    """
    for pattern, window in _WINDOW_WORDS:
        if pattern.search(label):
            return window
    return Window.OVERAGE if not label.strip() else Window.UNKNOWN


def window_of_claim(claim: object) -> Window | None:
    """The window of a representative claim (``five_hour``, ``seven_day_opus``…), if it is one."""
    if not isinstance(claim, str) or not claim.strip():
        return None
    return CLAIM_WINDOWS.get(claim.strip().lower(), Window.UNKNOWN)


def parse_status(text: str, *, bullet: bool = False, login: Login = Login.UNKNOWN) -> Status | None:
    """Read a status line (``⎿`` content, bare line).

    A ``bullet`` (●) line is usually the assistant's prose, so it counts only as an API error
    or as one of the auto-continue notices of newer versions.
    """
    line = flat(text).strip()
    if not line:
        return None
    if _RETRY.search(line):
        return parse_retry(text, spinner=False, login=login)
    if _API_ERROR.match(line):
        return parse_api_error(text)
    notice = parse_notice(text)
    if notice is not None or bullet:
        return notice
    quota = parse_quota(text)
    if quota is not None:
        return quota
    if _RESET_DONE.match(line):
        return Status(Kind.OK, None, _evidence(text))
    if _CREDIT_HEAD.match(line):
        return Status(Kind.QUOTA, None, _evidence(text), window=Window.SPEND)
    return None


def parse_notice(text: str) -> Status | None:
    """Read an auto-continue notice: armed (a fallback limit status) or fired (ok again)."""
    line = flat(text).strip()
    armed = _ARMED_NOTICE.match(line)
    if armed:
        reset = armed["at"].rstrip(" .")
        return Status(Kind.QUOTA, reset or None, _evidence(text), fallback=True)
    if _FIRED_NOTICE.match(line):
        return Status(Kind.OK, None, _evidence(text))
    return None


def auto_continue_of(text: str) -> AutoContinue | None:
    """The auto-continue state a notice, banner line or menu reply announces, if any."""
    line = flat(text).strip().lstrip("⚠").strip()
    if _FIRED_NOTICE.match(line):
        return AutoContinue.FIRED
    if _CANCELLED_NOTICE.match(line):
        return AutoContinue.CANCELLED
    if _ARMED_NOTICE.match(line) or _ARMED_REPLY.match(line) or _ARMED_BANNER.match(line):
        return AutoContinue.ARMED
    return None


def parse_retry(text: str, *, spinner: bool, login: Login = Login.UNKNOWN) -> Status | None:
    """Read a retry line ("✻ API error · Retrying in 19s · attempt 6/10"); never final.

    A retried limit ("5-hour limit reached · retrying …", "429 … · retrying …") is a limit in
    progress only for a login whose 429s Claude Code retries (API key, Enterprise: see
    :class:`Login`); for a subscriber it is a 5xx carrying a claim header or a throttle, a
    server error. With the login unknown, "… limit reached" stays a provisional quota and a
    bare "429 …" a server error.
    """
    line = flat(text).strip()
    found = _RETRY.search(line)
    if found is None:
        return None
    headline = line[: found.start()].strip()
    evidence = _evidence(text)
    quota = parse_quota(headline) if headline else None
    if quota is not None or _RATE_LIMIT_HEADLINE.match(headline):
        # Without the login the pane cannot tell: a retried limit stays a provisional quota
        # and a retried bare 429 a server error, as they always read.
        unsure = login is Login.UNKNOWN and quota is not None
        if not (login.retries_rate_limits or unsure):
            return Status(Kind.SERVER_ERROR, None, evidence, retrying=True)
        reset = _RETRY_RESET.search(line)
        reset_text = quota.reset_text if quota else None
        if reset and not reset["reset"].lower().startswith("attempt"):
            reset_text = reset["reset"].strip()
        window = quota.window if quota else Window.UNKNOWN
        return Status(Kind.QUOTA, reset_text, evidence, retrying=True, window=window)
    if _API_ERROR.match(headline):
        api = parse_api_error(headline)
        kind = api.kind if api.kind is not Kind.OK else Kind.SERVER_ERROR
        if kind is Kind.QUOTA and login is Login.SUBSCRIBER:
            kind = Kind.SERVER_ERROR  # a subscriber's retried 429 is a throttle
        return Status(kind, None, evidence, retrying=True, window=api.window)
    if not spinner and not _HTTP_STATUS.match(headline) and not _SERVER_WORDS.search(headline):
        # Outside a spinner line only an error-like headline makes "Retrying in" a status.
        return None
    if _QUOTA_WORDS.search(headline) and login is not Login.SUBSCRIBER:
        return Status(Kind.QUOTA, None, evidence, retrying=True, window=Window.UNKNOWN)
    return Status(Kind.SERVER_ERROR, None, evidence, retrying=True)


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
        return Status(Kind.QUOTA, quota.reset_text, evidence, window=quota.window)
    if code == 429 or _QUOTA_WORDS.search(payload) or _BILLING.search(payload):
        regain = _REGAIN.search(payload)
        money = _API_SPEND.search(payload) or _BILLING.search(payload)
        window = Window.SPEND if money else Window.UNKNOWN
        reset = regain["reset"].strip() if regain else None
        return Status(Kind.QUOTA, reset, evidence, window=window)
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
    window = _head_window(head)
    breaks = [index for index, char in enumerate(text) if char == "\n" and index >= head.end()]
    for cut in [len(text), *reversed(breaks)]:
        tail = _QUOTA_TAIL.match(line, head.end(), cut)
        if tail is not None:
            reset, named = _tail_reset(text[:cut], tail)
            return Status(Kind.QUOTA, reset, _evidence(text[:cut]), window=named or window)
    return None


def _head_window(head: re.Match[str]) -> Window:
    """The window a quota headline names."""
    if head["credits"]:
        return Window.OVERAGE  # "You're out of usage credits": the overage claim, no credit left
    if head["label"] is not None:
        return window_of(head["label"])
    return window_of(head["reached"] or "") if head["reached"] else Window.UNKNOWN


def _tail_reset(text: str, tail: re.Match[str]) -> tuple[str | None, Window | None]:
    """The reset text named by a matched quota tail, and the window its segment names."""
    if tail["epoch"]:
        return tail["epoch"], None
    if tail["at"]:
        return _reset_span(text, tail.start("at"), tail.end("at")), None
    if tail["segments"] is not None:
        return _reset_from_segments(text, tail.start("segments"))
    return None, None


def parse_banner(text: str) -> Status | None:
    """Read a footer banner: a limit ("⚠ Usage limit reached · …", a fallback) or its end."""
    line = flat(text).strip().lstrip("⚠").strip()
    if _RESET_DONE.match(line):
        return Status(Kind.OK, None, _evidence(line))
    quota = parse_quota(line)
    if quota is None:
        return None
    return Status(Kind.QUOTA, quota.reset_text, quota.evidence, window=quota.window, fallback=True)


def parse_warning(text: str) -> UsageWarning | None:
    """Read a usage warning ("You've used 92% of your 5-hour limit · resets 8:06pm (UTC) · …")."""
    line = flat(text).strip()
    head = _WARNING_HEAD.match(line)
    if head is None:
        return None
    tail = _WARNING_TAIL.match(line, head.end())
    if tail is None:
        return None
    label = head["label"] or head["over_label"] or head["near_label"] or ""
    number = head["used"] or head["over"]
    percent = int(number) if number is not None else None
    if percent is not None and percent > 100:
        return None
    reset = None
    if tail["segments"] is not None:
        reset, _ = _reset_from_segments(line, tail.start("segments"))
    over = head["over"] is not None
    return UsageWarning(window_of(label), percent, over, reset, _evidence(line))


def has_server_veto(text: str) -> bool:
    """True when a message says outright that it is not the account's usage limit."""
    return bool(_NOT_OUR_LIMIT.search(flat(text)))


def http_status(text: str) -> int | None:
    """The first HTTP error status (4xx/5xx) written in a message, if any."""
    found = _HTTP_STATUS.search(flat(text))
    return int(found.group(1)) if found else None


def _reset_from_segments(text: str, start: int) -> tuple[str | None, Window | None]:
    """The reset text of the first "resets …" segment at or after ``start``, and its window.

    The window is named when the segment says whose reset it is ("your 5-hour limit resets").
    """
    line = flat(text)
    cuts = list(_SEGMENT_SPLIT.finditer(line, start))
    starts = [start] + [cut.end() for cut in cuts]
    ends = [cut.start() for cut in cuts] + [len(line)]
    for begin, end in zip(starts, ends, strict=True):
        lead = _RESETS.match(line, begin)
        if lead:
            label = (lead["label"] or "").strip()
            window = window_of(label) if label else None
            named = window if window not in (None, Window.OVERAGE, Window.UNKNOWN) else None
            return _reset_span(text, lead.end(), end), named
    return None, None


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
