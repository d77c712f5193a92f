"""Building the daemon's collaborators from the configuration.

The default factories for the local executor (the ``instant`` executor, a pool of agent
sessions in tmux, which the account swap also drives as a pool, or the fleet when
``cluster.submit`` is on) and the remote one (delegation to providers, when any is
configured), and the type of the watcher's. Tests hand the daemon other factories (and
other account links) instead of switching behaviour through the environment. Also the
notifier with its targets, and :func:`log_emitter` for the fleet worker's switcher (it has
no event log).
"""

from __future__ import annotations

import hashlib
import logging
import socket
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from agentq.accounts.pool import SessionPool
from agentq.agents.readings import Reading
from agentq.config.models import Config, NotificationConfig
from agentq.core import events as ev
from agentq.core.clock import Clock
from agentq.core.errors import ConfigError
from agentq.daemon.instant import InstantExecutor
from agentq.queue.jobs import Executor
from agentq.queue.watcher import InboxWatcher

if TYPE_CHECKING:
    from agentq.daemon.notify.notifier import Notifier, Sender, Target
    from agentq.sessions.pool import PoolSpec
    from agentq.sessions.settings import SessionSettings

logger = logging.getLogger(__name__)

LEDGER_FILENAME = "instant-ledger.jsonl"


@dataclass(frozen=True)
class Context:
    """What a factory may use to build a collaborator."""

    config: Config
    env: Mapping[str, str]
    clock: Clock
    wake: Callable[[], None]
    #: Where collaborators report events (the daemon's event log); None reports nothing.
    emit: ev.Emit | None = None


@dataclass(frozen=True)
class Remote:
    """The remote executor, the providers it can reach, and warnings for the others."""

    executor: Executor | None = None
    available: frozenset[str] = frozenset()
    warnings: list[str] = field(default_factory=list)
    #: Rebuilds the executor's clients for a reloaded configuration and returns the providers
    #: now available and warnings; None when a reload cannot change this executor.
    reconfigure: Callable[[Config], tuple[frozenset[str], list[str]]] | None = None


class PoolExecutor(Executor, SessionPool, Protocol):
    """A local executor that runs agent sessions: the account swap drives it as a pool."""

    def take_readings(self) -> list[Reading]:
        """The quota readings its sessions gave since the last call."""
        ...

    def reconfigure(self, pool: PoolSpec, settings: SessionSettings) -> None:
        """Take a reloaded pool size and session rules."""
        ...


@dataclass(frozen=True)
class Local:
    """The local executor, and the same object as a session pool when it runs agent sessions."""

    executor: Executor
    pool: PoolExecutor | None = None


LocalFactory = Callable[[Context], Local]
RemoteFactory = Callable[[Context], Remote]
#: Builds the inbox watcher around the loop's wake-up event (tests hand in a failing one).
WatcherFactory = Callable[[threading.Event], InboxWatcher]


def default_remote(ctx: Context) -> Remote:
    """Delegation to the configured providers; nothing when none is configured."""
    if not ctx.config.delegation.providers:
        return Remote()
    from agentq.delegation.manager import build_delegation, reconfigure_delegation

    executor, available, warnings = build_delegation(
        ctx.config, ctx.env, wake=ctx.wake, emit=ctx.emit
    )
    if executor is None:
        return Remote()
    delegation = executor

    def reconfigure(config: Config) -> tuple[frozenset[str], list[str]]:
        return reconfigure_delegation(delegation, config, ctx.env)

    return Remote(executor, available, warnings, reconfigure)


def host_name(config: Config) -> str:
    """This host's name on the fleet: ``cluster.host``, else the machine's host name."""
    named = config.cluster.host if config.cluster is not None else None
    return named or socket.gethostname()


#: What to install when ``cluster:`` is configured but the Temporal SDK is missing.
CLUSTER_EXTRA_HINT = "cluster: needs the Temporal SDK: pip install 'agentq[cluster]'"


def cluster_problems(config: Config, env: Mapping[str, str]) -> list[str]:
    """What keeps ``cluster:`` from working here (``agentq validate``), without loading it."""
    import importlib.util

    cluster = config.cluster
    if cluster is None:
        return []
    problems = []
    try:
        installed = importlib.util.find_spec("temporalio") is not None
    except (ImportError, ValueError):  # blocked in sys.modules: as good as missing
        installed = False
    if not installed:
        problems.append(CLUSTER_EXTRA_HINT)
    tls = cluster.tls
    files = [tls.ca_file, tls.cert_file, tls.key_file] if tls is not None else []
    for path in (f for f in files if f is not None):
        if not path.is_file():
            problems.append(f"cluster.tls: {path} is not a readable file")
    if cluster.api_key_file is not None:
        from agentq.core.secrets import resolve_key

        try:
            resolve_key(None, cluster.api_key_file, env)
        except ConfigError as exc:
            problems += [f"cluster.api_key_file: {p}" for p in exc.problems]
    return problems


