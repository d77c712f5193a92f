"""Tests for the Claude Code classifiers: pane text, activity, transcript entries, hook payloads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentq.agents.classify import (
    Activity,
    Kind,
    Login,
    PaneReading,
    SignalReading,
    Window,
    classify_activity,
    classify_hook_payload,
    classify_pane,
    classify_transcript,
    classify_transcript_entry,
    has_exited,
    pending_input,
)

CORPUS = Path(__file__).resolve().parent.parent / "fixtures" / "corpus"
LABELS: dict[str, dict[str, object]] = json.loads((CORPUS / "labels.json").read_text("utf-8"))
NBSP = "\u00a0"
RULE = "─" * 60
IDLE_BOX = f"\n{RULE}\n❯{NBSP}\n{RULE}\n  ? for shortcuts\n"
BUSY_BOX = f"\n{RULE}\n❯{NBSP}\n{RULE}\n  esc to interrupt\n"

# What each real capture shows the agent doing (issue excerpts have no screen around them).
ACTIVITY = {
    "real_01": Activity.MENU,
    "real_04": Activity.MENU,
    "real_06": Activity.MENU,
    "real_08": Activity.MENU,
    "real_11": Activity.MENU,
    "real_14": Activity.MENU,
    "real_39": Activity.MENU,
    "real_15": Activity.BUSY,
    "real_28": Activity.BUSY,
    "real_29": Activity.BUSY,
    "real_30": Activity.BUSY,
    "real_34": Activity.BUSY,
    "real_40": Activity.BUSY,
    "real_50": Activity.BUSY,
    "real_35": Activity.PERMISSION,
}


# Captures the classifier reads wrongly, as strict xfails (fixing the classifier turns them into
# failures to remove). Every known misread of the 2.1.332 captures has been fixed.
KNOWN_MISREADS: dict[str, str] = {}
KNOWN_ACTIVITY_MISREADS: dict[str, str] = {}


def _sample(name: str) -> str:
    """The text of one corpus sample."""
    return (CORPUS / name).read_text("utf-8")


def _known(names: list[str], misreads: dict[str, str]) -> list[object]:
    """``names`` as parameters, the known misreads marked as strict xfails."""
    return [
        pytest.param(name, marks=pytest.mark.xfail(reason=misreads[name], strict=True))
        if name in misreads
        else name
        for name in names
    ]


def _expected_kind(label: dict[str, object]) -> Kind:
    """The label's kind in classifier terms ("clean" and talk about limits are ok)."""
    kind = label["kind"]
    return Kind(kind) if kind in {"quota", "server_error"} else Kind.OK


@pytest.mark.parametrize("name", _known(sorted(LABELS), KNOWN_MISREADS))
def test_corpus_sample_is_classified_as_labelled(name: str) -> None:
    """Every labelled sample gets its kind, and quota samples their verbatim reset text.

    Samples labelled ``"channel": "transcript"`` are transcript excerpts (JSONL lines).
    """
    label = LABELS[name]
    if label.get("channel") == "transcript":
        reading: PaneReading | SignalReading = classify_transcript(_sample(name).splitlines())
    else:
        reading = classify_pane(_sample(name), login=Login(str(label.get("login", "unknown"))))
    assert reading.kind is _expected_kind(label)
    if reading.kind is Kind.QUOTA:
        assert reading.reset_text == label["reset"]
        assert reading.window == Window(str(label["window"]))
    else:
        assert reading.reset_text is None
        assert reading.window is None
    assert reading.auto_continue == label.get("auto_continue")
    if label.get("channel") != "transcript":
        shown = reading.warning.to_dict() if reading.warning else {}
        assert {k: v for k, v in shown.items() if k in ("window", "percent", "over")} == (
            label.get("warning") or {}
        )


def test_corpus_is_complete() -> None:
    """The corpus copy holds all 115 labelled samples (56 of them from Claude Code 2.1.332)."""
    assert len(LABELS) == 115
    assert len([name for name in LABELS if name.startswith("v2332_")]) == 56
    assert all((CORPUS / name).is_file() for name in LABELS)


@pytest.mark.parametrize("name", sorted(name for name in LABELS if name.startswith("real_")))
def test_corpus_capture_activity(name: str) -> None:
    """Real captures read as menu / busy / permission where they show one, else idle."""
    expected = ACTIVITY.get(name[:7], Activity.IDLE)
    assert classify_activity(_sample(name)) is expected
    assert classify_pane(_sample(name)).activity is expected


