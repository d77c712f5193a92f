"""The readings' extra information: windows, warnings, auto-continue, logins, Stop completion.

Also the hook payload samples of each Claude Code version, the transcript's structured limit
fields, :func:`combine_readings`, and the 2.1.332 pane helpers (placeholders, exit, busy).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentq.agents.classify import (
    Activity,
    AutoContinue,
    Kind,
    Login,
    PaneReading,
    SignalReading,
    UsageWarning,
    Window,
    classify_activity,
    classify_hook_payload,
    classify_pane,
    classify_transcript,
    classify_transcript_entry,
    combine_readings,
    has_exited,
    pending_input,
    running_background_tasks,
    stop_ends_task,
)
from agentq.agents.hooks import build_signal, read_signals
from agentq.agents.profiles import POOL_SETTINGS, login_from, login_of, make_profile

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CORPUS = FIXTURES / "corpus"
HOOKS = FIXTURES / "hooks"
NBSP = "\u00a0"
RULE = "─" * 60
BOX = f"\n{RULE}\n❯{NBSP}\n{RULE}\n"
FOOTER = "  ⏵⏵ auto mode on (shift+tab to cycle) · ← for agents"


def _turn(body: str, footer: str = FOOTER) -> str:
    """A 2.1.332-style pane: a prompt echo, the turn, the input box and its footer."""
    return f"❯ do the task\n{body}{BOX}{footer}\n"


def _sample(name: str) -> str:
    return (CORPUS / name).read_text("utf-8")


def _hook(version: str, name: str) -> dict[str, object]:
    data = json.loads((HOOKS / version / name).read_text("utf-8"))
    assert isinstance(data, dict)
    return data


# -- windows --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "window", "reset"),
    [
        ("You've hit your session limit · resets 4:33pm (UTC)", Window.FIVE_HOUR, "4:33pm (UTC)"),
        ("You've hit your 5-hour limit · resets 4:32pm (UTC)", Window.FIVE_HOUR, "4:32pm (UTC)"),
        (
            "You've hit your weekly limit · resets Dec 4, 3:33pm (UTC)",
            Window.SEVEN_DAY,
            "Dec 4, 3:33pm (UTC)",
        ),
        ("You've hit your Opus limit · resets 1am (UTC)", Window.OPUS, "1am (UTC)"),
        ("You've hit your Sonnet limit · resets 1am (UTC)", Window.SONNET, "1am (UTC)"),
        ("You've hit your limit · resets 1am (UTC)", Window.OVERAGE, "1am (UTC)"),
        ("You're out of usage credits · resets 4:55pm (UTC)", Window.OVERAGE, "4:55pm (UTC)"),
        (
            "You've hit your 5-hour limit · resets 4:54pm (UTC) · out of usage credits",
            Window.FIVE_HOUR,
            "4:54pm (UTC)",
        ),
        (
            "You've hit your monthly spend limit · raise it at claude.ai/settings/usage",
            Window.SPEND,
            None,
        ),
        (
            "You've hit your monthly spend limit · raise it at https://claude.ai/settings/usage?"
            "from=cc_cli_limit_message · your 5-hour limit resets 4:54pm (UTC)",
            Window.FIVE_HOUR,
            "4:54pm (UTC)",
        ),
        ("Opus weekly limit reached ∙ resets Oct 24", Window.OPUS, "Oct 24"),
        ("5-hour limit reached · resets 2pm (Pacific/Auckland)", Window.FIVE_HOUR, None),
        ("Claude AI usage limit reached|1755615600", Window.UNKNOWN, "1755615600"),
        ("You've hit your usage limit.", Window.UNKNOWN, None),
        ("Credit balance is too low", Window.SPEND, None),
    ],
    ids=lambda value: value if isinstance(value, str) and len(value) < 40 else None,
)
def test_a_limit_names_its_window(line: str, window: Window, reset: str | None) -> None:
    """Each wording of 2.1.197, 2.1.332 and older versions names its usage window."""
    reading = classify_pane(f"  ⎿  {line}")
    assert (reading.kind, reading.window) == (Kind.QUOTA, window)
    if reset is not None:
        assert reading.reset_text == reset


LABELS = {
    "session": Window.FIVE_HOUR,
    "5-hour": Window.FIVE_HOUR,
    "weekly": Window.SEVEN_DAY,
    "Opus": Window.OPUS,
    "Opus weekly": Window.OPUS,
    "Sonnet": Window.SONNET,
    "": Window.OVERAGE,
    "usage": Window.UNKNOWN,
    "monthly spend": Window.SPEND,
}
RESETS = st.sampled_from(
    ["4:32pm (UTC)", "11pm (Europe/Paris)", "Dec 4, 3:32pm (UTC)", "Jan 2, 2027, 5am (UTC)", "8pm"]
)


@settings(max_examples=200)
@given(label=st.sampled_from(sorted(LABELS)), reset=RESETS, hint=st.booleans())
def test_limit_lines_round_trip_window_and_reset(label: str, reset: str, hint: bool) -> None:
    """Any label and reset, with or without the hint line, come back as window and reset."""
    words = f"{label} " if label else ""
    text = f"  ⎿  You've hit your {words}limit · resets {reset}"
    if hint:
        text += "\n     /upgrade to increase your usage limit."
    reading = classify_pane(_turn(text))
    assert (reading.kind, reading.window, reading.reset_text) == (Kind.QUOTA, LABELS[label], reset)


@settings(max_examples=200)
@given(window=st.sampled_from(["5-hour", "weekly", "session"]), reset=RESETS)
def test_the_spend_limit_reads_the_reset_of_the_window_it_names(window: str, reset: str) -> None:
    """2.1.332's spend limit names the window whose reset frees the account, even wrapped."""
    text = (
        "  ⎿  You've hit your monthly spend limit · raise it at https://claude.ai/settings/usage?"
        f"from=cc_cli_limit_message · your\n     {window} limit resets {reset}"
    )
    reading = classify_pane(_turn(text))
    assert (reading.kind, reading.window, reading.reset_text) == (
        Kind.QUOTA,
        LABELS[window],
        reset,
    )


