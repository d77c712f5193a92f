"""The ``agentq`` command line: argument parsing, logging set-up, exit codes.

Exit codes: 0 ok, 1 failure, 2 usage or configuration error. Errors are one line
on stderr; ``--debug`` adds the traceback. Imports are lazy so that the hook
command, which every agent turn runs, stays fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentq.cli.logs import setup_logging

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from agentq.config.models import Config
    from agentq.daemon.loop import Daemon

    #: Builds the daemon from its configuration, environment and configuration file.
    DaemonFactory = Callable[[Config, Mapping[str, str], Path], Daemon]

logger = logging.getLogger("agentq")

DEFAULT_CONFIG = "~/.config/agentq/config.yaml"


def _config_path(path: str | None) -> Path:
    raw = path or os.environ.get("AGENTQ_CONFIG") or DEFAULT_CONFIG
    return Path(os.path.expanduser(raw))


def _load_config(path: str | None) -> Config:
    from agentq.config.load import load_config

    return load_config(_config_path(path), dict(os.environ))


# -- commands ---------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace, make_daemon: DaemonFactory | None = None) -> int:
    """Run the daemon; ``make_daemon`` builds it with other collaborators (the test launcher)."""
    from agentq.daemon.loop import Daemon

    config = _load_config(args.config)
    setup_logging("DEBUG" if args.debug else config.logging.level, config.logging.format)
    path = _config_path(args.config).absolute()  # a reload re-reads it, whatever the cwd
    if make_daemon is not None:
        return make_daemon(config, dict(os.environ), path).run()
    return Daemon(config, dict(os.environ), config_path=path).run()


def cmd_install_service(args: argparse.Namespace) -> int:
    from agentq.cli.service import run_install_service

    if args.user and args.run_as:
        print(
            "agentq install-service: --run-as is for the system unit, not --user", file=sys.stderr
        )
        return 2
    return run_install_service(
        args.config,
        args.user,
        args.run_as,
        args.unit_dir,
        args.print,
        args.force,
        sys.stdout,
        sys.stderr,
    )


def cmd_worker(args: argparse.Namespace) -> int:
    from agentq.daemon.worker import run_worker

    config = _load_config(args.config)
    setup_logging("DEBUG" if args.debug else config.logging.level, config.logging.format)
    return run_worker(config, dict(os.environ))


def cmd_validate(args: argparse.Namespace) -> int:
    from agentq.config.load import validate_config_file

    raw = args.config or os.environ.get("AGENTQ_CONFIG") or DEFAULT_CONFIG
    path = Path(os.path.expanduser(raw))
    env = dict(os.environ)
    problems = validate_config_file(path, env)
    warnings: list[str] = []
    if not problems:
        from agentq.accounts.setup import account_problems
        from agentq.config.load import load_config
        from agentq.daemon.wiring import cluster_problems, notification_problems

        config = load_config(path, env)
        problems = account_problems(config) + notification_problems(config)
        problems += cluster_problems(config, env)
        problems += _project_config_problems(config, env)
        warnings = _delegation_warnings(config, env)
    for warning in warnings:
        print(f"{path}: warning: {warning}", file=sys.stderr)
    for problem in problems:
        print(f"{path}: {problem}", file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s) found", file=sys.stderr)
        return 2
    print(f"{path}: ok")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from agentq.cli.doctor import run_doctor

    raw = args.config or os.environ.get("AGENTQ_CONFIG") or DEFAULT_CONFIG
    path = Path(os.path.expanduser(raw))
    return run_doctor(path, dict(os.environ), sys.stdout, as_json=args.json)


def _project_config_problems(config: Config, env: dict[str, str]) -> list[str]:
    """Every problem of the projects' own ``.agent-queue/config.yaml`` files."""
    from agentq.config.load import load_project_config
    from agentq.core.errors import ConfigError
    from agentq.daemon.workspaces import PROJECT_CONFIG
    from agentq.queue.protocol import QUEUE_DIRNAME, find_projects

    problems = []
    for project in find_projects(config.projects.roots, config.projects.paths):
        path = project / QUEUE_DIRNAME / PROJECT_CONFIG
        if not os.path.lexists(path):
            continue
        try:
            load_project_config(path, env)
        except ConfigError as exc:
            problems += [f"{path}: {problem}" for problem in exc.problems]
    return problems


