"""Installing our hooks into settings.json, and turning hook calls into signal files."""

from __future__ import annotations

import json
import os
import shlex
import time
from pathlib import Path
from typing import Any

import pytest

from agentq.agents import hooks
from agentq.core.errors import AccountError

STATE = Path("/var/lib/agent q/it's")


def _ours(settings: dict[str, Any], event: str) -> list[str]:
    return [
        hook["command"]
        for group in settings["hooks"].get(event, [])
        for hook in group["hooks"]
        if hooks.OUR_MARKER in hook["command"]
    ]


def test_hook_command_is_shell_quoted() -> None:
    """Every part survives a shell's word splitting, however odd the paths."""
    script = Path("/opt/py thon/lib/agentq/agents/hook.sh")
    command = hooks.hook_command("Stop", STATE, script=script)
    assert shlex.split(command) == ["/bin/sh", str(script), "Stop", str(STATE)]
    assert hooks.OUR_MARKER in command


def test_hook_command_runs_the_script_shipped_beside_the_module() -> None:
    """The default command names the package's own hook script, which exists."""
    command = hooks.hook_command("Stop", STATE)
    assert shlex.split(command)[:2] == ["/bin/sh", str(hooks.HOOK_SCRIPT)]
    assert hooks.HOOK_SCRIPT.is_file()


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (hooks.hook_command("Stop", STATE), ("Stop", str(STATE))),
        ("/usr/bin/python3 -m agentq hook Stop --state-dir '/s d'", ("Stop", "/s d")),
        ("echo -m agentq hook", None),
        ("/bin/sh /x/agentq/agents/hook.sh", None),
        ("notify-send done", None),
    ],
    ids=["the script", "the python entry of older versions", "a lookalike", "cut short", "theirs"],
)
def test_parse_command_reads_event_and_state_dir_of_our_commands(
    command: str, expected: tuple[str, str] | None
) -> None:
    """Our commands of either kind give their event and state folder; others give None."""
    assert hooks.parse_command(command) == expected


def test_merge_creates_settings_with_every_default_event(tmp_path: Path) -> None:
    """A missing settings.json is created (0600) with one hook of ours per default event."""
    path = tmp_path / "settings.json"
    assert hooks.merge_hooks(path, STATE) is True
    settings = json.loads(path.read_text())
    assert list(settings["hooks"]) == list(hooks.DEFAULT_EVENTS)
    for event in hooks.DEFAULT_EVENTS:
        assert _ours(settings, event) == [hooks.hook_command(event, STATE)]
    assert path.stat().st_mode & 0o777 == 0o600


def test_merge_keeps_user_keys_and_hooks_and_is_idempotent(tmp_path: Path) -> None:
    """User settings and hooks survive; a second merge changes nothing and returns False."""
    path = tmp_path / "settings.json"
    user: dict[str, Any] = {
        "theme": "dark",
        "skipDangerousModePermissionPrompt": True,
        "hooks": {
            "Stop": [{"hooks": [{"type": "command", "command": "notify-send done"}]}],
            "PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "audit"}]}],
        },
    }
    path.write_text(json.dumps(user, indent=4))
    path.chmod(0o644)
    assert hooks.merge_hooks(path, STATE) is True
    settings = json.loads(path.read_text())
    assert settings["theme"] == "dark"
    assert settings["skipDangerousModePermissionPrompt"] is True
    assert settings["hooks"]["PreToolUse"] == user["hooks"]["PreToolUse"]
    assert settings["hooks"]["Stop"][0] == user["hooks"]["Stop"][0]
    assert _ours(settings, "Stop") == [hooks.hook_command("Stop", STATE)]
    assert path.stat().st_mode & 0o777 == 0o644
    before = path.read_bytes()
    inode = path.stat().st_ino
    assert hooks.merge_hooks(path, STATE) is False
    assert path.read_bytes() == before
    assert path.stat().st_ino == inode  # not even rewritten