# -- warnings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "You've used 92% of your session limit · resets 11:30pm (UTC) · /upgrade to keep"
            " using Claude Code",
            (Window.FIVE_HOUR, 92, False, "11:30pm (UTC)"),
        ),
        (
            "You've used 92% of your 5-hour limit · resets 8:06pm (UTC) · /upgrade to keep using"
            " Claude Code",
            (Window.FIVE_HOUR, 92, False, "8:06pm (UTC)"),
        ),
        (
            "Over 75% of your weekly limit used · resets Dec 8, 3:37am (UTC) · try /model sonnet"
            " · ~2× runway",
            (Window.SEVEN_DAY, 75, True, "Dec 8, 3:37am (UTC)"),
        ),
        (
            "Approaching weekly limit · resets Dec 8, 3:37am (UTC) · try /effort medium",
            (Window.SEVEN_DAY, None, False, "Dec 8, 3:37am (UTC)"),
        ),
        (
            "Approaching Opus usage limit · /model to use best available model",
            (Window.OPUS, None, False, None),
        ),
    ],
    ids=["2.1.197 session", "2.1.332 5-hour", "2.1.332 over 75%", "2.1.197 approaching", "1.0"],
)
def test_a_footer_warning_is_a_warning_not_quota(
    line: str, expected: tuple[Window, int | None, bool, str | None]
) -> None:
    """Warnings under the box keep the reading ok and carry window, percentage and reset."""
    reading = classify_pane(_turn("● Done.", f"{FOOTER}\n{' ' * 20}{line}"))
    assert reading.kind is Kind.OK
    assert reading.warning is not None
    warning = reading.warning
    assert (warning.window, warning.percent, warning.over, warning.reset_text) == expected


def test_a_warning_beside_other_footer_text_is_read() -> None:
    """A warning sharing its footer line with the mode hint is still found."""
    footer = f"{FOOTER}{' ' * 8}You've used 97% of your weekly limit · resets Dec 8, 3:39am (UTC)"
    warning = classify_pane(_turn("● Done.", footer)).warning
    assert warning == UsageWarning(
        Window.SEVEN_DAY,
        97,
        False,
        "Dec 8, 3:39am (UTC)",
        "You've used 97% of your weekly limit · resets Dec 8, 3:39am (UTC)",
    )


def test_a_warning_in_the_assistants_prose_is_not_read() -> None:
    """Only the footer carries warnings: the same words in a reply are nothing."""
    reading = classify_pane(_turn("● You've used 92% of your 5-hour limit · resets 8pm (UTC)"))
    assert (reading.kind, reading.warning) == (Kind.OK, None)


