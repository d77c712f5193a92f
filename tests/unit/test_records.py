"""Unit tests for agentq.queue.records: the typed control record, version 2, reading version 1."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentq.queue.records import (
    RECORD_VERSION,
    ControlRecord,
    DelegationIntent,
    DelegationPhase,
    Phase,
)

V1_WORKING = {
    "version": 1,
    "name": "fix.md",
    "ino": 42,
    "attempts": 2,
    "claim_id": "c0ffee",
    "claimed_at": "2026-03-01T12:00:00+00:00",
    "executor": "local",
    "phase": "running",
    "data": {
        "session": "agentq-1",
        "session_id": "3f2a6c1e-0000-4000-8000-000000000001",
        "unavailable": ["openai"],
    },
}
V1_DELEGATED = {
    "version": 1,
    "name": "far.md",
    "ino": 7,
    "attempts": 1,
    "claim_id": "beef",
    "claimed_at": "",
    "executor": "provider",
    "phase": "claimed",
    "data": {
        "delegation": {
            "provider": "jobs",
            "key": "agentq-beef",
            "phase": "submitted",
            "intent_at": "2026-03-01T12:00:00+00:00",
            "job_id": "job-9",
            "submitted_at": "2026-03-01T12:00:01+00:00",
            "answer": None,
        }
    },
}


def test_a_version_1_session_record_reads_into_typed_fields() -> None:
    """Version 1 kept session, session id and unavailable providers in ``data``."""
    record = ControlRecord.from_json(json.dumps(V1_WORKING).encode())
    assert record.phase is Phase.RUNNING
    assert record.session == "agentq-1"
    assert record.session_id == "3f2a6c1e-0000-4000-8000-000000000001"
    assert record.unavailable == ("openai",)
    assert record.delegation is None


def test_a_version_1_delegation_record_reads_into_an_intent() -> None:
    """Version 1's ``data.delegation`` becomes a typed intent."""
    record = ControlRecord.from_json(json.dumps(V1_DELEGATED).encode())
    assert record.delegation == DelegationIntent(
        "jobs",
        "agentq-beef",
        DelegationPhase.SUBMITTED,
        intent_at="2026-03-01T12:00:00+00:00",
        job_id="job-9",
        submitted_at="2026-03-01T12:00:01+00:00",
    )


def test_a_version_1_record_is_written_back_as_version_2() -> None:
    """Saving a record read from version 1 writes every field by name, no ``data``."""
    record = ControlRecord.from_json(json.dumps(V1_WORKING).encode())
    body = json.loads(record.to_json())
    assert body["version"] == RECORD_VERSION == 2
    assert "data" not in body
    assert body["session"] == "agentq-1" and body["unavailable"] == ["openai"]


def test_begin_starts_afresh_but_keeps_the_unavailable_providers() -> None:
    """A new attempt forgets session, session id and delegation; failed providers stay out."""
    record = ControlRecord.from_json(json.dumps(V1_WORKING).encode())
    record.delegation = DelegationIntent("jobs", "agentq-old")
    record.begin("newclaim", "2026-03-02T00:00:00+00:00", "")
    assert (record.attempts, record.claim_id, record.phase) == (3, "newclaim", Phase.CLAIMED)
    assert (record.session, record.session_id, record.delegation) == (None, None, None)
    assert record.unavailable == ("openai",)


@pytest.mark.parametrize(
    "body",
    [
        {"version": 3, "name": "x.md", "ino": 1, "attempts": 0},
        {"version": 2, "name": "x.md", "ino": 1, "attempts": 0, "phase": "typing"},
        {"version": 2, "name": "x.md", "ino": 1, "attempts": 0, "unavailable": "openai"},
        {"version": 2, "name": "x.md", "attempts": 0},
        ["not", "an", "object"],
    ],
    ids=[
        "an unknown version is refused",
        "an unknown phase is refused",
        "unavailable providers that are not a list are refused",
        "a record without its inode is refused",
        "a record that is not an object is refused",
    ],
)
def test_malformed_records_raise(body: object) -> None:
    """Whatever is malformed raises one of the errors the project moves the record aside for."""
    with pytest.raises((ValueError, KeyError, TypeError)):
        ControlRecord.from_json(json.dumps(body).encode())


_TEXT = st.text(max_size=20)
_INTENTS = st.builds(
    DelegationIntent,
    provider=_TEXT.filter(bool),
    key=_TEXT.filter(bool),
    phase=st.sampled_from(DelegationPhase),
    intent_at=_TEXT,
    job_id=st.none() | _TEXT.filter(bool),
    submitted_at=_TEXT,
    answer=st.none() | st.dictionaries(_TEXT, st.integers() | _TEXT, max_size=3),
)


@given(
    record=st.builds(
        ControlRecord,
        name=_TEXT.filter(bool),
        ino=st.integers(min_value=0, max_value=2**63),
        attempts=st.integers(min_value=0, max_value=99),
        claim_id=_TEXT,
        claimed_at=_TEXT,
        executor=_TEXT,
        phase=st.sampled_from(Phase),
        session=st.none() | _TEXT.filter(bool),
        session_id=st.none() | _TEXT.filter(bool),
        unavailable=st.lists(_TEXT, max_size=3).map(tuple),
        delegation=st.none() | _INTENTS,
    )
)
def test_version_2_round_trips(record: ControlRecord) -> None:
    """``from_json(to_json(r)) == r`` for any record."""
    assert ControlRecord.from_json(record.to_json()) == record
