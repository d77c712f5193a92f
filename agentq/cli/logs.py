"""Log output that suits a terminal and journald: one line per event, text or JSON.

Text: ``TIME LEVEL LOGGER: message key=value …``. When stderr is journald's stream
(``$JOURNAL_STREAM`` names stderr's ``device:inode``, as systemd sets it for
``StandardError=journal``), the time is left out (the journal stamps every entry)
and each line starts with the sd-daemon(3) priority prefix ``<N>``, which journald
strips and stores as ``PRIORITY=``.

JSON: one object per line, never prefixed: ``time``, ``level``, ``priority`` (the
syslog number below), ``logger``, ``message``, the ``extra`` fields, and ``exc``
for a traceback. journald stores such lines at its default priority; collectors
read the level from ``priority``.

Levels → syslog priorities: CRITICAL 2 (crit), ERROR 3 (err), WARNING 4 (warning),
INFO 6 (info), DEBUG 7 (debug).

Every line goes through :class:`~agentq.core.secrets.RedactingFilter` first. Only
the CLI configures handlers; every other module only logs.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any

from agentq.core.secrets import RedactingFilter

#: The attributes every LogRecord has; anything else came in through ``extra=``.
_STD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
#: Characters that make a text value ambiguous unless it is quoted.
_QUOTE_IF = frozenset(' "=\\')


def syslog_priority(levelno: int) -> int:
    """The syslog priority (0 emerg … 7 debug) of a logging level."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


def is_journal_stream(journal_stream: str | None, stream: IO[str]) -> bool:
    """Whether ``stream`` is the journald stream ``$JOURNAL_STREAM`` (``dev:inode``) names."""
    if not journal_stream:
        return False
    dev, _, ino = journal_stream.partition(":")
    try:
        info = os.fstat(stream.fileno())
        return (info.st_dev, info.st_ino) == (int(dev), int(ino))
    except (OSError, ValueError, AttributeError):
        # Not a real file (a test's StringIO), or a malformed variable: not the journal.
        return False


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STD_ATTRS}


def _text_value(value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    if not text or any(ch in _QUOTE_IF or not ch.isprintable() for ch in text):
        return json.dumps(text, ensure_ascii=False)
    return text


def _one_line(text: str) -> str:
    """Escape line breaks so that journald keeps the event as one entry."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


class TextFormatter(logging.Formatter):
    """``[<N>]`` ``[TIME ]LEVEL LOGGER: message key=value …``, always one line."""

    def __init__(self, journal: bool = False) -> None:
        fmt = "%(levelname)s %(name)s: %(message)s"
        super().__init__(fmt if journal else "%(asctime)s " + fmt)
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line; a traceback goes into a quoted ``exc=`` field."""
        record.message = _one_line(record.getMessage())
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        fields = [f"{k}={_text_value(v)}" for k, v in _extras(record).items()]
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            fields.append(f"exc={json.dumps(record.exc_text, ensure_ascii=False)}")
        if record.stack_info:
            fields.append(f"stack={json.dumps(record.stack_info, ensure_ascii=False)}")
        if fields:
            line += " " + " ".join(fields)
        if self.journal:
            line = f"<{syslog_priority(record.levelno)}>{line}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module docstring for the fields)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one JSON object."""
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "priority": syslog_priority(record.levelno),
            "logger": record.name,
            "message": record.getMessage(),
        }
        doc.update(_extras(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            doc["exc"] = record.exc_text
        if record.stack_info:
            doc["stack"] = record.stack_info
        return json.dumps(doc, default=str)


def setup_logging(
    level: str = "INFO",
    fmt: str = "text",
    stream: IO[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Configure the root logger: one handler on ``stream`` (stderr), redacting secrets."""
    stream = stream or sys.stderr
    env = os.environ if env is None else env
    handler = logging.StreamHandler(stream)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        journal = is_journal_stream(env.get("JOURNAL_STREAM"), stream)
        handler.setFormatter(TextFormatter(journal=journal))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
