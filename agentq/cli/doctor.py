"""``agentq doctor``: is this machine, this configuration and these accounts ready for agentq?

One line per check, ``ok|warn|fail <check>: <detail>[ — fix: <how>]`` (``--json`` gives the
same as data); exit 1 when any check fails, else 0. The checks are pure functions over
:class:`Facts`; :func:`gather` collects the facts (the only I/O: files, ``tmux -V``, the
agent's ``--version``, the inotify limits, the running daemon's ``/healthz``) through
injectable :class:`Probes`, so tests hand in a low inotify limit or a fake API answer.

What is checked: the configuration (every problem), tmux (3.2 or newer), the agent CLI and
its version against the tested range, agentq's hooks in every account home's
``settings.json``, the shared-state links between the homes (read-only), the state folder
(0700, ours), the inotify limits against the number of inboxes, the API of the running
daemon, and the API token file (0600, ours).
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import shlex
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TextIO

from agentq.agents.hooks import DEFAULT_EVENTS, parse_command
from agentq.agents.profiles import TESTED_CLAUDE_CODE
from agentq.config.models import Config

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILURE = 1
MIN_TMUX = (3, 2)
#: Spare inotify watches and instances beyond one per inbox (other programs use them too).
WATCH_MARGIN = 1024
INSTANCE_MARGIN = 16
COMMAND_TIMEOUT = 30.0
HTTP_TIMEOUT = 5.0
SYSCTL_DIR = Path("/proc/sys/fs/inotify")
FIX_HOOKS = "start `agentq run` once: it merges its hooks into every account home"

_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


class Level(StrEnum):
    """How a check came out; ``fail`` makes the command exit 1."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    """One finding: its level, which check, what was seen and how to fix it."""

    level: Level
    name: str
    detail: str
    fix: str | None = None

    def line(self) -> str:
        """The finding as one line of output."""
        text = f"{self.level} {self.name}: {self.detail}"
        return f"{text} — fix: {self.fix}" if self.fix else text

    def to_dict(self) -> dict[str, object]:
        """The finding as plain JSON-ready data."""
        return {
            "level": str(self.level),
            "check": self.name,
            "detail": self.detail,
            "fix": self.fix,
        }


@dataclass(frozen=True)
class PathFacts:
    """What ``lstat`` says about a path (``exists`` False when there is nothing)."""

    exists: bool
    is_dir: bool = False
    mode: int = 0
    uid: int = -1


@dataclass(frozen=True)
class SettingsFacts:
    """One account home's ``settings.json``: its text, or why it could not be read."""

    account: str
    path: Path
    text: str | None
    error: str | None = None


@dataclass(frozen=True)
class Facts:
    """Everything the checks look at, gathered once."""

    config_path: Path
    config_problems: tuple[str, ...]
    uid: int
    tmux_version: str | None
    config: Config | None = None
    agent_version: str | None = None
    settings: tuple[SettingsFacts, ...] = ()
    link_problems: tuple[str, ...] = ()
    state_dir: PathFacts = field(default_factory=lambda: PathFacts(False))
    max_user_watches: int | None = None
    max_user_instances: int | None = None
    inboxes: int = 0
    daemon_running: bool = False
    api_answer: tuple[int, str] | None = None
    api_error: str | None = None
    token_file: PathFacts = field(default_factory=lambda: PathFacts(False))


Runner = Callable[[Sequence[str], Mapping[str, str]], tuple[int, str] | None]
SysctlReader = Callable[[str], str | None]
HealthGetter = Callable[[str, int], tuple[int, str]]


