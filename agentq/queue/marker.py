"""The ``inbox/<name>.md.delegated`` marker: the task text with a ``delegation:`` block.

The marker holds everything needed to find a remote job again after a restart even when
the control record is gone: provider, job id, submission time and idempotency key, as a
``delegation:`` mapping in the task's YAML frontmatter. The rest of the text stays
byte-identical; a task without frontmatter gets one. Pure: strings in, strings out.

Part of the queue protocol (ARCHITECTURE.md §2): both executors that hand tasks away use
it, the delegation manager (a provider's job id) and the fleet (a workflow id, provider
``cluster``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from agentq.core.errors import TaskFileError
from agentq.queue import taskfile

logger = logging.getLogger(__name__)

MARKER_KEY = "delegation"
KEY_PREFIX = "agentq-"
# The frontmatter delimiter as taskfile (python-frontmatter) recognises it.
_BOUNDARY = re.compile(r"^-{3,}[ \t\r]*$", re.MULTILINE)
_TOP_LEVEL_KEY = re.compile(r"^delegation[ \t]*:")


def idempotency_key(claim_id: str) -> str:
    """The idempotency key of one claim of one task."""
    return f"{KEY_PREFIX}{claim_id}"


def claim_id_of(key: str) -> str:
    """The claim id an idempotency key embeds ('' for a key agentq did not make)."""
    return key.removeprefix(KEY_PREFIX) if key.startswith(KEY_PREFIX) else ""


@dataclass(frozen=True)
class DelegationInfo:
    """Where a delegated task went: enough to poll it again after a restart."""

    provider: str
    job_id: str
    submitted_at: str
    idempotency_key: str

    def to_dict(self) -> dict[str, str]:
        """The ``delegation:`` mapping, in a fixed key order."""
        return {
            "provider": self.provider,
            "job_id": self.job_id,
            "submitted_at": self.submitted_at,
            "idempotency_key": self.idempotency_key,
        }


def read_info(extra: Mapping[str, Any] | None) -> DelegationInfo | None:
    """The ``delegation:`` block from parsed frontmatter extras, or None if absent/unusable."""
    block = (extra or {}).get(MARKER_KEY)
    if not isinstance(block, Mapping):
        return None
    fields = [block.get(k) for k in ("provider", "job_id", "submitted_at", "idempotency_key")]
    if not all(isinstance(v, str) and v for v in fields):
        return None
    provider, job_id, submitted_at, key = (str(v) for v in fields)
    return DelegationInfo(provider, job_id, submitted_at, key)


def with_delegation(text: str, info: DelegationInfo) -> str:
    """``text`` with the ``delegation:`` block set in its frontmatter (replacing an old one).

    Raises:
        ValueError: the text cannot carry the block (should not happen for a parsed task).
    """
    edited = _insert(text, info)
    if _carries(edited, text, info):
        return edited
    # A flow-style or otherwise unusual frontmatter: rebuild it from its parsed data.
    rebuilt = _rebuild(text, info)
    if _carries(rebuilt, text, info):
        return rebuilt
    raise ValueError("cannot add the delegation block to this task's frontmatter")


def _block(info: DelegationInfo, newline: str) -> str:
    dumped = yaml.safe_dump(
        {MARKER_KEY: info.to_dict()}, sort_keys=False, default_flow_style=False, width=1 << 16
    )
    return dumped.replace("\n", newline)


def _insert(text: str, info: DelegationInfo) -> str:
    opening = _BOUNDARY.match(text)
    closing = _BOUNDARY.search(text, opening.end()) if opening else None
    if opening is None or closing is None:
        return _block_document(info) + text
    head = text[: opening.end()]
    body = text[opening.end() : closing.start()]
    newline = "\r\n" if "\r\n" in body or head.endswith("\r") else "\n"
    return head + _without_block(body) + _block(info, newline) + text[closing.start() :]


def _block_document(info: DelegationInfo) -> str:
    return "---\n" + _block(info, "\n") + "---\n"


def _without_block(body: str) -> str:
    """The frontmatter lines without a top-level ``delegation:`` key and its indented lines."""
    kept: list[str] = []
    skipping = False
    for line in body.splitlines(keepends=True):
        if _TOP_LEVEL_KEY.match(line):
            skipping = True
            continue
        if skipping and (not line.strip() or line[:1] in (" ", "\t")):
            continue
        skipping = False
        kept.append(line)
    return "".join(kept)


def _rebuild(text: str, info: DelegationInfo) -> str:
    opening = _BOUNDARY.match(text)
    closing = _BOUNDARY.search(text, opening.end()) if opening else None
    if opening is None or closing is None:
        return _block_document(info) + text
    data = yaml.safe_load(text[opening.end() : closing.start()]) or {}
    if not isinstance(data, dict):
        raise ValueError("the frontmatter is not a mapping")
    data[MARKER_KEY] = info.to_dict()
    front = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)
    rest = text[closing.end() :]
    return "---\n" + front + "---" + rest


def _carries(edited: str, original: str, info: DelegationInfo) -> bool:
    """True when ``edited`` parses, holds ``info`` and keeps the original body."""
    try:
        before = taskfile.parse_task(original.encode("utf-8", "surrogatepass"), "x.md")
        after = taskfile.parse_task(edited.encode("utf-8", "surrogatepass"), "x.md")
    except (TaskFileError, ValueError):
        return False
    return read_info(after.meta.model_extra) == info and after.body == before.body
