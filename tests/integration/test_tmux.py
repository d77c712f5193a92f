"""The tmux driver against a real tmux server on a private socket."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import agentq
from agentq.core.errors import TmuxError
from agentq.sessions.tmux import TmuxDriver
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration

REPO_ROOT = Path(agentq.__file__).resolve().parent.parent


@pytest.fixture
def driver(tmux_socket: str) -> TmuxDriver:
    """A driver on the test's private tmux server."""
    return TmuxDriver(tmux_socket)


def _tmux(socket: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["tmux", "-L", socket, *args], capture_output=True, text=True, timeout=10, check=False
    )


def test_session_lifecycle(driver: TmuxDriver, tmp_path: Path) -> None:
    """A created session is listed, has a live pane with a pid, and is gone after kill."""
    assert driver.list_sessions() == []
    driver.new_session("agentq-0", tmp_path, ["sleep", "60"])
    assert driver.has_session("agentq-0")
    assert driver.list_sessions() == ["agentq-0"]
    assert driver.is_alive("agentq-0")
    assert not driver.pane_dead("agentq-0")
    pid = driver.pane_pid("agentq-0")
    assert pid is not None
    os.kill(pid, 0)  # the pane's process exists (exec: it is `sleep` itself)
    driver.kill_session("agentq-0")
    assert not driver.has_session("agentq-0")
    assert driver.list_sessions() == []


def test_command_and_env_reach_the_pane_unmangled(driver: TmuxDriver, tmp_path: Path) -> None:
    """Arguments with spaces, quotes and $(…) arrive as given; session env is inherited."""
    out = tmp_path / "out.txt"
    tricky = 'it\'s "quoted" $(touch pwn) `id` ; echo x'
    script = 'printf "%s|%s" "$1" "$AGENTQ_TEST_VALUE" > "$2"; sleep 60'
    driver.new_session(
        "s", tmp_path, ["sh", "-c", script, "sh", tricky, str(out)], {"AGENTQ_TEST_VALUE": tricky}
    )
    text = wait_until(lambda: out.exists() and out.read_text(), 10)
    assert text == f"{tricky}|{tricky}"
    assert not (tmp_path / "pwn").exists()


def test_set_environment_reaches_new_processes(driver: TmuxDriver, tmp_path: Path) -> None:
    """A variable set on the session is seen by a window opened afterwards."""
    driver.new_session("s", tmp_path, ["sleep", "60"])
    driver.set_environment("s", "AGENTQ_LATE", "late value")
    out = _tmux(driver.socket_name or "", "show-environment", "-t", "=s", "AGENTQ_LATE")
    assert out.stdout.strip() == "AGENTQ_LATE=late value"