@settings(max_examples=300)
@given(
    percent=st.integers(min_value=1, max_value=100),
    label=st.sampled_from(["session", "5-hour", "weekly", "Opus", "Sonnet"]),
    over=st.booleans(),
    reset=RESETS,
    tail=st.sampled_from(["", " · /upgrade to keep using Claude Code", " · ~2× runway"]),
)
def test_warnings_round_trip_and_are_never_quota(
    percent: int, label: str, over: bool, reset: str, tail: str
) -> None:
    """Any warning wording keeps the kind ok and gives back its window, percentage and reset."""
    if over:
        line = f"Over {percent}% of your {label} limit used · resets {reset}{tail}"
    else:
        line = f"You've used {percent}% of your {label} limit · resets {reset}{tail}"
    reading = classify_pane(_turn("● Done.\n✻ Worked for 1s · done 3:27 PM", f"{FOOTER}\n  {line}"))
    assert reading.kind is Kind.OK
    assert reading.warning is not None
    warning = reading.warning
    assert (warning.window, warning.percent, warning.over, warning.reset_text) == (
        LABELS[label],
        percent,
        over,
        reset,
    )


# -- retries and logins ---------------------------------------------------------------------

RETRY_HEADLINES = [
    "API error",
    "500 Internal server error",
    "529 Overloaded",
    "503 Service Unavailable",
    "429 Rate limited",
    "429 Number of request tokens has exceeded your per-minute rate limit",
    "5-hour limit reached",
    "Session limit reached",
    "Weekly limit reached",
    "Request rejected (429)",
]


@settings(max_examples=400)
@given(
    headline=st.sampled_from(RETRY_HEADLINES),
    word=st.sampled_from(["retrying", "Retrying"]),
    seconds=st.integers(min_value=1, max_value=600),
    reset=st.sampled_from(["", " (11:30pm)", " (4:44pm)"]),
    attempt=st.integers(min_value=1, max_value=10),
    login=st.sampled_from(list(Login)),
)
def test_a_retry_line_is_never_a_final_limit(
    headline: str, word: str, seconds: int, reset: str, attempt: int, login: Login
) -> None:
    """Whatever the headline says, a retry line is provisional; a subscriber's is never a
    limit, a retrying login's 429s and limits always are."""
    line = f"✻ {headline} · {word} in {seconds}s{reset} · attempt {attempt}/10"
    reading = classify_pane(_turn(line, f"{FOOTER} · esc to interrupt"), login=login)
    assert reading.retrying is True
    assert reading.activity is Activity.BUSY
    limit = "limit reached" in headline or "429" in headline
    if login is Login.SUBSCRIBER:
        assert reading.kind is Kind.SERVER_ERROR
    elif login.retries_rate_limits:
        assert reading.kind is (Kind.QUOTA if limit else Kind.SERVER_ERROR)
    else:
        unsure = "limit reached" in headline or headline == "Request rejected (429)"
        assert reading.kind is (Kind.QUOTA if unsure else Kind.SERVER_ERROR)


def test_the_2332_api_key_429_retry_is_a_limit_only_for_an_api_key() -> None:
    """Capture 37 (API key) and 40 (subscriber throttle) have the same shape: the login decides."""
    api_key = _sample("v2332_37_apikey_429_retrying.txt")
    throttle = _sample("v2332_40_sub_429_without_unified_headers_retrying.txt")
    assert classify_pane(api_key, login=Login.API_KEY).kind is Kind.QUOTA
    assert classify_pane(api_key).kind is Kind.SERVER_ERROR
    assert classify_pane(throttle, login=Login.SUBSCRIBER).kind is Kind.SERVER_ERROR
    assert classify_pane(throttle).kind is Kind.SERVER_ERROR


def test_a_structured_rate_limit_makes_a_retried_limit_quota() -> None:
    """The pane's retry line says server error; a StopFailure ``rate_limit`` overrules it."""
    text = _sample("real_50_500_with_claim_header_retrying_attempt6.txt")
    pane = classify_pane(text, login=Login.SUBSCRIBER)
    assert (pane.kind, pane.retrying) == (Kind.SERVER_ERROR, True)
    hook = classify_hook_payload(_hook("2.1.197", "StopFailure.json"))
    combined = combine_readings(hook=hook, pane_reading=pane)
    assert (combined.kind, combined.retrying, combined.reset_text) == (
        Kind.QUOTA,
        False,
        "4:33pm (UTC)",
    )
    assert combine_readings(pane_reading=pane).kind is Kind.SERVER_ERROR