def _delegation_warnings(config: Config, env: dict[str, str]) -> list[str]:
    """Providers that are configured but disabled (no key), as ``agentq validate`` reports them."""
    from agentq.core.errors import ConfigError
    from agentq.core.secrets import resolve_key

    warnings = []
    for provider in config.delegation.providers:
        if provider.api_key_env is None and provider.api_key_file is None:
            continue
        try:
            key = resolve_key(provider.api_key_env, provider.api_key_file, env)
        except ConfigError as exc:
            warnings.append(f"provider {provider.name!r} disabled: {exc}")
            continue
        if key is None:
            source = provider.api_key_env or str(provider.api_key_file)
            warnings.append(
                f"provider {provider.name!r} disabled: no API key ({source} is not set)"
            )
    return warnings


def cmd_accounts(args: argparse.Namespace) -> int:
    from agentq.cli.accounts import run_accounts_init

    config = _load_config(args.config)
    return run_accounts_init(config, args.dry_run, print)


def cmd_janitor(args: argparse.Namespace) -> int:
    from agentq.cli.janitor import run_janitor

    config = _load_config(args.config)
    return run_janitor(config, args.dry_run, datetime.now(UTC), lambda s: print(s, flush=True))


def cmd_swap(args: argparse.Namespace) -> int:
    config = _load_config(args.config)
    request = {"action": "clear"} if args.clear else {"action": "swap", "to": args.to}
    body = {"clear": True} if args.clear else {"to": args.to}
    return _ask_daemon(config, "swap", "/api/swap", body, request, args.timeout)


def cmd_reload(args: argparse.Namespace) -> int:
    """Ask the daemon to re-read its configuration; prints what it applied and what waits.

    A file with problems is not sent: they are listed here (exit 2), and a running daemon
    keeps its configuration.
    """
    from agentq.core.errors import ConfigError

    try:
        config = _load_config(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"agentq reload: {exc.path or 'config'}: {problem}", file=sys.stderr)
        print(
            f"agentq reload: {len(exc.problems)} problem(s); nothing was sent, a running daemon "
            "keeps its configuration",
            file=sys.stderr,
        )
        return 2
    return _ask_daemon(config, "reload", "/api/reload", {}, {"action": "reload"}, args.timeout)


def _ask_daemon(
    config: Config,
    command: str,
    path: str,
    body: dict[str, Any],
    request: dict[str, Any],
    timeout: float,
) -> int:
    """Ask the running daemon through its API, or through a request file when it serves none."""
    from agentq.api.client import ApiUnavailable
    from agentq.cli.status import api_client
    from agentq.core import durable
    from agentq.core.lock import is_locked

    if not is_locked(config.state_dir / "lock"):
        print(f"agentq {command}: the daemon is not running", file=sys.stderr)
        return 1
    client = api_client(config)
    if client is not None:
        try:
            status, answer = client.request("POST", path, body)
        except ApiUnavailable:
            pass  # fall back to the request folder
        else:
            print(answer.get("message", ""))  # as the request-file answer: on stdout
            return 0 if status == 200 and answer.get("ok") else 1
    folder = config.state_dir / "requests"
    stem = f"{time.time_ns()}-{os.getpid()}"
    durable.write_atomic(folder / f"{stem}.request.json", json.dumps(request).encode())
    result_path = folder / f"{stem}.result.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result_path.exists():
            answer = json.loads(result_path.read_text())
            result_path.unlink(missing_ok=True)
            print(answer["message"])
            return 0 if answer["ok"] else 1
        time.sleep(0.1)  # waiting for the daemon's answer file
    print(f"agentq {command}: no answer from the daemon within {timeout:g}s", file=sys.stderr)
    return 1


