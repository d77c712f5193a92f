"""The per-task control record: attempts, the current claim, its delivery phase, its session.

One record per task in ``.agent-queue/.agentq/<name>.json``, owned by the queue: the
project writes it (:meth:`agentq.queue.protocol.Project.save_record`), executors report
progress through :meth:`agentq.queue.protocol.Claim.progress` or their own typed field
(the delegation intent), never through a free dictionary.

Version 2 stores every field by name. Version-1 files (a free ``data`` object holding
``session``, ``session_id``, ``unavailable`` and ``delegation``) are still read; they are
written back as version 2 on the next save.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from agentq.queue.isolation import Worktree

RECORD_VERSION = 2
#: Versions :meth:`ControlRecord.from_json` reads.
READABLE_VERSIONS = frozenset({1, 2})


class Keep(Enum):
    """The type of :data:`KEEP`: leave a record field as it is."""

    KEEP = "keep"


#: Passed for a field that keeps its value (``Claim.progress``).
KEEP = Keep.KEEP


class Phase(Enum):
    """Where a claimed task is on its way to an agent.

    ``claimed``: nothing was typed yet (recovery requeues it); ``delivering``: the prompt
    is about to be or was typed into ``session``; ``running``: the agent took it.
    ``released`` and ``requeued``: the claim went back to the inbox.
    """

    CLAIMED = "claimed"
    DELIVERING = "delivering"
    RUNNING = "running"
    RELEASED = "released"
    REQUEUED = "requeued"


class DelegationPhase(Enum):
    """How far a delegation went: the intent is persisted, or the provider took the job."""

    INTENT = "intent"
    SUBMITTED = "submitted"


@dataclass
class DelegationIntent:
    """A delegation to a remote provider, persisted before anything leaves the machine.

    ``answer`` is a synchronous provider's answer as the delegation layer encoded it
    (recorded so a restart does not ask again); the queue keeps it as it is.
    """

    provider: str
    key: str
    phase: DelegationPhase = DelegationPhase.INTENT
    intent_at: str = ""
    job_id: str | None = None
    submitted_at: str = ""
    answer: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The intent as JSON-ready data."""
        return {
            "provider": self.provider,
            "key": self.key,
            "phase": self.phase.value,
            "intent_at": self.intent_at,
            "job_id": self.job_id,
            "submitted_at": self.submitted_at,
            "answer": dict(self.answer) if self.answer is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DelegationIntent:
        """Parse an intent; raises ``ValueError``/``KeyError``/``TypeError`` when malformed."""
        answer = data.get("answer")
        job_id = data.get("job_id")
        return cls(
            provider=str(data["provider"]),
            key=str(data["key"]),
            phase=DelegationPhase(data.get("phase") or DelegationPhase.INTENT.value),
            intent_at=str(data.get("intent_at") or ""),
            job_id=str(job_id) if job_id else None,
            submitted_at=str(data.get("submitted_at") or ""),
            answer=dict(answer) if isinstance(answer, dict) else None,
        )


@dataclass
class ControlRecord:
    """The persisted per-task record.

    Attributes:
        attempts: claims counted so far (persisted before any side effect).
        claim_id: the current claim's id ('' once released).
        phase: the delivery phase of the current claim.
        session: the pool session the prompt is (being) typed into.
        session_id: the agent's own session id of that task (what ``--resume`` takes).
        unavailable: providers that failed terminally for this task; kept across claims.
        delegation: the current claim's delegation, when it went to a provider.
        worktree: the task's git worktree, recorded before it is made (an intent) and kept
            until the task has ended (see :mod:`agentq.queue.isolation`).
    """

    name: str
    ino: int
    attempts: int = 0
    claim_id: str = ""
    claimed_at: str = ""
    executor: str = ""
    phase: Phase = Phase.CLAIMED
    session: str | None = None
    session_id: str | None = None
    unavailable: tuple[str, ...] = ()
    delegation: DelegationIntent | None = field(default=None)
    worktree: Worktree | None = None

    def begin(self, claim_id: str, claimed_at: str, executor: str) -> None:
        """Start a new attempt: what the previous claim learnt goes, except ``unavailable``."""
        self.attempts += 1
        self.claim_id = claim_id
        self.claimed_at = claimed_at
        self.executor = executor
        self.phase = Phase.CLAIMED
        self.session = self.session_id = None
        self.delegation = None

    def to_json(self) -> bytes:
        """Serialise as a version-2 record."""
        body = {
            "version": RECORD_VERSION,
            "name": self.name,
            "ino": self.ino,
            "attempts": self.attempts,
            "claim_id": self.claim_id,
            "claimed_at": self.claimed_at,
            "executor": self.executor,
            "phase": self.phase.value,
            "session": self.session,
            "session_id": self.session_id,
            "unavailable": list(self.unavailable),
            "delegation": self.delegation.to_dict() if self.delegation else None,
            "worktree": self.worktree.to_dict() if self.worktree else None,
        }
        return json.dumps(body, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ControlRecord:
        """Parse a version-1 or version-2 record; raises ``ValueError`` on anything malformed."""
        body = json.loads(raw)
        if not isinstance(body, dict) or body.get("version") not in READABLE_VERSIONS:
            raise ValueError("not a version-1 or version-2 control record")
        # Version 1 kept the typed fields in a free "data" object.
        fields = body if body["version"] == RECORD_VERSION else {**(body.get("data") or {})}
        delegation = fields.get("delegation")
        worktree = body.get("worktree")
        return cls(
            name=str(body["name"]),
            ino=int(body["ino"]),
            attempts=int(body["attempts"]),
            claim_id=str(body.get("claim_id", "")),
            claimed_at=str(body.get("claimed_at", "")),
            executor=str(body.get("executor", "")),
            phase=Phase(body.get("phase") or Phase.CLAIMED.value),
            session=_optional_str(fields.get("session")),
            session_id=_optional_str(fields.get("session_id")),
            unavailable=_names(fields.get("unavailable")),
            delegation=DelegationIntent.from_dict(delegation) if delegation else None,
            worktree=Worktree.from_dict(worktree) if worktree else None,
        )


def _optional_str(value: object) -> str | None:
    return str(value) if value else None


def _names(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValueError("'unavailable' must be a list of provider names")
    return tuple(str(name) for name in value)