@pytest.mark.parametrize(
    "name",
    ["", "-t", "a.b", "a:b", "a b", "x;touch pwn", "$(touch pwn)", "a\nb", "x" * 65, "é"],
    ids=[
        "empty",
        "leading dash",
        "dot",
        "colon",
        "space",
        "semicolon",
        "command substitution",
        "newline",
        "too long",
        "non ascii",
    ],
)
def test_invalid_session_names_are_refused_before_any_tmux_call(name: str, tmp_path: Path) -> None:
    """Every entry point checks the name before tmux is asked anything."""

    class NoCallsServer:
        socket_name = "never"
        socket_path = None
        config_file = None
        # Missing: a tmux call would fail with "could not run", not the name's refusal.
        tmux_bin = str(tmp_path / "no-tmux-here")

        def cmd(self, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError(f"tmux was called: {args}")

    driver = TmuxDriver(server=NoCallsServer())  # type: ignore[arg-type]
    calls: list[Callable[[], object]] = [
        lambda: driver.new_session(name, tmp_path, ["true"]),
        lambda: driver.kill_session(name),
        lambda: driver.has_session(name),
        lambda: driver.paste(name, "text"),
        lambda: driver.send_keys(name, "Enter"),
        lambda: driver.capture(name),
        lambda: driver.pane_title(name),
        lambda: driver.pane_pid(name),
        lambda: driver.is_alive(name),
        lambda: driver.set_environment(name, "A", "b"),
    ]
    for call in calls:
        with pytest.raises(TmuxError, match="invalid tmux session name"):
            call()
    assert not (tmp_path / "pwn").exists()


def test_a_session_started_as_the_last_one_is_killed_is_started(
    driver: TmuxDriver, tmp_path: Path
) -> None:
    """Killing the server's only session and starting another at once never fails.

    The server exits with its last session; a client that reached it in that moment is
    dropped ("server exited unexpectedly"). A pool of one relaunching its session, or a
    swap relaunching the whole pool, does exactly this.
    """
    for _ in range(20):
        driver.new_session("only", tmp_path, ["sleep", "60"])
        driver.kill_session("only")
        driver.new_session("only", tmp_path, ["sleep", "60"])
        assert driver.has_session("only")
        driver.kill_server()


def test_names_are_matched_exactly_not_by_prefix(driver: TmuxDriver, tmp_path: Path) -> None:
    """`agentq-1` never resolves to `agentq-10` (tmux's prefix fallback is off)."""
    driver.new_session("agentq-10", tmp_path, ["sleep", "60"])
    assert not driver.has_session("agentq-1")
    assert not driver.is_alive("agentq-1")
    with pytest.raises(TmuxError):
        driver.kill_session("agentq-1")
    with pytest.raises(TmuxError):
        driver.send_keys("agentq-1", "x", literal=True)
    assert driver.list_sessions() == ["agentq-10"]


def test_foreign_sessions_are_untouched(driver: TmuxDriver, tmp_path: Path) -> None:
    """A user's session on the same server survives our create/kill and receives nothing."""
    socket = driver.socket_name or ""
    assert (
        _tmux(socket, "-f", os.devnull, "new-session", "-d", "-s", "users", "cat").returncode == 0
    )
    driver.new_session("agentq-0", tmp_path, ["cat"])
    driver.send_keys("agentq-0", "ours only", literal=True)
    driver.kill_session("agentq-0")
    assert driver.list_sessions() == ["users"]
    assert "ours only" not in _tmux(socket, "capture-pane", "-p", "-t", "=users:").stdout


def test_missing_session_loud_commands_raise_lenient_queries_answer(driver: TmuxDriver) -> None:
    """Commands on a missing session raise TmuxError; queries say no."""
    loud: list[Callable[[], object]] = [
        lambda: driver.kill_session("nope"),
        lambda: driver.capture("nope"),
        lambda: driver.paste("nope", "text"),
        lambda: driver.send_keys("nope", "Enter"),
        lambda: driver.pane_title("nope"),
        lambda: driver.raise_if_dead("nope"),
    ]
    for call in loud:
        with pytest.raises(TmuxError):
            call()
    assert not driver.has_session("nope")
    assert driver.pane_pid("nope") is None
    assert not driver.is_alive("nope")
    assert not driver.pane_dead("nope")
    assert driver.list_sessions() == []


def test_literal_keys_refuse_control_characters(driver: TmuxDriver, tmp_path: Path) -> None:
    """Newline, CR, ESC, Ctrl-C and tab are refused as literal text; dashes are fine."""
    driver.new_session("s", tmp_path, ["cat"])
    for text in ("a\nb", "a\rb", "\x1b[A", "\x03", "a\tb", "\x7f"):
        with pytest.raises(TmuxError, match="control characters"):
            driver.send_keys("s", text, literal=True)
    with pytest.raises(TmuxError, match="invalid tmux key name"):
        driver.send_keys("s", "Enter Enter")
    driver.send_keys("s", "-n $(touch pwn) 'q'", literal=True)
    driver.send_keys("s", "Enter")
    wait_until(lambda: driver.capture("s").count("-n $(touch pwn) 'q'") == 2, 10)
    assert not (tmp_path / "pwn").exists()


def test_capture_reaches_into_history(driver: TmuxDriver, tmp_path: Path) -> None:
    """capture() shows the screen; capture(lines=N) adds N lines of scrollback."""
    driver.new_session("s", tmp_path, ["sh", "-c", "seq 1 300; sleep 60"], height=20)
    wait_until(lambda: "300" in driver.capture("s").split(), 10)
    screen = driver.capture("s").split()
    assert "100" not in screen
    assert "100" in driver.capture("s", lines=250).split()


def test_pane_title_follows_the_program(driver: TmuxDriver, tmp_path: Path) -> None:
    """An OSC 0 title set by the program is what pane_title returns."""
    driver.new_session("s", tmp_path, ["sh", "-c", "printf '\\033]0;✳ Claude Code\\007'; sleep 60"])
    wait_until(lambda: driver.pane_title("s") == "✳ Claude Code", 10)


def test_remain_on_exit_keeps_a_dead_pane(driver: TmuxDriver, tmp_path: Path) -> None:
    """With remain_on_exit the session stays with a dead pane and its last screen."""
    # The pause: tmux 3.3 sometimes drops the output of a process that exits at
    # once (about 1 run in 20 here); agents live longer than that.
    words = "echo last words; sleep 0.3"
    driver.new_session("kept", tmp_path, ["sh", "-c", words], remain_on_exit=True)
    wait_until(lambda: driver.pane_dead("kept"), 10)
    assert driver.has_session("kept")
    assert not driver.is_alive("kept")
    # tmux 3.3 scrolls the dead pane's screen into history above "Pane is dead".
    assert "last words" in driver.capture("kept", lines=100)
    with pytest.raises(TmuxError, match="has exited"):
        driver.raise_if_dead("kept")
    driver.new_session("gone", tmp_path, ["true"])
    wait_until(lambda: not driver.has_session("gone"), 10)


def test_one_query_lists_every_session_pane_with_title_command_and_liveness(
    driver: TmuxDriver, tmp_path: Path
) -> None:
    """``list_panes`` answers for the whole server: live and dead panes, titles, commands."""
    assert driver.list_panes() == {}  # no server yet: lenient, not an error
    show_title = "printf '\\033]0;✳ Claude Code\\007'; sleep 60"
    driver.new_session("titled", tmp_path, ["sh", "-c", show_title])
    driver.new_session("agentq-1", tmp_path, ["sleep", "60"])
    driver.new_session("dead", tmp_path, ["sh", "-c", "sleep 0.3"], remain_on_exit=True)
    _tmux(driver.socket_name or "", "split-window", "-d", "-t", "=agentq-1:", "sleep 60")
    wait_until(lambda: driver.pane_dead("dead"), 10)
    panes = wait_until(
        lambda: (p := driver.list_panes()) and p["titled"].title == "✳ Claude Code" and p, 10
    )
    assert set(panes) == {"titled", "agentq-1", "dead"}
    assert panes["agentq-1"].alive and panes["agentq-1"].command == "sleep"
    assert panes["agentq-1"].pid == driver.pane_pid("agentq-1")  # the active pane, not the split
    assert not panes["dead"].alive
    assert panes["titled"].alive


def test_paste_reaches_the_pane_and_leaves_no_buffer(driver: TmuxDriver, tmp_path: Path) -> None:
    """paste() delivers text (here to cat) and deletes its named buffer."""
    driver.new_session("s", tmp_path, ["cat"])
    driver.paste("s", "pasted $(touch pwn) `id`")
    wait_until(lambda: "pasted $(touch pwn) `id`" in driver.capture("s"), 10)
    assert _tmux(driver.socket_name or "", "list-buffers").stdout == ""
    with pytest.raises(TmuxError, match="empty"):
        driver.paste("s", "")
    assert not (tmp_path / "pwn").exists()


def test_a_paste_to_a_missing_session_fails_and_leaves_no_buffer(driver: TmuxDriver) -> None:
    """Load and paste go in one tmux call; when the paste fails its buffer is deleted."""
    driver.new_session("other", Path.cwd(), ["sleep", "60"])  # a server to leave buffers in
    with pytest.raises(TmuxError, match="paste-buffer failed for session gone"):
        driver.paste("gone", "text")
    assert _tmux(driver.socket_name or "", "list-buffers").stdout == ""


def test_kill_session_missing_ok_asks_once_and_never_raises(driver: TmuxDriver) -> None:
    """``missing_ok`` kills a session that is there and says nothing about one that is not."""
    driver.new_session("here", Path.cwd(), ["sleep", "60"])
    driver.kill_session("here", missing_ok=True)
    driver.kill_session("here", missing_ok=True)
    assert not driver.has_session("here")


def test_bad_cwd_and_env_are_refused(driver: TmuxDriver, tmp_path: Path) -> None:
    """A missing working folder or an invalid variable name raises before tmux runs."""
    with pytest.raises(TmuxError, match="not a folder"):
        driver.new_session("s", tmp_path / "missing", ["true"])
    with pytest.raises(TmuxError, match="environment variable"):
        driver.new_session("s", tmp_path, ["true"], {"BAD-NAME": "x"})
    assert driver.list_sessions() == []


@pytest.fixture
def tmux_tmpdir() -> Iterator[Path]:
    """A short private TMUX_TMPDIR (socket paths must stay under ~100 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="aqt-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_fresh_environment_and_no_default_server(tmux_tmpdir: Path, tmp_path: Path) -> None:
    """From a bare environment with a hostile ~/.tmux.conf, the private server works alone.

    The user's config is not read, UTF-8 text survives capture, and no default
    server socket is ever created.
    """
    home = tmp_path / "bare-home"
    home.mkdir()
    (home / ".tmux.conf").write_text("set -g @agentq-hostile yes\nset -g remain-on-exit on\n")
    script = textwrap.dedent(
        r"""
        import json
        from pathlib import Path
        from tests.support.wait import wait_until
        from agentq.sessions.tmux import TmuxDriver
        d = TmuxDriver("fresh")
        show = "printf '\\342\\235\\257\\302\\240ok'; sleep 60"
        d.new_session("s", Path.cwd(), ["sh", "-c", show])
        text = wait_until(lambda: "ok" in d.capture("s") and d.capture("s"), 10)
        d.new_session("brief", Path.cwd(), ["true"])
        wait_until(lambda: not d.has_session("brief"), 10)
        print(json.dumps({"capture": text, "sessions": d.list_sessions()}))
        """
    )
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "PYTHONPATH": str(REPO_ROOT),
        "TMUX_TMPDIR": str(tmux_tmpdir),
    }
    try:
        proc = subprocess.run(
            [sys.executable, "-c", script],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout)
        assert "❯\u00a0ok" in result["capture"]
        assert result["sessions"] == ["s"]
        sockets = [p.name for p in tmux_tmpdir.glob("tmux-*/*")]
        assert sockets == ["fresh"]
        hostile = subprocess.run(
            ["tmux", "-L", "fresh", "show-options", "-gv", "@agentq-hostile"],
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        assert hostile.stdout.strip() == ""
    finally:
        subprocess.run(
            ["tmux", "-L", "fresh", "kill-server"], env=env, capture_output=True, check=False
        )