@pytest.mark.parametrize(
    "name",
    _known(sorted(name for name in LABELS if "activity" in LABELS[name]), KNOWN_ACTIVITY_MISREADS),
)
def test_labelled_activity_with_the_captured_title(name: str) -> None:
    """Captures labelled with an activity read as that activity, given their pane title."""
    label = LABELS[name]
    title = label.get("title")
    assert (
        classify_activity(_sample(name), title if isinstance(title, str) else None)
        == (label["activity"])
    )


def test_reading_to_dict_is_plain_json() -> None:
    """to_dict gives JSON-ready values with the documented keys."""
    reading = classify_pane(_sample("v2332_22_five_hour_limit_out_of_usage_credits.txt"))
    data = reading.to_dict()
    assert json.loads(json.dumps(data)) == {
        "kind": "quota",
        "reset_text": "4:54pm (UTC)",
        "activity": "idle",
        "evidence": "You've hit your 5-hour limit · resets 4:54pm (UTC) · out of usage credits",
        "retrying": False,
        "window": "five_hour",
        "warning": None,
        "auto_continue": "armed",
    }
    warned = classify_pane(_sample("v2332_26_warning_over_75pct_weekly.txt")).to_dict()
    assert json.loads(json.dumps(warned))["warning"] == {
        "window": "seven_day",
        "percent": 75,
        "over": True,
        "reset_text": "Dec 8, 3:37am (UTC)",
        "evidence": "Over 75% of your weekly limit used · resets Dec 8, 3:37am (UTC) · try /model"
        " sonnet · ~2× runway",
    }


def _turn(body: str, box: str = IDLE_BOX) -> str:
    """A pane: a prompt echo, the agent's output, then the input box."""
    return f"❯ do the task\n\n{body}\n{box}"


@pytest.mark.parametrize(
    ("body", "kind", "reset"),
    [
        pytest.param(
            "● Bash(ls)\n  ⎿  a.txt\n     b.txt\n"
            "  ⎿  You've hit your session limit · resets 3pm (UTC)",
            Kind.QUOTA,
            "3pm (UTC)",
            id="a limit hit after a tool result counts",
        ),
        pytest.param(
            "⏺ Read 2 files (ctrl+o to expand)\n"
            "  ⎿  You've hit your limit · resets 5:30pm (Asia/Calcutta)",
            Kind.QUOTA,
            "5:30pm (Asia/Calcutta)",
            id="a limit hit under a collapsed tool summary counts",
        ),
        pytest.param(
            "● Bash(cat sample.txt)\n  ⎿  You've hit your limit · resets 10pm (UTC)\n\n"
            "● That is a sample.",
            Kind.OK,
            None,
            id="a tool's own output is not a status",
        ),
        pytest.param(
            "● You've hit your limit · resets 3pm (UTC)",
            Kind.OK,
            None,
            id="the assistant's prose is not a status",
        ),
        pytest.param(
            "  ⎿ \u00a0You've hit your session limit · resets 4:30am\n     (Asia/Tokyo)\n"
            "     /usage-credits to finish what you're working\n     on.",
            Kind.QUOTA,
            "4:30am (Asia/Tokyo)",
            id="a reset wrapped onto the next line keeps its zone and drops the hint",
        ),
        pytest.param(
            "  ⎿  Context limit reached · /compact or /clear to continue",
            Kind.OK,
            None,
            id="a full context window is not quota",
        ),
        pytest.param(
            "  ⎿  Claude Opus 4 limit reached, now using Sonnet 4",
            Kind.OK,
            None,
            id="a model fallback notice is not quota",
        ),
        pytest.param(
            "✻ Session limit reached · Retrying in 12s (11:30pm) · attempt 9/10\n\n"
            "● API Error: 500 Internal server error. This is a server-side issue",
            Kind.SERVER_ERROR,
            None,
            id="a 5xx final line vetoes a session-limit retry line",
        ),
        pytest.param(
            "✻ Session limit reached · Retrying in 3s (11:30pm) · attempt 10/10\n"
            "  ⎿  You've hit your session limit · resets 11:30pm (UTC)",
            Kind.QUOTA,
            "11:30pm (UTC)",
            id="a final limit line confirms a retry line",
        ),
        pytest.param(
            "● API Error: 500 "
            '{"type":"error","error":{"type":"api_error","message":"usage limit reached"}}',
            Kind.SERVER_ERROR,
            None,
            id="a 5xx echoing rate-limit words is a server error",
        ),
        pytest.param(
            '● API Error: 400 {"type":"error","error":{"type":"invalid_request_error",'
            '"message":"You have reached your specified API usage limits. You will regain '
            'access on 2026-04-01 at 00:00 UTC."}}',
            Kind.QUOTA,
            "2026-04-01 at 00:00 UTC",
            id="an API spend cap is quota with its regain time",
        ),
        pytest.param("  ⎿  Credit balance is too low", Kind.QUOTA, None, id="no credit is quota"),
        pytest.param(
            "● API Error: Connection error.",
            Kind.SERVER_ERROR,
            None,
            id="a connection error is a server-side failure",
        ),
        pytest.param(
            "✻ Request rejected (429) · Retrying in 30s · attempt 4/10",
            Kind.QUOTA,
            None,
            id="an API-key 429 being retried is provisional quota",
        ),
        pytest.param(
            "● Bash(cat notes.txt)\n  ⎿  You've hit your limit · resets 10pm (UTC)\n\n"
            "● Read it.\n\n❯ /cost\n  ⎿  Total cost: $0.0000",
            Kind.OK,
            None,
            id="a slash command under a tool's output changes nothing",
        ),
    ],
)
def test_only_the_agents_own_status_lines_count(body: str, kind: Kind, reset: str | None) -> None:
    """Status lines decide; tool output, prose and look-alike notices do not."""
    reading = classify_pane(_turn(body))
    assert reading.kind is kind
    assert reading.reset_text == reset


