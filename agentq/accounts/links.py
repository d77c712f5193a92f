"""Account homes and their shared-state symlinks: check, create, flip (the filesystem adapter).

With several accounts, each home (a ``CLAUDE_CONFIG_DIR``) exposes the shared folders
(``projects``, ``file-history``, ``session-env`` by default) as symlinks to
``<shared root>/<name>``, so a session resumed on another account finds its transcript. The
rules (ARCHITECTURE.md §4, reliability.md R27):

- a missing link or shared folder is created; an empty real folder is replaced by the link;
- a link that points elsewhere is *divergent*: reported, never changed;
- a real file, or a real folder with content, where a link belongs is an error (moving the
  content is the explicit ``agentq accounts init``, see :mod:`agentq.adoption`);
- a link is only ever made or changed by a symlink to a temp name renamed over it
  (``os.replace``) followed by an fsync of its folder; a real folder is never ``rmtree``'d.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from collections.abc import Sequence
from enum import Enum
from pathlib import Path

from agentq.core import crashpoints
from agentq.core.durable import fsync_dir
from agentq.core.errors import AccountError

logger = logging.getLogger(__name__)

DEFAULT_LINKS: tuple[str, ...] = ("projects", "file-history", "session-env")
#: A link is made as ``<name>.tmp-<hex>`` first; leftovers of a crash carry this infix.
TEMP_LINK_INFIX = ".tmp-"
SWAP_CRASH_POINT = "mid_symlink_swap"
HOME_MODE = 0o700
INIT_HINT = "run `agentq accounts init`"


class LinkState(Enum):
    """What sits where a shared-state link belongs."""

    MISSING = "missing"
    CORRECT = "correct"
    DANGLING = "dangling"  # points at the right place, which does not exist (yet)
    DIVERGENT = "divergent"
    EMPTY_DIR = "empty directory"
    FULL_DIR = "directory with content"
    OTHER = "other"  # a real file, FIFO, socket or device


def link_state(link: Path, target: Path) -> LinkState:
    """Classify ``link`` against the ``target`` it should point to (never follows ``link``)."""
    if link.is_symlink():
        if not points_to(link, target):
            return LinkState.DIVERGENT
        return LinkState.CORRECT if target.is_dir() else LinkState.DANGLING
    if not os.path.lexists(link):
        return LinkState.MISSING
    if not link.is_dir():
        return LinkState.OTHER
    with os.scandir(link) as entries:
        empty = next(entries, None) is None
    return LinkState.EMPTY_DIR if empty else LinkState.FULL_DIR


def points_to(link: Path, target: Path) -> bool:
    """True when the symlink ``link`` names ``target`` (textually or as the same folder)."""
    raw = link.readlink()
    actual = raw if raw.is_absolute() else link.parent / raw
    if os.path.normpath(actual) == os.path.normpath(target.absolute()):
        return True
    try:
        return actual.samefile(target)
    except OSError:
        return False


def describe(state: LinkState, link: Path, target: Path) -> str:
    """One line saying what is wrong with ``link`` and what to do; '' for a correct link."""
    if state is LinkState.CORRECT:
        return ""
    if state is LinkState.MISSING:
        return f"{link} is missing (should link to {target}); {INIT_HINT}"
    if state is LinkState.DANGLING:
        return f"{link} -> {target} is dangling (the shared folder is missing); {INIT_HINT}"
    if state is LinkState.DIVERGENT:
        actual = link.readlink()
        return (
            f"{link} points to {actual}, not {target}; fix it by hand"
            " (agentq never changes a divergent link)"
        )
    if state is LinkState.EMPTY_DIR:
        return f"{link} is an empty real directory, not a link to {target}; {INIT_HINT}"
    if state is LinkState.FULL_DIR:
        return (
            f"{link} is a real directory with content, not a link to {target}:"
            f" manual migration needed; {INIT_HINT}"
        )
    return f"{link} is a file, not a link to {target}; move it away by hand"


def shared_folder_problem(target: Path) -> str:
    """'' when the shared folder is a directory or absent; else why it cannot be one."""
    if target.is_dir() or not os.path.lexists(target):
        return ""
    return f"shared folder {target} exists but is not a directory"


def home_problem(home: Path) -> str:
    """'' when ``home`` is a folder; else why it cannot serve as an account home."""
    if home.is_dir():
        return ""
    if os.path.lexists(home):
        return f"account home {home} is not a directory"
    return f"account home {home} does not exist; {INIT_HINT}"


def validate(
    homes: Sequence[tuple[str, Path]], shared_root: Path, links: Sequence[str]
) -> list[str]:
    """Every problem of every account home's shared links; empty when all is well.

    A single account shares nothing, so it needs no link: the answer is then ``[]``.
    """
    if len(homes) <= 1:
        return []
    root = shared_root.absolute()
    problems = [p for p in (shared_folder_problem(root / name) for name in links) if p]
    for account, home in homes:
        trouble = home_problem(home)
        if trouble:
            problems.append(f"account {account}: {trouble}")
            continue
        for name in links:
            target = root / name
            text = describe(link_state(home / name, target), home / name, target)
            if text:
                problems.append(f"account {account}: {text}")
    return problems


def ensure(home: Path, shared_root: Path, links: Sequence[str]) -> list[str]:
    """Create what is missing (shared folders, links; an empty real folder becomes a link).

    Returns the steps taken, one line each.

    Raises:
        AccountError: with every problem left (divergent links, real files, real folders
            with content, a missing home); whatever could be fixed is fixed first.
    """
    problem = home_problem(home)
    if problem:
        raise AccountError([problem])
    root = shared_root.absolute()
    steps: list[str] = []
    problems: list[str] = []
    for name in links:
        steps += sweep_temp_links(home / name)
        try:
            steps += _ensure_link(home / name, root / name)
        except AccountError as exc:
            problems += exc.problems
        except OSError as exc:
            problems.append(f"{home / name}: {exc.strerror or exc}")
    for step in steps:
        logger.info("account link step", extra={"step": step})
    if problems:
        raise AccountError(problems)
    return steps


def _ensure_link(link: Path, target: Path) -> list[str]:
    state = link_state(link, target)
    if state is LinkState.CORRECT:
        return []
    if state not in (LinkState.MISSING, LinkState.DANGLING, LinkState.EMPTY_DIR):
        raise AccountError([describe(state, link, target)])
    steps = make_shared_folder(target)
    if state is LinkState.EMPTY_DIR:
        # rmdir refuses a folder that gained content meanwhile: nothing can be lost.
        link.rmdir()
        steps.append(f"removed empty directory {link}")
    if state is not LinkState.DANGLING:
        flip_active_link(link, target)
        steps.append(f"linked {link} -> {target}")
    return steps


def make_shared_folder(target: Path) -> list[str]:
    """Create the shared folder ``target`` (and the shared root) when missing; return the steps."""
    problem = shared_folder_problem(target)
    if problem:
        raise AccountError([problem])
    if target.is_dir():
        return []
    target.parent.mkdir(mode=HOME_MODE, parents=True, exist_ok=True)
    target.mkdir(mode=HOME_MODE, exist_ok=True)
    fsync_dir(target.parent)
    return [f"created shared folder {target}"]


def flip_active_link(link: Path, target: Path) -> None:
    """Point the symlink ``link`` at ``target`` atomically (temp symlink, ``os.replace``, fsync).

    A crash leaves ``link`` as it was or as wanted, never missing; at worst a
    ``<name>.tmp-<hex>`` link stays behind for :func:`sweep_temp_links`.

    Raises:
        AccountError: ``link`` is a real file or folder (never replaced, never deleted).
    """
    if os.path.lexists(link) and not link.is_symlink():
        kind = "directory" if link.is_dir() else "file"
        raise AccountError([f"{link} is a real {kind}, not a link; refusing to replace it"])
    temp = link.with_name(f"{link.name}{TEMP_LINK_INFIX}{secrets.token_hex(6)}")
    temp.symlink_to(target.absolute())
    try:
        crashpoints.hit(SWAP_CRASH_POINT)
        temp.replace(link)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(link.parent)
    logger.debug("link flipped", extra={"link": str(link), "target": str(target)})


def temp_links(link: Path) -> list[Path]:
    """Leftover ``<name>.tmp-<hex>`` symlinks of an interrupted flip of ``link``."""
    pattern = re.compile(re.escape(link.name + TEMP_LINK_INFIX) + r"[0-9a-f]{12}")
    try:
        found = [path for path in link.parent.iterdir() if pattern.fullmatch(path.name)]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(path for path in found if path.is_symlink())


def sweep_temp_links(link: Path) -> list[str]:
    """Remove leftover temp symlinks of ``link`` (only symlinks); return the steps."""
    steps = []
    for path in temp_links(link):
        path.unlink(missing_ok=True)
        steps.append(f"removed leftover temp link {path}")
    return steps


def active_link_problems(active_link: Path | None, homes: Sequence[tuple[str, Path]]) -> list[str]:
    """Problems of the active link: it must be absent or a symlink to one of the homes."""
    if active_link is None or not os.path.lexists(active_link):
        return []
    if not active_link.is_symlink():
        kind = "real directory" if active_link.is_dir() else "file"
        return [
            f"active link {active_link} is a {kind}, not a link to an account home; {INIT_HINT}"
        ]
    if any(points_to(active_link, home) for _, home in homes):
        return []
    return [
        f"active link {active_link} points to {active_link.readlink()}, not to an account"
        " home; fix it by hand (agentq never changes a divergent link)"
    ]


class SharedLinks:
    """The account-links adapter the swap uses: flip the active link, ensure a home's links.

    The switcher is handed one (tests hand in one that fails instead). ``ensure`` does
    nothing with a single account: nothing is shared then.
    """

    def __init__(self, shared_root: Path, names: Sequence[str], shared: bool = True) -> None:
        self.shared_root = shared_root
        self.names = tuple(names)
        self.shared = shared

    def flip(self, link: Path, home: Path) -> None:
        """Point the active link at ``home`` (see :func:`flip_active_link`)."""
        flip_active_link(link, home)

    def ensure(self, home: Path) -> None:
        """Create what is missing of ``home``'s shared links; raise listing what is wrong."""
        if self.shared:
            ensure(home, self.shared_root, self.names)
