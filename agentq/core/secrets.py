"""API keys: loading them safely and keeping them out of every output.

Keys come from a file (mode 0600 or stricter, owned by us; relative names are looked up
in systemd's ``$CREDENTIALS_DIRECTORY``) or from an environment variable. Every key
loaded is registered, and :func:`redact` / :class:`RedactingFilter` replace registered
values with ``***`` in log records, footers, ``state.json`` and ``/status``.
Error messages name the source of a key, never its content.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Mapping
from pathlib import Path

from agentq.core.errors import ConfigError

logger = logging.getLogger(__name__)

REDACTED = "***"
# Shorter values would blank out ordinary words in every log line.
MIN_SECRET_LENGTH = 8
MAX_KEY_FILE_BYTES = 64 * 1024
CREDENTIALS_DIRECTORY_ENV = "CREDENTIALS_DIRECTORY"

_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()
_STANDARD_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def register_secret(value: str) -> None:
    """Remember ``value`` so that :func:`redact` and :class:`RedactingFilter` hide it."""
    global _secrets
    value = value.strip()
    if len(value) < MIN_SECRET_LENGTH:
        return
    with _lock:
        _secrets = _secrets | {value}


def redact(text: str) -> str:
    """Return ``text`` with every registered secret replaced by ``***``."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def has_secret(text: str) -> bool:
    """True when ``text`` contains a registered secret."""
    return any(secret in text for secret in _secrets)


class RedactingFilter(logging.Filter):
    """A logging filter that replaces registered secrets with ``***``.

    Attach it to every handler (filters on a logger do not apply to its children).
    It rewrites the formatted message, the exception text, the stack text and string
    ``extra`` fields; records without a secret pass unchanged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Scrub ``record`` in place; never drops a record."""
        if not _secrets:
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            # A broken format string is the logging module's to report, not ours.
            return True
        if has_secret(message):
            record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            if has_secret(text):
                record.exc_text = redact(text)
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for name, value in list(vars(record).items()):
            if name not in _STANDARD_RECORD_FIELDS and isinstance(value, str):
                setattr(record, name, redact(value))
        return True


def resolve_key(
    api_key_env: str | None,
    api_key_file: Path | str | None,
    env: Mapping[str, str],
) -> str | None:
    """Load an API key from its file (preferred) or environment variable, and register it.

    Returns None when neither source is configured.

    Raises:
        ConfigError: a configured source is missing, empty, unsafe or not a usable key.
    """
    if api_key_file is not None:
        path = Path(api_key_file)
        credentials = env.get(CREDENTIALS_DIRECTORY_ENV)
        if not path.is_absolute() and credentials:
            path = Path(credentials) / path
        key = read_key_file(path)
        source = f"API key file {path}"
    elif api_key_env:
        key = env.get(api_key_env, "").strip()
        source = f"environment variable {api_key_env}"
        if not key:
            raise ConfigError([f"{source} is not set or empty"])
    else:
        return None
    _check_key_text(key, source)
    register_secret(key)
    return key


def read_key_file(path: Path, what: str = "API key file") -> str:
    """Read a key file that is a regular file, mode 0600 or stricter, owned by us.

    ``what`` names the file in error messages (an API key file, a signing secret).
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise ConfigError([f"{what} {path} does not exist"]) from None
    except OSError as exc:
        raise ConfigError([f"{what} {path} cannot be opened: {exc.strerror}"]) from None
    try:
        _check_key_file(os.fstat(fd), path, what)
        data = _read_capped(fd)
    finally:
        os.close(fd)
    if len(data) > MAX_KEY_FILE_BYTES:
        raise ConfigError([f"{what} {path} is larger than {MAX_KEY_FILE_BYTES} bytes"])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError([f"{what} {path} is not UTF-8 text"]) from None
    key = text.strip()
    if not key:
        raise ConfigError([f"{what} {path} is empty"])
    return key


def _check_key_file(info: os.stat_result, path: Path, what: str) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError([f"{what} {path} is not a regular file"])
    if info.st_uid != os.geteuid():
        raise ConfigError(
            [f"{what} {path} is owned by uid {info.st_uid}, not by us (uid {os.geteuid()})"]
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & ~0o600:
        raise ConfigError(
            [f"{what} {path} has mode {mode:04o}; it must be 0600 or stricter (chmod 600 {path})"]
        )


def _read_capped(fd: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size <= MAX_KEY_FILE_BYTES:
        chunk = os.read(fd, MAX_KEY_FILE_BYTES + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _check_key_text(key: str, source: str) -> None:
    # A key goes into an HTTP header: one printable ASCII token, no spaces or newlines.
    if not (key.isascii() and key.isprintable()) or any(ch.isspace() for ch in key):
        raise ConfigError(
            [f"{source} does not hold a single key (spaces, line breaks or non-ASCII characters)"]
        )