@pytest.mark.parametrize(
    ("login", "kind"),
    [
        pytest.param(Login.ENTERPRISE, Kind.QUOTA, id="Enterprise retries its 429s: a limit"),
        pytest.param(Login.API_KEY, Kind.QUOTA, id="an API key retries its 429s: a limit"),
        pytest.param(Login.SUBSCRIBER, Kind.SERVER_ERROR, id="a subscriber's is a 5xx"),
        pytest.param(Login.UNKNOWN, Kind.QUOTA, id="unknown login: a provisional limit"),
    ],
)
def test_a_retried_limit_is_provisional_and_only_a_limit_where_429s_are_retried(
    login: Login, kind: Kind
) -> None:
    """ "Session limit reached · Retrying" is never final; a limit only for a retrying login."""
    for body in (
        "✻ Session limit reached · Retrying in 5s (11:30pm) · attempt 5/10",
        "✻ 5-hour limit reached · retrying in 2s (11:30pm) · attempt 2/3",
    ):
        reading = classify_pane(_turn(body, BUSY_BOX), login=login)
        assert (reading.kind, reading.retrying, reading.activity) == (kind, True, Activity.BUSY)
        assert reading.reset_text == ("11:30pm" if kind is Kind.QUOTA else None)


def test_limit_text_above_the_last_prompt_echo_is_history() -> None:
    """A limit message in an earlier turn does not make a later, successful turn quota."""
    text = (
        "❯ first\n  ⎿  You've hit your limit · resets 3pm (UTC)\n\n"
        "❯ second\n\n● Done.\n\n✻ Worked for 1s" + IDLE_BOX
    )
    assert classify_pane(text).kind is Kind.OK


def test_the_live_input_box_never_counts() -> None:
    """What the user is typing (even a pasted status line) is not the agent's status."""
    text = (
        f"❯ hi\n\n● hello\n\n{RULE}\n❯{NBSP}You've hit your limit · resets 3pm (UTC)\n"
        f"  ⎿  API Error: 500 Internal server error\n{RULE}\n"
    )
    assert classify_pane(text).kind is Kind.OK


def test_old_boxed_ui_with_the_usage_limit_line() -> None:
    """1.0.x panes (``>`` echoes, a boxed ``│ >`` input line) are read the same way."""
    text = (
        "> fix it\n\n⏺ Update(foo.py)\n  ⎿  Updated foo.py\n"
        "  ⎿  Claude usage limit reached. Your limit will reset at 1pm (America/Sao_Paulo).\n\n"
        "      • /upgrade to increase your usage limit.\n\n"
        "╭──────────╮\n│ >        │\n╰──────────╯\n  ? for shortcuts"
    )
    reading = classify_pane(text)
    assert (reading.kind, reading.reset_text) == (Kind.QUOTA, "1pm (America/Sao_Paulo)")
    assert reading.activity is Activity.IDLE


