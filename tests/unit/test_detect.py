"""Tests for ``agentq detect``: the JSON reading of a pane capture, from a file or stdin."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

from agentq.agents.classify import Login
from agentq.cli.detect import detect, run_detect

CORPUS = Path(__file__).resolve().parent.parent / "fixtures" / "corpus"
NOW = datetime(2025, 11, 20, 22, 0, tzinfo=UTC)


def _run(
    source: str, stdin: str = "", now: str | None = "2025-11-20T22:00:00+00:00", tz: str = "UTC"
) -> tuple[int, str, str]:
    """Run the command shell; return its exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    code = run_detect(source, now, tz, io.StringIO(stdin), out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_detect_adds_reset_at_when_the_reset_resolves() -> None:
    """A quota pane gets its reset text and the resolved instant in ISO 8601."""
    text = (CORPUS / "real_01_pro_session_limit_menu.txt").read_text("utf-8")
    result = detect(text, NOW, "UTC")
    assert result["kind"] == "quota"
    assert result["activity"] == "menu"
    assert result["reset_text"] == "12:30am (Europe/Paris)"
    assert result["reset_at"] == "2025-11-21T00:30:00+01:00"


def test_detect_uses_the_configured_zone_for_zone_less_resets() -> None:
    """The retry line's "(11:30pm)" is read in --tz."""
    text = (CORPUS / "real_15_enterprise_retrying_session_limit.txt").read_text("utf-8")
    result = detect(text, NOW, "Asia/Tokyo", login=Login.ENTERPRISE)
    assert result["reset_at"] == "2025-11-21T23:30:00+09:00"
    assert result["retrying"] is True


def test_detect_has_no_reset_at_without_a_reset() -> None:
    """Clean panes and quota without a reset time carry no reset_at."""
    clean = detect((CORPUS / "real_33_idle_startup.txt").read_text("utf-8"), NOW, "UTC")
    assert clean == {
        "kind": "ok",
        "reset_text": None,
        "activity": "idle",
        "evidence": None,
        "retrying": False,
        "window": None,
        "warning": None,
        "auto_continue": None,
    }
    no_reset = detect("You've hit your usage limit.", NOW, "UTC")
    assert no_reset["kind"] == "quota"
    assert "reset_at" not in no_reset


def test_run_detect_reads_a_file_and_prints_one_json_line() -> None:
    """A file argument gives exit 0 and exactly one JSON line."""
    code, out, err = _run(str(CORPUS / "issue_01_ai_usage_limit_epoch.txt"))
    assert (code, err) == (0, "")
    assert out.count("\n") == 1
    data = json.loads(out)
    assert data["kind"] == "quota"
    assert data["reset_at"] == "2025-08-19T15:00:00+00:00"


def test_run_detect_reads_stdin_for_a_dash() -> None:
    """``-`` reads the capture from stdin."""
    code, out, _ = _run("-", stdin="API Error: Repeated 529 Overloaded errors\n")
    assert code == 0
    assert json.loads(out)["kind"] == "server_error"


def test_run_detect_reports_a_missing_file_with_exit_1(tmp_path: Path) -> None:
    """An unreadable file is one line on stderr and exit 1."""
    code, out, err = _run(str(tmp_path / "absent.txt"))
    assert (code, out) == (1, "")
    assert err.startswith("agentq detect: cannot read")


def test_run_detect_rejects_a_bad_zone_or_time_with_exit_2() -> None:
    """--tz and --now are checked before anything is read."""
    code, out, err = _run("-", tz="Not/AZone")
    assert (code, out) == (2, "")
    assert "--tz" in err
    code, out, err = _run("-", now="yesterday-ish")
    assert (code, out) == (2, "")
    assert "--now" in err


def test_run_detect_reads_a_naive_now_in_the_zone() -> None:
    """A --now without an offset is wall time in --tz."""
    code, out, _ = _run(
        "-", stdin="Session limit reached ∙ resets 8pm", now="2025-11-20T19:00", tz="Europe/Paris"
    )
    assert code == 0
    assert json.loads(out)["reset_at"] == "2025-11-20T20:00:00+01:00"


def test_detect_reads_a_retried_limit_by_the_login() -> None:
    """The same retry line: provisional quota when the login is unknown, a 5xx for a subscriber."""
    text = (CORPUS / "real_50_500_with_claim_header_retrying_attempt6.txt").read_text("utf-8")
    unknown = detect(text, NOW, "UTC")
    assert (unknown["kind"], unknown["retrying"]) == ("quota", True)
    subscriber = detect(text, NOW, "UTC", login=Login.SUBSCRIBER)
    assert (subscriber["kind"], subscriber["retrying"], subscriber.get("reset_at")) == (
        "server_error",
        True,
        None,
    )


def test_detect_resolves_a_warnings_reset() -> None:
    """A usage warning keeps the kind ok and resolves its own reset."""
    text = (CORPUS / "v2332_25_warning_92pct_five_hour.txt").read_text("utf-8")
    result = detect(text, NOW, "UTC")
    assert result["kind"] == "ok"
    assert result["warning"] == {
        "window": "five_hour",
        "percent": 92,
        "over": False,
        "reset_text": "8:06pm (UTC)",
        "evidence": "You've used 92% of your 5-hour limit · resets 8:06pm (UTC) · /upgrade to keep"
        " using Claude Code",
        "reset_at": "2025-11-21T20:06:00+00:00",
    }


def test_run_detect_refuses_an_unknown_login() -> None:
    """``--login`` must name a known login: exit 2 and one line on stderr."""
    out, err = io.StringIO(), io.StringIO()
    code = run_detect("-", None, "UTC", io.StringIO(""), out, stderr=err, login="oauth")
    assert (code, out.getvalue()) == (2, "")
    assert err.getvalue().startswith("agentq detect: --login: unknown login 'oauth'")