def run_command(argv: Sequence[str], env: Mapping[str, str]) -> tuple[int, str] | None:
    """Run a short command: its exit status and output, or None when it cannot be started."""
    try:
        done = subprocess.run(
            list(argv),
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        logger.debug("command failed to run", extra={"argv": list(argv), "error": str(exc)})
        return None
    return done.returncode, (done.stdout + done.stderr).strip()


def read_sysctl(name: str) -> str | None:
    """One inotify limit from ``/proc/sys/fs/inotify`` (None when unreadable)."""
    try:
        return (SYSCTL_DIR / name).read_text().strip()
    except OSError:
        return None


def get_health(host: str, port: int) -> tuple[int, str]:
    """``GET /healthz`` with the Host header the API expects; raises OSError when unreachable."""
    conn = http.client.HTTPConnection(host, port, timeout=HTTP_TIMEOUT)
    try:
        name = f"[{host}]" if ":" in host else host
        conn.request("GET", "/healthz", headers={"Host": f"{name}:{port}"})
        response = conn.getresponse()
        return response.status, response.read(2000).decode("utf-8", "replace")
    except http.client.HTTPException as exc:
        raise OSError(str(exc)) from exc
    finally:
        conn.close()


@dataclass(frozen=True)
class Probes:
    """The I/O :func:`gather` does besides reading files; tests hand in their own."""

    run: Runner = run_command
    read_sysctl: SysctlReader = read_sysctl
    get_health: HealthGetter = get_health
    uid: int = field(default_factory=os.getuid)


# -- the checks (pure) ---------------------------------------------------------------------


def run_checks(facts: Facts) -> list[Check]:
    """Every check, in a fixed order."""
    checks = check_config(facts.config_path, facts.config_problems)
    checks.append(check_tmux(facts.tmux_version))
    config = facts.config
    if config is None:
        skipped = "agent, hooks, links, state dir, inotify, api, token file"
        checks.append(Check(Level.WARN, "other checks", f"not run ({skipped}): fix the config"))
        return checks
    checks.append(check_agent(config.agent.profile, config.agent.command, facts.agent_version))
    checks += check_hooks(facts.settings, config.state_dir, config.agent.profile)
    checks += check_links(facts.link_problems, len(config.accounts))
    checks.append(check_state_dir(config.state_dir, facts.state_dir, facts.uid))
    checks += check_inotify(facts.max_user_watches, facts.max_user_instances, facts.inboxes)
    checks.append(
        check_api(config.api.listen, facts.daemon_running, facts.api_answer, facts.api_error)
    )
    checks.append(check_token_file(config, facts.token_file, facts.uid))
    return checks


def check_config(path: Path, problems: Sequence[str]) -> list[Check]:
    """The configuration: one failure per problem, or one ok."""
    if not problems:
        return [Check(Level.OK, "config", f"{path} is valid")]
    fix = f"edit {path} (`agentq validate --config {path}` lists the same)"
    return [Check(Level.FAIL, "config", f"{path}: {problem}", fix) for problem in problems]


def check_tmux(version_text: str | None) -> Check:
    """tmux must be there, 3.2 or newer (``display-message -p``, ``-e`` of new-session…)."""
    fix = "install tmux 3.2 or newer (apt-get install tmux)"
    if version_text is None:
        return Check(Level.FAIL, "tmux", "not found on PATH", fix)
    version = _version(version_text)
    if version is None:
        return Check(Level.WARN, "tmux", f"cannot tell the version of {version_text!r}")
    if version[:2] < MIN_TMUX:
        return Check(Level.FAIL, "tmux", f"{version_text} is older than 3.2", fix)
    return Check(Level.OK, "tmux", version_text)


def check_agent(profile: str, command: str, version_text: str | None) -> Check:
    """The agent CLI: found, and its version within the tested range (newer only warns)."""
    if profile != "claude-code":
        return Check(Level.OK, "agent", f"profile {profile}: no agent CLI needed")
    oldest, newest = TESTED_CLAUDE_CODE
    tested = f"tested with {oldest}–{newest}"
    if version_text is None:
        fix = f"install Claude Code {newest} or set agent.command to the claude executable"
        return Check(Level.FAIL, "agent", f"{command!r} cannot be run", fix)
    version = _version(version_text)
    if version is None:
        return Check(Level.WARN, "agent", f"{command}: cannot tell the version of {version_text!r}")
    shown = ".".join(map(str, version))
    if version < _required(_version(oldest)):
        fix = f"upgrade Claude Code to {newest}"
        return Check(Level.FAIL, "agent", f"Claude Code {shown} is too old ({tested})", fix)
    if version > _required(_version(newest)):
        detail = f"Claude Code {shown} is untested ({tested}); see docs/compatibility.md"
        return Check(Level.WARN, "agent", detail)
    return Check(Level.OK, "agent", f"Claude Code {shown} ({command}; {tested})")


def check_hooks(settings: Sequence[SettingsFacts], state_dir: Path, profile: str) -> list[Check]:
    """agentq's hook for every event in every account home, pointing at this state folder."""
    if profile != "claude-code":
        return [Check(Level.OK, "hooks", f"profile {profile}: the agent needs no hooks")]
    checks = []
    for facts in settings:
        name = f"hooks {facts.account}"
        if facts.error is not None:
            fix = f"fix {facts.path} or move it aside (agentq never overwrites it)"
            checks.append(Check(Level.FAIL, name, f"{facts.path}: {facts.error}", fix))
            continue
        if facts.text is None:
            checks.append(Check(Level.FAIL, name, f"{facts.path} does not exist", FIX_HOOKS))
            continue
        problem = _hooks_problem(facts.text, state_dir, DEFAULT_EVENTS)
        if problem is None:
            detail = f"{facts.path}: all {len(DEFAULT_EVENTS)} events"
            checks.append(Check(Level.OK, name, detail))
        elif problem.startswith("not valid"):
            fix = f"fix {facts.path} or move it aside (agentq never overwrites it)"
            checks.append(Check(Level.FAIL, name, f"{facts.path}: {problem}", fix))
        else:
            checks.append(Check(Level.FAIL, name, f"{facts.path}: {problem}", FIX_HOOKS))
    return checks


def _hooks_problem(text: str, state_dir: Path, events: Sequence[str]) -> str | None:
    """What is wrong with the hooks in a settings.json text, or None."""
    try:
        settings = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        return f"not valid JSON ({exc})"
    hooks = settings.get("hooks", {}) if isinstance(settings, dict) else None
    if not isinstance(hooks, dict) or not all(isinstance(v, list) for v in hooks.values()):
        return "not valid: 'hooks' must map event names to lists"
    missing, elsewhere = [], []
    for event in events:
        found = (_our_state_dir(cmd, event) for cmd in _commands(hooks.get(event, [])))
        ours = [folder for folder in found if folder is not None]
        if not ours:
            missing.append(event)
        elif Path(ours[0]) != state_dir:
            elsewhere.append(f"{event} → {ours[0]}")
    if missing:
        return f"no agentq hook for {', '.join(missing)}"
    if elsewhere:
        return f"agentq hooks write into another state folder ({'; '.join(elsewhere)})"
    return None


def _commands(groups: object) -> list[str]:
    """The hook commands of one event's matcher groups."""
    if not isinstance(groups, list):
        return []
    found = []
    for group in groups:
        entries = group.get("hooks") if isinstance(group, dict) else None
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict) and isinstance(entry.get("command"), str):
                found.append(entry["command"])
    return found


