"""Agent profiles: how to launch, resume and read one kind of terminal coding agent.

A profile is data plus a few pure functions; the session executor does the I/O.
``claude-code`` runs the real CLI, ``sim`` the bundled simulator, which mimics
Claude Code wherever agentq looks (same pane signatures, hooks and transcripts).

Pool sessions of ``claude-code`` start with ``--settings`` turning off Claude Code's automatic
continue after a usage limit (2.1.332; the key is ignored by older versions): agentq decides
when and where an interrupted task resumes. The flag applies to that process only, so the
operator's own sessions sharing the account home keep their setting.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agentq.agents.classify import Activity, Login, classify_activity
from agentq.core.errors import AgentError

logger = logging.getLogger(__name__)

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
#: Inline settings for pool sessions (``--settings`` takes a file or a JSON string; checked
#: offline on 2.1.197 and 2.1.332).
POOL_SETTINGS = json.dumps({"autoContinueAtUsageLimit": False})
CREDENTIALS_FILE = ".credentials.json"
#: The Claude Code versions agentq is tested against, oldest and newest (the e2e matrix;
#: docs/compatibility.md says what differs). ``agentq doctor`` checks the installed one.
TESTED_CLAUDE_CODE = ("2.1.197", "2.1.332")


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
    #: Arguments only pool sessions get, before ``args`` (a user's own ``--settings`` in
    #: ``args`` comes later and wins; it should then turn auto-continue off itself).
    pool_args: tuple[str, ...] = ()

    def launch_command(self, resume: str | None = None) -> list[str]:
        """The argument list that starts a pool session (resuming ``resume`` when given)."""
        return self._argv(self.pool_args, resume)

    def operator_command(self, resume: str | None = None) -> list[str]:
        """The argument list that resumes an operator's dedicated session: no pool settings."""
        return self._argv((), resume)

    def operator_line(self, account_home: Path, resume: str) -> str:
        """The shell line that resumes an operator's session on ``account_home`` (no pool
        settings: the operator's own auto-continue stays as set)."""
        env = {**self.env, "CLAUDE_CONFIG_DIR": str(account_home)}
        assignments = [f"{k}={shlex.quote(v)}" for k, v in env.items()]
        return " ".join([*assignments, *map(shlex.quote, self.operator_command(resume))])

    def _argv(self, extra: tuple[str, ...], resume: str | None) -> list[str]:
        argv = [*self.command, *extra, *self.args]
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
        pool = ("--settings", POOL_SETTINGS)
        return AgentProfile("claude-code", (command,), tuple(args), dict(env), pool)
    raise AgentError(f"unknown agent profile {name!r}")


def login_from(credentials: object, env: Mapping[str, str], settings: object = None) -> Login:
    """How an account signs in, from its ``.credentials.json`` and ``settings.json`` contents
    and the agent's environment (pure).

    An API key (``ANTHROPIC_API_KEY``, ``ANTHROPIC_AUTH_TOKEN``, an ``apiKeyHelper``) wins, as
    it does in Claude Code; else the OAuth login's ``subscriptionType`` (``enterprise`` retries
    its 429s, the other plans do not); ``unknown`` when nothing says.
    """
    helper = isinstance(settings, Mapping) and bool(settings.get("apiKeyHelper"))
    if env.get("ANTHROPIC_API_KEY") or env.get("ANTHROPIC_AUTH_TOKEN") or helper:
        return Login.API_KEY
    plan: object = None
    if env.get("CLAUDE_CODE_OAUTH_TOKEN"):
        plan = env.get("CLAUDE_CODE_SUBSCRIPTION_TYPE") or ""
    elif isinstance(credentials, Mapping) and isinstance(credentials.get("claudeAiOauth"), Mapping):
        plan = credentials["claudeAiOauth"].get("subscriptionType") or ""
    if plan is None:
        return Login.UNKNOWN
    return Login.ENTERPRISE if str(plan).strip().lower() == "enterprise" else Login.SUBSCRIBER


def login_of(account_home: Path, env: Mapping[str, str]) -> Login:
    """How the account in ``account_home`` signs in (reads its credentials and settings).

    ``env`` is the environment the agent runs with. Unreadable files count as absent (the
    macOS keychain keeps the credentials out of the folder: then only ``env`` can tell).
    """
    return login_from(
        _json_file(account_home / CREDENTIALS_FILE), env, _json_file(account_home / "settings.json")
    )


def _json_file(path: Path) -> object:
    """A JSON file's value, or None when it is missing, unreadable or not JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        logger.debug("no readable JSON", extra={"path": str(path)})
        return None


def transcript_path(account_home: Path, cwd: Path, session_id: str) -> Path:
    """Where the agent keeps a session's transcript: ``projects/<cwd slug>/<id>.jsonl``."""
    slug = re.sub(r"[^A-Za-z0-9]", "-", str(cwd))
    return account_home / "projects" / slug / f"{check_uuid(session_id)}.jsonl"
