"""The configuration of agentq: pydantic models of ``config.yaml``, loading and validation.

Every key has a default except the account homes; unknown keys are errors; a key left empty
takes its default. Paths expand ``~`` and ``$VAR``/``${VAR}`` from the environment mapping
handed in (never ``os.environ``), and a relative path is taken from the config file's folder.
Loading reports every problem at once, one line each with its YAML line number::

    line 12: quota.confirm_pols: unknown key
    line 4: pool.max: must be >= pool.min (2)
"""

from __future__ import annotations

import logging
import re
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from agentq.config import issues as _configload
from agentq.config.sections import (
    MIN_SIGNING_SECRET,
    NOTIFICATION_EVENTS,
    JanitorConfig,
    LoggingConfig,
    NotificationConfig,
    NotificationEvent,
)
from agentq.config.sections import Section as _Section
from agentq.config.types import (
    AccountName,
    ConfigPath,
    Duration,
    EnvName,
    HttpUrl,
    LinkName,
    Percent,
    ProviderName,
    SessionName,
    expand_path,
    scalar_as_text,
)

__all__ = [
    "MIN_SIGNING_SECRET",
    "NOTIFICATION_EVENTS",
    "AccountConfig",
    "AgentConfig",
    "ApiConfig",
    "ClusterConfig",
    "ClusterTlsConfig",
    "CompletionConfig",
    "Config",
    "DedicatedSession",
    "DelegationConfig",
    "DispatchConfig",
    "Duration",
    "JanitorConfig",
    "LoggingConfig",
    "NotificationConfig",
    "NotificationEvent",
    "PoolConfig",
    "PriceConfig",
    "ProjectConfig",
    "ProjectsConfig",
    "ProviderConfig",
    "QuotaConfig",
    "SharedConfig",
    "TmuxConfig",
    "expand_path",
]

logger = logging.getLogger(__name__)

_MINUTE = 60.0
_HOUR = 3600.0
LOCAL_EXECUTOR = "local"
RESERVED_PROVIDER_NAMES = frozenset({"local", "claude-code", "cluster"})
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
MAX_POOL_SIZE = 64
#: A host name (or IPv4 address) with an optional port, for ``api.allowed_hosts``.
_HOST_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(:[0-9]{1,5})?$"

Isolation = Literal["none", "worktree"]

# --- sections -----------------------------------------------------------------------------------


class ProjectsConfig(_Section):
    """Where the queues are: every ``<root>/*/.agent-queue`` plus each listed project."""

    roots: list[ConfigPath] = Field(default_factory=list)
    paths: list[ConfigPath] = Field(default_factory=list)


class AgentConfig(_Section):
    """Which agent CLI runs in the pool sessions and how it is started."""

    profile: Literal["claude-code", "sim", "instant"] = "claude-code"
    command: str = Field(default="claude", min_length=1)
    args: list[str] = Field(default_factory=list)
    env: dict[EnvName, Annotated[str, BeforeValidator(scalar_as_text)]] = Field(
        default_factory=dict
    )
    answer: str = "done"
    on_permission: Literal["answer", "fail"] = "fail"
    permission_answer: str = "1"


class AccountConfig(_Section):
    """One agent account: a name and its config home (``CLAUDE_CONFIG_DIR``)."""

    name: AccountName
    home: ConfigPath


class SharedConfig(_Section):
    """State shared by all accounts through symlinks from each home into ``root``."""

    root: ConfigPath = Path("~/.claude-shared")
    links: list[LinkName] = Field(
        default_factory=lambda: ["projects", "file-history", "session-env"]
    )

    @field_validator("links")
    @classmethod
    def _unique_links(cls, links: list[str]) -> list[str]:
        issues = _duplicates(links, lambda i: (i,), "link")
        if issues:
            raise _configload.issues_error(issues)
        return links


class DedicatedSession(_Section):
    """An operator's own session: never dispatched to or exited; resumed after a swap."""

    name: SessionName
    cwd: ConfigPath | None = None