def test_merge_replaces_our_old_entries_instead_of_duplicating(tmp_path: Path) -> None:
    """A new state dir or a shorter event list replaces our entries; user hooks stay."""
    path = tmp_path / "settings.json"
    user_hook = {"type": "command", "command": "echo mine"}
    path.write_text(json.dumps({"hooks": {"Stop": [{"hooks": [user_hook]}]}}))
    hooks.merge_hooks(path, Path("/old/state"))
    assert hooks.merge_hooks(path, STATE, events=("Stop", "StopFailure")) is True
    settings = json.loads(path.read_text())
    assert set(settings["hooks"]) == {"Stop", "StopFailure"}
    assert _ours(settings, "Stop") == [hooks.hook_command("Stop", STATE)]
    assert _ours(settings, "StopFailure") == [hooks.hook_command("StopFailure", STATE)]
    assert settings["hooks"]["Stop"][0]["hooks"] == [user_hook]


def test_merge_keeps_user_hooks_sharing_a_group_with_ours(tmp_path: Path) -> None:
    """Our entry is taken out of a mixed group; the user's entry in it stays."""
    path = tmp_path / "settings.json"
    ours = {"type": "command", "command": hooks.hook_command("Stop", Path("/old"))}
    mine = {"type": "command", "command": "echo mine", "timeout": 5}
    path.write_text(json.dumps({"hooks": {"Stop": [{"hooks": [ours, mine]}]}}))
    hooks.merge_hooks(path, STATE, events=("Stop",))
    groups = json.loads(path.read_text())["hooks"]["Stop"]
    assert groups[0]["hooks"] == [mine]
    assert len(groups) == 2


def test_merge_replaces_old_style_entries_so_settings_converge(tmp_path: Path) -> None:
    """Entries of the Python hook command older versions wrote are replaced, not kept beside."""
    path = tmp_path / "settings.json"
    old = "/usr/bin/python3 -m agentq hook Stop --state-dir /old/state"
    mine = {"type": "command", "command": "echo mine"}
    path.write_text(
        json.dumps({"hooks": {"Stop": [{"hooks": [{"type": "command", "command": old}, mine]}]}})
    )
    assert hooks.merge_hooks(path, STATE, events=("Stop",)) is True
    settings = json.loads(path.read_text())
    commands = [h["command"] for g in settings["hooks"]["Stop"] for h in g["hooks"]]
    assert commands == ["echo mine", hooks.hook_command("Stop", STATE)]
    assert hooks.merge_hooks(path, STATE, events=("Stop",)) is False


@pytest.mark.parametrize(
    "content",
    ["{not json", "[1, 2]", '{"hooks": []}', '{"hooks": {"Stop": {}}}', "\xff\xfe"],
    ids=["broken json", "a list", "hooks not a map", "event not a list", "not utf-8"],
)
def test_merge_refuses_invalid_settings_and_leaves_them(tmp_path: Path, content: str) -> None:
    """A settings.json we cannot understand raises AccountError and is not overwritten."""
    path = tmp_path / "settings.json"
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(AccountError, match=r"settings\.json"):
        hooks.merge_hooks(path, STATE)
    assert path.read_bytes() == content.encode("latin-1")


def test_merge_writes_through_a_symlinked_settings_file(tmp_path: Path) -> None:
    """A dotfiles-style symlink stays a symlink; its target gets our hooks."""
    target = tmp_path / "dotfiles" / "claude-settings.json"
    target.parent.mkdir()
    target.write_text('{"theme": "light"}')
    link = tmp_path / "settings.json"
    link.symlink_to(target)
    assert hooks.merge_hooks(link, STATE) is True
    assert link.is_symlink()
    assert json.loads(target.read_text())["theme"] == "light"
    assert _ours(json.loads(target.read_text()), "Stop")


def _payload(**fields: Any) -> bytes:
    base = {
        "session_id": "0b0e9a5e-9f59-4b8e-8f0a-8c7a3c1f2d4e",
        "transcript_path": "/h/.claude/projects/-p/0b0e9a5e-9f59-4b8e-8f0a-8c7a3c1f2d4e.jsonl",
        "cwd": "/p",
        "hook_event_name": "Stop",
    }
    return json.dumps({**base, **fields}).encode()