def cmd_delegate(args: argparse.Namespace) -> int:
    from agentq.cli.delegate import run_delegate

    config = _load_config(args.config)
    return run_delegate(args.rest, config, sys.stdout, sys.stderr, env=dict(os.environ))


def cmd_submit(args: argparse.Namespace) -> int:
    from agentq.queue import submit

    if (args.file is None) == (args.text is None):
        print("agentq submit: give exactly one of --file or --text", file=sys.stderr)
        return 2
    source = Path(args.file) if args.file else None
    text = (
        (sys.stdin.read() if args.file == "-" else Path(args.file).read_text())
        if source
        else args.text
    )
    if source is not None and args.file == "-":
        source = None
    assignments = submit.parse_assignments(args.set or [])
    if args.isolation:
        assignments["isolation"] = args.isolation
    if args.after:
        assignments["after"] = [
            n.strip() for arg in args.after for n in arg.split(",") if n.strip()
        ]
    if args.base:
        assignments["base"] = args.base
    text = submit.compose(text, assignments)
    name = submit.choose_name(text, source, datetime.now())
    path = submit.submit(submit.project_root(Path(args.project).resolve()), text, name)
    print(path)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from agentq.cli.status import fetch_status, render_status

    config = _load_config(args.config)
    if args.watch:
        from agentq.cli.watch import run_watch

        return run_watch(config)
    doc = fetch_status(config, time.time())
    print(json.dumps(doc, indent=2, sort_keys=True) if args.json else render_status(doc))
    return 0


def cmd_route(args: argparse.Namespace) -> int:
    from agentq.queue.router import RoutingPolicy, route
    from agentq.queue.taskfile import parse_task

    policy = RoutingPolicy()
    if (
        args.config
        or os.environ.get("AGENTQ_CONFIG")
        or Path(os.path.expanduser(DEFAULT_CONFIG)).exists()
    ):
        policy = RoutingPolicy.from_config(_load_config(args.config).delegation)
    path = Path(args.file)
    task = parse_task(path.read_bytes(), path.name)
    print(json.dumps(route(task.meta, policy).to_dict(), sort_keys=True))
    return 0


def cmd_detect(args: argparse.Namespace) -> int:
    from agentq.cli.detect import run_detect

    return run_detect(args.file, args.now, args.tz, sys.stdin, sys.stdout, login=args.login)


def cmd_hook(args: argparse.Namespace) -> int:
    from agentq.agents.hooks import run_hook

    state_dir = args.state_dir or os.environ.get("AGENTQ_STATE_DIR") or "~/.local/state/agentq"
    try:
        stdin = sys.stdin.buffer.read()
    except (OSError, ValueError):
        stdin = b""
    return run_hook(args.event, stdin, dict(os.environ), Path(os.path.expanduser(state_dir)))


