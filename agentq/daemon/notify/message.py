"""What a notification says: its title and text, the webhook's JSON body and its signature.

Pure. The webhook body is one JSON object::

    {"event": "task_failed", "count": 30,
     "items": [{"project": "web", "task": "fix-login.md", "reason": "...", "time": "..."}],
     "text": "30 tasks failed: web/fix-login.md: ...; ... and 20 more",
     "host": "build-1", "time": "2026-01-01T12:00:00+00:00"}

``items`` lists at most :data:`~agentq.daemon.notify.rules.MAX_ITEMS` of the ``count`` events.
With a secret, ``X-Agentq-Signature: sha256=<hex>`` is the HMAC-SHA256 of the exact body
bytes under the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime

from agentq.config.models import NotificationEvent
from agentq.daemon.notify.rules import Item, Message

SIGNATURE_HEADER = "X-Agentq-Signature"
#: A listed item is cut to this many characters in the text (the JSON items stay whole).
MAX_ITEM_TEXT = 300

#: What happened, once and many times.
_WHAT: dict[NotificationEvent, tuple[str, str]] = {
    "swap": ("account swap", "account swaps"),
    "partial_swap": ("partial account swap, dispatching stopped", "partial account swaps"),
    "accounts_exhausted": ("every account is exhausted, the queue holds", "holds"),
    "accounts_available": ("accounts available again", "times accounts became available"),
    "task_failed": ("task failed", "tasks failed"),
    "task_stale": ("task stale", "tasks stale"),
    "daemon_degraded": ("daemon degraded", "degradations"),
    "daemon_started": ("daemon started", "daemon starts"),
}


def summary(message: Message) -> str:
    """``task failed`` or ``30 tasks failed``."""
    one, many = _WHAT[message.event]
    return one if message.count == 1 else f"{message.count} {many}"


def title(message: Message) -> str:
    """A short title for chat and push services."""
    return f"agentq: {summary(message)}"


def lines(message: Message) -> list[str]:
    """One line per listed item, then what was not listed."""
    out = [_describe(item) for item in message.items]
    unlisted = message.count - len(message.items)
    if unlisted > 0:
        more = f"and {unlisted} more"
        if message.overflowed:
            more += f" ({message.overflowed} not listed: the notification buffer was full)"
        out.append(more)
    return out


def text(message: Message) -> str:
    """The whole message on one line."""
    details = "; ".join(lines(message))
    return f"{summary(message)}: {details}" if details else summary(message)


def webhook_body(message: Message, host: str, at: datetime) -> bytes:
    """The JSON document a webhook target receives (UTF-8 bytes, signed as they are)."""
    doc = {
        "event": message.event,
        "count": message.count,
        "items": [dict(item) for item in message.items],
        "text": text(message),
        "host": host,
        "time": at.isoformat(),
    }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def signature(body: bytes, secret: str) -> str:
    """The ``X-Agentq-Signature`` value: ``sha256=`` and the hex HMAC-SHA256 of ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _describe(item: Item) -> str:
    if "message" in item:
        line = str(item["message"])
    elif "from" in item and "to" in item:
        trigger = f" ({item['trigger']})" if item.get("trigger") else ""
        line = f"{item['from']} → {item['to']}{trigger}"
        if item.get("error"):
            line += f": {item['error']}"
    elif "until" in item:
        line = f"until {item['until']}"
    elif "task" in item:
        where = f"{item.get('project', '')}/{item['task']}".lstrip("/")
        reason = item.get("reason")
        line = f"{where}: {reason}" if reason else where
    else:
        line = ", ".join(f"{k}={v}" for k, v in item.items() if k != "time") or "(no details)"
    line = " ".join(line.split())
    return line if len(line) <= MAX_ITEM_TEXT else line[: MAX_ITEM_TEXT - 1] + "…"