def _our_state_dir(command: str, event: str) -> str | None:
    """The state folder of our hook command for ``event`` (None for anyone else's)."""
    ours = parse_command(command)
    return ours[1] if ours is not None and ours[0] == event else None


def check_links(problems: Sequence[str], accounts: int) -> list[Check]:
    """The shared-state links of the account homes (read-only: never repaired here)."""
    if accounts <= 1:
        return [Check(Level.OK, "links", "one account: nothing is shared")]
    if not problems:
        return [Check(Level.OK, "links", f"{accounts} account homes share their state")]
    return [Check(Level.FAIL, "links", problem) for problem in problems]


def check_state_dir(path: Path, facts: PathFacts, uid: int) -> Check:
    """The state folder: a directory owned by us, mode 0700 (hook signals and the token)."""
    if not facts.exists:
        return Check(Level.WARN, "state dir", f"{path} does not exist yet (the daemon creates it)")
    if not facts.is_dir:
        return Check(Level.FAIL, "state dir", f"{path} is not a directory", f"move {path} aside")
    if facts.uid != uid:
        fix = f"chown {uid} {shlex.quote(str(path))}"
        return Check(Level.FAIL, "state dir", f"{path} is owned by uid {facts.uid}, not us", fix)
    if facts.mode & 0o777 != 0o700:
        fix = f"chmod 700 {shlex.quote(str(path))}"
        return Check(Level.FAIL, "state dir", f"{path} has mode {facts.mode & 0o777:04o}", fix)
    return Check(Level.OK, "state dir", f"{path} (0700, ours)")