@pytest.mark.parametrize(
    ("credentials", "env", "settings_json", "login"),
    [
        ({"claudeAiOauth": {"subscriptionType": "pro"}}, {}, None, Login.SUBSCRIBER),
        ({"claudeAiOauth": {"subscriptionType": "max"}}, {}, None, Login.SUBSCRIBER),
        ({"claudeAiOauth": {"subscriptionType": "team"}}, {}, None, Login.SUBSCRIBER),
        ({"claudeAiOauth": {"subscriptionType": "enterprise"}}, {}, None, Login.ENTERPRISE),
        ({"claudeAiOauth": {}}, {}, None, Login.SUBSCRIBER),
        (None, {"ANTHROPIC_API_KEY": "sk-test"}, None, Login.API_KEY),
        ({"claudeAiOauth": {}}, {"ANTHROPIC_API_KEY": "sk-test"}, None, Login.API_KEY),
        (None, {}, {"apiKeyHelper": "~/bin/key"}, Login.API_KEY),
        (None, {"CLAUDE_CODE_OAUTH_TOKEN": "t"}, None, Login.SUBSCRIBER),
        (
            None,
            {"CLAUDE_CODE_OAUTH_TOKEN": "t", "CLAUDE_CODE_SUBSCRIPTION_TYPE": "enterprise"},
            None,
            Login.ENTERPRISE,
        ),
        (None, {}, None, Login.UNKNOWN),
        ("not an object", {}, [], Login.UNKNOWN),
    ],
)
def test_login_from_credentials_settings_and_environment(
    credentials: object, env: dict[str, str], settings_json: object, login: Login
) -> None:
    """An API key wins; else the OAuth plan; else unknown."""
    assert login_from(credentials, env, settings_json) is login


def test_login_of_reads_the_account_home(tmp_path: Path) -> None:
    """The account home's .credentials.json decides; a broken file counts as absent."""
    (tmp_path / ".credentials.json").write_text(
        json.dumps({"claudeAiOauth": {"subscriptionType": "enterprise"}})
    )
    assert login_of(tmp_path, {}) is Login.ENTERPRISE
    (tmp_path / ".credentials.json").write_text("{not json")
    assert login_of(tmp_path, {}) is Login.UNKNOWN
    assert login_of(tmp_path / "absent", {"ANTHROPIC_API_KEY": "k"}) is Login.API_KEY


# -- a limit followed by a slash command ----------------------------------------------------

SLASH_OUTPUTS = [
    ("/usage", "Settings dialog dismissed"),
    ("/cost", "Total cost: $0.0000"),
    ("/model", "Kept model as Opus 5.5"),
    ("/rate-limit-options", "Claude Code will continue automatically at 4:54pm."),
    ("/context", "Context usage 12%"),
]


@settings(max_examples=200)
@given(
    command=st.sampled_from(SLASH_OUTPUTS),
    args=st.sampled_from(["", " sonnet", " --verbose"]),
    version=st.sampled_from(["2.1.197", "2.1.332"]),
)
def test_a_slash_command_after_a_limit_leaves_the_limit(
    command: tuple[str, str], args: str, version: str
) -> None:
    """A slash command's echo and output sent nothing to the model: the limit still stands."""
    name, output = command
    done = "✻ Brewed for 0s\n" if version == "2.1.197" else ""
    text = (
        "❯ hello there\n  ⎿  You've hit your session limit · resets 6:47pm (UTC)\n"
        f"{done}❯ {name}{args}\n  ⎿  {output}{BOX}{FOOTER}\n"
    )
    reading = classify_pane(text)
    assert (reading.kind, reading.reset_text, reading.window) == (
        Kind.QUOTA,
        "6:47pm (UTC)",
        Window.FIVE_HOUR,
    )


def test_a_slash_command_that_ran_a_turn_ends_the_limit() -> None:
    """A command that reached the model (a reply, a finished turn) shows the limit lifted."""
    text = (
        "❯ hello there\n  ⎿  You've hit your session limit · resets 6:47pm (UTC)\n"
        f"❯ /review\n● Reviewed: nothing to change.\n✻ Worked for 3s{BOX}{FOOTER}\n"
    )
    assert classify_pane(text).kind is Kind.OK