def test_run_hook_writes_a_signal_file(tmp_path: Path) -> None:
    """The signal file is a header (event, session, time) and the payload byte for byte."""
    stdin = _payload(last_assistant_message="All done.", stop_hook_active=False)
    assert hooks.run_hook("Stop", stdin, {"AGENTQ_SESSION": "agentq-3"}, tmp_path) == 0
    (path,) = (tmp_path / "signals").iterdir()
    assert path.name.endswith(hooks.SIGNAL_SUFFIX)
    assert path.name.split("-")[1] == "Stop"
    head, _, body = path.read_bytes().partition(b"\n\n")
    assert head.split(b"\n")[:3] == [b"agentq-signal 1", b"event Stop", b"session agentq-3"]
    assert body == stdin
    assert path.stat().st_mode & 0o777 == 0o600
    (signal,) = hooks.read_signals(tmp_path)
    assert (signal.session, signal.event) == ("agentq-3", "Stop")
    assert signal.session_id == "0b0e9a5e-9f59-4b8e-8f0a-8c7a3c1f2d4e"
    assert (signal.cwd, signal.last_assistant_message, signal.error) == ("/p", "All done.", None)
    assert abs(signal.received_at - int(path.name.split("-")[0]) / 1e9) < 1e-6


def test_signal_files_of_older_versions_are_still_read(tmp_path: Path) -> None:
    """A JSON signal file an older hook wrote (a rolling upgrade) is read like a new one."""
    folder = tmp_path / "signals"
    folder.mkdir()
    old = hooks.build_signal("Stop", json.loads(_payload(last_assistant_message="ok")), "s", 2.5)
    (folder / f"{time.time_ns() - 10**9}-Stop-abcd.json").write_text(json.dumps(old))
    hooks.run_hook("SessionEnd", _payload(), {"AGENTQ_SESSION": "s"}, tmp_path)
    signals = hooks.read_signals(tmp_path)
    assert [(s.event, s.session) for s in signals] == [("Stop", "s"), ("SessionEnd", "s")]
    assert (signals[0].last_assistant_message, signals[0].received_at) == ("ok", 2.5)


def test_signal_header_without_time_takes_the_file_time() -> None:
    """A header whose time is empty (``date`` could not say) reads the file's mtime."""
    data = hooks.signal_header("Stop", None, None) + _payload()
    record = hooks.parse_signal(data, 123.0)
    assert (record["event"], record["session"], record["received_at"]) == ("Stop", None, 123.0)


def test_signal_header_refuses_what_would_break_a_line() -> None:
    """An event or session name that could forge a header line is left out."""
    header = hooks.signal_header("Stop\nsession x", "agentq-1\nevent Stop", 1.0)
    assert header.split(b"\n")[1:3] == [b"event Unknown", b"session "]


def test_run_hook_truncates_the_prompt(tmp_path: Path) -> None:
    """A long prompt is cut to PROMPT_CHARS characters in the signal."""
    stdin = _payload(hook_event_name="UserPromptSubmit", prompt="é" * 5000)
    hooks.run_hook("UserPromptSubmit", stdin, {"AGENTQ_SESSION": "s"}, tmp_path)
    (signal,) = hooks.read_signals(tmp_path)
    assert signal.prompt == "é" * hooks.PROMPT_CHARS


@pytest.mark.parametrize(
    "stdin",
    [b"", b"garbage \xff\xfe", b"[1, 2, 3]", b'"just a string"', b"[" * 100_000],
    ids=["empty", "binary garbage", "a list", "a string", "deep nesting"],
)
def test_run_hook_tolerates_garbage_stdin(tmp_path: Path, stdin: bytes) -> None:
    """Unparseable input still exits 0 and leaves a signal with the session and event."""
    assert hooks.run_hook("Notification", stdin, {"AGENTQ_SESSION": "s"}, tmp_path) == 0
    (signal,) = hooks.read_signals(tmp_path)
    assert (signal.session, signal.event, signal.session_id) == ("s", "Notification", None)