def cmd_demo(args: argparse.Namespace) -> int:
    from agentq.cli.demo import run_demo

    setup_logging("DEBUG" if args.debug else "WARNING")
    return run_demo(Path(args.dir).resolve() if args.dir else None, args.pool)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every sub-command."""
    parser = argparse.ArgumentParser(prog="agentq", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Any, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(func=func)
        return p

    p = add("run", cmd_run, "run the daemon in the foreground")
    p.add_argument("--config")
    p = add("worker", cmd_worker, "work for the fleet: this host's pool takes tasks from Temporal")
    p.add_argument("--config")
    p = add("demo", cmd_demo, "run the simulated agent pool on the sample queues")
    p.add_argument("--dir", help="workspace folder (default: a new temp folder)")
    p.add_argument("--pool", type=int, default=3, help="pool size (default 3)")
    p = add("validate", cmd_validate, "check a configuration file, listing every problem")
    p.add_argument("--config")
    p = add("doctor", cmd_doctor, "check tmux, the agent CLI, hooks, links, limits and the API")
    p.add_argument("--config")
    p.add_argument("--json", action="store_true", help="the checks as JSON")
    p = add("accounts", cmd_accounts, "manage account homes: 'init' adopts the shared layout")
    p.add_argument("action", choices=["init"])
    p.add_argument("--dry-run", action="store_true", help="print every step, change nothing")
    p.add_argument("--config")
    p = add("janitor", cmd_janitor, "archive, sweep orphans, prune old worktrees now (one pass)")
    p.add_argument("--config")
    p.add_argument(
        "--dry-run", action="store_true", help="print what would be done, change nothing"
    )
    p = add("swap", cmd_swap, "swap the pool to another account now (through the daemon)")
    p.add_argument("--to", help="the account to swap to (default: the next one not exhausted)")
    p.add_argument("--clear", action="store_true", help="leave the partial-swap state")
    p.add_argument("--config")
    p.add_argument("--timeout", type=float, default=60.0)
    p = add("reload", cmd_reload, "ask the daemon to re-read its configuration")
    p.add_argument("--config")
    p.add_argument("--timeout", type=float, default=60.0)
    p = add("delegate", cmd_delegate, "delegation from scripts: submit FILE | get JOB | ...")
    p.add_argument("--config")
    p.add_argument(
        "rest", nargs=argparse.REMAINDER, help="submit FILE | get JOB | result JOB | decide FILE"
    )
    p = add("submit", cmd_submit, "put a task into a project's inbox (via tmp/, atomically)")
    p.add_argument("--project", required=True)
    p.add_argument("--file")
    p.add_argument("--text")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.add_argument(
        "--isolation", choices=["none", "worktree"], help="run in a git worktree of its own"
    )
    p.add_argument(
        "--after", action="append", metavar="NAME", help="wait for this task (repeatable)"
    )
    p.add_argument("--base", metavar="REF", help="the git revision a worktree starts from")
    p = add("status", cmd_status, "show queue counts and daemon health")
    p.add_argument("--config")
    p.add_argument("--json", action="store_true")
    p.add_argument("--watch", action="store_true", help="a live view (needs the daemon's API)")
    p = add("route", cmd_route, "print the routing decision for a task file as JSON")
    p.add_argument("file")
    p.add_argument("--config")
    p = add("detect", cmd_detect, "classify an agent pane (quota / server error / activity)")
    p.add_argument("file", nargs="?", default="-")
    p.add_argument("--agent", default="claude-code", choices=["claude-code"])
    p.add_argument("--now")
    p.add_argument("--tz", default="UTC")
    p.add_argument(
        "--login",
        default="unknown",
        choices=["unknown", "subscriber", "enterprise", "api_key"],
        help="how the session's account signs in (decides what a retried limit means)",
    )
    p = add("hook", cmd_hook, "called by the agent's hooks: record a signal file")
    p.add_argument("event")
    p.add_argument("--state-dir")
    p = add("install-service", cmd_install_service, "write the systemd unit for 'agentq run'")
    p.add_argument("--config")
    p.add_argument("--user", action="store_true", help="a user unit (systemctl --user)")
    p.add_argument("--run-as", metavar="USER", help="the system unit's User= (default: you)")
    p.add_argument("--print", action="store_true", help="write the unit to stdout only")
    p.add_argument("--force", action="store_true", help="replace a different existing unit")
    p.add_argument("--unit-dir", help="write the unit into this folder instead")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``agentq`` console script."""
    return execute(build_parser().parse_args(argv))


def execute(args: argparse.Namespace) -> int:
    """Run a parsed command; errors become one line on stderr and the documented exit code."""
    if args.command != "hook" and not logging.getLogger().handlers:
        setup_logging("DEBUG" if args.debug else "WARNING")
    from agentq.core.errors import AccountError, AgentqError, ConfigError, LockError

    try:
        return int(args.func(args))
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"agentq: {exc.path or 'config'}: {problem}", file=sys.stderr)
        return 2
    except AccountError as exc:
        for problem in exc.problems:
            print(f"agentq: {problem}", file=sys.stderr)
        return 2
    except LockError as exc:
        print(f"agentq: {exc}", file=sys.stderr)
        return 2
    except AgentqError as exc:
        if args.debug:
            raise
        print(f"agentq: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        if args.debug:
            raise
        print(f"agentq: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