def test_a_queued_message_is_not_a_new_turn() -> None:
    """2.1.332 echoes a queued message at column 0: the turn above it is still the current one."""
    text = (
        "❯ go\n  ⎿  You've hit your 5-hour limit · resets 4:32pm (UTC)\n"
        f"❯ queued follow-up message\n  ⎿  Queued · ctrl+x ctrl+s to send now{BOX}{FOOTER}\n"
    )
    assert classify_pane(text).kind is Kind.QUOTA


# -- auto-continue --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "state"),
    [
        ("v2332_07_five_hour_limit_autocontinue_armed.txt", AutoContinue.ARMED),
        ("v2332_10_autocontinue_continuing_shortly.txt", AutoContinue.ARMED),
        ("v2332_20_limit_menu_wait_and_continue_chosen.txt", AutoContinue.ARMED),
        ("v2332_08_five_hour_limit_autocontinue_cancelled.txt", AutoContinue.CANCELLED),
        ("v2332_11_autocontinue_resumed_turn_done.txt", AutoContinue.FIRED),
        ("v2332_19_limit_menu_autocontinue_off.txt", None),
        ("real_01_pro_session_limit_menu.txt", None),
    ],
)
def test_the_pane_shows_the_auto_continue_state(name: str, state: AutoContinue | None) -> None:
    """Armed (notice, banner, menu reply), cancelled, fired, or none at all."""
    assert classify_pane(_sample(name)).auto_continue is state


@settings(max_examples=200)
@given(
    reset=st.sampled_from(["4:32pm", "11am", "12:05am"]),
    zone=st.sampled_from(["UTC", "Europe/Paris", "America/New_York"]),
    shortly=st.booleans(),
)
def test_the_armed_banner_never_hides_the_limit_lines_zone(
    reset: str, zone: str, shortly: bool
) -> None:
    """With auto-continue armed, the reset comes from the ⎿ line, zone included."""
    second = "Continuing shortly" if shortly else f"Continuing automatically at {reset}"
    text = (
        f"❯ hello there\n  ⎿  You've hit your 5-hour limit · resets {reset} ({zone})\n"
        f"● Usage limit reached · set to continue automatically at {reset}{BOX}"
        f"  ⚠ Usage limit reached · limit resets {reset}\n    {second} · Esc to cancel\n{FOOTER}\n"
    )
    reading = classify_pane(text)
    assert (reading.kind, reading.reset_text, reading.auto_continue) == (
        Kind.QUOTA,
        f"{reset} ({zone})",
        AutoContinue.ARMED,
    )


@pytest.mark.parametrize(
    ("payload", "state"),
    [
        (_hook("2.1.332", "Notification-quota_auto_resume_fired.json"), AutoContinue.FIRED),
        (_hook("2.1.332", "UserPromptSubmit-auto-continue.json"), AutoContinue.FIRED),
        (_hook("2.1.332", "UserPromptSubmit.json"), None),
        (_hook("2.1.332", "Notification-idle_prompt.json"), None),
    ],
    ids=["notification", "continue prompt", "a typed prompt", "idle notification"],
)
def test_hooks_tell_a_fired_auto_continue(
    payload: dict[str, object], state: AutoContinue | None
) -> None:
    """``quota_auto_resume_fired`` and the canned continue prompt mean it fired."""
    reading = classify_hook_payload(payload)
    assert (reading.kind, reading.auto_continue) == (Kind.OK, state)


def test_the_transcript_tells_the_auto_continue() -> None:
    """The limit turn's notice arms it; the auto-continuation entry says it fired."""
    armed = classify_transcript(
        _sample("v2332_49_transcript_five_hour_limit_error_entry.txt").splitlines()
    )
    assert armed.auto_continue is AutoContinue.ARMED
    fired = classify_transcript(_sample("v2332_50_transcript_autocontinue.txt").splitlines())
    assert (fired.kind, fired.auto_continue) == (Kind.OK, AutoContinue.FIRED)
    typed = {"type": "user", "origin": {"kind": "human"}, "message": {"content": "next"}}
    lines = [*_sample("v2332_50_transcript_autocontinue.txt").splitlines(), json.dumps(typed)]
    assert classify_transcript(lines).auto_continue is None


# -- structured limit fields ----------------------------------------------------------------


