"""Unit tests for agentq.queue.marker: the delegation: block of a .delegated marker."""

from __future__ import annotations

import pytest

from agentq.queue import taskfile
from agentq.queue.marker import DelegationInfo, read_info, with_delegation

INFO = DelegationInfo("jobs", "job-000042", "2026-11-21T10:00:00+00:00", "agentq-0123abcd")


def _parsed(text: str) -> taskfile.Task:
    return taskfile.parse_task(text.encode(), "x.md")


def test_block_is_added_to_existing_frontmatter_byte_identically() -> None:
    """Every original line, comments included, stays; the block goes before the closing ---."""
    text = "---\ntitle: Fix it  # why\npriority: 3\n---\n\nThe body.\n"
    marked = with_delegation(text, INFO)
    assert marked == (
        "---\ntitle: Fix it  # why\npriority: 3\n"
        "delegation:\n  provider: jobs\n  job_id: job-000042\n"
        "  submitted_at: '2026-11-21T10:00:00+00:00'\n  idempotency_key: agentq-0123abcd\n"
        "---\n\nThe body.\n"
    )
    assert read_info(_parsed(marked).meta.model_extra) == INFO


def test_task_without_frontmatter_gets_one() -> None:
    """A plain body gains a frontmatter holding only the block; the body is unchanged."""
    marked = with_delegation("just do it\n", INFO)
    assert marked.startswith("---\ndelegation:\n")
    assert marked.endswith("---\njust do it\n")
    task = _parsed(marked)
    assert task.body == "just do it"
    assert read_info(task.meta.model_extra) == INFO


def test_old_block_is_replaced_not_duplicated() -> None:
    """A task retried from done/ carries an old block: it is replaced, other keys kept."""
    old = DelegationInfo("gpu", "old-1", "2026-01-01T00:00:00+00:00", "agentq-old")
    text = with_delegation("---\ntitle: again\n---\nbody\n", old)
    marked = with_delegation(text, INFO)
    assert marked.count("delegation:") == 1
    task = _parsed(marked)
    assert task.meta.title == "again"
    assert read_info(task.meta.model_extra) == INFO


def test_crlf_frontmatter_keeps_its_line_endings() -> None:
    """A CRLF file gets a CRLF block."""
    text = "---\r\ntitle: win\r\n---\r\nbody\r\n"
    marked = with_delegation(text, INFO)
    assert "\ndelegation:" in marked
    assert "\n" not in marked.replace("\r\n", "")
    assert read_info(_parsed(marked).meta.model_extra) == INFO


def test_flow_style_frontmatter_is_rebuilt() -> None:
    """A flow mapping cannot take block lines: it is re-dumped with the block added."""
    marked = with_delegation("---\n{title: flow, priority: 2}\n---\nbody\n", INFO)
    task = _parsed(marked)
    assert (task.meta.title, task.meta.priority, task.body) == ("flow", 2, "body")
    assert read_info(task.meta.model_extra) == INFO


def test_unusual_job_ids_round_trip() -> None:
    """Job ids that YAML would read as other types are quoted."""
    for job_id in ("123", "true", "a:b", "1e5", "null"):
        info = DelegationInfo("p", job_id, "2026-11-21T10:00:00+00:00", "agentq-1")
        assert read_info(_parsed(with_delegation("body\n", info)).meta.model_extra) == info


@pytest.mark.parametrize(
    "extra",
    [
        None,
        {},
        {"delegation": "job-1"},
        {"delegation": {"provider": "jobs", "job_id": "j"}},
        {"delegation": {**INFO.to_dict(), "job_id": 7}},
        {"delegation": {**INFO.to_dict(), "provider": ""}},
    ],
)
def test_read_info_refuses_incomplete_blocks(extra: dict[str, object] | None) -> None:
    """A missing, partial or mistyped block gives None."""
    assert read_info(extra) is None