class PoolConfig(_Section):
    """The pool of agent sessions agentq owns: ``prefix + i`` for i in the range."""

    prefix: str = Field(default="agentq-", pattern=r"^[A-Za-z0-9_-]{1,32}$")
    start_index: int = Field(default=0, ge=0)
    min: int = Field(default=2, ge=0, le=MAX_POOL_SIZE)
    max: int = Field(default=4, ge=1, le=MAX_POOL_SIZE)
    dedicated: list[DedicatedSession] = Field(default_factory=list)
    account_policy: Literal["failover", "spread"] = "failover"

    @field_validator("max")
    @classmethod
    def _max_not_below_min(cls, value: int, info: ValidationInfo) -> int:
        low = info.data.get("min")
        if low is not None and value < low:
            raise _configload.issues_error([((), f"must be >= pool.min ({low})")])
        return value

    @field_validator("dedicated")
    @classmethod
    def _dedicated_outside_pool(
        cls, sessions: list[DedicatedSession], info: ValidationInfo
    ) -> list[DedicatedSession]:
        names = [s.name for s in sessions]
        issues = _duplicates(names, lambda i: (i, "name"), "dedicated session")
        if all(key in info.data for key in ("prefix", "start_index", "max")):
            owned = set(
                _pool_names(info.data["prefix"], info.data["start_index"], info.data["max"])
            )
            issues += [
                ((i, "name"), f"{name!r} is inside the pool's own range; choose another name")
                for i, name in enumerate(names)
                if name in owned
            ]
        if issues:
            raise _configload.issues_error(issues)
        return sessions

    def names(self) -> list[str]:
        """Return the pool's own session names, in order."""
        return _pool_names(self.prefix, self.start_index, self.max)


def _pool_names(prefix: str, start: int, size: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(start, start + size)]


class TmuxConfig(_Section):
    """Which tmux server to use; a socket name means a private server (``tmux -L``)."""

    socket_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")


class DispatchConfig(_Section):
    """How tasks are claimed and delivered to sessions."""

    max_attempts: int = Field(default=3, ge=1)
    rescan_interval: Duration = Field(default=30.0, gt=0)
    quiet_period: Duration = 1.0
    #: ``poll`` lists every inbox each ``poll_interval`` instead of watching it with inotify
    #: (network file systems: inotify does not see other hosts' writes).
    watch: Literal["inotify", "poll"] = "inotify"
    poll_interval: Duration = Field(default=1.0, gt=0)
    tmp_max_age: Duration = Field(default=36 * _HOUR, gt=0)
    delivery_timeout: Duration = Field(default=15.0, gt=0)
    delivery_retries: int = Field(default=3, ge=0)
    after_restart: Literal["fail", "requeue"] = "fail"
    isolation: Isolation = "none"
    max_parallel: int | None = Field(default=None, ge=1)
    keep_worktree: bool = False

    def for_project(self, project: ProjectConfig | None) -> ProjectConfig:
        """The task defaults of one project: its own ``config.yaml`` first, then these."""
        own = project or ProjectConfig()
        return ProjectConfig(
            isolation=own.isolation or self.isolation,
            max_parallel=own.max_parallel or self.max_parallel,
            keep_worktree=self.keep_worktree if own.keep_worktree is None else own.keep_worktree,
        )


class ProjectConfig(_Section):
    """``<project>/.agent-queue/config.yaml``: one project's task defaults (all optional).

    ``max_parallel`` left unset means: one task at a time in the project's checkout, and
    as many worktree tasks as the pool has sessions.
    """

    isolation: Isolation | None = None
    max_parallel: int | None = Field(default=None, ge=1)
    keep_worktree: bool | None = None


class CompletionConfig(_Section):
    """How a running task is judged finished, stalled or stuck."""

    idle_timeout: Duration = Field(default=30 * _MINUTE, gt=0)
    recycle: bool = True
    permission_timeout: Duration = Field(default=5 * _MINUTE, gt=0)
    task_timeout: Duration | None = Field(default=None, gt=0)
    stale_after: Duration = Field(default=15 * _MINUTE, gt=0)  # flags only, never fails


