"""``agentq install-service``: the systemd unit for ``agentq run``, rendered from the configuration.

Two templates ship in ``agentq/cli/units/``: a system unit that runs the daemon as
one user (``User=``) and a user unit for ``systemctl --user``. The rendered unit
carries the ``agentq`` executable and the config path, ``ReadWritePaths=`` for every
folder the daemon, tmux and the agents write (:func:`writable_paths`), and the
``PATH`` the daemon needs to find tmux, git and the agent CLI.

``--print`` writes the unit to stdout; otherwise it goes to
``/etc/systemd/system/agentq.service`` (or the user unit folder with ``--user``),
never over a different existing file without ``--force``, and the ``systemctl``
commands to run are printed: this command never runs ``systemctl`` itself.

:func:`writable_paths`, :func:`unit_spec` and :func:`render` are pure; the rest
reads the environment and the password database and writes the file.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import TextIO

from agentq.config.models import Config
from agentq.core import durable
from agentq.core.errors import ServiceFileError

logger = logging.getLogger(__name__)

UNIT_NAME = "agentq.service"
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
#: Searched after the folders of agentq, tmux, git and the agent command.
STANDARD_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
#: Where tmux puts its socket folder (``tmux-UID``) unless ``$TMUX_TMPDIR`` says otherwise.
DEFAULT_TMP = Path("/tmp")  # noqa: S108 (a path written into the unit, not a temp file we make)
DEFAULT_CONFIG = "~/.config/agentq/config.yaml"

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
_USER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
#: Characters a rendered value may not hold: quoting them right for every directive is not
#: worth it for paths nobody uses.
_UNRENDERABLE = frozenset('"\\')


class Scope(Enum):
    """Which service manager runs the unit."""

    SYSTEM = "system"
    USER = "user"


@dataclass(frozen=True)
class UnitSpec:
    """Everything a unit template needs."""

    scope: Scope
    command: tuple[str, ...]
    writable: tuple[Path, ...]
    environment: tuple[tuple[str, str], ...]
    user: str = ""


def writable_paths(config: Config, home: Path, tmux_tmpdir: str | None = None) -> tuple[Path, ...]:
    """Every folder the service must be able to write, in a stable order, without repeats.

    The state dir; ``/tmp`` (tmux's socket folder ``/tmp/tmux-UID`` lives there and is
    gone after a reboot until tmux creates it again, and the agents need a temp dir);
    ``$TMUX_TMPDIR`` when set; the project roots and paths; the account homes (or
    ``~/.claude`` without accounts); the shared root (two or more accounts); the
    active link's folder (the link is replaced there); the API token's folder.
    """
    paths: list[Path] = [config.state_dir, DEFAULT_TMP]
    if tmux_tmpdir:
        paths.append(Path(tmux_tmpdir))
    paths += config.projects.roots
    paths += config.projects.paths
    if config.accounts:
        paths += [account.home for account in config.accounts]
    elif config.agent.profile != "instant":
        paths.append(home / ".claude")
    if len(config.accounts) > 1:
        paths.append(config.shared.root)
    if config.active_link is not None:
        paths.append(config.active_link.parent)
    if config.api.enabled:
        paths.append(config.api.token_file.parent)
    return tuple(dict.fromkeys(paths))


def search_path(folders: Iterable[str]) -> str:
    """A ``PATH`` value: ``folders`` first, then the standard ones, without repeats."""
    return ":".join(dict.fromkeys([*folders, *STANDARD_PATH]))


def unit_spec(
    config: Config,
    scope: Scope,
    command: Sequence[str],
    home: Path,
    env: Mapping[str, str],
    which: Callable[[str], str | None],
    user: str = "",
) -> UnitSpec:
    """The unit for ``config``: ``command`` is the argv of ``ExecStart=`` (``… run --config X``).

    Args:
        home: the home folder of the user the service runs as.
        env: the installing environment (only ``TMUX_TMPDIR`` is read).
        which: finds a program on ``PATH`` (``shutil.which``); the folders of tmux, git
            and the agent command go first in the unit's ``PATH``.
    """
    programs = ["tmux", "git"]
    if config.agent.profile == "claude-code":
        programs.append(config.agent.command)
    found = [which(name) for name in programs]
    folders = [str(Path(command[0]).parent)] + [str(Path(f).parent) for f in found if f]
    tmux_tmpdir = env.get("TMUX_TMPDIR") or None
    environment = [("PATH", search_path(folders))]
    if tmux_tmpdir:
        # The daemon's tmux client must find the same server as the operator's.
        environment.append(("TMUX_TMPDIR", tmux_tmpdir))
    return UnitSpec(
        scope=scope,
        command=tuple(command),
        writable=writable_paths(config, home, tmux_tmpdir),
        environment=tuple(environment),
        user=user,
    )


def template(scope: Scope) -> str:
    """The unit template shipped for ``scope``."""
    return resources.files("agentq.cli").joinpath("units", f"{scope.value}.service.in").read_text()


def render(spec: UnitSpec) -> str:
    """The unit file text for ``spec``.

    Raises:
        ServiceFileError: a value the unit cannot carry (a quote, a backslash, a control
            character, a relative executable, an odd user name).
    """
    if not Path(spec.command[0]).is_absolute():
        raise ServiceFileError(f"the executable must be an absolute path: {spec.command[0]!r}")
    if spec.scope is Scope.SYSTEM and not _USER_NAME.match(spec.user):
        raise ServiceFileError(f"not a user name systemd accepts: {spec.user!r}")
    values = {
        "user": spec.user,
        "exec_start": " ".join(_exec_word(arg) for arg in spec.command),
        "environment": "\n".join(
            f"Environment={_word(f'{name}={value}')}" for name, value in spec.environment
        ),
        "read_write_paths": "\n".join(
            f"ReadWritePaths={_word(f'-{path}')}" for path in spec.writable
        ),
    }
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template(spec.scope))


def _checked(value: str) -> str:
    if any(ch in _UNRENDERABLE or not ch.isprintable() for ch in value):
        raise ServiceFileError(f"cannot put this value into a unit file: {value!r}")
    return value.replace("%", "%%")  # '%' starts a specifier


def _word(value: str) -> str:
    """One space-separated word of a unit setting, quoted when it holds whitespace."""
    text = _checked(value)
    return f'"{text}"' if not text or any(ch.isspace() for ch in text) else text


def _exec_word(value: str) -> str:
    """One word of an ``Exec*=`` line: ``$`` also escaped (no variable expansion)."""
    if value == ";":
        return "\\;"  # a bare ';' would separate two commands
    return _word(value.replace("$", "$$"))


# -- the command ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RunAs:
    """Who the service runs as."""

    name: str
    home: Path


def agentq_command(argv0: str, python: str, which: Callable[[str], str | None]) -> list[str]:
    """The running ``agentq`` executable: ``argv[0]`` resolved, else ``PATH``, else ``-m``."""
    exe = Path(argv0)
    if exe.name == "agentq" and exe.is_file() and os.access(exe, os.X_OK):
        return [str(exe.resolve())]
    found = which("agentq")
    if found:
        return [str(Path(found).resolve())]
    return [python, "-m", "agentq"]


def _run_as(scope: Scope, name: str | None, environ: Mapping[str, str]) -> RunAs:
    if scope is Scope.USER:
        return RunAs(pwd.getpwuid(os.getuid()).pw_name, Path(environ.get("HOME") or Path.home()))
    if not name:
        sudo_user = environ.get("SUDO_USER") if os.geteuid() == 0 else None
        name = sudo_user or pwd.getpwuid(os.getuid()).pw_name
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ServiceFileError(f"no such user: {name!r}") from None
    return RunAs(entry.pw_name, Path(entry.pw_dir))


def default_unit_dir(scope: Scope, environ: Mapping[str, str], home: Path) -> Path:
    """Where systemd looks for the unit: the system folder, or the user's config folder."""
    if scope is Scope.SYSTEM:
        return SYSTEM_UNIT_DIR
    config_home = environ.get("XDG_CONFIG_HOME") or str(home / ".config")
    return Path(config_home) / "systemd" / "user"


