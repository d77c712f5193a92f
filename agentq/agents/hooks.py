"""The agent's hooks: ours in ``settings.json``, and each hook call turned into a signal file.

Claude Code runs each hook command with the event's JSON payload on stdin. Ours is
``/bin/sh <agentq>/agents/hook.sh EVENT STATE_DIR`` (:func:`hook_command`): a POSIX sh
script that writes one signal file into ``<state_dir>/signals/`` (a small header, then
the payload as the agent sent it) and exits 0, in a few milliseconds and without
starting Python. ``agentq hook EVENT --state-dir DIR`` (:func:`run_hook`) writes the
same file. The daemon reads those files with :func:`read_signals` (they only wake it:
the folders stay the truth), which also reads the JSON files older versions wrote,
and deletes each one with :func:`consume` once handled. :func:`merge_hooks` replaces
our entries of either kind, so users' settings converge on the current command.

This module sits on the hook's hot path: it imports only the standard library and
agentq's own light modules (no pydantic, libtmux or watchdog).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import secrets
import shlex
import subprocess
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentq.core.durable import write_atomic
from agentq.core.errors import AccountError
from agentq.core.statedir import SIGNALS_DIR

logger = logging.getLogger(__name__)

DEFAULT_EVENTS: tuple[str, ...] = (
    "SessionStart",
    "UserPromptSubmit",
    "Stop",
    "StopFailure",
    "PermissionRequest",
    "Notification",
    "SessionEnd",
)
#: The hook script :func:`hook_command` runs (shipped in the package, beside this module).
HOOK_SCRIPT = Path(__file__).resolve().with_name("hook.sh")
#: A hook command containing one of these is ours (and is replaced on the next merge):
#: the script, and the Python entry of older versions.
OUR_MARKERS = ("/agentq/agents/hook.sh", " -m agentq hook ")
OUR_MARKER = OUR_MARKERS[0]

ERROR_LOG = "hook-errors.log"
#: Signal files stay small: the full prompt is in the task file, the full answer in the transcript.
PROMPT_CHARS = 2000
MESSAGE_CHARS = 100_000
#: Asking tmux which session a pane belongs to must not hold up the agent.
TMUX_TIMEOUT = 2.0

#: The first line of a signal file; the suffix of its name (older versions wrote ``.json``).
SIGNAL_MAGIC = "agentq-signal 1"
SIGNAL_SUFFIX = ".sig"
#: A signal file is read up to this size (a payload cut there reads as an empty payload).
MAX_SIGNAL_BYTES = 16 << 20

_EVENT_RE = re.compile(r"^[A-Za-z]{1,64}$")
#: What a session name may hold in a signal header (the hook script checks the same set).
_SESSION_RE = re.compile(r"^[A-Za-z0-9_.@+=-]{1,256}$")
_PAYLOAD_FIELDS = (
    "session_id",
    "transcript_path",
    "cwd",
    "error",
    "last_assistant_message",
    "prompt",
    "notification_type",
    "source",
    "reason",
)
#: A Stop payload's running background tasks are kept (a few fields each, a few dozen at most).
TASK_FIELDS = ("id", "type", "status", "description", "agent_type")
MAX_TASKS = 50


@dataclass(frozen=True)
class Signal:
    """One hook call as the daemon sees it (``path`` is the signal file)."""

    session: str | None
    session_id: str | None
    transcript_path: str | None
    cwd: str | None
    event: str
    error: str | None
    last_assistant_message: str | None
    prompt: str | None
    notification_type: str | None
    source: str | None
    reason: str | None
    received_at: float
    path: Path
    #: ``Stop``/``SubagentStop``: the background tasks listed (None when the payload had none).
    background_tasks: tuple[Mapping[str, str], ...] | None = None

    def payload(self) -> dict[str, object]:
        """The hook payload as far as the signal kept it, for the classifiers.

        ``classify_hook_payload(signal.payload())`` reads quota, server errors and the
        auto-continue; ``stop_ends_task(signal.payload())`` whether a Stop ends the task.
        """
        data: dict[str, object] = {"hook_event_name": self.event}
        for name in _PAYLOAD_FIELDS:
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        if self.background_tasks is not None:
            data["background_tasks"] = [dict(task) for task in self.background_tasks]
        return data


# -- installing ----------------------------------------------------------------


def hook_command(event: str, state_dir: Path, script: Path = HOOK_SCRIPT) -> str:
    """Return the shell command the agent runs for ``event`` (every part shlex-quoted)."""
    parts = ["/bin/sh", str(script), event, str(state_dir)]
    return " ".join(shlex.quote(part) for part in parts)


def parse_command(command: str) -> tuple[str, str] | None:
    """(event, state dir) of a hook command of ours, of either kind; None for anyone else's."""
    if not any(marker in command for marker in OUR_MARKERS):
        return None
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    for i, word in enumerate(words):
        if word.endswith(OUR_MARKERS[0]):
            return (words[i + 1], words[i + 2]) if len(words) >= i + 3 else None
    tail = words[words.index("hook") + 1 :] if "hook" in words else []
    if not tail or "--state-dir" not in tail[:-1]:
        return None
    return tail[0], tail[tail.index("--state-dir") + 1]