class QuotaConfig(_Section):
    """How usage limits are detected and when accounts are swapped."""

    poll_interval: Duration = Field(default=5.0, gt=0)
    cooldown: Duration = 5 * _MINUTE
    confirm_polls: int = Field(default=2, ge=1)
    default_exhausted: Duration = Field(default=_HOUR, gt=0)
    timezone: str = "UTC"
    preempt_at: Percent | None = None

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, name: str) -> str:
        try:
            zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(f"unknown time zone {name!r} (e.g. UTC, Europe/Berlin)") from None
        return name


class PriceConfig(_Section):
    """A model's price in USD per million tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_read: float | None = Field(default=None, ge=0)
    cache_write: float | None = Field(default=None, ge=0)
    as_of: str | None = None


class ProviderConfig(_Section):
    """A remote AI provider tasks may be delegated to."""

    name: ProviderName
    kind: Literal["job-api", "openai-compatible", "anthropic"]
    base_url: HttpUrl
    model: str | None = None
    api_key_env: EnvName | None = None
    api_key_file: ConfigPath | None = None
    timeout: Duration = Field(default=60.0, gt=0)
    max_retries: int = Field(default=5, ge=0)
    retry_after_cap: Duration = Field(default=120.0, gt=0)
    poll_interval: Duration = Field(default=2.0, gt=0)
    prices: dict[str, PriceConfig] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name.lower() in RESERVED_PROVIDER_NAMES:
            owner = "the fleet" if name.lower() == "cluster" else "the local executor"
            raise ValueError(f"{name!r} is reserved for {owner}")
        return name

    @field_validator("api_key_file")
    @classmethod
    def _one_key_source(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None and info.data.get("api_key_env") is not None:
            raise ValueError("set api_key_env or api_key_file, not both")
        return value


class DelegationConfig(_Section):
    """Remote providers, the fallback chains between them, and the complexity map."""

    allow_by_default: bool = False
    providers: list[ProviderConfig] = Field(default_factory=list)
    fallbacks: dict[str, list[str]] = Field(default_factory=dict)
    complexity: dict[Literal["low", "medium", "high"], str] = Field(default_factory=dict)
    stale_after: Duration = Field(default=2 * _HOUR, gt=0)  # a job this old is flagged

    @field_validator("providers")
    @classmethod
    def _unique_providers(cls, providers: list[ProviderConfig]) -> list[ProviderConfig]:
        issues = _duplicates([p.name for p in providers], lambda i: (i, "name"), "provider")
        if issues:
            raise _configload.issues_error(issues)
        return providers

    @field_validator("fallbacks")
    @classmethod
    def _fallbacks_known(
        cls, fallbacks: dict[str, list[str]], info: ValidationInfo
    ) -> dict[str, list[str]]:
        known = _executor_names(info)
        if known is None:
            return fallbacks  # the providers are invalid; that is reported already
        issues: list[_configload.Issue] = []
        for source, chain in fallbacks.items():
            issues += _unknown_executor(source, (source,), known)
            for i, target in enumerate(chain):
                issues += _unknown_executor(target, (source, i), known)
                if target == source:
                    issues.append(((source, i), f"{source!r} cannot fall back to itself"))
        if issues:
            raise _configload.issues_error(issues)
        return fallbacks

    @field_validator("complexity")
    @classmethod
    def _complexity_known(cls, table: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        known = _executor_names(info)
        if known is None:
            return table
        issues = [
            i for level, name in table.items() for i in _unknown_executor(name, (level,), known)
        ]
        if issues:
            raise _configload.issues_error(issues)
        return table


def _executor_names(info: ValidationInfo) -> list[str] | None:
    providers = info.data.get("providers")
    if providers is None:
        return None
    return [p.name for p in providers] + [LOCAL_EXECUTOR]


def _unknown_executor(
    name: str, at: tuple[str | int, ...], known: list[str]
) -> list[_configload.Issue]:
    if name in known:
        return []
    return [(at, f"unknown provider {name!r} (configured: {', '.join(known)})")]


def _split_listen(text: str) -> tuple[str, int]:
    """Split ``host:port`` (``[::1]:8377`` for IPv6) into host and port."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"{text!r} is not host:port (e.g. 127.0.0.1:8377)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    number = int(port)
    if number > 65535:
        raise ValueError(f"port {number} is out of range (0-65535)")
    return host, number