def test_run_hook_never_fails_the_agent(tmp_path: Path) -> None:
    """When the signal cannot be written the hook logs the error and still returns 0."""
    (tmp_path / "signals").write_text("a file where the folder should be")
    assert hooks.run_hook("Stop", _payload(), {"AGENTQ_SESSION": "s"}, tmp_path) == 0
    log = (tmp_path / hooks.ERROR_LOG).read_text()
    assert "'Stop'" in log


def test_run_hook_sanitises_the_event_name(tmp_path: Path) -> None:
    """A strange event name cannot steer the signal file's path."""
    hooks.run_hook("../../escape", _payload(), {"AGENTQ_SESSION": "s"}, tmp_path)
    (path,) = (tmp_path / "signals").iterdir()
    assert "-Unknown-" in path.name
    assert hooks.read_signals(tmp_path)[0].event == "Unknown"


def test_run_hook_without_session_or_tmux_records_none(tmp_path: Path) -> None:
    """Outside tmux and without AGENTQ_SESSION the session is unknown (None)."""
    hooks.run_hook("Stop", _payload(), {}, tmp_path)
    (signal,) = hooks.read_signals(tmp_path)
    assert signal.session is None


def test_read_signals_in_order_consume_and_bad_files(tmp_path: Path) -> None:
    """Signals come oldest first; consume deletes; a corrupt file is renamed aside once."""
    for event in ("SessionStart", "UserPromptSubmit", "Stop"):
        hooks.run_hook(event, _payload(), {"AGENTQ_SESSION": "s"}, tmp_path)
    bad = tmp_path / "signals" / "1-Stop-bad.json"
    bad.write_text("{torn")
    temp = tmp_path / "signals" / ".agentq-tmp-1-x"
    temp.write_text("{}")
    signals = hooks.read_signals(tmp_path)
    assert [s.event for s in signals] == ["SessionStart", "UserPromptSubmit", "Stop"]
    assert bad.with_name(bad.name + ".bad").exists()
    assert temp.exists()  # not ours to judge: a hook may be writing it right now
    hooks.consume(signals[0])
    hooks.consume(signals[0])  # twice is fine
    assert [s.event for s in hooks.read_signals(tmp_path)] == ["UserPromptSubmit", "Stop"]


def test_read_signals_without_folder_is_empty(tmp_path: Path) -> None:
    """No signals folder yet means no signals."""
    assert hooks.read_signals(tmp_path / "nothing") == []


def test_build_signal_keeps_only_text_fields() -> None:
    """Non-string payload values are rendered as JSON text, absent ones are None."""
    record = hooks.build_signal("StopFailure", {"error": {"type": "x"}, "source": 5}, "s", 1.5)
    assert record["error"] == '{"type": "x"}'
    assert record["source"] == "5"
    assert record["reason"] is None
    assert record["received_at"] == 1.5


