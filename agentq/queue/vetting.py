"""Vetting inbox entries by name and by ``stat``, before anything is opened (pure).

Which names are pending, ignored or invalid; why an entry that is not a plain,
single-linked regular file of ours is refused; whether a fresh file arrived complete
(rename in, reliability rule R10) or is linked in for now; and a YAML-free peek at a
task's ``priority`` for ordering before the claim. Reliability rule R9.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from enum import Enum

#: A fresh file with a second link is looked at again after half its age, within these.
LINK_RELOOK_MIN_NS = 1_000_000
LINK_RELOOK_MAX_NS = 100_000_000
WORKING_SUFFIX = ".working"
DELEGATED_SUFFIX = ".delegated"

#: A pending task's name: a plain file name, no leading dot or dash, no spaces or shell syntax.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+@=-]{0,196}\.md$")
_EDITOR_TEMP = re.compile(r"(~|\.swp|\.swo|\.swx|\.tmp|\.part|\.crdownload)$")
_PRIORITY_RE = re.compile(rb"^priority:[ \t]*(-?\d{1,9})[ \t]*(?:#.*)?$", re.MULTILINE)
_FRONTMATTER_RE = re.compile(
    rb"\A(?:\xef\xbb\xbf)?---[ \t]*\r?\n(.*?)^---[ \t]*$", re.DOTALL | re.MULTILINE
)


class NameKind(Enum):
    """What an inbox entry's name makes it."""

    PENDING = "pending"
    WORKING = "working"
    DELEGATED = "delegated"
    INVALID = "invalid"
    IGNORED = "ignored"


def classify_name(name: str) -> NameKind:
    """Classify an inbox entry by name alone (no I/O)."""
    if name.startswith(".") or _EDITOR_TEMP.search(name):
        return NameKind.IGNORED
    if name.endswith(".md" + WORKING_SUFFIX):
        return NameKind.WORKING
    if name.endswith(".md" + DELEGATED_SUFFIX):
        return NameKind.DELEGATED
    if not name.endswith(".md"):
        return NameKind.IGNORED
    return NameKind.PENDING if NAME_RE.fullmatch(name) else NameKind.INVALID


def task_of(entry_name: str) -> str:
    """The task an inbox entry belongs to: ``x.md`` for ``x.md.working`` or ``x.md.delegated``."""
    return entry_name.removesuffix(WORKING_SUFFIX).removesuffix(DELEGATED_SUFFIX)


def invalid_name_reason(name: str) -> str:
    """The one-line reason an ``.md`` name is refused."""
    if len(name) > 200:
        return f"invalid name: {len(name)} characters (limit 200)"
    return (
        "invalid name: a task name must start with a letter or digit and contain only "
        "letters, digits and . _ + @ = -"
    )


def scan_priority(head: bytes) -> int:
    """Read ``priority:`` from the start of a task file without a YAML parser.

    Used only to order pending tasks before they are claimed, so a hostile file
    cannot hurt the daemon here; the full, validated parse happens after the claim.
    """
    match = _FRONTMATTER_RE.match(head)
    if not match:
        return 0
    found = _PRIORITY_RE.search(match.group(1))
    return int(found.group(1)) if found else 0


def refusal_reason(st: os.stat_result, uid: int) -> str | None:
    """Why an ``lstat``/``fstat`` result is not a plain, single-linked file of ours."""
    mode = st.st_mode
    if stat.S_ISLNK(mode):
        return "refused: a symbolic link (never followed)"
    if stat.S_ISDIR(mode):
        return "refused: a directory, not a file"
    if stat.S_ISFIFO(mode):
        return "refused: a FIFO, not a file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "refused: a device node, not a file"
    if stat.S_ISSOCK(mode):
        return "refused: a socket, not a file"
    if not stat.S_ISREG(mode):
        return "refused: not a regular file"
    if st.st_nlink != 1:
        return f"refused: a hard link ({st.st_nlink} names for one file)"
    if st.st_uid != uid:
        return f"refused: owned by uid {st.st_uid}, not by the daemon's uid {uid}"
    return None


def arrived_whole(name: str, st: os.stat_result, whole: Mapping[str, tuple[int, int]]) -> bool:
    """Whether ``name`` is, unchanged, the file that arrived complete, with one link.

    ``whole`` maps names seen arriving complete (renamed in, or linked in and unlinked from
    ``tmp/`` since) to their inode and mtime then: a write since, or another file under
    the name, does not count.
    """
    same = whole.get(name) == (st.st_ino, st.st_mtime_ns)
    return same and stat.S_ISREG(st.st_mode) and st.st_nlink == 1


def relook_ns(now_ns: int, st: os.stat_result) -> int:
    """When to look at a fresh file with a second link again: half its age (ctime), 1–100 ms."""
    return min(LINK_RELOOK_MAX_NS, max(LINK_RELOOK_MIN_NS, (now_ns - st.st_ctime_ns) // 2))
