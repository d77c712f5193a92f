"""The smaller sections of ``config.yaml`` and the base every section model shares.

Split from :mod:`agentq.config.models`, which re-exports each of them: the section base
(unknown keys are errors, an empty key takes its default), ``notifications:`` with the
events a target may ask for, ``janitor:`` and ``logging:``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from agentq.config.types import ConfigPath, Duration, TargetName, private_file_text

_DAY = 86400.0
_HOUR = 3600.0

NotificationEvent = Literal[
    "swap",
    "partial_swap",
    "accounts_exhausted",
    "accounts_available",
    "task_failed",
    "task_stale",
    "daemon_degraded",
    "daemon_started",
]
NOTIFICATION_EVENTS: tuple[NotificationEvent, ...] = get_args(NotificationEvent)
#: HMAC keys shorter than this are refused (``openssl rand -hex 32`` makes a good one).
MIN_SIGNING_SECRET = 16


class Section(BaseModel):
    """The base of every section: unknown keys are errors, models are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_means_default(cls, data: Any) -> Any:
        """A section or key left empty in YAML (``pool:``) takes its default."""
        if data is None:
            return {}
        if isinstance(data, dict):
            optional = {name for name, field in cls.model_fields.items() if not field.is_required()}
            return {k: v for k, v in data.items() if not (v is None and k in optional)}
        return data


class NotificationConfig(Section):
    """One notification target: where messages go, which events it wants, how often at most.

    ``kind: apprise`` takes any Apprise URL; ``ntfy`` and ``slack`` are shorthands that are
    turned into Apprise URLs; ``webhook`` is a signed JSON POST. Problems never echo the URL:
    it often carries a token.
    """

    kind: Literal["apprise", "webhook", "ntfy", "slack"]
    url: str = Field(repr=False)
    name: TargetName | None = None
    events: list[NotificationEvent] = Field(default_factory=lambda: list(NOTIFICATION_EVENTS))
    min_interval: Duration = Field(default=60.0, ge=0)
    timeout: Duration = Field(default=10.0, gt=0)
    secret_file: ConfigPath | None = None

    @field_validator("url")
    @classmethod
    def _url_fits_kind(cls, url: str, info: ValidationInfo) -> str:
        scheme, sep, rest = url.partition("://")
        if info.data.get("kind") == "apprise":
            if not (sep and rest and scheme.replace("+", "").isalnum()):
                raise ValueError(
                    "must be an Apprise URL (scheme://..., e.g. ntfys://ntfy.sh/topic)"
                )
        elif scheme.lower() not in ("http", "https") or not rest or rest.startswith("/"):
            raise ValueError("must be an http:// or https:// URL")
        return url

    @field_validator("secret_file")
    @classmethod
    def _private_secret(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        if path is None:
            return None
        if info.data.get("kind") != "webhook":
            raise ValueError("only a webhook target signs its messages")
        secret = private_file_text(path, "secret file")
        if len(secret) < MIN_SIGNING_SECRET:
            raise ValueError(
                f"secret file {path} holds fewer than {MIN_SIGNING_SECRET} characters "
                "(e.g. openssl rand -hex 32)"
            )
        return path


def _forever(value: object) -> object:
    """``off`` (YAML reads it as false) and ``never`` mean what ``null`` means: no age limit."""
    if value is False or (isinstance(value, str) and value.strip().lower() in ("off", "never")):
        return None
    return value


class JanitorConfig(Section):
    """How long finished task files stay in ``done/`` and ``failed/``, and what happens then.

    Older files go into monthly ``.tar.gz`` archives under ``.agent-queue/archive/``
    (``archive: false`` deletes them instead); the daemon makes a pass every ``interval``.
    A task worktree kept after its task (``.agent-queue/worktrees/<stem>``) is removed once
    it is ``keep_worktrees`` old (its branch stays); ``null`` keeps them forever.
    """

    keep_done: Duration = Field(default=30 * _DAY, gt=0)
    keep_failed: Duration = Field(default=90 * _DAY, gt=0)
    keep_worktrees: Annotated[Duration | None, BeforeValidator(_forever)] = Field(
        default=7 * _DAY, gt=0
    )
    archive: bool = True
    interval: Duration = Field(default=_HOUR, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _empty_means_default(cls, data: Any) -> Any:
        """As for every section, except that ``keep_worktrees: null`` means "forever"."""
        if data is None:
            return {}
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None or k == "keep_worktrees"}
        return data


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


class LoggingConfig(Section):
    """Log level and line format (``json`` suits journald collectors)."""

    level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], BeforeValidator(_upper)] = "INFO"
    format: Literal["text", "json"] = "text"
