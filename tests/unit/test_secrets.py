"""API key loading (env, 0600 files) and redaction of registered secrets."""

from __future__ import annotations

import logging
import os
import sys
import uuid
from pathlib import Path

import pytest

from agentq.core.errors import ConfigError
from agentq.core.secrets import (
    RedactingFilter,
    has_secret,
    read_key_file,
    redact,
    register_secret,
    resolve_key,
)


def _canary() -> str:
    return f"sk-CANARY-{uuid.uuid4()}"


def _key_file(folder: Path, text: str, mode: int = 0o600, name: str = "key") -> Path:
    path = folder / name
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_key_from_environment() -> None:
    """The named environment variable supplies the key, stripped."""
    assert resolve_key("MY_KEY", None, {"MY_KEY": "  sk-from-env-123\n"}) == "sk-from-env-123"


def test_no_source_means_no_key() -> None:
    """Neither an env name nor a file: no key, no error."""
    assert resolve_key(None, None, {"MY_KEY": "x"}) is None


def test_unset_environment_variable_is_an_error() -> None:
    """A configured but unset variable is named in the error."""
    with pytest.raises(ConfigError, match="environment variable MY_KEY is not set or empty"):
        resolve_key("MY_KEY", None, {})


def test_key_file_0600_is_read_and_stripped(tmp_path: Path) -> None:
    """A 0600 (or 0400) file owned by us gives its content without surrounding whitespace."""
    assert resolve_key(None, _key_file(tmp_path, "\n sk-file-key-1 \n"), {}) == "sk-file-key-1"
    assert read_key_file(_key_file(tmp_path, "sk-file-key-2", 0o400, "ro")) == "sk-file-key-2"


def test_key_file_wins_over_environment(tmp_path: Path) -> None:
    """The file is preferred: environment variables leak into child processes."""
    path = _key_file(tmp_path, "sk-file-key-1")
    assert resolve_key("MY_KEY", path, {"MY_KEY": "sk-env-key-22"}) == "sk-file-key-1"


def test_relative_key_file_uses_credentials_directory(tmp_path: Path) -> None:
    """A relative file name is looked up in systemd's $CREDENTIALS_DIRECTORY."""
    _key_file(tmp_path, "sk-credential-1", name="openai")
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    assert resolve_key(None, Path("openai"), env) == "sk-credential-1"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o700], ids=oct)
def test_loose_key_file_is_refused_without_its_content(tmp_path: Path, mode: int) -> None:
    """A file readable by others (or executable) is refused; the error names it, not its key."""
    canary = _canary()
    path = _key_file(tmp_path, canary, mode)
    with pytest.raises(ConfigError) as caught:
        resolve_key(None, path, {})
    message = str(caught.value)
    assert str(path) in message and f"{mode:04o}" in message and "chmod 600" in message
    assert canary not in message
    assert not has_secret(canary)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown needs root")
def test_key_file_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    """A key file owned by another user is refused."""
    path = _key_file(tmp_path, _canary())
    os.chown(path, 12345, 12345)
    with pytest.raises(ConfigError, match="owned by uid 12345"):
        read_key_file(path)


def test_unusable_key_files(tmp_path: Path) -> None:
    """Missing, empty, directory, FIFO, oversized, binary and multi-line files are refused."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    folder = tmp_path / "folder"
    folder.mkdir(mode=0o700)
    big = _key_file(tmp_path, "k" * 70_000, name="big")
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe")
    binary.chmod(0o600)
    cases = {
        tmp_path / "missing": "does not exist",
        _key_file(tmp_path, " \n", name="empty"): "is empty",
        folder: "not a regular file",
        fifo: "not a regular file",
        big: "larger than",
        binary: "not UTF-8",
    }
    for path, reason in cases.items():
        with pytest.raises(ConfigError, match=reason):
            resolve_key(None, path, {})
    with pytest.raises(ConfigError, match="does not hold a single key"):
        resolve_key(None, _key_file(tmp_path, "sk-one-key\nsk-two-key", name="two"), {})


def test_resolved_keys_are_registered(tmp_path: Path) -> None:
    """A key that was loaded is redacted from then on."""
    canary = _canary()
    resolve_key(None, _key_file(tmp_path, canary), {})
    assert redact(f"Bearer {canary}!") == "Bearer ***!"


def test_short_values_are_not_registered() -> None:
    """Values under 8 characters would blank ordinary words, so they are not registered."""
    register_secret("ollama")
    assert redact("ollama is running") == "ollama is running"


def test_longest_secret_is_redacted_first() -> None:
    """A secret that contains another is replaced whole."""
    short, long = "sk-nested-0001", "sk-nested-0001-extended"
    register_secret(short)
    register_secret(long)
    assert redact(f"{long} {short}") == "*** ***"


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("t", logging.ERROR, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return record


def test_filter_redacts_messages_args_and_extras() -> None:
    """Secrets in the message, its arguments and string extras become ***."""
    canary = _canary()
    register_secret(canary)
    record = _record("calling with %s and %d", canary, 3, provider=f"p-{canary}")
    assert RedactingFilter().filter(record)
    assert record.getMessage() == "calling with *** and 3"
    assert record.__dict__["provider"] == "p-***"


def test_filter_leaves_clean_records_alone() -> None:
    """A record without a secret keeps its msg and args for structured handlers."""
    register_secret(_canary())
    record = _record("count %d", 5)
    RedactingFilter().filter(record)
    assert (record.msg, record.args) == ("count %d", (5,))


def test_filter_redacts_exception_text(caplog: pytest.LogCaptureFixture) -> None:
    """A traceback whose exception message holds a secret is redacted in the log output."""
    canary = _canary()
    register_secret(canary)
    caplog.handler.addFilter(RedactingFilter())
    logger = logging.getLogger("agentq.test_secrets")
    try:
        raise ValueError(f"bad key {canary}")
    except ValueError:
        logger.exception("request failed for %s", canary)
    assert sys.exc_info() == (None, None, None)
    assert canary not in caplog.text
    assert "bad key ***" in caplog.text and "request failed for ***" in caplog.text
