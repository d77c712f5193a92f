"""Log lines for a terminal and for journald: one line per event, priorities, JSON, redaction."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentq.cli.logs import (
    JsonFormatter,
    TextFormatter,
    is_journal_stream,
    setup_logging,
    syslog_priority,
)
from agentq.core.secrets import register_secret


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def record(msg: str = "task done", level: int = logging.INFO, **extra: object) -> logging.LogRecord:
    rec = logging.makeLogRecord({"name": "agentq.x", "levelno": level, "msg": msg})
    rec.levelname = logging.getLevelName(level)
    rec.__dict__.update(extra)
    return rec


@pytest.mark.parametrize(
    ("level", "priority"),
    [
        (logging.CRITICAL, 2),
        (logging.ERROR, 3),
        (logging.WARNING, 4),
        (logging.INFO, 6),
        (logging.DEBUG, 7),
    ],
    ids=[
        "critical is crit",
        "error is err",
        "warning is warning",
        "info is info",
        "debug is debug",
    ],
)
def test_levels_map_to_syslog_priorities(level: int, priority: int) -> None:
    """The documented mapping, also used for the ``<N>`` prefix."""
    assert syslog_priority(level) == priority


def test_text_lines_have_a_time_and_quoted_extras() -> None:
    """Outside journald: time, level, logger, message, then key=value (quoted when needed)."""
    line = TextFormatter().format(record(task="a b", count=3, empty=""))
    assert line.split(" ", 2)[2].startswith("INFO agentq.x: task done ")
    assert line.endswith(' task="a b" count=3 empty=""')


def test_under_journald_a_text_line_has_a_priority_prefix_and_no_time() -> None:
    """journald stamps entries itself and reads ``<N>`` as the priority."""
    formatter = TextFormatter(journal=True)
    assert formatter.format(record(level=logging.WARNING)) == "<4>WARNING agentq.x: task done"
    assert formatter.format(record(level=logging.ERROR)).startswith("<3>ERROR ")
    assert formatter.format(record(level=logging.DEBUG)).startswith("<7>DEBUG ")


def test_a_traceback_and_line_breaks_stay_on_one_line() -> None:
    """journald would split a multi-line event into several entries."""
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        rec = logging.LogRecord("agentq.x", logging.ERROR, "f", 1, "failed\nbadly", None, None)
        rec.exc_info = __import__("sys").exc_info()
    line = TextFormatter(journal=True).format(rec)
    assert "\n" not in line
    assert line.startswith("<3>ERROR agentq.x: failed\\nbadly exc=")
    exc = json.loads(line.split(" exc=", 1)[1])
    assert exc.startswith("Traceback") and "ValueError: boom" in exc


def test_json_lines_are_one_object_with_level_and_priority() -> None:
    """One object per line; collectors read ``priority`` (journald keeps its default)."""
    line = JsonFormatter().format(record(level=logging.WARNING, inbox="/x"))
    assert "\n" not in line
    doc = json.loads(line)
    assert doc["level"] == "WARNING"
    assert doc["priority"] == 4
    assert doc["message"] == "task done"
    assert doc["inbox"] == "/x"
    assert "time" in doc


def test_the_journal_stream_is_recognised_by_device_and_inode(tmp_path: Path) -> None:
    """``$JOURNAL_STREAM`` must name this very stream; anything else is a terminal or file."""
    with (tmp_path / "err").open("w") as stream:
        info = os.fstat(stream.fileno())
        assert is_journal_stream(f"{info.st_dev}:{info.st_ino}", stream)
        assert not is_journal_stream(f"{info.st_dev}:{info.st_ino + 1}", stream)
        assert not is_journal_stream("", stream)
        assert not is_journal_stream("garbage", stream)
    assert not is_journal_stream(f"{info.st_dev}:{info.st_ino}", io.StringIO())


def test_setup_logging_picks_the_journal_format_and_redacts_secrets(tmp_path: Path) -> None:
    """With a matching JOURNAL_STREAM: prefixed lines without time; secrets are ``***``."""
    register_secret("sk-test-journal-secret-1234")
    path = tmp_path / "err"
    with path.open("w") as stream:
        info = os.fstat(stream.fileno())
        env = {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}
        setup_logging("INFO", "text", stream=stream, env=env)
        logging.getLogger("agentq.t").warning(
            "key %s leaked",
            "sk-test-journal-secret-1234",
            extra={"key": "sk-test-journal-secret-1234"},
        )
        logging.getLogger("agentq.t").debug("not shown")
    assert path.read_text() == "<4>WARNING agentq.t: key *** leaked key=***\n"


def test_setup_logging_json_never_prefixes(tmp_path: Path) -> None:
    """JSON mode stays one parseable object per line even under journald."""
    path = tmp_path / "err"
    with path.open("w") as stream:
        info = os.fstat(stream.fileno())
        setup_logging(
            "DEBUG", "json", stream=stream, env={"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}
        )
        logging.getLogger("agentq.t").info("hello", extra={"n": 1})
    doc = json.loads(path.read_text())
    assert doc["message"] == "hello" and doc["n"] == 1 and doc["priority"] == 6