def test_the_transcript_error_entry_gives_window_and_exact_reset() -> None:
    """2.1.332's ``quotaLimits`` give the claim's window and the reset epoch."""
    reading = classify_transcript(
        _sample("v2332_49_transcript_five_hour_limit_error_entry.txt").splitlines()
    )
    assert (reading.kind, reading.window, reading.reset_text) == (
        Kind.QUOTA,
        Window.FIVE_HOUR,
        "3:31pm (UTC)",
    )
    assert reading.resets_at == datetime.fromtimestamp(1796139060, UTC)


@pytest.mark.parametrize(
    ("claim", "window"),
    [
        ("five_hour", Window.FIVE_HOUR),
        ("seven_day", Window.SEVEN_DAY),
        ("seven_day_opus", Window.OPUS),
        ("seven_day_sonnet", Window.SONNET),
        ("overage", Window.OVERAGE),
        ("something_new", Window.UNKNOWN),
    ],
)
def test_the_claim_decides_the_window_over_the_wording(claim: str, window: Window) -> None:
    """A Sonnet claim on Pro reads "weekly limit"; the structured claim says Sonnet."""
    entry = {
        "type": "assistant",
        "isApiErrorMessage": True,
        "error": "rate_limit",
        "apiErrorStatus": 429,
        "apiError": "usage_limit_reached",
        "quotaLimits": {"status": "rejected", "resetsAt": 1796139060, "rateLimitType": claim},
        "message": {"content": [{"type": "text", "text": "You've hit your weekly limit"}]},
    }
    reading = classify_transcript_entry(entry)
    assert (reading.kind, reading.window) == (Kind.QUOTA, window)


def test_a_transient_429_entry_is_the_servers_throttle() -> None:
    """``apiErrorIsTransient`` marks the subscriber throttle: never quota."""
    entry = {
        "type": "assistant",
        "isApiErrorMessage": True,
        "error": "rate_limit",
        "apiErrorStatus": 429,
        "apiErrorIsTransient": True,
        "message": {"content": [{"type": "text", "text": "API Error: Rate limited"}]},
    }
    assert classify_transcript_entry(entry).kind is Kind.SERVER_ERROR
    api_key = classify_transcript(_sample("v2332_52_transcript_apikey_429.txt").splitlines())
    assert (api_key.kind, api_key.window) == (Kind.QUOTA, Window.UNKNOWN)


# -- hook payload samples -------------------------------------------------------------------


HOOK_KINDS = {
    "StopFailure.json": (Kind.QUOTA, Window.FIVE_HOUR),
    "StopFailure-apikey-429.json": (Kind.QUOTA, Window.UNKNOWN),
    "StopFailure-server_error.json": (Kind.SERVER_ERROR, None),
}


@pytest.mark.parametrize(
    "path",
    sorted(HOOKS.glob("*/*.json")),
    ids=lambda path: f"{path.parent.name}/{path.name}",
)
def test_every_hook_payload_sample_is_classified(path: Path) -> None:
    """StopFailure samples read as their error says (with the window); every other hook is ok."""
    reading = classify_hook_payload(json.loads(path.read_text("utf-8")))
    assert (reading.kind, reading.window) == HOOK_KINDS.get(path.name, (Kind.OK, None))


def test_the_spend_limit_stop_failure_names_the_window_reset() -> None:
    """2.1.332's spend limit payload: quota, the 5-hour window, its reset with the zone."""
    payload = {
        "hook_event_name": "StopFailure",
        "error": "rate_limit",
        "last_assistant_message": "You've hit your monthly spend limit · raise it at "
        "https://claude.ai/settings/usage?from=cc_cli_limit_message · your 5-hour limit resets "
        "4:54pm (UTC)",
    }
    reading = classify_hook_payload(payload)
    assert (reading.kind, reading.reset_text, reading.window) == (
        Kind.QUOTA,
        "4:54pm (UTC)",
        Window.FIVE_HOUR,
    )


@pytest.mark.parametrize(
    "error",
    ["account_on_hold", "verification_required", "cloud_credential_error", "max_output_tokens"],
)
def test_new_stop_failure_errors_are_neither_quota_nor_server(error: str) -> None:
    """2.1.332's new account errors fail the task with their name; they are not a limit."""
    reading = classify_hook_payload({"hook_event_name": "StopFailure", "error": error})
    assert reading.kind is Kind.OK
    assert reading.evidence is not None and f"error={error}" in reading.evidence