class ApiConfig(_Section):
    """The local HTTP API and dashboard; it only ever listens on loopback.

    ``listen: null`` turns it off. The key ``enabled`` of older configs is still read:
    ``enabled: false`` means ``listen: null``, ``enabled: true`` changes nothing.
    """

    listen: str | None = "127.0.0.1:8377"
    token_file: ConfigPath = Path("~/.config/agentq/token")
    #: Extra names a browser may use in the ``Host`` header (besides the loopback names).
    allowed_hosts: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _empty_means_default(cls, data: Any) -> Any:
        """As for every section, except that ``listen: null`` means "off"."""
        if data is None:
            return {}
        if not isinstance(data, dict):
            return data
        data = dict(data)
        enabled = data.pop("enabled", None)
        if enabled is False:
            data["listen"] = None
        elif enabled not in (None, True):
            raise ValueError(
                "enabled (deprecated) must be true or false; write listen: null instead"
            )
        return {k: v for k, v in data.items() if v is not None or k == "listen"}

    @field_validator("listen")
    @classmethod
    def _loopback_only(cls, listen: str | None) -> str | None:
        if listen is None:
            return None
        host, _ = _split_listen(listen)
        if host not in LOOPBACK_HOSTS:
            raise ValueError(f"host must be loopback (127.0.0.1, ::1 or localhost), got {host!r}")
        return listen

    @field_validator("allowed_hosts")
    @classmethod
    def _plain_host_names(cls, hosts: list[str]) -> list[str]:
        for host in hosts:
            if not re.fullmatch(_HOST_PATTERN, host):
                raise ValueError(f"{host!r} is not a host name with an optional :port")
        return [h.lower() for h in hosts]

    @property
    def enabled(self) -> bool:
        """Whether the API listens at all."""
        return self.listen is not None

    def address(self) -> tuple[str, int]:
        """Return ``(host, port)`` to bind; port 0 lets the system pick one.

        Raises:
            ValueError: the API is turned off (``listen: null``).
        """
        if self.listen is None:
            raise ValueError("the API is turned off (api.listen is null)")
        return _split_listen(self.listen)


class ClusterTlsConfig(_Section):
    """TLS towards the Temporal frontend; a client certificate and key make it mutual TLS."""

    #: The CA that signed the server's certificate (PEM); unset: the system's roots.
    ca_file: ConfigPath | None = None
    #: This host's client certificate and key (PEM) for mTLS; both or neither.
    cert_file: ConfigPath | None = None
    key_file: ConfigPath | None = None
    #: The name to check the server's certificate against (and send as SNI), when it is
    #: not the host of ``cluster.address``.
    server_name: str | None = Field(default=None, pattern=_HOST_PATTERN)

    @field_validator("key_file")
    @classmethod
    def _cert_and_key(cls, key: Path | None, info: ValidationInfo) -> Path | None:
        if (key is None) != (info.data.get("cert_file") is None):
            raise ValueError("set cert_file and key_file together (mutual TLS), or neither")
        return key