def missing_sdk(exc: ImportError) -> ConfigError:
    """The configuration error for ``cluster:`` without the optional extra installed."""
    return ConfigError([f"{CLUSTER_EXTRA_HINT} ({exc})"])


def fleet_submitter(ctx: Context) -> Local:
    """The executor that hands local tasks to the fleet (``cluster.submit: true``)."""
    cluster = ctx.config.cluster
    if cluster is None:
        raise ValueError("the fleet needs a cluster: section")
    from agentq.cluster.submitter import ClusterExecutor, FleetSettings

    try:  # imported here: without `cluster:` nothing loads temporalio
        from agentq.cluster.temporal import FleetClient, connection_from_config
    except ImportError as exc:
        raise missing_sdk(exc) from None

    host = host_name(ctx.config)
    client = FleetClient(connection_from_config(cluster, ctx.env, host), wake=ctx.wake)
    settings = FleetSettings(
        host=host,
        prefix=cluster.task_queue_prefix,
        heartbeat_timeout=cluster.heartbeat_timeout,
        max_in_flight=cluster.max_in_flight,
        max_runs=cluster.max_runs,
    )
    return Local(ClusterExecutor(client, settings))


def default_local(ctx: Context) -> Local:
    """The fleet (``cluster.submit``), the ``instant`` executor, or the configured session pool."""
    config = ctx.config
    if config.cluster is not None and config.cluster.submit:
        return fleet_submitter(ctx)
    if config.agent.profile == "instant":
        return Local(InstantExecutor(config.state_dir / LEDGER_FILENAME, config.agent.answer))
    from agentq.sessions.executor import SessionExecutor

    executor = SessionExecutor.from_config(
        config, ctx.env, config.state_dir, ctx.clock, emit=ctx.emit
    )
    return Local(executor, pool=executor)


def log_emitter() -> ev.Emit:
    """An ``emit`` that writes each event as a log line (the fleet worker has no event log)."""

    def emit(kind: str, /, **fields: Any) -> None:
        message = str(fields.get("message", kind))
        logger.warning("switcher notice: %s", message, extra={"notice": kind})

    return emit


def build_notifier(config: Config, clock: Clock, events: ev.EventLog) -> Notifier:
    """The notifier with a sender for every configured target (not started yet).

    Raises:
        ConfigError: every target that cannot be built (an unreadable secret, a URL
            Apprise does not know), named, never by its URL.
    """
    from agentq.daemon.notify.notifier import Notifier

    targets, _ = build_targets(config)
    return Notifier(targets, clock, events)


def build_targets(
    config: Config, skip: Collection[str] = ()
) -> tuple[list[Target], frozenset[str]]:
    """A sender for every configured target whose spec is not in ``skip``, and every spec.

    A reload passes the specs in use as ``skip``: those targets are kept as they run.

    Raises:
        ConfigError: every target that cannot be built, named, never by its URL.
    """
    from agentq.daemon.notify.notifier import Target

    host = socket.gethostname()
    targets: list[Target] = []
    specs: list[str] = []
    problems: list[str] = []
    for i, target in enumerate(config.notifications):
        name = target.name or f"{target.kind}-{i}"
        spec = target_spec(target)
        specs.append(spec)
        if spec in skip:
            continue
        try:
            sender = _sender(name, target, host)
        except ConfigError as exc:
            problems += exc.problems
            continue
        events = frozenset(target.events)
        targets.append(Target(sender, events, target.min_interval, spec))
    if problems:
        for built in targets:
            built.sender.close()
        raise ConfigError(problems)
    return targets, frozenset(specs)


def target_spec(target: NotificationConfig) -> str:
    """A fingerprint of a target's settings, its secret included (a new secret is a change)."""
    digest = hashlib.sha256(target.model_dump_json().encode())
    if target.secret_file is not None:
        try:
            digest.update(target.secret_file.read_bytes())
        except OSError:
            digest.update(b"unreadable")  # building its sender reports the problem
    return digest.hexdigest()


def notification_problems(config: Config) -> list[str]:
    """Targets the daemon could not build (``agentq validate``): Apprise URLs it does not know."""
    from agentq.daemon.notify.apprise_sender import apprise_url, unsupported_url

    problems = []
    for i, target in enumerate(config.notifications):
        if target.kind != "webhook":
            name = target.name or f"{target.kind}-{i}"
            problem = unsupported_url(name, apprise_url(target.kind, target.url))
            if problem is not None:
                problems.append(problem)
    return problems


def _sender(name: str, target: NotificationConfig, host: str) -> Sender:
    if target.kind == "webhook":
        from agentq.core.secrets import read_key_file
        from agentq.daemon.notify.webhook import WebhookSender

        secret = None
        if target.secret_file is not None:
            secret = read_key_file(target.secret_file, what="secret file")
        return WebhookSender(name, target.url, host=host, timeout=target.timeout, secret=secret)
    from agentq.daemon.notify.apprise_sender import AppriseSender, apprise_url

    return AppriseSender(name, apprise_url(target.kind, target.url), timeout=target.timeout)
