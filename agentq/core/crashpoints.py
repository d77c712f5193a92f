"""Named crash points for the crash-consistency tests.

``AGENTQ_CRASH_AT=name`` or ``name:N`` makes the process ``os._exit(137)`` at the
N-th time (default 1st) it passes ``hit(name)``. Without the variable ``hit`` is a
no-op: the variable is read once, at import.
"""

from __future__ import annotations

import os

_SPEC = os.environ.get("AGENTQ_CRASH_AT", "")
_NAME, _, _COUNT = _SPEC.partition(":")
_TARGET = int(_COUNT) if _COUNT.isdigit() else 1
_seen = 0

#: Every crash point the code base offers (tests iterate over it).
POINTS = (
    "after_claim",
    "after_attempt_persist",
    "after_execute",
    "mid_footer_write",
    "after_move_before_dir_fsync",
    "after_move_before_cleanup",
    "mid_state_write",
    "before_tmux_send",
    "after_tmux_send",
    "after_intent",
    "after_submit_before_marker",
    "mid_marker_write",
    "after_marker",
    "mid_reap",
    "mid_symlink_swap",
    "after_state_write",
    "janitor_mid_archive",
    "janitor_before_rename",
    "janitor_after_archive",
    "janitor_mid_remove",
    "after_worktree_intent",
    "after_worktree_add",
)


def hit(name: str) -> None:
    """Exit the process at once if the crash point ``name`` is armed and due."""
    global _seen
    if not _NAME or name != _NAME:
        return
    _seen += 1
    if _seen >= _TARGET:
        os._exit(137)
