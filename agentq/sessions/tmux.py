"""The tmux driver: the only module that talks to tmux (it alone imports libtmux).

Every command goes through :meth:`TmuxDriver._cmd` (an argument list, never a shell
string, to the tmux client of the ``libtmux.Server`` the driver was built with), and OS
errors become :class:`~agentq.errors.TmuxError` there, once. Queries are lenient (``has_session``,
``is_alive``, ``pane_pid`` answer "no" when tmux does); commands are loud (they raise).

Session names are checked against :data:`SESSION_NAME_RE` before any tmux call, and
every target is written ``=name:`` so tmux matches the name exactly (a bare ``-t
agentq-1`` would also match ``agentq-10``: tmux falls back to prefix matching).
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shlex
import shutil
import subprocess
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import libtmux

from agentq.core.errors import TmuxError

logger = logging.getLogger(__name__)

#: Names we create or touch. No '.' or ':' (tmux silently rewrites them to '_',
#: so the session would never be found again) and no leading '-' (a flag).
SESSION_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$")
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_KEY_NAME_RE = re.compile(r"^[^\s]{1,32}$")

#: Window size of a detached session: wide enough that the agent's status lines
#: and rules are not wrapped, tall enough to keep the last turn on screen.
DEFAULT_WIDTH = 200
DEFAULT_HEIGHT = 50
#: What a tmux client says when the server it reached exits under it, and the pauses
#: before trying again (the server needs a moment to go).
SERVER_EXITING = "server exited unexpectedly"
SERVER_EXIT_PAUSES = (0.005, 0.01, 0.02, 0.05, 0.1)
#: A stuck server must not hang the daemon (``load-buffer`` reads the text from stdin).
COMMAND_TIMEOUT = 30.0
LOAD_BUFFER_TIMEOUT = COMMAND_TIMEOUT


#: Control characters a paste must not carry (everything but TAB and LF).
_PASTE_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


#: One line per pane of every session: ``list-panes -a`` answers for the whole server at once.
_PANES_FORMAT = "\t".join(
    (
        "#{session_name}",
        "#{window_active}",
        "#{pane_active}",
        "#{pane_pid}",
        "#{pane_dead}",
        "#{pane_current_command}",
        "#{pane_title}",  # last: a title may hold tabs
    )
)


@dataclass(frozen=True)
class PaneInfo:
    """The active pane of one session, as one batched query saw it."""

    session: str
    pid: int
    dead: bool
    command: str
    title: str

    @property
    def alive(self) -> bool:
        """Whether the pane's program still runs."""
        return not self.dead


def check_session_name(name: str) -> str:
    """Return ``name`` if it is a session name we may use, else raise TmuxError."""
    if not isinstance(name, str) or not SESSION_NAME_RE.fullmatch(name):
        raise TmuxError(f"invalid tmux session name {name!r}", session=None)
    return name


def has_control_chars(text: str) -> bool:
    """Return whether ``text`` holds a control character (newline, CR, ESC, tab, DEL, C1)."""
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def _target(name: str) -> str:
    # '=' asks for an exact session-name match; the trailing ':' selects the
    # session's current window and its active pane.
    return f"={check_session_name(name)}:"


