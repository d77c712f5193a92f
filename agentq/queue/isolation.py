"""Where a task works: in the project folder itself, or in a git worktree of its own (pure).

``isolation: worktree`` gives a task the folder ``.agent-queue/worktrees/<stem>`` on a
new branch ``agentq/<stem>``. The control record keeps :class:`Worktree` from before
``git worktree add`` runs (an intent) until the task has ended, so that a restart can
find, and tidy, a worktree that a crash left half made.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

#: The folder under ``.agent-queue/`` that holds the task worktrees.
WORKTREES_DIRNAME = "worktrees"
#: Every branch agentq creates starts with this.
BRANCH_PREFIX = "agentq/"
# A git revision as a task may write it (``main``, ``v1.2``, ``HEAD~2``, a commit id): no
# leading dash (never an option), no blanks or control characters. git checks the rest.
_BASE_RE = re.compile(r"^[^\s\x00-\x1f\x7f-][^\s\x00-\x1f\x7f]{0,199}$")


def check_base(value: str | None) -> str | None:
    """Validate a task's ``base:`` (a pydantic validator of the frontmatter schema)."""
    if value is not None and not _BASE_RE.fullmatch(value):
        raise ValueError(
            "expected a git revision (a branch, tag or commit) without blanks or a leading '-'"
        )
    return value


class Isolation(Enum):
    """How a task is kept apart from the other tasks of its project."""

    NONE = "none"
    WORKTREE = "worktree"


@dataclass(frozen=True)
class Worktree:
    """A task's git worktree as its control record keeps it.

    Attributes:
        path: the worktree's root folder, under ``.agent-queue/worktrees/``.
        branch: the branch created for the task (``agentq/<stem>``, maybe suffixed).
        base: the full id of the commit the branch starts from.
        base_ref: what the task asked for (``base:``; ``HEAD`` when it said nothing).
        prefix: the project folder's place inside the repository ('' at its top), so the
            agent starts in the same place of the worktree as it would in the checkout.
        ready: false while it is only an intent (``git worktree add`` may not have run).
    """

    path: Path
    branch: str
    base: str
    base_ref: str = "HEAD"
    prefix: str = ""
    ready: bool = False

    @property
    def cwd(self) -> Path:
        """The folder the task's agent starts in."""
        return self.path / self.prefix if self.prefix else self.path

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the control record."""
        return {
            "path": str(self.path),
            "branch": self.branch,
            "base": self.base,
            "base_ref": self.base_ref,
            "prefix": self.prefix,
            "ready": self.ready,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Worktree:
        """Parse the record's form; raises ``KeyError``/``TypeError``/``ValueError``."""
        if not isinstance(data, Mapping):
            raise TypeError("a worktree record must be a mapping")
        return cls(
            path=Path(str(data["path"])),
            branch=str(data["branch"]),
            base=str(data["base"]),
            base_ref=str(data.get("base_ref") or "HEAD"),
            prefix=str(data.get("prefix") or ""),
            ready=bool(data.get("ready", False)),
        )
