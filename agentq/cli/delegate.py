"""``agentq delegate``: the delegation contract from the command line, for scripts.

- ``submit FILE [--provider NAME] [--key KEY]``: send the task's body to the provider the
  router picks (or ``--provider``) and print ``{"provider", "job_id", ...}`` as JSON. The
  idempotency key defaults to a hash of the file, so running the same submit twice does not
  create a second job on a job API. Synchronous providers answer at once: the JSON then holds
  ``state: completed`` and the result.
- ``get JOB [--provider NAME]``: the job's status as JSON.
- ``result JOB [--provider NAME]``: the result text.
- ``decide FILE``: the routing decision as JSON (providers without a usable key are skipped).

Exit codes: 0 ok, 1 failure (provider error, failed job, unreadable task), 2 usage or
configuration error, 3 the job has not finished yet.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

from agentq.config.models import Config
from agentq.core.errors import AgentqError, ProviderError
from agentq.core.secrets import redact
from agentq.delegation.http import Transport
from agentq.delegation.manager import build_clients
from agentq.delegation.pricing import format_cost
from agentq.delegation.providers import JobResult, ProviderClient
from agentq.queue.marker import KEY_PREFIX
from agentq.queue.router import RoutingPolicy, route
from agentq.queue.taskfile import parse_task

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FINISHED = 0, 1, 2, 3


class _UsageError(Exception):
    """A bad command line; the message is already on the error stream."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports to a given stream instead of exiting the process."""

    def __init__(self, *args: Any, err: TextIO, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._err = err

    def error(self, message: str) -> NoReturn:
        self._err.write(f"{self.format_usage()}{self.prog}: error: {message}\n")
        raise _UsageError(message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            self._err.write(message)
        raise _UsageError(message or "")


def _parser(err: TextIO) -> _Parser:
    parser = _Parser(prog="agentq delegate", description=__doc__.splitlines()[0], err=err)
    sub = parser.add_subparsers(dest="action", required=True, parser_class=_Parser)
    p = sub.add_parser("submit", help="submit a task file to a provider", err=err)
    p.add_argument("file")
    p.add_argument("--provider", help="skip routing and use this provider")
    p.add_argument("--key", help="idempotency key (default: derived from the file)")
    for action in ("get", "result"):
        p = sub.add_parser(action, help=f"show a job's {action}", err=err)
        p.add_argument("job")
        p.add_argument("--provider", help="the provider holding the job")
    p = sub.add_parser("decide", help="print the routing decision for a task file", err=err)
    p.add_argument("file")
    return parser


def run_delegate(
    args: Sequence[str],
    config: Config,
    out: TextIO,
    err: TextIO,
    *,
    env: Mapping[str, str] | None = None,
    transport: Transport | None = None,
) -> int:
    """Run one ``agentq delegate`` action; returns the exit code."""
    try:
        parsed = _parser(err).parse_args(list(args))
    except _UsageError:
        return EXIT_USAGE
    clients, warnings = build_clients(config, os.environ if env is None else env, transport)
    for warning in warnings:
        _say(err, f"agentq delegate: {warning}")
    try:
        action = {"submit": _submit, "get": _get, "result": _result, "decide": _decide}
        return action[parsed.action](parsed, config, clients, out, err)
    except ProviderError as exc:
        _say(err, f"agentq delegate: {exc}")
        return EXIT_FAILED
    except (AgentqError, OSError) as exc:
        _say(err, f"agentq delegate: {exc}")
        return EXIT_FAILED
    finally:
        for client in clients.values():
            client.close()


def cli_key(data: bytes) -> str:
    """The default idempotency key of ``agentq delegate submit``: a hash of the file."""
    return f"{KEY_PREFIX}cli-{hashlib.sha256(data).hexdigest()[:32]}"


def _emit(out: TextIO, doc: Mapping[str, Any]) -> None:
    _say(out, json.dumps(doc, sort_keys=True))


def _say(stream: TextIO, line: str) -> None:
    """Write one line; a provider echoing our key back does not get it printed."""
    stream.write(redact(line if line.endswith("\n") else line + "\n"))


def _decide(
    args: argparse.Namespace,
    config: Config,
    clients: Mapping[str, ProviderClient],
    out: TextIO,
    err: TextIO,
) -> int:
    path = Path(args.file)
    task = parse_task(path.read_bytes(), path.name)
    decision = route(task.meta, RoutingPolicy.from_config(config.delegation, frozenset(clients)))
    _emit(out, decision.to_dict())
    return EXIT_OK


def _submit(
    args: argparse.Namespace,
    config: Config,
    clients: Mapping[str, ProviderClient],
    out: TextIO,
    err: TextIO,
) -> int:
    path = Path(args.file)
    data = path.read_bytes()
    task = parse_task(data, path.name)
    provider = args.provider
    if provider is None:
        decision = route(
            task.meta, RoutingPolicy.from_config(config.delegation, frozenset(clients))
        )
        if decision.executor != "provider" or decision.provider is None:
            _say(err, f"agentq delegate: the task runs locally ({decision.reason})")
            return EXIT_FAILED
        provider = decision.provider
    client = clients.get(provider)
    if client is None:
        _say(err, f"agentq delegate: provider '{provider}' is not configured or has no key")
        return EXIT_USAGE
    key = args.key or cli_key(data)
    submission = client.submit(task.body, {"task": path.name, "title": task.meta.title or ""}, key)
    doc: dict[str, Any] = {
        "provider": provider,
        "job_id": submission.job_id,
        "idempotency_key": key,
        "synchronous": client.synchronous,
        "state": "submitted",
    }
    if submission.result is not None:
        doc.update(state="completed", **_result_doc(submission.result))
    _emit(out, doc)
    return EXIT_OK


def _pick(
    args: argparse.Namespace, clients: Mapping[str, ProviderClient], err: TextIO
) -> ProviderClient | None:
    """The provider named by ``--provider``, else the only asynchronous one."""
    if args.provider is not None:
        client = clients.get(args.provider)
        if client is None:
            _say(
                err, f"agentq delegate: provider '{args.provider}' is not configured or has no key"
            )
        return client
    asynchronous = [c for c in clients.values() if not c.synchronous]
    if len(asynchronous) == 1:
        return asynchronous[0]
    names = ", ".join(sorted(c.name for c in asynchronous)) or "none"
    _say(err, f"agentq delegate: give --provider (job providers: {names})")
    return None


def _get(
    args: argparse.Namespace,
    config: Config,
    clients: Mapping[str, ProviderClient],
    out: TextIO,
    err: TextIO,
) -> int:
    client = _pick(args, clients, err)
    if client is None:
        return EXIT_USAGE
    status = client.poll(args.job)
    doc: dict[str, Any] = {"provider": client.name, "job_id": args.job, "state": status.state}
    if status.error is not None:
        doc["error"] = status.error
    if status.result is not None:
        doc.update(_result_doc(status.result))
        doc.pop("result", None)  # ``result JOB`` prints the text; keep status small
    _emit(out, doc)
    return EXIT_OK


def _result(
    args: argparse.Namespace,
    config: Config,
    clients: Mapping[str, ProviderClient],
    out: TextIO,
    err: TextIO,
) -> int:
    client = _pick(args, clients, err)
    if client is None:
        return EXIT_USAGE
    status = client.poll(args.job)
    if status.state == "completed" and status.result is not None:
        _say(out, status.result.text)
        return EXIT_OK
    if status.state == "failed":
        _say(err, f"agentq delegate: job {args.job} failed: {status.error}")
        return EXIT_FAILED
    _say(err, f"agentq delegate: job {args.job} is still {status.state}")
    return EXIT_NOT_FINISHED


def _result_doc(result: JobResult) -> dict[str, Any]:
    return {
        "result": result.text,
        "model": result.model,
        "cost": format_cost(result.cost_usd, result.cost_source),
        "cost_usd": result.cost_usd,
        "input_tokens": result.input_tokens,
        "output_tokens": result.output_tokens,
        "cache_read_tokens": result.cache_read_tokens,
        "cache_write_tokens": result.cache_write_tokens,
        "attempts": result.attempts,
        "request_id": result.request_id,
    }
