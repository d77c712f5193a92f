"""``agentq submit``: the producer side of the Maildir protocol.

Write ``tmp/<unique>``, fsync, hard-link into ``inbox/<name>.md`` without
replacing anything, fsync ``inbox/``, remove the temp name (reliability R1).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from agentq.core import durable
from agentq.core.errors import TaskFileError
from agentq.queue.protocol import QUEUE_DIRNAME, Project
from agentq.queue.taskfile import MAX_FILE_BYTES, parse_task
from agentq.queue.vetting import NAME_RE

_SLUG_STRIP = re.compile(r"[^a-z0-9]+")


def slugify(text: str, limit: int = 48) -> str:
    """A file-name-safe slug of ``text`` (may be empty)."""
    return _SLUG_STRIP.sub("-", text.lower()).strip("-")[:limit].strip("-")


def parse_assignments(pairs: Sequence[str]) -> dict[str, Any]:
    """Turn ``key=value`` strings into frontmatter values (values read as YAML scalars)."""
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", key):
            raise TaskFileError(f"--set expects key=value with a plain key, got {pair!r}")
        try:
            parsed = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            parsed = value
        result[key] = (
            parsed if isinstance(parsed, str | int | float | bool) or parsed is None else value
        )
    return result


def compose(text: str, assignments: Mapping[str, Any]) -> str:
    """Return the task text with ``assignments`` merged into its frontmatter."""
    if not assignments:
        return text
    task = parse_task(text.encode(), "submitted.md")
    meta = task.meta.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
    meta.update(task.meta.model_extra or {})
    meta.update(assignments)
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    return f"---\n{front}---\n{task.body}"


def choose_name(text: str, source: Path | None, now: datetime) -> str:
    """Pick the task's file name: the source file's name, else a slug of its title or first line."""
    if source is not None and NAME_RE.fullmatch(source.name):
        return source.name
    stem = slugify(source.stem) if source is not None else ""
    if not stem:
        task = parse_task(text.encode(), "submitted.md")
        first = task.meta.title or next((ln for ln in task.body.splitlines() if ln.strip()), "")
        stem = slugify(first.lstrip("# "))
    return f"{now:%Y%m%d-%H%M%S}-{stem or 'task'}.md"


def submit(project_dir: Path, text: str, name: str) -> Path:
    """Deliver ``text`` into the project's inbox as ``name`` (suffixed on collision)."""
    data = text.encode()
    if len(data) > MAX_FILE_BYTES:
        raise TaskFileError(f"task too large: {len(data)} bytes (limit {MAX_FILE_BYTES})")
    parse_task(data, name)  # refuse here what the daemon would refuse later
    project = Project(project_dir)
    if not project.queue.is_dir():
        project.ensure_dirs()
    tmp = durable.write_temp(project.tmp, data, 0o600)
    try:
        final = durable.link_noclobber(tmp, project.inbox, _free_name(project, name))
    finally:
        # Drop the second name at once: the daemon refuses hard-linked files.
        tmp.unlink(missing_ok=True)
    durable.fsync_dir(project.inbox)
    durable.fsync_dir(project.tmp)
    return final


def _free_name(project: Project, name: str) -> str:
    """Avoid a name whose claim (``.working``/``.delegated``) is in flight."""
    stem = name[:-3]
    for i in range(1000):
        candidate = name if i == 0 else f"{stem}.{i}.md"
        if not any(
            os.path.lexists(project.inbox / (candidate + s)) for s in ("", ".working", ".delegated")
        ):
            return candidate
    return name


def project_root(path: Path) -> Path:
    """Accept either the project folder or its ``.agent-queue`` folder."""
    return path.parent if path.name == QUEUE_DIRNAME else path