def check_inotify(watches: int | None, instances: int | None, inboxes: int) -> list[Check]:
    """Enough inotify watches and instances for one watch of each inbox, plus a margin.

    Each watched inbox takes one watch and (watchdog's emitter) one inotify instance; past the
    limits the daemon falls back to polling those inboxes.
    """
    checks = []
    for name, value, margin in (
        ("max_user_watches", watches, WATCH_MARGIN),
        ("max_user_instances", instances, INSTANCE_MARGIN),
    ):
        label = f"inotify {name}"
        need = inboxes + margin
        counted = f"{inboxes} inbox{'' if inboxes == 1 else 'es'}"
        if value is None:
            checks.append(Check(Level.WARN, label, "cannot read the limit"))
        elif value < need:
            fix = f"sysctl -w fs.inotify.{name}={need} (and persist it in /etc/sysctl.d/)"
            detail = f"{value} is below {need} ({counted} + {margin} spare)"
            checks.append(Check(Level.FAIL, label, detail, fix))
        else:
            checks.append(Check(Level.OK, label, f"{value} (≥ {counted} + {margin} spare)"))
    return checks


def check_api(
    listen: str | None, running: bool, answer: tuple[int, str] | None, error: str | None
) -> Check:
    """The running daemon's API answers ``/healthz`` on ``api.listen``."""
    if listen is None:
        return Check(Level.OK, "api", "turned off (api.listen: null)")
    if not running:
        return Check(Level.OK, "api", f"{listen}: not checked, the daemon is not running")
    fix = "see the daemon's log (journalctl -u agentq, or --user)"
    if answer is None:
        return Check(Level.FAIL, "api", f"{listen} does not answer: {error or 'no answer'}", fix)
    status, body = answer
    if status != 200:
        shown = " ".join(body.split())[:120]
        return Check(Level.FAIL, "api", f"GET /healthz on {listen} answered {status} {shown}", fix)
    return Check(Level.OK, "api", f"{listen} answers /healthz")


def check_token_file(config: Config, facts: PathFacts, uid: int) -> Check:
    """The API token file: ours and readable by us only (0600)."""
    path = config.api.token_file
    if config.api.listen is None:
        return Check(Level.OK, "token file", "the API is turned off")
    if not facts.exists:
        return Check(Level.OK, "token file", f"{path} not created yet (the daemon makes it 0600)")
    quoted = shlex.quote(str(path))
    if facts.is_dir:
        return Check(Level.FAIL, "token file", f"{path} is a directory", f"remove {quoted}")
    if facts.uid != uid:
        fix = f"chown {uid} {quoted}"
        return Check(Level.FAIL, "token file", f"{path} is owned by uid {facts.uid}", fix)
    if facts.mode & 0o077:
        fix = f"chmod 600 {quoted}"
        return Check(Level.FAIL, "token file", f"{path} has mode {facts.mode & 0o777:04o}", fix)
    return Check(Level.OK, "token file", f"{path} (0600, ours)")


def _version(text: str | None) -> tuple[int, ...] | None:
    """The first ``major.minor[.patch]`` in a version text."""
    found = _VERSION.search(text or "")
    if found is None:
        return None
    return tuple(int(part) for part in found.groups() if part is not None)


def _required(version: tuple[int, ...] | None) -> tuple[int, ...]:
    """A constant version, parsed (never None for the constants this module holds)."""
    if version is None:  # pragma: no cover - the constants are well formed
        raise ValueError("bad version constant")
    return version


# -- gathering (I/O) -----------------------------------------------------------------------


def gather(config_path: Path, env: Mapping[str, str], probes: Probes) -> Facts:
    """Collect the facts about ``config_path``'s setup and this machine."""
    from agentq.config.load import load_config, validate_config_file

    problems = tuple(validate_config_file(config_path, env))
    tmux = _first_line(probes.run(["tmux", "-V"], env))
    if problems:
        return Facts(config_path, problems, probes.uid, tmux)
    config = load_config(config_path, env)
    answer, error = _api_facts(config, probes)
    return Facts(
        config_path,
        (),
        probes.uid,
        tmux,
        config=config,
        agent_version=_agent_version(config, env, probes),
        settings=tuple(_settings(config, env)),
        link_problems=tuple(_link_problems(config)),
        state_dir=_path_facts(config.state_dir),
        max_user_watches=_int(probes.read_sysctl("max_user_watches")),
        max_user_instances=_int(probes.read_sysctl("max_user_instances")),
        inboxes=_inboxes(config),
        daemon_running=_daemon_running(config),
        api_answer=answer,
        api_error=error,
        token_file=_path_facts(config.api.token_file),
    )


