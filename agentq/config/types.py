"""The value types of ``config.yaml``: durations, expanded paths, names and URLs.

Private to ``agentq.config``, which re-exports ``Duration`` and ``expand_path``. Pure: paths
expand from the environment mapping in the validation context, never from ``os.environ``.
"""

from __future__ import annotations

import math
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, ValidationInfo

from agentq.core.durations import parse_duration


def _seconds(value: object) -> float:
    """Parse a duration, refusing types parse_duration would choke on."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("expected a duration like 30s, 5m or 1h30m")
    seconds = parse_duration(value)
    if not math.isfinite(seconds):
        raise ValueError("a duration must be finite")
    return seconds


Duration = Annotated[float, BeforeValidator(_seconds)]
"""Seconds, written in the file as ``30s``, ``5m``, ``1h30m`` or a bare number."""


def _fraction(value: object) -> float:
    """A share written ``90%`` (or a number between 0 and 1), as a fraction."""
    if isinstance(value, str) and value.strip().endswith("%"):
        number = value.strip()[:-1].strip()
        try:
            value = float(number) / 100
        except ValueError:
            raise ValueError("expected a percentage like 90%") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("expected a percentage like 90% (or a fraction like 0.9)")
    if not 0 < value <= 1:
        raise ValueError("must be above 0% and at most 100%")
    return float(value)


Percent = Annotated[float, BeforeValidator(_fraction)]
"""A share, written ``90%`` or ``0.9``; a fraction in (0, 1]."""

_VAR = re.compile(r"\$(?:\{(?P<braced>[^}]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NO_ENV_HINT = " (build the config with load_config or config_from_dict)"


def expand_path(text: str, env: Mapping[str, str] | None, base_dir: Path | None) -> Path:
    """Expand ``~`` and ``$VAR``/``${VAR}`` from ``env`` and anchor a relative path at ``base_dir``.

    Raises:
        ValueError: an undefined variable (named), ``~user``, or no environment to expand from.
    """
    if not text:
        raise ValueError("must not be empty")
    if text.startswith("~"):
        head, sep, rest = text.partition("/")
        if head != "~":
            raise ValueError(f"{head} is not supported; write the full path")
        if env is None:
            raise ValueError(f"cannot expand ~ without an environment{_NO_ENV_HINT}")
        home = env.get("HOME", "")
        if not home:
            raise ValueError("cannot expand ~: HOME is not set")
        text = home + sep + _expand_vars(rest, env)
    else:
        text = _expand_vars(text, env)
    path = Path(text)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path


def _expand_vars(text: str, env: Mapping[str, str] | None) -> str:
    def substitute(match: re.Match[str]) -> str:
        name = match.group("braced") if match.group("braced") is not None else match.group("bare")
        if not _ENV_NAME.fullmatch(name):
            raise ValueError(f"${{{name}}} is not a valid variable reference")
        if env is None:
            raise ValueError(f"cannot expand ${name} without an environment{_NO_ENV_HINT}")
        if name not in env:
            raise ValueError(f"environment variable {name} is not set")
        return env[name]

    return _VAR.sub(substitute, text)


#: A secret file larger than this is no secret file.
MAX_SECRET_FILE_BYTES = 64 * 1024


def private_file_text(path: Path, what: str) -> str:
    """The stripped text of a regular file only its owner may read or write.

    Raises:
        ValueError: missing, not a regular file, open to group or others, too big, not UTF-8.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ValueError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise ValueError(f"{what} {path} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{what} {path} is not a regular file")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise ValueError(
            f"{what} {path} is open to group or others (mode {mode:04o}); "
            f"it must be 0600 or stricter (chmod 600 {path})"
        )
    if info.st_size > MAX_SECRET_FILE_BYTES:
        raise ValueError(f"{what} {path} is larger than {MAX_SECRET_FILE_BYTES} bytes")
    try:
        return path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError(f"{what} {path} is not UTF-8 text") from None
    except OSError as exc:
        raise ValueError(f"{what} {path} cannot be read: {exc.strerror}") from None


def _config_path(value: object, info: ValidationInfo) -> Path:
    if not isinstance(value, str | Path):
        raise ValueError("must be a path (a string)")
    context = info.context if isinstance(info.context, Mapping) else {}
    return expand_path(str(value), context.get("env"), context.get("base_dir"))


ConfigPath = Annotated[Path, BeforeValidator(_config_path)]


def _matching(pattern: str, what: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return AfterValidator(check)


def _http_url(value: str) -> str:
    scheme, _, rest = value.partition("://")
    if scheme.lower() not in ("http", "https") or not rest or rest.startswith("/"):
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
    return value


def scalar_as_text(value: object) -> object:
    """Turn a YAML number into text; other values pass unchanged."""
    # `DEBUG: 1` in YAML is an int; an environment value is text either way.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


AccountName = Annotated[
    str,
    _matching(
        r"[a-z0-9][a-z0-9_-]{0,31}",
        "a valid account name (1-32 of a-z, 0-9, _ and -, starting with a letter or digit)",
    ),
]
SessionName = Annotated[
    str, _matching(r"[A-Za-z0-9_-]{1,64}", "a valid session name (1-64 of A-Z, a-z, 0-9, _ and -)")
]
ProviderName = Annotated[
    str,
    _matching(
        r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}",
        "a valid provider name (letters, digits, _ . and -, starting with a letter or digit)",
    ),
]
TargetName = Annotated[
    str,
    _matching(
        r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}",
        "a valid target name (letters, digits, _ . and -, starting with a letter or digit)",
    ),
]
EnvName = Annotated[str, _matching(_ENV_NAME.pattern, "a valid environment variable name")]
LinkName = Annotated[
    str, _matching(r"(?!\.{1,2}$)[^/\x00]{1,255}", "a plain file name (no /, not . or ..)")
]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