def _is_ours(hook: object) -> bool:
    if not isinstance(hook, dict):
        return False
    command = str(hook.get("command", ""))
    return any(marker in command for marker in OUR_MARKERS)


def _load_settings(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise AccountError([f"{path}: cannot read ({exc.strerror})"]) from exc
    try:
        settings = json.loads(raw) if raw.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AccountError([f"{path}: not valid JSON ({exc}); fix it or move it aside"]) from exc
    if not isinstance(settings, dict):
        raise AccountError([f"{path}: expected a JSON object at the top level"])
    hooks = settings.get("hooks", {})
    if not isinstance(hooks, dict) or not all(isinstance(v, list) for v in hooks.values()):
        raise AccountError([f"{path}: 'hooks' must map event names to lists"])
    return settings


def _without_ours(groups: list[Any]) -> list[Any]:
    """The user's matcher groups for one event with our hook entries taken out."""
    kept: list[Any] = []
    for group in groups:
        if not isinstance(group, dict) or not isinstance(group.get("hooks"), list):
            kept.append(group)
            continue
        theirs = [hook for hook in group["hooks"] if not _is_ours(hook)]
        if theirs or not group["hooks"]:
            kept.append({**group, "hooks": theirs})
    return kept


def merge_hooks(
    settings_path: Path, state_dir: Path, events: Sequence[str] = DEFAULT_EVENTS
) -> bool:
    """Install our hook for each event into ``settings_path``; return whether the file changed.

    Every user key and user hook stays; our previous entries (any event) are
    replaced, never duplicated. The file is written atomically, and only when
    something changed. A symlinked ``settings.json`` is updated at its target.

    Raises:
        AccountError: the file is not a JSON object (it is left untouched), or
            cannot be read or written.
    """
    settings = _load_settings(settings_path)
    old_hooks = settings.get("hooks", {})
    new_hooks = {event: _without_ours(groups) for event, groups in old_hooks.items()}
    for event in events:
        entry = {"type": "command", "command": hook_command(event, state_dir)}
        new_hooks[event] = [*new_hooks.get(event, []), {"hooks": [entry]}]
    # Drop an event only if it is empty because we took our entry out of it.
    new_hooks = {
        ev: groups for ev, groups in new_hooks.items() if groups or old_hooks.get(ev) == []
    }
    if new_hooks == old_hooks:
        return False
    settings["hooks"] = new_hooks
    target = settings_path.resolve() if settings_path.is_symlink() else settings_path
    try:
        mode = target.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o600
    data = (json.dumps(settings, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    try:
        write_atomic(target, data, mode=mode)
    except OSError as exc:
        raise AccountError([f"{settings_path}: cannot write ({exc.strerror})"]) from exc
    logger.info("hooks installed", extra={"settings_path": str(settings_path)})
    return True


# -- the signal file ------------------------------------------------------------


def signal_header(event: str, session: str | None, received_at: float | None) -> bytes:
    """The header of a signal file (pure); the payload follows it as the agent sent it."""
    name = event if _EVENT_RE.fullmatch(event) else "Unknown"
    who = session if session and _SESSION_RE.fullmatch(session) else ""
    when = f"{received_at:.9f}" if received_at is not None else ""
    return f"{SIGNAL_MAGIC}\nevent {name}\nsession {who}\ntime {when}\n\n".encode()


def parse_signal(data: bytes, mtime: float) -> dict[str, Any]:
    """A signal file's content as the record :func:`build_signal` makes (pure).

    Reads the current format (header + raw payload) and the JSON object older
    versions wrote (a rolling upgrade leaves both). ``mtime`` stands in for a
    missing time.

    Raises:
        ValueError: neither format.
    """
    if data.startswith(SIGNAL_MAGIC.encode() + b"\n"):
        head, _, body = data.partition(b"\n\n")
        fields = dict(
            line.partition(" ")[::2] for line in head.decode("utf-8", "replace").split("\n")[1:]
        )
        try:
            received = float(fields.get("time") or mtime)
        except ValueError:
            received = mtime
        event = fields.get("event") or "Unknown"
        session = fields.get("session") or None
        return build_signal(event, _parse_payload(body), session, received)
    record = json.loads(data)
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    return record


# -- the hook call -------------------------------------------------------------


def _tmux_session(env: Mapping[str, str]) -> str | None:
    """Ask the tmux server we run under which session owns ``$TMUX_PANE``."""
    socket_path = env.get("TMUX", "").split(",")[0]
    pane = env.get("TMUX_PANE", "")
    if not socket_path or not pane.startswith("%"):
        return None
    argv = ["tmux", "-S", socket_path, "display-message", "-p", "-t", pane, "#{session_name}"]
    proc = subprocess.run(argv, capture_output=True, timeout=TMUX_TIMEOUT, check=False)
    name = proc.stdout.decode("utf-8", "replace").strip()
    return name if proc.returncode == 0 and name else None


def _text(value: object, limit: int) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value)
    return text[:limit]


def build_signal(
    event: str, payload: Mapping[str, Any], session: str | None, received_at: float
) -> dict[str, Any]:
    """Return what the daemon keeps of one hook call (pure): the text fields, cut to size."""
    record: dict[str, Any] = {"session": session, "event": event, "received_at": received_at}
    for name in _PAYLOAD_FIELDS:
        limit = PROMPT_CHARS if name == "prompt" else MESSAGE_CHARS
        record[name] = _text(payload.get(name), limit)
    tasks = _tasks(payload.get("background_tasks"))
    if tasks is not None:
        record["background_tasks"] = tasks
    return record


def _tasks(value: object) -> list[dict[str, str]] | None:
    """A payload's ``background_tasks``, each cut to :data:`TASK_FIELDS` as short strings."""
    if not isinstance(value, list):
        return None
    tasks = []
    for task in value[:MAX_TASKS]:
        if isinstance(task, Mapping):
            kept = {k: str(task[k])[:200] for k in TASK_FIELDS if task.get(k) is not None}
            tasks.append(kept)
    return tasks


def _parse_payload(stdin: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(stdin.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        return {}
    return payload if isinstance(payload, dict) else {}


def _log_error(state_dir: Path, event: str) -> None:
    line = f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} {event!r}: {traceback.format_exc()}"
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        with (state_dir / ERROR_LOG).open("a", encoding="utf-8") as log:
            log.write(line.replace("\n", "\n    ").rstrip() + "\n")
    except OSError:
        pass  # nowhere left to report to; the hook must still not fail the agent


def run_hook(event: str, stdin: bytes, env: Mapping[str, str], state_dir: Path) -> int:
    """Record one hook call as a signal file under ``state_dir/signals``; always return 0.

    The same file the hook script writes (see ``hook.sh``): for ``agentq hook``.
    """
    try:
        name = event if _EVENT_RE.fullmatch(event) else "Unknown"
        session = env.get("AGENTQ_SESSION") or None
        if session is None:
            try:
                session = _tmux_session(env)
            except (OSError, subprocess.SubprocessError):
                session = None
        now_ns = time.time_ns()
        folder = state_dir / SIGNALS_DIR
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        file_name = f"{now_ns}-{name}-{secrets.token_hex(4)}{SIGNAL_SUFFIX}"
        # Signals are hints (the pane is the fallback): not worth an fsync on every turn.
        data = signal_header(name, session, now_ns / 1e9) + stdin
        write_atomic(folder / file_name, data, sync=False)
    except Exception:  # a failing hook must never disturb the agent: log, exit 0
        _log_error(state_dir, event)
    return 0


# -- the daemon's side ---------------------------------------------------------


def _signal_from(path: Path, data: Mapping[str, Any]) -> Signal:
    def opt(key: str) -> str | None:
        value = data.get(key)
        return value if isinstance(value, str) else None

    received = data.get("received_at")
    tasks = data.get("background_tasks")
    return Signal(
        session=opt("session"),
        session_id=opt("session_id"),
        transcript_path=opt("transcript_path"),
        cwd=opt("cwd"),
        event=opt("event") or "Unknown",
        error=opt("error"),
        last_assistant_message=opt("last_assistant_message"),
        prompt=opt("prompt"),
        notification_type=opt("notification_type"),
        source=opt("source"),
        reason=opt("reason"),
        received_at=float(received) if isinstance(received, int | float) else 0.0,
        path=path,
        background_tasks=(
            tuple(
                {str(k): str(v) for k, v in task.items()}
                for task in tasks
                if isinstance(task, dict)
            )
            if isinstance(tasks, list)
            else None
        ),
    )


def _read_capped(path: Path) -> tuple[bytes, float]:
    """A signal file's bytes (never through a link, at most :data:`MAX_SIGNAL_BYTES`)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mtime = os.fstat(fd).st_mtime
        chunks, left = [], MAX_SIGNAL_BYTES
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks), mtime


def read_signals(state_dir: Path) -> list[Signal]:
    """Return the pending signals, oldest first; unreadable files are renamed ``*.bad``."""
    folder = state_dir / SIGNALS_DIR
    try:
        names = sorted(
            e.name for e in os.scandir(folder) if e.name.endswith((SIGNAL_SUFFIX, ".json"))
        )
    except FileNotFoundError:
        return []
    signals = []
    for name in names:
        path = folder / name
        try:
            data, mtime = _read_capped(path)
            record = parse_signal(data, mtime)
        except FileNotFoundError:
            continue
        except (OSError, ValueError, RecursionError) as exc:
            logger.warning("unreadable signal file", extra={"path": str(path), "error": str(exc)})
            with contextlib.suppress(OSError):  # gone or unwritable: skipped again next time
                path.replace(path.with_name(path.name + ".bad"))
            continue
        signals.append(_signal_from(path, record))
    return signals


def consume(signal: Signal) -> None:
    """Delete a handled signal's file (already gone is fine)."""
    signal.path.unlink(missing_ok=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m agentq.agents.hooks EVENT --state-dir DIR``: the hook entry without the CLI."""
    parser = argparse.ArgumentParser(prog="python -m agentq.agents.hooks")
    parser.add_argument("event")
    parser.add_argument("--state-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    return run_hook(args.event, sys.stdin.buffer.read(), os.environ, args.state_dir)


if __name__ == "__main__":
    raise SystemExit(main())