def test_hooks_module_imports_stay_light() -> None:
    """The hook path must not pull in pydantic, libtmux or watchdog."""
    import subprocess
    import sys

    code = (
        "import sys, agentq.agents.hooks; "
        "print(sorted(m for m in ('pydantic', 'libtmux', 'watchdog', 'httpx', 'yaml') "
        "if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(hooks.__file__).resolve().parent.parent)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "[]"


# -- the hook script (what settings.json runs) ---------------------------------------------

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "hooks" / "2.1.197"


def _run_script(state: Path, event: str, stdin: bytes, env: dict[str, str]) -> int:
    """Run our hook command the way Claude Code does: ``/bin/sh -c <command>``."""
    import subprocess

    command = hooks.hook_command(event, state)
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    done = subprocess.run(["/bin/sh", "-c", command], input=stdin, env={**base, **env}, check=False)
    return done.returncode


def _record(signal: hooks.Signal) -> dict[str, Any]:
    fields = dict(vars(signal))
    del fields["path"], fields["received_at"]
    return fields


@pytest.mark.parametrize(
    "fixture", ["Stop.json", "UserPromptSubmit.json", "StopFailure.json", "SessionStart.json"]
)
def test_hook_script_writes_what_run_hook_writes(tmp_path: Path, fixture: str) -> None:
    """The script's signal file reads exactly like the Python entry's, for real payloads."""
    stdin = (FIXTURES / fixture).read_bytes()
    event = fixture.removesuffix(".json")
    before = time.time()
    assert _run_script(tmp_path / "sh", event, stdin, {"AGENTQ_SESSION": "agentq-3"}) == 0
    hooks.run_hook(event, stdin, {"AGENTQ_SESSION": "agentq-3"}, tmp_path / "py")
    (from_sh,) = hooks.read_signals(tmp_path / "sh")
    (from_py,) = hooks.read_signals(tmp_path / "py")
    assert _record(from_sh) == _record(from_py)
    assert before - 0.01 <= from_sh.received_at <= time.time()
    (path,) = (tmp_path / "sh" / "signals").iterdir()
    assert path.name.endswith(f"-{event}-" + path.name.split("-")[-1])
    assert path.read_bytes().endswith(stdin)
    assert path.stat().st_mode & 0o777 == 0o600


def test_hook_script_never_lets_the_payload_reach_a_shell(tmp_path: Path) -> None:
    """Shell syntax in the payload is stored byte for byte and never runs."""
    canary = tmp_path / "pwned"
    evil = f'{{"prompt": "$(touch {canary}) `touch {canary}`; touch {canary}\\n\\u0000"}}'
    stdin = evil.encode() + b"\n\xff trailing bytes"
    assert _run_script(tmp_path, "UserPromptSubmit", stdin, {"AGENTQ_SESSION": "s"}) == 0
    (path,) = (tmp_path / "signals").iterdir()
    assert path.read_bytes().partition(b"\n\n")[2] == stdin
    assert not canary.exists()


@pytest.mark.parametrize(
    ("event", "session", "expected"),
    [
        ("../../x", "agentq-1", ("Unknown", "agentq-1")),
        ("Stop", "bad\nevent Stop", ("Stop", None)),
        ("Stop", "", ("Stop", None)),
        ("A" * 65, "s", ("Unknown", "s")),
    ],
    ids=["a path as the event", "a newline in the session", "no session", "an overlong event"],
)
def test_hook_script_sanitises_event_and_session(
    tmp_path: Path, event: str, session: str, expected: tuple[str, str | None]
) -> None:
    """What goes into the header (and the file name) is checked; odd values are dropped."""
    assert _run_script(tmp_path, event, _payload(), {"AGENTQ_SESSION": session}) == 0
    (signal,) = hooks.read_signals(tmp_path)
    assert (signal.event, signal.session) == expected
    assert signal.path.parent == tmp_path / "signals"


def test_hook_script_exits_0_and_logs_when_it_cannot_write(tmp_path: Path) -> None:
    """A signals folder that cannot be written still exits 0; the error goes to the log."""
    (tmp_path / "signals").write_text("a file where the folder should be")
    assert _run_script(tmp_path, "Stop", _payload(), {"AGENTQ_SESSION": "s"}) == 0
    assert (tmp_path / hooks.ERROR_LOG).read_text().strip()
    assert [p.name for p in tmp_path.iterdir()] != []
    assert not list(tmp_path.glob(".agentq-tmp-*"))


def test_hook_script_with_a_missing_state_dir_creates_its_signals_folder(tmp_path: Path) -> None:
    """A fresh state dir gets its signals folder (0700) from the first hook call."""
    state = tmp_path / "new" / "state"
    state.mkdir(parents=True)
    assert _run_script(state, "Stop", _payload(), {"AGENTQ_SESSION": "s"}) == 0
    assert (state / "signals").stat().st_mode & 0o777 == 0o700
    assert len(hooks.read_signals(state)) == 1