class TmuxDriver:
    """Sessions, paste, keys and capture on one tmux server.

    Args:
        socket_name: a private server (``tmux -L NAME``); ``None`` means the
            user's default server.
        config_file: the tmux config to start the server with. For a private
            socket it defaults to ``/dev/null`` so a user's ``~/.tmux.conf``
            (or its absence) cannot change how our sessions behave.
        server: an already built ``libtmux.Server`` (tests may inject one).
    """

    def __init__(
        self,
        socket_name: str | None = None,
        *,
        config_file: str | None = None,
        server: libtmux.Server | None = None,
    ) -> None:
        if server is None:
            if config_file is None and socket_name is not None:
                config_file = os.devnull
            server = libtmux.Server(socket_name=socket_name, config_file=config_file)
        self._server = server
        self._bin: str | None = None

    @property
    def socket_name(self) -> str | None:
        """The private socket name, or ``None`` for the default server."""
        name = self._server.socket_name
        return str(name) if name is not None else None

    # -- plumbing ---------------------------------------------------------------

    def _cmd(self, args: tuple[str, ...], session: str | None) -> tuple[int, list[str], list[str]]:
        """Run one tmux command; only a failure to run tmux at all raises.

        The client is run here, not through libtmux's ``cmd``: the daemon runs a dozen
        tmux commands per task, and libtmux looks tmux up on ``PATH`` for each of them.
        """
        logger.debug("tmux command", extra={"tmux_command": args[0], "session": session})
        try:
            proc = subprocess.run(
                [self._tmux(), *self._server_flags(), *args],
                capture_output=True,
                timeout=COMMAND_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise TmuxError(f"tmux {args[0]} could not run: {exc}", session) from exc
        out = proc.stdout.decode("utf-8", "backslashreplace").split("\n")
        while out and not out[-1]:
            out.pop()
        err = [line for line in proc.stderr.decode("utf-8", "backslashreplace").split("\n") if line]
        return proc.returncode, out, err

    def _tmux(self) -> str:
        """The tmux binary (the server's own, else the one on ``PATH``), found once."""
        if self._bin is None:
            self._bin = self._server.tmux_bin or shutil.which("tmux") or "tmux"
        return self._bin

    def _run(self, *args: str, session: str | None = None) -> list[str]:
        """Run a tmux command that must succeed; return its stdout lines."""
        code, out, err = self._cmd(args, session)
        if code != 0:
            detail = "; ".join(err) or f"exit status {code}"
            where = f" for session {session}" if session else ""
            raise TmuxError(f"tmux {args[0]} failed{where}: {detail}", session)
        return out

    def _query(self, *args: str, session: str | None = None) -> list[str] | None:
        """Run a tmux query; ``None`` when tmux says no (missing session, no server)."""
        code, out, _ = self._cmd(args, session)
        return out if code == 0 else None

    def _server_flags(self) -> list[str]:
        flags: list[str] = []
        if self._server.config_file:
            flags.append(f"-f{self._server.config_file}")
        if self._server.socket_name:
            flags.append(f"-L{self._server.socket_name}")
        if self._server.socket_path:
            flags.append(f"-S{self._server.socket_path}")
        return flags

    # -- sessions ---------------------------------------------------------------

    def new_session(
        self,
        name: str,
        cwd: Path,
        command: list[str] | None = None,
        env: Mapping[str, str] | None = None,
        *,
        width: int = DEFAULT_WIDTH,
        height: int = DEFAULT_HEIGHT,
        remain_on_exit: bool = False,
    ) -> None:
        """Create a detached session running ``command`` (argument list) in ``cwd``.

        ``env`` goes into the session environment (``-e``), so the pane and every
        process it starts (the agent's hooks) inherit it. The command is joined
        with ``shlex.quote`` for the shell tmux runs it with, prefixed by ``exec``
        so the pane's pid is the agent itself. ``remain_on_exit`` keeps a dead
        pane (and its last screen) around for ``pane_dead``/``capture``.

        Raises:
            TmuxError: bad name/env/cwd, the session exists, or tmux failed.
        """
        check_session_name(name)
        if not cwd.is_dir():
            raise TmuxError(f"working directory {cwd} is not a folder", name)
        args = [
            "new-session",
            "-d",
            "-s",
            name,
            "-c",
            str(cwd),
            "-x",
            str(width),
            "-y",
            str(height),
        ]
        for key, value in (env or {}).items():
            if not _ENV_KEY_RE.fullmatch(key) or "\0" in value:
                raise TmuxError(f"invalid environment variable {key!r} for tmux", name)
            args += ["-e", f"{key}={value}"]
        if command:
            args.append("exec " + shlex.join(command))
        if remain_on_exit:
            # Chained in the same tmux invocation so the option is set before a
            # command that exits at once could take the session with it.
            args += [";", "set-option", "-w", "-t", _target(name), "remain-on-exit", "on"]
        for pause in SERVER_EXIT_PAUSES:
            try:
                self._run(*args, session=name)
                return
            except TmuxError as exc:
                if SERVER_EXITING not in str(exc):
                    raise
            # Killing the server's last session makes it exit; a client that connects
            # meanwhile is dropped and no session is made. Once it is gone, a new one starts.
            time.sleep(pause)
        self._run(*args, session=name)

    def kill_session(self, name: str, *, missing_ok: bool = False) -> None:
        """Kill the session ``name``; raises TmuxError if it does not exist (unless ``missing_ok``).

        ``missing_ok`` asks tmux once, instead of ``has_session`` and then the kill.
        """
        args = ("kill-session", "-t", f"={check_session_name(name)}")
        if missing_ok:
            self._query(*args, session=name)
        else:
            self._run(*args, session=name)

    def has_session(self, name: str) -> bool:
        """Return whether a session named exactly ``name`` exists."""
        target = f"={check_session_name(name)}"
        return self._query("has-session", "-t", target, session=name) is not None

    def list_sessions(self) -> list[str]:
        """Return the names of all sessions on this server (empty when it is not running)."""
        out = self._query("list-sessions", "-F", "#{session_name}")
        return [line for line in out or [] if line]

    def set_environment(self, name: str, key: str, value: str) -> None:
        """Set ``key=value`` in the session environment (new panes and processes see it)."""
        check_session_name(name)
        if not _ENV_KEY_RE.fullmatch(key) or "\0" in value:
            raise TmuxError(f"invalid environment variable {key!r} for tmux", name)
        self._run("set-environment", "-t", f"={name}", key, value, session=name)

    def kill_server(self) -> None:
        """Stop this tmux server if it runs (for private sockets: tests and the demo)."""
        self._query("kill-server")

    # -- input ------------------------------------------------------------------

    def paste(self, name: str, text: str) -> None:
        """Paste ``text`` into the session's pane as one bracketed paste.

        The text reaches tmux through stdin of ``load-buffer`` (never argv or a
        shell), in a buffer with a unique name that ``paste-buffer -d`` deletes.
        Line ends are normalised to LF first: tmux sends every LF as CR, so a
        CR in the text could not be told apart on the agent's side anyway. Other
        control characters (ESC above all: ``ESC[201~`` would end the bracketed
        paste early and turn the rest into keystrokes) are replaced by U+FFFD.
        """
        target = _target(name)
        if not text:
            raise TmuxError("refusing to paste empty text", name)
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        data = _PASTE_UNSAFE.sub("\ufffd", text).encode("utf-8")
        buffer = f"agentq-{os.getpid()}-{secrets.token_hex(6)}"
        # One tmux call: the server runs paste-buffer once load-buffer has read stdin.
        paste = (";", "paste-buffer", "-p", "-d", "-b", buffer, "-t", target)
        try:
            self._load_buffer(buffer, data, name, then=paste)
        except TmuxError:
            self._query("delete-buffer", "-b", buffer, session=name)  # if the paste failed
            raise

    def _load_buffer(
        self, buffer: str, data: bytes, session: str, then: tuple[str, ...] = ()
    ) -> None:
        argv = [self._tmux(), *self._server_flags(), "load-buffer", "-b", buffer, "-", *then]
        logger.debug("tmux command", extra={"tmux_command": "load-buffer", "session": session})
        try:
            proc = subprocess.run(
                argv, input=data, capture_output=True, timeout=LOAD_BUFFER_TIMEOUT, check=False
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise TmuxError(f"tmux load-buffer could not run: {exc}", session) from exc
        if proc.returncode != 0:
            detail = proc.stderr.decode("utf-8", "replace").strip() or f"exit {proc.returncode}"
            command = "paste-buffer" if then else "load-buffer"
            raise TmuxError(f"tmux {command} failed for session {session}: {detail}", session)

    def send_keys(self, name: str, *keys: str, literal: bool = False) -> None:
        """Send keys to the session's pane.

        ``literal=True`` sends text as typed (``send-keys -l --``) and refuses
        newlines, CRs and other control characters: a shell would act on them.
        Otherwise each argument is a tmux key name (``Enter``, ``Escape``, ``C-c``).
        """
        target = _target(name)
        if not keys:
            raise TmuxError("no keys to send", name)
        if literal:
            if any(has_control_chars(key) for key in keys):
                raise TmuxError("refusing to send control characters as literal keys", name)
            self._run("send-keys", "-t", target, "-l", "--", *keys, session=name)
            return
        for key in keys:
            if not _KEY_NAME_RE.fullmatch(key) or has_control_chars(key):
                raise TmuxError(f"invalid tmux key name {key!r}", name)
        self._run("send-keys", "-t", target, "--", *keys, session=name)

    # -- output and pane state --------------------------------------------------

    def capture(self, name: str, lines: int | None = None) -> str:
        """Return the pane's text (wrapped lines joined); ``lines`` adds that much history."""
        args = ["capture-pane", "-p", "-J", "-t", _target(name)]
        if lines is not None:
            if lines < 0:
                raise TmuxError(f"history line count must not be negative, got {lines}", name)
            args += ["-S", f"-{lines}"]
        return "\n".join(self._run(*args, session=name))

    def list_panes(self) -> dict[str, PaneInfo]:
        """The active pane of every session on the server, by session name, in one query.

        Lenient: an empty mapping when no server runs. The session executor asks this
        once per poll instead of a query per session.
        """
        out = self._query("list-panes", "-a", "-F", _PANES_FORMAT)
        panes: dict[str, PaneInfo] = {}
        for line in out or []:
            fields = line.split("\t", 6)
            if len(fields) < 7:
                continue
            session, window_active, pane_active, pid, dead, command, title = fields
            if window_active == "1" and pane_active == "1":
                pid_value = int(pid) if pid.isdigit() else 0
                panes[session] = PaneInfo(session, pid_value, dead == "1", command, title)
        return panes

    def _pane(self, name: str) -> tuple[int, bool, str] | None:
        """(pid, dead, title) of the session's active pane, or None if there is none."""
        # list-panes, not display-message: tmux 3.3 display-message exits 0
        # with empty output when the target session is missing.
        fmt = "#{pane_active}\t#{pane_pid}\t#{pane_dead}\t#{pane_title}"
        out = self._query("list-panes", "-t", _target(name), "-F", fmt, session=name)
        for line in out or []:
            active, pid, dead, title = [*line.split("\t", 3), "", "", ""][:4]
            if active == "1":
                return (int(pid) if pid.isdigit() else 0, dead == "1", title)
        return None

    def pane_title(self, name: str) -> str:
        """Return the pane title the program set (OSC 0/2); raises if there is no session."""
        pane = self._pane(name)
        if pane is None:
            raise TmuxError(f"no tmux session {name}", name)
        return pane[2]

    def pane_command(self, name: str) -> str | None:
        """The program in the foreground of the session's pane (``bash``, ``claude``)."""
        fmt = "#{pane_active}\t#{pane_current_command}"
        out = self._query("list-panes", "-t", _target(name), "-F", fmt, session=name)
        for line in out or []:
            active, _, command = line.partition("\t")
            if active == "1":
                return command
        return None

    def pane_pid(self, name: str) -> int | None:
        """Return the pid of the pane's first process, or None if unknown."""
        pane = self._pane(name)
        return pane[0] if pane is not None and pane[0] > 0 else None

    def pane_dead(self, name: str) -> bool:
        """Return whether the session exists with a dead pane (needs ``remain_on_exit``)."""
        pane = self._pane(name)
        return pane is not None and pane[1]

    def is_alive(self, name: str) -> bool:
        """Return whether the session exists and its pane's program still runs."""
        pane = self._pane(name)
        return pane is not None and not pane[1]

    def raise_if_dead(self, name: str) -> None:
        """Raise TmuxError unless the session exists with a live pane."""
        pane = self._pane(name)
        if pane is None:
            raise TmuxError(f"no tmux session {name}", name)
        if pane[1]:
            raise TmuxError(f"the program in tmux session {name} has exited", name)