def next_steps(scope: Scope, run_as: RunAs, unit_path: Path, default_dir: Path) -> list[str]:
    """What the operator runs next (never run by agentq itself)."""
    ctl = "systemctl" if scope is Scope.SYSTEM else "systemctl --user"
    journal = "journalctl" if scope is Scope.SYSTEM else "journalctl --user"
    steps = []
    if unit_path.parent != default_dir:
        steps.append(f"# systemd reads units from {default_dir}; copy {unit_path} there first")
    steps += [f"{ctl} daemon-reload", f"{ctl} enable --now {UNIT_NAME}"]
    if scope is Scope.USER:
        steps.append(f"loginctl enable-linger {run_as.name}   # keep it running when logged out")
    steps += [f"{ctl} status {UNIT_NAME}", f"{journal} -u {UNIT_NAME} -f"]
    return steps


def notes(spec: UnitSpec, config: Config, run_as: RunAs) -> list[str]:
    """Warnings about the rendered unit: folders to create first, a writable home."""
    out = []
    for path in (p for p in spec.writable if not p.exists()):
        if spec.scope is Scope.SYSTEM:
            out.append(f"create before starting: install -d -m 0700 -o {run_as.name} {path}")
        else:
            out.append(f"create before starting: mkdir -p -m 0700 {path}")
    if config.active_link is not None and config.active_link.parent == run_as.home:
        out.append(
            f"active_link {config.active_link} makes its folder, the whole home {run_as.home}, "
            "writable for the service (the link is replaced there on every swap)"
        )
    return out


