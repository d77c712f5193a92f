"""What the simulated agent leaves behind: hook calls, transcript entries, the prompt log.

Split from :mod:`agentq.sim.agent` (the agent's behaviour) because it is file and process
I/O in Claude Code's formats: each hook command from ``settings.json`` run with the event's
JSON payload on stdin, one JSONL transcript per session under ``projects/`` (replies carry
``message.id``, ``message.model`` and ``message.usage`` as Claude Code's do; the agents a
turn starts write theirs under ``<session id>/subagents/``), and ``$AGENTQ_SIM_LOG``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentq.sim.rules import VERSION, project_dir, usage_of

logger = logging.getLogger(__name__)

#: The model the simulated replies name (priced in agentq's table, so footers show a cost).
SIM_MODEL = "claude-sonnet-4-5-20250929"
#: The model a simulated background agent runs on.
SIM_AGENT_MODEL = "claude-haiku-4-5-20251001"
SYNTHETIC = "<synthetic>"


def now_iso() -> str:
    """The current time as Claude Code writes it into transcripts (UTC, milliseconds, Z)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Session:
    """Identity of the conversation (a new one on ``/clear``)."""

    config_dir: Path
    cwd: str
    session_id: str
    parent_uuid: str | None = None
    resumed: bool = False

    @property
    def transcript(self) -> Path:
        """The session's ``.jsonl`` transcript."""
        return project_dir(self.config_dir, self.cwd) / f"{self.session_id}.jsonl"

    def agent_transcript(self, agent_id: str) -> Path:
        """Where an agent this session started keeps its transcript."""
        folder = project_dir(self.config_dir, self.cwd) / self.session_id / "subagents"
        return folder / f"agent-{agent_id}.jsonl"


@dataclass
class Recorder:
    """Fires hooks and writes the transcript and the prompt log for the session."""

    session: Session
    env: Mapping[str, str]
    bypass: bool
    hooks: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    replies: int = 0

    def fire(self, event: str, **fields: Any) -> None:
        """Run every hook command configured for ``event`` with the payload on stdin."""
        payload = {
            "session_id": self.session.session_id,
            "transcript_path": str(self.session.transcript),
            "cwd": self.session.cwd,
            "hook_event_name": event,
            "permission_mode": "bypassPermissions" if self.bypass else "default",
            **fields,
        }
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        env = {**self.env, "CLAUDE_PROJECT_DIR": self.session.cwd}
        for command, timeout in self.hooks.get(event, []):
            # Claude Code runs a hook command as `/bin/sh -c <command>`; so do we,
            # as an argument list (the command is the user's own shell text).
            try:
                subprocess.run(
                    ["/bin/sh", "-c", command],
                    input=data,
                    capture_output=True,
                    timeout=timeout,
                    cwd=self.session.cwd,
                    env=env,
                    check=False,
                )
            except (OSError, subprocess.SubprocessError) as exc:
                # Like Claude Code: a broken or slow hook does not stop the agent.
                logger.debug("hook failed", extra={"event": event, "error": str(exc)})

    def user(self, text: str, **extra: Any) -> None:
        """Record a user entry (a prompt, a task notification)."""
        self._write(self.session.transcript, self._entry("user", text, extra))

    def reply(self, text: str, prompt: str, **extra: Any) -> None:
        """Record an assistant reply with its usage (an API error's is all zeros)."""
        error = extra.get("isApiErrorMessage") is True
        self.replies += 1
        message = {
            "id": f"msg_sim_{self.session.session_id[:8]}_{self.replies:04d}",
            "model": SYNTHETIC if error else SIM_MODEL,
            "usage": usage_of("" if error else prompt, "" if error else text),
        }
        self._write(self.session.transcript, self._entry("assistant", text, extra, message))

    def agent_run(self, agent_id: str, prompt: str, answer: str) -> Path:
        """Write the transcript of a background agent: its prompt and its one reply."""
        path = self.session.agent_transcript(agent_id)
        base = {"isSidechain": True, "agentId": agent_id}
        self._write(path, self._entry("user", prompt, base, parent=None))
        message = {
            "id": f"msg_sim_agent_{agent_id}",
            "model": SIM_AGENT_MODEL,
            "usage": usage_of(prompt, answer),
        }
        self._write(path, self._entry("assistant", answer, base, message, parent=None))
        return path

    @staticmethod
    def count_request(path: Path) -> int:
        """Count one more prompt of the account in ``path``; return the count so far."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, b".\n")  # one append each: concurrent sessions never lose a count
        finally:
            os.close(fd)
        try:
            return path.read_bytes().count(b"\n")
        except OSError:
            return 0

    def log_prompt(self, prompt: str) -> None:
        """Append the prompt, byte-exact, to ``$AGENTQ_SIM_LOG`` (tests count deliveries)."""
        log = self.env.get("AGENTQ_SIM_LOG")
        if not log:
            return
        record = {
            "session": self.env.get("AGENTQ_SESSION"),
            "session_id": self.session.session_id,
            "prompt": prompt,
            "at": time.time(),
            "cwd": self.session.cwd,
        }
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8", "surrogateescape")
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def _entry(
        self,
        kind: str,
        text: str,
        extra: Mapping[str, Any],
        message: Mapping[str, Any] | None = None,
        parent: str | bool | None = True,
    ) -> dict[str, Any]:
        entry_uuid = str(uuid.uuid4())
        content: Any = text if kind == "user" else [{"type": "text", "text": text}]
        entry = {
            "parentUuid": self.session.parent_uuid if parent is True else parent,
            "type": kind,
            "message": {"role": kind, "content": content, **(message or {})},
            "sessionId": self.session.session_id,
            "cwd": self.session.cwd,
            "timestamp": now_iso(),
            "uuid": entry_uuid,
            "version": VERSION,
            **extra,
        }
        if parent is True:
            self.session.parent_uuid = entry_uuid
        return entry

    @staticmethod
    def _write(path: Path, entry: Mapping[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as transcript:
            transcript.write(json.dumps(entry, ensure_ascii=False) + "\n")