def _first_line(result: tuple[int, str] | None) -> str | None:
    """The first output line of a command that succeeded."""
    if result is None or result[0] != 0 or not result[1]:
        return None
    return result[1].splitlines()[0].strip()


def _agent_version(config: Config, env: Mapping[str, str], probes: Probes) -> str | None:
    """``<agent.command> --version``, run with the agent's environment (no auto-update)."""
    if config.agent.profile != "claude-code":
        return None
    agent_env = {**env, **config.agent.env, "DISABLE_AUTOUPDATER": "1"}
    return _first_line(probes.run([config.agent.command, "--version"], agent_env))


def _homes(config: Config, env: Mapping[str, str]) -> list[tuple[str, Path]]:
    """The account homes, or the default ``~/.claude`` the daemon uses without accounts."""
    if config.accounts:
        return [(account.name, account.home) for account in config.accounts]
    return [("default", Path(env.get("HOME", "~")).expanduser() / ".claude")]


def _settings(config: Config, env: Mapping[str, str]) -> list[SettingsFacts]:
    """Every account home's settings.json."""
    found = []
    for account, home in _homes(config, env):
        path = home / "settings.json"
        try:
            found.append(SettingsFacts(account, path, path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            found.append(SettingsFacts(account, path, None))
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
            found.append(SettingsFacts(account, path, None, f"cannot read ({reason or exc})"))
    return found


def _link_problems(config: Config) -> list[str]:
    """The shared links' problems, as the daemon's start-up check sees them."""
    from agentq.accounts.links import active_link_problems, validate

    homes = [(account.name, account.home) for account in config.accounts]
    if len(homes) <= 1:
        return []
    problems = validate(homes, config.shared.root, config.shared.links)
    return problems + active_link_problems(config.active_link, homes)


def _path_facts(path: Path) -> PathFacts:
    """``lstat`` of a path."""
    try:
        info = path.lstat()
    except OSError:
        return PathFacts(False)
    return PathFacts(True, path.is_dir() and not path.is_symlink(), info.st_mode, info.st_uid)


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _inboxes(config: Config) -> int:
    """How many project inboxes the daemon would watch."""
    from agentq.queue import protocol as q

    return len(q.find_projects(config.projects.roots, config.projects.paths))


def _daemon_running(config: Config) -> bool:
    from agentq.core.lock import is_locked
    from agentq.core.statedir import LOCK

    return is_locked(config.state_dir / LOCK)


def _api_facts(config: Config, probes: Probes) -> tuple[tuple[int, str] | None, str | None]:
    """The running daemon's ``/healthz`` answer, or why there is none."""
    if config.api.listen is None or not _daemon_running(config):
        return None, None
    host, port = config.api.address()
    if port == 0:  # a test daemon picks its port: it writes its URL into state.json
        host, port = _listening(config) or (host, port)
    try:
        return probes.get_health(host, port), None
    except OSError as exc:
        return None, exc.strerror or str(exc)


def _listening(config: Config) -> tuple[str, int] | None:
    """The address a running daemon wrote into its state.json."""
    from urllib.parse import urlsplit

    from agentq.core.statedir import STATE

    try:
        url = json.loads((config.state_dir / STATE).read_bytes())["api"]["url"]
        parts = urlsplit(url)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (parts.hostname, parts.port) if parts.hostname and parts.port else None


# -- the command ---------------------------------------------------------------------------


def run_doctor(
    config_path: Path,
    env: Mapping[str, str],
    out: TextIO,
    *,
    as_json: bool = False,
    probes: Probes | None = None,
) -> int:
    """Gather, check, print one line per check (or JSON); 1 when any check failed."""
    checks = run_checks(gather(config_path, env, probes or Probes()))
    failed = any(check.level is Level.FAIL for check in checks)
    if as_json:
        doc = {"ok": not failed, "checks": [check.to_dict() for check in checks]}
        out.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    else:
        out.writelines(check.line() + "\n" for check in checks)
    return EXIT_FAILURE if failed else EXIT_OK