def test_auto_continue_banner_under_the_box_and_its_end() -> None:
    """The newer footer banner names the reset; "Usage limit reset" afterwards means ok again."""
    turn = "❯ go\n  ⎿  You've hit your session limit · resets 3:45pm (UTC)\n\n✻ Worked for 1s\n"
    box = f"\n{RULE}\n❯{NBSP}\n{RULE}\n"
    waiting = classify_pane(
        turn + box + "  Usage limit reached · continuing automatically at 3:45pm · esc to cancel"
    )
    # The limit line above names the zone; the banner only repeats the time.
    assert (waiting.kind, waiting.reset_text) == (Kind.QUOTA, "3:45pm (UTC)")
    banner_only = classify_pane(
        "❯ go\n\n● Working.\n" + box + "  ⚠ Usage limit reached · limit resets 3:45pm"
    )
    assert (banner_only.kind, banner_only.reset_text) == (Kind.QUOTA, "3:45pm")
    done = classify_pane(turn + box + "  Usage limit reset · continuing automatically")
    assert done.kind is Kind.OK


def test_usage_warning_in_the_footer_is_not_quota() -> None:
    """ "You've used 92% of your session limit · resets …" under the box is only a warning."""
    text = _turn("● Done.") + "  You've used 92% of your session limit · resets 11:30pm (UTC)\n"
    assert classify_pane(text).kind is Kind.OK


# -- activity -----------------------------------------------------------------------------------


def test_title_spinner_means_busy_and_star_means_idle() -> None:
    """The pane title is the cheapest busy flag: braille spinner busy, ✳ idle."""
    idle_pane = _turn("● Done.")
    assert classify_activity(idle_pane, "⠂ Claude Code") is Activity.BUSY
    assert classify_activity(idle_pane, "⠐ Claude Code") is Activity.BUSY
    assert classify_activity(idle_pane, "✳ Claude Code") is Activity.IDLE
    assert classify_activity("", "✳ Claude Code") is Activity.IDLE
    assert classify_activity("", None) is Activity.UNKNOWN


def test_a_spinner_line_or_interrupt_footer_means_busy() -> None:
    """Busy shows as "✽ Verb… (3s · …)" above the box or "esc to interrupt" under it."""
    spinner = _turn("●\n\n✽ Scurrying… (3s · ↓ 2 tokens)", box=f"\n{RULE}\n❯{NBSP}\n{RULE}\n")
    assert classify_activity(spinner) is Activity.BUSY
    assert classify_activity(_turn("●", BUSY_BOX)) is Activity.BUSY
    assert classify_activity(_turn("● Done.\n\n✻ Worked for 3s")) is Activity.IDLE


def test_simulator_frames_read_like_claude_code() -> None:
    """Frames drawn the way the bundled simulator draws them classify the same way."""
    busy = (
        f"❯ task\n\n✢ Scurrying… (2s · esc to interrupt)\n\n{RULE}\n"
        f"❯{NBSP}[Pasted text #1 +3 lines]\n{RULE}\n  esc to interrupt · Press up to edit queued"
    )
    assert classify_activity(busy, "⠂ Claude Code") is Activity.BUSY
    pasted = (
        f"❯ task\n\n● Done: task\n\n✻ Worked for 1s\n\n"
        f"{RULE}\n❯{NBSP}[Pasted text #2 +5 lines]\n{RULE}\n"
    )
    assert classify_activity(pasted, "✳ Claude Code") is Activity.IDLE
    permission = (
        f"❯ task\n\n● Bash(touch x)\n  ⎿  Waiting…\n\n{RULE}\n Bash command\n\n"
        " Do you want to proceed?\n ❯ 1. Yes\n   2. Yes, and always allow\n   3. No\n\n"
        " Esc to cancel · Tab to amend"
    )
    assert classify_activity(permission, "✳ Claude Code") is Activity.PERMISSION


def test_a_permission_dialog_wins_over_a_busy_title() -> None:
    """Dialogs replace the input box, so they decide even if the title still spins."""
    dialog = f"{RULE}\n Do you want to create notes.md?\n ❯ 1. Yes\n   2. No\n\n Esc to cancel"
    assert classify_activity(dialog, "⠐ Claude Code") is Activity.PERMISSION


def test_menu_text_in_history_does_not_open_a_menu() -> None:
    """An old, dismissed menu above the live input line is not a menu now."""
    text = (
        "  What do you want to do?\n  ❯ 1. Stop and wait for limit to reset\n"
        "  Enter to confirm · Esc to cancel\n" + _turn("● ok")
    )
    assert classify_activity(text) is Activity.IDLE


