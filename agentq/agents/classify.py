"""Classify what Claude Code shows: out of quota, failing server-side, or fine; idle or busy.

Three inputs, one answer. The ``StopFailure`` hook payload and the transcript's error entries
are the structured signals and come first; the pane text (``tmux capture-pane``) is the
fallback. :func:`combine_readings` puts a turn's readings together in that order. Pure: text
and data in, readings out; nothing here reads a clock, a file or a pane.

A quota reading says which usage :class:`Window` ran out (from the wording, and from the
transcript's ``quotaLimits.rateLimitType``), when it resets (the displayed ``reset_text``;
the transcript's exact ``resets_at``), and a usage warning ("You've used 92% of your 5-hour
limit") comes as :class:`UsageWarning` on an ``ok`` reading: warnings are never exhaustion.
Claude Code 2.1.332's automatic continue after a limit is reported as :class:`AutoContinue`
(armed / fired / cancelled) from the pane, the hooks and the transcript.

The pane's rules (current turn only, the agent's own status lines only) are in
:mod:`agentq.agents.pane`; the wordings in :mod:`agentq.agents.status`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from agentq.agents import pane
from agentq.agents.pane import Activity
from agentq.agents.status import (
    AutoContinue,
    Kind,
    Login,
    UsageWarning,
    Window,
    auto_continue_of,
    has_server_veto,
    window_of_claim,
)

logger = logging.getLogger(__name__)

__all__ = [
    "AUTO_CONTINUE_PROMPT",
    "Activity",
    "AutoContinue",
    "Kind",
    "Login",
    "PaneReading",
    "SignalReading",
    "UsageWarning",
    "Window",
    "classify_activity",
    "classify_hook_payload",
    "classify_pane",
    "classify_transcript",
    "classify_transcript_entry",
    "combine_readings",
    "has_exited",
    "pending_input",
    "running_background_tasks",
    "stop_ends_task",
]

# Hook ``error`` values. billing_error counts as quota: the account cannot run until someone
# pays, and the remedy is the same as for an exhausted quota (another account), not a retry.
QUOTA_ERRORS = frozenset({"rate_limit", "billing_error"})
SERVER_ERRORS = frozenset({"server_error", "overloaded"})
#: The start of the prompt 2.1.332 submits by itself when its auto-continue fires.
AUTO_CONTINUE_PROMPT = "Your claude.ai usage limit has reset. Continue the task"
AUTO_RESUME_NOTIFICATION = "quota_auto_resume_fired"
#: A background task in one of these states no longer keeps the session busy.
FINISHED_TASK_STATES = frozenset({"completed", "failed", "killed", "stopped", "cancelled"})
_USAGE_LIMIT_ERROR = "usage_limit_reached"


@dataclass(frozen=True)
class PaneReading:
    """The classification of one pane capture.

    ``retrying`` is True when the kind rests only on a retry spinner line (the agent is still
    retrying, no final status yet): a provisional reading to confirm with a structured signal.
    ``window`` is set on quota readings; ``warning`` and ``auto_continue`` whenever the pane
    shows one (a warning leaves the kind ``ok``).
    """

    kind: Kind
    reset_text: str | None
    activity: Activity
    evidence: str | None
    retrying: bool = False
    window: Window | None = None
    warning: UsageWarning | None = None
    auto_continue: AutoContinue | None = None

    def to_dict(self) -> dict[str, object]:
        """The reading as plain JSON-ready data."""
        return {
            "kind": str(self.kind),
            "reset_text": self.reset_text,
            "activity": str(self.activity),
            "evidence": self.evidence,
            "retrying": self.retrying,
            "window": None if self.window is None else str(self.window),
            "warning": None if self.warning is None else self.warning.to_dict(),
            "auto_continue": None if self.auto_continue is None else str(self.auto_continue),
        }


@dataclass(frozen=True)
class SignalReading:
    """The classification of a structured signal (transcript entry, hook payload), or of a
    turn's signals together (:func:`combine_readings`).

    ``resets_at`` is the exact reset the transcript records (``quotaLimits.resetsAt``), when
    it does; ``reset_text`` is what the agent displayed.
    """

    kind: Kind
    reset_text: str | None = None
    evidence: str | None = None
    window: Window | None = None
    resets_at: datetime | None = None
    auto_continue: AutoContinue | None = None
    retrying: bool = False
    warning: UsageWarning | None = None

    def to_dict(self) -> dict[str, object]:
        """The reading as plain JSON-ready data."""
        return {
            "kind": str(self.kind),
            "reset_text": self.reset_text,
            "evidence": self.evidence,
            "window": None if self.window is None else str(self.window),
            "resets_at": None if self.resets_at is None else self.resets_at.isoformat(),
            "auto_continue": None if self.auto_continue is None else str(self.auto_continue),
            "retrying": self.retrying,
            "warning": None if self.warning is None else self.warning.to_dict(),
        }


def classify_pane(
    text: str, title: str | None = None, *, login: Login = Login.UNKNOWN
) -> PaneReading:
    """Classify a pane capture (and optionally its title) into kind, reset text and activity.

    ``login`` says how the session's account signs in: only it tells a retried usage limit
    (API key, Enterprise) from a retried 5xx or throttle (subscribers); see :class:`Login`.
    """
    layout = pane.layout(pane.split(text))
    reading = PaneReading(
        Kind.OK,
        None,
        pane.activity(layout, title),
        None,
        warning=pane.warning(layout),
        auto_continue=pane.auto_continue(layout),
    )
    statuses = pane.statuses(layout, login)
    if pane.has_rate_limit_menu(layout.dialog):
        shown = pane.decide([status for status in statuses if status.kind is Kind.QUOTA])
        if shown is None:
            evidence = "rate-limit menu is open"
            return replace(reading, kind=Kind.QUOTA, evidence=evidence, window=Window.UNKNOWN)
        evidence = f"rate-limit menu is open; {shown.evidence}"
        window = shown.window or Window.UNKNOWN
        return replace(
            reading, kind=Kind.QUOTA, reset_text=shown.reset_text, evidence=evidence, window=window
        )
    decided = pane.decide(statuses)
    if decided is None:
        return reading
    quota = decided.kind is Kind.QUOTA
    return replace(
        reading,
        kind=decided.kind,
        reset_text=decided.reset_text,
        evidence=decided.evidence,
        retrying=decided.retrying,
        window=(decided.window or Window.UNKNOWN) if quota else None,
    )


def classify_activity(text: str, title: str | None = None) -> Activity:
    """Tell idle, busy, permission dialog or menu from a pane capture and its title.

    An exited CLI (its resume hint or the shell's prompt under the last box) is ``unknown``
    whatever the title says: tmux keeps the last one.
    """
    return pane.activity(pane.layout(pane.split(text)), title)


def has_exited(text: str) -> bool:
    """True when the pane shows the CLI has exited (resume hint, "No conversation found",
    the shell's prompt)."""
    return pane.has_exited(pane.layout(pane.split(text)))


def pending_input(text: str) -> str:
    """The text waiting in the live input line, '' when it is empty or shows a placeholder.

    2.1.332 fills an empty input line with a dimmed placeholder ("Resend your message to try
    again" after an API error, "Press up to edit queued messages"); a capture without colours
    cannot see the dimming, so the known placeholders count as empty.
    """
    return pane.pending_input(pane.layout(pane.split(text)))


def classify_transcript_entry(entry: Mapping[str, object]) -> SignalReading:
    """Classify one transcript entry.

    An API error entry (``isApiErrorMessage``) can say quota or server_error; 2.1.332's usage
    limits add ``quotaLimits`` (window and exact reset). A ``system`` notice or an
    ``auto-continuation`` user entry reports the auto-continue; everything else is ok.
    """
    auto = _entry_auto_continue(entry)
    if entry.get("isApiErrorMessage") is not True:
        return SignalReading(Kind.OK, auto_continue=auto)
    limits = _quota_limits(entry)
    reading = _classify_error(
        entry.get("error"), entry.get("apiErrorStatus"), _entry_text(entry), "transcript"
    )
    usage_limit = entry.get("apiError") == _USAGE_LIMIT_ERROR or limits is not None
    if reading.kind is not Kind.SERVER_ERROR and usage_limit:
        reading = replace(reading, kind=Kind.QUOTA)
    elif reading.kind is Kind.QUOTA and entry.get("apiErrorIsTransient") is True:
        # A transient 429 is the server's throttle ("not your usage limit"), never the quota.
        reading = replace(reading, kind=Kind.SERVER_ERROR, reset_text=None, window=None)
    if reading.kind is Kind.QUOTA and limits is not None:
        claim = window_of_claim(limits.get("rateLimitType"))
        reading = replace(
            reading, window=claim or reading.window, resets_at=_epoch(limits.get("resetsAt"))
        )
    return reading


def classify_transcript(lines: Iterable[str]) -> SignalReading:
    """Classify a transcript (JSONL lines): the last assistant entry decides.

    Only an API error entry (``isApiErrorMessage``) can say quota or server_error; an ordinary
    assistant entry after it means the agent recovered, so it resets the reading to ok (its
    text is never read). The auto-continue state is the last one the entries report until a
    prompt typed by a person. Bad lines are ignored.
    """
    reading = SignalReading(Kind.OK)
    auto: AutoContinue | None = None
    for line in lines:
        entry = _json_object(line)
        if entry is None:
            continue
        if _is_human_prompt(entry):
            auto = None
        found = classify_transcript_entry(entry)
        auto = found.auto_continue or auto
        if entry.get("type") == "assistant":
            reading = found
    return replace(reading, auto_continue=auto)


def classify_hook_payload(payload: Mapping[str, object]) -> SignalReading:
    """Classify a hook payload: ``StopFailure`` by its ``error``; everything else is ok.

    A ``Notification`` of type ``quota_auto_resume_fired`` and a ``UserPromptSubmit`` of the
    canned continue prompt say the auto-continue fired.
    """
    event = payload.get("hook_event_name")
    if event != "StopFailure":
        auto = _hook_auto_continue(event, payload)
        evidence = f"hook {event}" if isinstance(event, str) else None
        return SignalReading(Kind.OK, None, evidence, auto_continue=auto)
    message = payload.get("last_assistant_message")
    text = message if isinstance(message, str) else ""
    return _classify_error(payload.get("error"), None, text, "StopFailure")


def running_background_tasks(payload: Mapping[str, object]) -> list[Mapping[str, object]]:
    """The background tasks a ``Stop`` payload lists as still running (agents, shells)."""
    tasks = payload.get("background_tasks")
    if not isinstance(tasks, list):
        return []
    running: list[Mapping[str, object]] = []
    for task in tasks:
        status = task.get("status") if isinstance(task, Mapping) else None
        if not (isinstance(status, str) and status.lower() in FINISHED_TASK_STATES):
            running.append(task if isinstance(task, Mapping) else {"task": task})
    return running


def stop_ends_task(payload: Mapping[str, object]) -> bool:
    """Whether a ``Stop`` hook payload ends the task.

    Claude Code fires ``Stop`` when the main turn ends even while background agents it
    started still run (``background_tasks``); they start a new turn when they finish, which
    ends with another ``Stop``. So a ``Stop`` ends the task only when ``background_tasks`` is
    empty or absent (or lists only finished tasks).
    """
    return not running_background_tasks(payload)


def combine_readings(
    *,
    hook: SignalReading | None = None,
    transcript: SignalReading | None = None,
    pane_reading: PaneReading | None = None,
) -> SignalReading:
    """One reading for a turn: the ``StopFailure`` hook, then the transcript, then the pane.

    The first source that is not ``ok`` decides the kind (so a structured ``rate_limit``
    makes a pane's retry line a limit, and a pane's provisional reading stays provisional
    only when nothing structured spoke). The window, exact reset and reset text are taken
    from the most structured source that has them; a fired auto-continue from any source
    wins (it must be stopped); the warning comes from the pane.
    """
    structured = [reading for reading in (hook, transcript) if reading is not None]
    pane_signal = None if pane_reading is None else _from_pane(pane_reading)
    sources = [*structured, *([pane_signal] if pane_signal is not None else [])]
    deciding = next((reading for reading in sources if reading.kind is not Kind.OK), None)
    if deciding is None:
        reading = SignalReading(Kind.OK)
    else:
        same = [r for r in sources if r.kind is deciding.kind and not r.retrying] or [deciding]
        reading = replace(
            deciding,
            reset_text=next((r.reset_text for r in same if r.reset_text), None),
            window=_best_window(same),
            resets_at=next((r.resets_at for r in same if r.resets_at), None),
        )
    states = [r.auto_continue for r in sources if r.auto_continue is not None]
    auto = AutoContinue.FIRED if AutoContinue.FIRED in states else next(iter(states), None)
    warning = pane_signal.warning if pane_signal is not None else None
    return replace(reading, auto_continue=auto, warning=warning)


def _from_pane(reading: PaneReading) -> SignalReading:
    """A pane reading in the shape of the structured ones."""
    return SignalReading(
        reading.kind,
        reading.reset_text,
        reading.evidence,
        reading.window,
        None,
        reading.auto_continue,
        reading.retrying,
        reading.warning,
    )


def _best_window(readings: list[SignalReading]) -> Window | None:
    """The first window that says more than ``unknown``, else ``unknown`` or None."""
    windows = [r.window for r in readings if r.window is not None]
    return next((w for w in windows if w is not Window.UNKNOWN), next(iter(windows), None))


def _classify_error(error: object, status: object, text: str, source: str) -> SignalReading:
    """Classify an API error from its error name, HTTP status and displayed text."""
    name = _error_name(error)
    code = _status_code(status)
    decided = pane.decide(pane.text_statuses(text))
    evidence = f"{source} error={name} status={code}: {' '.join(text.split())[:200]}"
    # As on the pane, a 5xx (from the status or the displayed final error) vetoes quota.
    shown_server = decided is not None and decided.kind is Kind.SERVER_ERROR
    if has_server_veto(text) or (code is not None and code >= 500) or name in SERVER_ERRORS:
        return SignalReading(Kind.SERVER_ERROR, None, evidence)
    if shown_server and not (decided is not None and decided.retrying):
        return SignalReading(Kind.SERVER_ERROR, None, evidence)
    shown_quota = decided is not None and decided.kind is Kind.QUOTA
    if name in QUOTA_ERRORS or code == 429:
        reset = decided.reset_text if decided is not None and shown_quota else None
        window = decided.window if decided is not None and shown_quota else None
        if window is None:
            window = Window.SPEND if name == "billing_error" else Window.UNKNOWN
        return SignalReading(Kind.QUOTA, reset, evidence, window)
    if decided is not None and decided.kind is not Kind.OK:
        window = (decided.window or Window.UNKNOWN) if shown_quota else None
        return SignalReading(decided.kind, decided.reset_text, evidence, window)
    return SignalReading(Kind.OK, None, evidence)


def _hook_auto_continue(event: object, payload: Mapping[str, object]) -> AutoContinue | None:
    """FIRED for the hooks 2.1.332 sends when its auto-continue starts a turn."""
    if event == "Notification" and payload.get("notification_type") == AUTO_RESUME_NOTIFICATION:
        return AutoContinue.FIRED
    prompt = payload.get("prompt")
    if event == "UserPromptSubmit" and isinstance(prompt, str):
        return AutoContinue.FIRED if prompt.startswith(AUTO_CONTINUE_PROMPT) else None
    return None


def _entry_auto_continue(entry: Mapping[str, object]) -> AutoContinue | None:
    """The auto-continue state a transcript entry reports (a system notice, the continue)."""
    kind = entry.get("type")
    if kind == "system" and isinstance(entry.get("content"), str):
        return auto_continue_of(str(entry["content"]))
    origin = entry.get("origin")
    if kind == "user" and isinstance(origin, Mapping) and origin.get("kind") == "auto-continuation":
        return AutoContinue.FIRED
    return None


def _is_human_prompt(entry: Mapping[str, object]) -> bool:
    """True for a prompt a person typed (it ends any auto-continue episode)."""
    origin = entry.get("origin")
    human = isinstance(origin, Mapping) and origin.get("kind") == "human"
    return entry.get("type") == "user" and human and entry.get("isMeta") is not True


def _quota_limits(entry: Mapping[str, object]) -> Mapping[str, object] | None:
    """2.1.332's ``quotaLimits`` of an error entry (or ``apiErrorParams.rate_limit_info``)."""
    limits = entry.get("quotaLimits")
    if isinstance(limits, Mapping):
        return limits
    params = entry.get("apiErrorParams")
    info = params.get("rate_limit_info") if isinstance(params, Mapping) else None
    return info if isinstance(info, Mapping) else None


def _epoch(value: object) -> datetime | None:
    """An epoch in seconds (or milliseconds) as an aware UTC datetime, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    seconds = value / 1000 if value >= 10**12 else value
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _error_name(error: object) -> str | None:
    """The error name of a hook/transcript ``error`` field (a string, or an object with type)."""
    if isinstance(error, Mapping):
        error = error.get("type")
    return error.strip().lower() if isinstance(error, str) and error.strip() else None


def _status_code(status: object) -> int | None:
    """An HTTP status given as an int or a numeric string."""
    if isinstance(status, bool):
        return None
    if isinstance(status, int):
        return status
    if isinstance(status, str) and status.strip().isdigit():
        return int(status.strip())
    return None


def _entry_text(entry: Mapping[str, object]) -> str:
    """The displayed text of a transcript entry (its message's text blocks)."""
    message = entry.get("message")
    content = message.get("content") if isinstance(message, Mapping) else entry.get("content")
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = [
        block["text"]
        for block in content
        if isinstance(block, Mapping) and isinstance(block.get("text"), str)
    ]
    return "\n".join(texts)


def _json_object(line: str) -> Mapping[str, object] | None:
    """One JSONL line as an object, or None when it is blank, broken or not an object."""
    if not line.strip():
        return None
    try:
        value = json.loads(line)
    except ValueError:
        logger.debug("skipping a transcript line that is not JSON")
        return None
    return value if isinstance(value, dict) else None