class ClusterConfig(_Section):
    """A fleet of hosts on Temporal: this daemon submits tasks to it, or works for it.

    Absent (the default), nothing of the fleet is loaded and the daemon runs its own pool.
    """

    engine: Literal["temporal"] = "temporal"
    #: The Temporal frontend, ``host:port``.
    address: str = "127.0.0.1:7233"
    namespace: str = Field(default="default", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
    #: This host's name in footers and heartbeats (default: the machine's host name).
    host: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    #: null: plain TCP (or TLS when an API key is set); a mapping: TLS as described.
    tls: ClusterTlsConfig | None = None
    #: A file holding only an API key (Temporal Cloud); never read from the environment,
    #: which every agent pane inherits.
    api_key_file: ConfigPath | None = None
    #: A worker silent this long is taken for lost and its task is run again elsewhere.
    heartbeat_timeout: Duration = Field(default=30.0, ge=1)
    #: Task queues are ``<prefix>.<project folder name>``.
    task_queue_prefix: str = Field(default="agentq", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    #: true: tasks routed to a local agent go to the fleet instead of this daemon's pool.
    submit: bool = False
    #: The most tasks this daemon keeps on the fleet at once (the rest wait in the inbox).
    max_in_flight: int = Field(default=256, ge=1)
    #: How many hosts may start one claim of a task (a lost host's run counts).
    max_runs: int = Field(default=3, ge=1)

    @field_validator("address")
    @classmethod
    def _host_port(cls, address: str) -> str:
        host, port = _split_listen(address)
        if not host or port == 0:
            raise ValueError(f"{address!r} is not host:port (e.g. temporal.example.com:7233)")
        return address


def _unset() -> Any:
    """Default of a section: an empty mapping, validated (and so expanded) like a written one."""
    return {}


class Config(_Section):
    """The whole agentq configuration."""

    state_dir: ConfigPath = Path("~/.local/state/agentq")
    projects: ProjectsConfig = Field(default_factory=_unset)
    agent: AgentConfig = Field(default_factory=_unset)
    accounts: list[AccountConfig] = Field(default_factory=list)
    active_link: ConfigPath | None = None
    shared: SharedConfig = Field(default_factory=_unset)
    pool: PoolConfig = Field(default_factory=_unset)
    tmux: TmuxConfig = Field(default_factory=_unset)
    dispatch: DispatchConfig = Field(default_factory=_unset)
    completion: CompletionConfig = Field(default_factory=_unset)
    quota: QuotaConfig = Field(default_factory=_unset)
    delegation: DelegationConfig = Field(default_factory=_unset)
    api: ApiConfig = Field(default_factory=_unset)
    notifications: list[NotificationConfig] = Field(default_factory=list)
    janitor: JanitorConfig = Field(default_factory=_unset)
    logging: LoggingConfig = Field(default_factory=_unset)
    cluster: ClusterConfig | None = None

    @field_validator("accounts")
    @classmethod
    def _unique_accounts(cls, accounts: list[AccountConfig]) -> list[AccountConfig]:
        issues = _duplicates([a.name for a in accounts], lambda i: (i, "name"), "account name")
        issues += _duplicates([a.home for a in accounts], lambda i: (i, "home"), "account home")
        if issues:
            raise _configload.issues_error(issues)
        return accounts

    @field_validator("notifications")
    @classmethod
    def _named_targets(cls, targets: list[NotificationConfig]) -> list[NotificationConfig]:
        """A target without a name is called ``<kind>-<index>``; names are unique."""
        named = [
            t if t.name else t.model_copy(update={"name": f"{t.kind}-{i}"})
            for i, t in enumerate(targets)
        ]
        issues = _duplicates([t.name for t in named], lambda i: (i, "name"), "target name")
        if issues:
            raise _configload.issues_error(issues)
        return named

    @field_validator("active_link")
    @classmethod
    def _link_is_no_home(cls, link: Path | None, info: ValidationInfo) -> Path | None:
        homes = {a.home for a in info.data.get("accounts", [])}
        if link is not None and link in homes:
            raise ValueError("must not be an account home (it is flipped between the homes)")
        return link

    @field_validator("shared")
    @classmethod
    def _shared_root_is_no_home(cls, shared: SharedConfig, info: ValidationInfo) -> SharedConfig:
        taken = {a.home for a in info.data.get("accounts", [])} | {info.data.get("active_link")}
        if shared.root in taken:
            raise _configload.issues_error(
                [(("root",), "must not be an account home or the active link")]
            )
        return shared

    def pool_names(self) -> list[str]:
        """Return the pool's own session names (the only sessions agentq may drive)."""
        return self.pool.names()

    def dedicated_names(self) -> list[str]:
        """Return the operator's dedicated session names."""
        return [s.name for s in self.pool.dedicated]

    def provider(self, name: str) -> ProviderConfig | None:
        """Return the provider called ``name``, or None."""
        return next((p for p in self.delegation.providers if p.name == name), None)


def _duplicates(values: list[Any], at: Any, what: str) -> list[_configload.Issue]:
    """Report each repeat of a value after its first occurrence."""
    first: dict[Any, int] = {}
    issues: list[_configload.Issue] = []
    for i, value in enumerate(values):
        if value in first:
            issues.append((at(i), f"duplicate {what} {str(value)!r} (also item {first[value]})"))
        else:
            first[value] = i
    return issues
