"""Agent profiles: how to launch, resume and read one kind of terminal coding agent.

A profile is data plus a few pure functions; the session executor does the I/O.
``claude-code`` runs the real CLI, ``sim`` the bundled simulator, which mimics
Claude Code wherever agentq looks (same pane signatures, hooks and transcripts).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agentq.agents.classify import Activity, classify_activity
from agentq.core.errors import AgentError

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def check_uuid(value: str) -> str:
    """Return ``value`` if it is a lowercase session UUID, else raise :class:`AgentError`."""
    if not UUID_RE.fullmatch(value):
        raise AgentError(f"refusing a malformed session id {value[:60]!r}")
    return value


@dataclass(frozen=True)
class AgentProfile:
    """Launch/resume commands, environment and activity reading for one agent CLI."""

    name: str
    command: tuple[str, ...]
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)

    def launch_command(self, resume: str | None = None) -> list[str]:
        """The argument list that starts the agent (resuming ``resume`` when given)."""
        argv = [*self.command, *self.args]
        if resume is not None:
            argv += ["--resume", check_uuid(resume)]
        return argv

    def session_env(self, account_home: Path, session: str, state_dir: Path) -> dict[str, str]:
        """The tmux session environment: account home, session name, where hooks write."""
        return {
            **self.env,
            "CLAUDE_CONFIG_DIR": str(account_home),
            "AGENTQ_SESSION": session,
            "AGENTQ_STATE_DIR": str(state_dir),
        }

    def activity(self, pane_text: str, title: str | None) -> Activity:
        """Read idle / busy / permission / menu from the pane and its title."""
        return classify_activity(pane_text, title)


def make_profile(
    name: str,
    command: str,
    args: Sequence[str],
    env: Mapping[str, str],
    python: str = sys.executable,
) -> AgentProfile:
    """Build the profile named in the config (``claude-code`` or ``sim``)."""
    if name == "sim":
        return AgentProfile("sim", (python, "-m", "agentq.sim"), tuple(args), dict(env))
    if name == "claude-code":
        return AgentProfile("claude-code", (command,), tuple(args), dict(env))
    raise AgentError(f"unknown agent profile {name!r}")


def transcript_path(account_home: Path, cwd: Path, session_id: str) -> Path:
    """Where the agent keeps a session's transcript: ``projects/<cwd slug>/<id>.jsonl``."""
    slug = re.sub(r"[^A-Za-z0-9]", "-", str(cwd))
    return account_home / "projects" / slug / f"{check_uuid(session_id)}.jsonl"