# -- transcripts --------------------------------------------------------------------------------


def _error_entry(error: str, status: int, text: str) -> dict[str, object]:
    """A transcript entry as Claude Code writes an API error turn."""
    return {
        "type": "assistant",
        "isApiErrorMessage": True,
        "error": error,
        "apiErrorStatus": status,
        "message": {"role": "assistant", "content": [{"type": "text", "text": text}]},
    }


def _assistant(text: str) -> dict[str, object]:
    """An ordinary assistant transcript entry."""
    return {"type": "assistant", "message": {"content": [{"type": "text", "text": text}]}}


@pytest.mark.parametrize(
    ("entry", "kind", "reset"),
    [
        pytest.param(
            _error_entry("rate_limit", 429, "You've hit your session limit · resets 12:30am (UTC)"),
            Kind.QUOTA,
            "12:30am (UTC)",
            id="subscriber limit",
        ),
        pytest.param(
            _error_entry("rate_limit", 429, "API Error: Request rejected (429) · per-minute limit"),
            Kind.QUOTA,
            None,
            id="API-key 429 after retries",
        ),
        pytest.param(
            _error_entry(
                "rate_limit",
                429,
                "API Error: Server is temporarily limiting requests (not your usage limit)",
            ),
            Kind.SERVER_ERROR,
            None,
            id="server throttling says it is not the usage limit",
        ),
        pytest.param(
            _error_entry("rate_limit", 500, "You've hit your session limit · resets 1am (UTC)"),
            Kind.SERVER_ERROR,
            None,
            id="a 5xx status vetoes quota",
        ),
        pytest.param(
            _error_entry("server_error", 500, "API Error: 500 Internal server error."),
            Kind.SERVER_ERROR,
            None,
            id="server error",
        ),
        pytest.param(
            _error_entry("billing_error", 400, "Credit balance is too low"),
            Kind.QUOTA,
            None,
            id="billing stop counts as quota",
        ),
        pytest.param(
            _error_entry("authentication_failed", 401, "API Error: 401 invalid x-api-key"),
            Kind.OK,
            None,
            id="other errors are neither",
        ),
        pytest.param(
            _assistant("You've hit your limit · resets 3pm (UTC) is what the CLI prints"),
            Kind.OK,
            None,
            id="ordinary assistant text never counts",
        ),
    ],
)
def test_transcript_entry_classification(
    entry: dict[str, object], kind: Kind, reset: str | None
) -> None:
    """Only isApiErrorMessage entries count; error, status and text decide together."""
    reading = classify_transcript_entry(entry)
    assert (reading.kind, reading.reset_text) == (kind, reset)


def test_transcript_last_assistant_entry_wins() -> None:
    """An error is current until an ordinary assistant entry shows the agent recovered."""
    quota = _error_entry("rate_limit", 429, "You've hit your limit · resets 3pm (UTC)")
    user = {"type": "user", "message": {"content": "You've hit your limit · resets 9pm (UTC)"}}
    lines = [json.dumps(_assistant("hi")), json.dumps(quota), "not json", json.dumps(user), ""]
    reading = classify_transcript(lines)
    assert (reading.kind, reading.reset_text) == (Kind.QUOTA, "3pm (UTC)")
    assert classify_transcript([*lines, json.dumps(_assistant("Done."))]).kind is Kind.OK
    assert classify_transcript([]).kind is Kind.OK


# -- hooks --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "kind", "reset"),
    [
        pytest.param(
            {
                "hook_event_name": "StopFailure",
                "error": "rate_limit",
                "last_assistant_message": "You've hit your weekly limit · resets Nov 24, 5am (UTC)",
            },
            Kind.QUOTA,
            "Nov 24, 5am (UTC)",
            id="rate_limit with the displayed reset",
        ),
        pytest.param(
            {"hook_event_name": "StopFailure", "error": "overloaded"},
            Kind.SERVER_ERROR,
            None,
            id="overloaded",
        ),
        pytest.param(
            {
                "hook_event_name": "StopFailure",
                "error": "server_error",
                "last_assistant_message": "",
            },
            Kind.SERVER_ERROR,
            None,
            id="server_error",
        ),
        pytest.param(
            {"hook_event_name": "StopFailure", "error": "billing_error"},
            Kind.QUOTA,
            None,
            id="billing_error",
        ),
        pytest.param(
            {"hook_event_name": "StopFailure", "error": "max_output_tokens"},
            Kind.OK,
            None,
            id="an error that is neither",
        ),
        pytest.param(
            {
                "hook_event_name": "Stop",
                "last_assistant_message": "You've hit your limit · resets 3pm (UTC)",
            },
            Kind.OK,
            None,
            id="Stop is ok whatever the reply says",
        ),
        pytest.param({}, Kind.OK, None, id="an empty payload"),
    ],
)
def test_hook_payload_classification(
    payload: dict[str, object], kind: Kind, reset: str | None
) -> None:
    """StopFailure is classified by its error name; every other hook is ok."""
    reading = classify_hook_payload(payload)
    assert (reading.kind, reading.reset_text) == (kind, reset)