# -- Stop and background tasks --------------------------------------------------------------


@pytest.mark.parametrize("version", ["2.1.197", "2.1.332"])
def test_a_stop_with_running_background_agents_does_not_end_the_task(version: str) -> None:
    """The first Stop lists the running agent; the task ends with a later Stop."""
    running = _hook(version, "Stop-background-agent-running.json")
    assert stop_ends_task(running) is False
    assert [task["description"] for task in running_background_tasks(running)] == ["slow helper"]
    assert stop_ends_task(_hook("2.1.332", "Stop.json")) is True
    assert stop_ends_task(_hook("2.1.197", "Stop.json")) is True
    assert stop_ends_task({"hook_event_name": "Stop"}) is True


TASK = st.fixed_dictionaries(
    {"id": st.text(min_size=1, max_size=8), "type": st.sampled_from(["subagent", "shell"])},
    optional={"status": st.sampled_from(["running", "pending", "completed", "failed", "killed"])},
)


@settings(max_examples=300)
@given(tasks=st.one_of(st.none(), st.lists(TASK, max_size=5), st.integers(), st.text()))
def test_a_stop_ends_the_task_exactly_when_nothing_still_runs(tasks: object) -> None:
    """Absent, empty or only finished tasks end it; a task running, pending or unknown does not."""
    payload = {"hook_event_name": "Stop", "background_tasks": tasks}
    still = isinstance(tasks, list) and any(
        t.get("status") not in ("completed", "failed", "killed") for t in tasks
    )
    assert stop_ends_task(payload) is (not still)


def test_signals_keep_the_background_tasks(tmp_path: Path) -> None:
    """A signal file keeps a Stop's background tasks, so the daemon can tell it is not the end."""
    payload = _hook("2.1.332", "Stop-background-agent-running.json")
    record = build_signal("Stop", payload, "pool-1", 1.0)
    (tmp_path / "signals").mkdir()
    (tmp_path / "signals" / "1-Stop.json").write_text(json.dumps(record))
    (signal,) = read_signals(tmp_path)
    assert signal.background_tasks == (
        {
            "id": "a38d493f64917d08e",
            "type": "subagent",
            "status": "running",
            "description": "slow helper",
            "agent_type": "general-purpose",
        },
    )
    assert stop_ends_task(signal.payload()) is False
    assert signal.payload()["last_assistant_message"] == "DONE: mock reply 4"
    fired = build_signal(
        "Notification", _hook("2.1.332", "Notification-quota_auto_resume_fired.json"), None, 2.0
    )
    (tmp_path / "signals" / "2-Notification.json").write_text(json.dumps(fired))
    notification = read_signals(tmp_path)[1]
    assert classify_hook_payload(notification.payload()).auto_continue is AutoContinue.FIRED


# -- combining the sources ------------------------------------------------------------------


def test_structured_signals_come_first_and_fill_in_the_details() -> None:
    """The hook decides; the transcript adds the claim and the exact reset; the pane the warning."""
    hook = SignalReading(Kind.QUOTA, "3:31pm (UTC)", "hook", Window.UNKNOWN)
    transcript = SignalReading(
        Kind.QUOTA, None, "transcript", Window.SONNET, datetime(2026, 12, 1, 15, 31, tzinfo=UTC)
    )
    pane = classify_pane(_sample("v2332_07_five_hour_limit_autocontinue_armed.txt"))
    combined = combine_readings(hook=hook, transcript=transcript, pane_reading=pane)
    assert (combined.kind, combined.reset_text, combined.window) == (
        Kind.QUOTA,
        "3:31pm (UTC)",
        Window.SONNET,
    )
    assert combined.resets_at == datetime(2026, 12, 1, 15, 31, tzinfo=UTC)
    assert (combined.evidence, combined.auto_continue) == ("hook", AutoContinue.ARMED)


def test_the_pane_decides_only_when_the_structured_signals_say_nothing() -> None:
    """No hook, an ok transcript: the pane's reading (and its provisional flag) stands."""
    pane = PaneReading(Kind.SERVER_ERROR, None, Activity.BUSY, "retry", retrying=True)
    combined = combine_readings(transcript=SignalReading(Kind.OK), pane_reading=pane)
    assert (combined.kind, combined.retrying) == (Kind.SERVER_ERROR, True)
    assert combine_readings().kind is Kind.OK