def run_install_service(
    config_arg: str | None,
    user_scope: bool,
    run_as_name: str | None,
    unit_dir: str | None,
    print_only: bool,
    force: bool,
    out: TextIO,
    err: TextIO,
    environ: Mapping[str, str] = os.environ,
) -> int:
    """``agentq install-service``; returns the exit code.

    Raises:
        ConfigError: the configuration is invalid.
        ServiceFileError: the unit cannot be rendered or written.
    """
    from agentq.config.load import load_config

    scope = Scope.USER if user_scope else Scope.SYSTEM
    run_as = _run_as(scope, run_as_name, environ)
    env = dict(environ)
    if scope is Scope.SYSTEM:
        # The config's '~' and $HOME are the service user's, as systemd will set them.
        env.update(HOME=str(run_as.home), USER=run_as.name, LOGNAME=run_as.name)
    raw = config_arg or env.get("AGENTQ_CONFIG") or DEFAULT_CONFIG
    if raw == "~" or raw.startswith("~/"):
        raw = str(run_as.home) + raw[1:]
    config_path = Path(raw).absolute()
    config = load_config(config_path, env)
    command = [*agentq_command(sys.argv[0], sys.executable, shutil.which)]
    command += ["run", "--config", str(config_path)]
    spec = unit_spec(config, scope, command, run_as.home, env, shutil.which, run_as.name)
    text = render(spec)
    warnings = notes(spec, config, run_as)
    if print_only:
        out.write(text)
        for line in warnings:
            print(f"agentq install-service: {line}", file=err)
        return 0
    default_dir = default_unit_dir(scope, environ, run_as.home)
    path = (Path(unit_dir) if unit_dir else default_dir) / UNIT_NAME
    if not _write_unit(path, text, force, out, err):
        return 1
    for line in warnings:
        print(f"note: {line}", file=out)
    print("next:", file=out)
    for step in next_steps(scope, run_as, path, default_dir):
        print(f"  {step}", file=out)
    return 0


def _write_unit(path: Path, text: str, force: bool, out: TextIO, err: TextIO) -> bool:
    if path.is_symlink() or path.exists():
        try:
            same = not path.is_symlink() and path.read_text() == text
        except OSError:
            same = False
        if same:
            print(f"{path} is up to date", file=out)
            return True
        if not force:
            print(
                f"agentq install-service: {path} exists and differs; --force replaces it "
                "(or --print to compare)",
                file=err,
            )
            return False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        durable.write_atomic(path, text.encode(), mode=0o644)
    except OSError as exc:
        hint = " (run it as root, or use --print)" if isinstance(exc, PermissionError) else ""
        raise ServiceFileError(f"cannot write the unit: {exc.strerror or exc}{hint}", path) from exc
    print(f"wrote {path}", file=out)
    return True
