"""The changes a simulated agent makes in its working folder, so tests and the demo see real work.

At the end of a turn, in the order the prompt lists them:

``sim: write PATH TEXT``   write TEXT and a newline to PATH, relative to the cwd (absolute
                           paths, ``..``, and links or files on the way are refused)
``sim: commit MESSAGE``    ``git add -A`` then ``git commit -m MESSAGE`` in the cwd

Each change is reported as one line of the turn's answer.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

from agentq.core.errors import GitError
from agentq.sim.rules import Action, relative_parts
from agentq.workspace.git import Git


def perform(action: Action, folder: Path, env: Mapping[str, str]) -> str:
    """Make one scripted change in ``folder``; say what happened, in one line."""
    if action.verb == "write":
        try:
            write_inside(folder, action.path, action.text)
        except (OSError, ValueError) as exc:
            return f"write {action.path!r} refused: {exc}"
        return f"wrote {action.path}"
    try:
        commit = Git(env).commit_all(folder, action.text)
    except GitError as exc:
        return f"commit failed: {exc}"
    return f"committed {commit} {action.text}"


def write_inside(folder: Path, relative: str, text: str) -> Path:
    """Write ``text`` (plus a newline) to ``relative`` under ``folder``, never outside it.

    Raises:
        ValueError: an absolute path, ``..``, or a link or file on the way.
        OSError: the file cannot be written (a link at the end is refused: ELOOP).
    """
    parts = relative_parts(relative)
    if parts is None:
        raise ValueError("not a relative path inside the working folder")
    current = folder
    for part in parts[:-1]:
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            os.mkdir(current, 0o755)
            continue
        if not stat.S_ISDIR(mode):
            raise ValueError(f"{part!r} is a link or a file, not a folder")
    target = current / parts[-1]
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(target, flags, 0o644)
    try:
        os.write(fd, (text + "\n").encode("utf-8"))
    finally:
        os.close(fd)
    return target