def test_a_fired_auto_continue_from_any_source_wins() -> None:
    """A hook saying it fired beats a pane still showing it armed."""
    fired = classify_hook_payload(_hook("2.1.332", "Notification-quota_auto_resume_fired.json"))
    pane = classify_pane(_sample("v2332_10_autocontinue_continuing_shortly.txt"))
    assert combine_readings(hook=fired, pane_reading=pane).auto_continue is AutoContinue.FIRED


# -- 2.1.332 pane helpers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("v2332_30_http_500_final.txt", ""),
        ("v2332_06_queued_message_while_busy.txt", ""),
        ("v2332_05_multiline_paste_pending.txt", "[Pasted text #1 +3 lines]"),
        ("real_45_interrupted_during_retry_prompt_restored.txt", "err now"),
        ("v2332_01_idle_startup.txt", ""),
    ],
)
def test_pending_input_ignores_the_placeholders(name: str, text: str) -> None:
    """ "Resend your message to try again" and "Press up to edit queued messages" are empty."""
    assert pending_input(_sample(name)) == text


@pytest.mark.parametrize(
    ("name", "exited"),
    [
        ("v2332_44_exit_resume_hint.txt", True),
        ("v2332_43_resume_not_found.txt", True),
        ("v2332_42_resumed_session.txt", False),
        ("real_33_idle_startup.txt", False),
        ("v2332_46_background_agent_running_after_stop.txt", False),
    ],
)
def test_an_exited_cli_is_told_by_its_text(name: str, exited: bool) -> None:
    """The resume hint or "No conversation found" under the last box means the CLI is gone."""
    assert has_exited(_sample(name)) is exited
    if exited:
        assert classify_activity(_sample(name), "✳ Claude Code") is Activity.UNKNOWN


def test_a_shell_prompt_under_the_box_means_exited() -> None:
    """The shell's prompt back at column 0 below the last box: the CLI has gone."""
    text = _turn("● Done.") + "user@host:~/proj$\n"
    assert has_exited(text) is True
    assert classify_activity(text, "✳ Claude Code") is Activity.UNKNOWN
    assert has_exited(_turn("● Done.", "  ⏵⏵ auto mode on · Context left: 9%")) is False


@pytest.mark.parametrize(
    "body",
    [
        "● Agent(slow helper)\n● DONE: mock reply 4\n✻ Waiting for 1 background agent to finish",
        "● Agent(a)\n● Agent(b)\n● DONE.\n✻ Waiting for 2 background agents to finish",
        "* Fermenting…",
    ],
    ids=["waiting for one agent", "waiting for two", "spinner without tokens"],
)
def test_2332_busy_shows_without_a_spinning_title(body: str) -> None:
    """The title stays ✳ in 2.1.332: the spinner line decides."""
    assert classify_activity(_turn(body), "✳ Claude Code") is Activity.BUSY


def test_a_running_agent_row_under_the_footer_means_busy() -> None:
    """The agents panel lists a running background agent with ◯."""
    footer = f"{FOOTER}\n  ● main\n  ◯ general-purpose  slow helper{' ' * 40}1s"
    assert classify_activity(_turn("● DONE.\n✻ Churned for 1s · done 3:45 PM", footer)) is (
        Activity.BUSY
    )
    assert classify_activity(_turn("● DONE.\n✻ Churned for 1s · done 3:45 PM")) is Activity.IDLE


# -- the pool's launch command --------------------------------------------------------------


def test_pool_sessions_start_with_auto_continue_off() -> None:
    """claude-code pool sessions get the inline --settings; an operator's resume does not."""
    profile = make_profile("claude-code", "claude", ["--dangerously-skip-permissions"], {})
    uuid = "52c69af6-d956-4ade-b689-6516ae94e2ca"
    assert profile.launch_command(uuid) == [
        "claude",
        "--settings",
        '{"autoContinueAtUsageLimit": false}',
        "--dangerously-skip-permissions",
        "--resume",
        uuid,
    ]
    assert json.loads(POOL_SETTINGS) == {"autoContinueAtUsageLimit": False}
    assert profile.operator_command(uuid) == [
        "claude",
        "--dangerously-skip-permissions",
        "--resume",
        uuid,
    ]
    sim = make_profile("sim", "ignored", [], {}, python="python3")
    assert "--settings" not in sim.launch_command()