# -- robustness ---------------------------------------------------------------------------------

FRAGMENTS = [
    "❯ ",
    f"❯{NBSP}",
    "> ",
    "  ⎿  ",
    "● ",
    "⏺ ",
    "✻ ",
    RULE,
    "\n",
    "\n     ",
    "You've hit your limit",
    " · resets ",
    "11pm",
    " (UTC)",
    "Session limit reached · Retrying in 5s (11:30pm) · attempt 5/10",
    "API Error: ",
    "Request rejected (429)",
    "500 Internal server error",
    "Claude AI usage limit reached|1755615600",
    "What do you want to do?",
    "  ❯ 1. Stop and wait for limit to reset",
    "/rate-limit-options",
    "Do you want to proceed?",
    "esc to interrupt",
    "Bash(x)",
    "│ > ",
    "╭",
    "╰",
    "(",
    ")",
    # 2.1.332
    "● Usage limit reached · set to continue automatically at ",
    "● Usage limit reset · Continuing automatically",
    "● Automatic continue cancelled · /rate-limit-options to wait again",
    "  ⚠ Usage limit reached · limit resets 4:32pm",
    "    Continuing shortly · Esc to cancel",
    "You've hit your 5-hour limit",
    " · your 5-hour limit resets ",
    "✻ 5-hour limit reached · retrying in 2s (4:44pm) · attempt 2/3",
    "✻ 429 Rate limited · retrying in 2s · attempt 2/2",
    "You've used 92% of your 5-hour limit",
    "Over 75% of your weekly limit used",
    "❯ /usage",
    "  ⎿  Queued · ctrl+x ctrl+s to send now",
    f"❯{NBSP}Resend your message to try again",
    "✻ Waiting for 1 background agent to finish",
    "  ◯ general-purpose  slow helper  1s",
    "Resume this session with:",
    "user@host:~$",
]
PANE_TEXT = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=10)), max_size=30).map(
    "".join
)
CLEAN_TURN = "\n❯ carry on please\n\n● Done.\n\n✻ Worked for 2s\n"


@settings(max_examples=400)
@given(text=PANE_TEXT, title=st.one_of(st.none(), st.text(max_size=4)))
def test_classifiers_never_raise(text: str, title: str | None) -> None:
    """Any text and title give a reading, never an exception."""
    reading = classify_pane(text, title)
    assert reading.kind in set(Kind)
    assert reading.kind is Kind.QUOTA or reading.window is None
    for login in Login:
        assert classify_pane(text, title, login=login).kind in set(Kind)
    assert isinstance(pending_input(text), str)
    assert has_exited(text) in (True, False)
    assert classify_activity(text, title) in set(Activity)
    entry = _error_entry("rate_limit", 429, text)
    assert classify_transcript_entry(entry).kind in set(Kind)
    classify_transcript([text, json.dumps(entry)])
    classify_hook_payload({"hook_event_name": "StopFailure", "last_assistant_message": text})


@settings(max_examples=400)
@given(history=PANE_TEXT, boxed=st.booleans())
def test_text_above_the_last_prompt_echo_never_means_quota(history: str, boxed: bool) -> None:
    """Whatever the history holds, a clean last turn is never quota."""
    text = history + CLEAN_TURN + (IDLE_BOX if boxed else "")
    assert classify_pane(text).kind is not Kind.QUOTA


@settings(max_examples=200)
@given(typed=st.text(max_size=80).map(lambda typed: typed.replace("\n", " ")))
def test_what_the_user_types_never_triggers(typed: str) -> None:
    """Anything in the live input line leaves a clean turn ok."""
    text = f"{CLEAN_TURN}\n{RULE}\n❯{NBSP}{typed}\n{RULE}\n  ? for shortcuts\n"
    assert classify_pane(text).kind is Kind.OK
