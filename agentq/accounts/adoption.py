"""Adoption of the shared layout: what ``agentq accounts init`` plans and does.

It takes account homes with real ``projects/``, ``file-history/`` and ``session-env/``
folders (typically the one ``~/.claude`` used so far) to the layout of
:mod:`agentq.accounts`: the content moves into ``<shared root>/<name>`` and each folder is
replaced by a link. :func:`plan_init` reads the trees and finds conflicts (the same relative
path with different bytes in two places: refused, all listed, nothing changed);
:func:`run_init` carries the plan out, printing each step before it is taken.

Crash safety: each file is hard-linked into the shared folder (across file systems: copied to
a temp name, verified, linked) and the new folders are fsync'd before any original goes; an
original is removed only after its new copy proved identical; folders are removed with
``rmdir`` only. A re-run plans again from what it finds: a file already placed is an
identical duplicate whose original is simply dropped, so the re-run finishes the job.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath

from agentq.accounts.links import (
    HOME_MODE,
    LinkState,
    active_link_problems,
    describe,
    flip_active_link,
    home_problem,
    link_state,
    points_to,
    shared_folder_problem,
    temp_links,
)
from agentq.core.durable import TEMP_PREFIX, fsync_dir, temp_path
from agentq.core.errors import AccountError

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
_NEEDS_LINK = (LinkState.MISSING, LinkState.EMPTY_DIR, LinkState.FULL_DIR)
# Hard links fail across file systems (EXDEV) and on some that lack them: copy instead.
_COPY_ERRNOS = frozenset({errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP})


@dataclass(frozen=True)
class FileMove:
    """One file (or symlink) to move into a shared folder.

    ``duplicate``: the same bytes are (or will be) at ``dest`` already, so only ``src`` goes.
    """

    src: Path
    dest: Path
    duplicate: bool


@dataclass(frozen=True)
class InitPlan:
    """What ``accounts init`` will do, in order, or why it refuses (conflicts, problems)."""

    shared_root: Path
    stale: tuple[Path, ...] = ()  # leftover temp links and files of an interrupted run
    adopt: tuple[Path, Path] | None = None  # (the active link's real folder, first home)
    make_dirs: tuple[tuple[Path, int], ...] = ()  # (folder, mode), parents first
    moves: tuple[FileMove, ...] = ()
    prune: tuple[Path, ...] = ()  # emptied source folders, deepest first
    links: tuple[tuple[Path, Path], ...] = ()  # (link, shared folder)
    active: tuple[Path, Path] | None = None  # (active link, home) to create
    conflicts: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def refused(self) -> bool:
        """True when conflicts or problems forbid running the plan."""
        return bool(self.conflicts or self.problems)

    @property
    def empty(self) -> bool:
        """True when there is nothing to do."""
        work = (self.stale, self.make_dirs, self.moves, self.prune, self.links)
        return not any(work) and self.adopt is None and self.active is None


@dataclass(frozen=True)
class _Entry:
    """One entry of a scanned tree: its kind and the path it was read at."""

    kind: str  # "dir", "file", "symlink" or "other"
    path: Path


@dataclass(frozen=True)
class _Home:
    """An account home: where it is read now and where it will be when the plan runs."""

    account: str
    read: Path
    final: Path


@dataclass
class _Draft:
    """The plan while it is being built."""

    shared_root: Path
    stale: list[Path] = field(default_factory=list)
    make_dirs: list[tuple[Path, int]] = field(default_factory=list)
    moves: list[FileMove] = field(default_factory=list)
    prune: list[Path] = field(default_factory=list)
    links: list[tuple[Path, Path]] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def plan_init(
    homes: Sequence[tuple[str, Path]],
    shared_root: Path,
    links: Sequence[str],
    active_link: Path | None = None,
) -> InitPlan:
    """Read the homes and the shared root and plan the move to the shared layout.

    ``active_link`` (optional): when it is a real folder and the first account's home does not
    exist yet, the folder becomes that home (one rename) and the link is made in its place.
    """
    draft = _Draft(shared_root.absolute())
    adopt, active = _plan_active(draft, active_link, homes)
    planned = [_plan_home(draft, account, home, adopt) for account, home in homes]
    root_problem = shared_folder_problem(draft.shared_root)
    if root_problem:
        draft.problems.append(root_problem)
    else:
        if not draft.shared_root.is_dir():
            draft.make_dirs.append((draft.shared_root, HOME_MODE))
        for name in links:
            _plan_link(draft, name, [home for home in planned if home is not None])
    draft.prune.sort(key=lambda path: len(path.parts), reverse=True)
    return InitPlan(
        shared_root=draft.shared_root,
        stale=tuple(draft.stale),
        adopt=adopt,
        make_dirs=tuple(draft.make_dirs),
        moves=tuple(draft.moves),
        prune=tuple(draft.prune),
        links=tuple(draft.links),
        active=active,
        conflicts=tuple(draft.conflicts),
        problems=tuple(draft.problems),
    )


def _plan_active(
    draft: _Draft, active_link: Path | None, homes: Sequence[tuple[str, Path]]
) -> tuple[tuple[Path, Path] | None, tuple[Path, Path] | None]:
    """The (adopt, active) parts of the plan for the active link."""
    if active_link is None or not homes:
        return None, None
    first = homes[0][1]
    draft.stale += temp_links(active_link)
    if not os.path.lexists(active_link):
        return None, (active_link, first)
    if active_link.is_symlink() or not active_link.is_dir():
        draft.problems += active_link_problems(active_link, homes)
        return None, None
    if os.path.lexists(first):
        draft.problems.append(
            f"active link {active_link} is a real directory and the first account's home"
            f" {first} exists too: merge them by hand, then re-run"
        )
        return None, None
    return (active_link, first), (active_link, first)


def _plan_home(
    draft: _Draft, account: str, home: Path, adopt: tuple[Path, Path] | None
) -> _Home | None:
    """The home as the plan sees it, or None when it cannot take part (a problem is noted)."""
    read = adopt[0] if adopt is not None and adopt[1] == home else home
    if not os.path.lexists(read):
        draft.make_dirs.append((home, HOME_MODE))
        return _Home(account, read, home)
    problem = home_problem(read)
    if problem:
        draft.problems.append(f"account {account}: {problem}")
        return None
    return _Home(account, read, home)


def _plan_link(draft: _Draft, name: str, homes: Sequence[_Home]) -> None:
    """Plan one shared folder: check each home's entry, collect the trees to merge."""
    target = draft.shared_root / name
    problem = shared_folder_problem(target)
    if problem:
        draft.problems.append(problem)
        return
    shared = _scan(target, draft) if target.is_dir() else {}
    if not target.is_dir():
        draft.make_dirs.append((target, HOME_MODE))
    sources: list[tuple[Path, dict[PurePosixPath, _Entry]]] = []
    for home in homes:
        draft.stale += temp_links(home.read / name)
        state = link_state(home.read / name, target)
        if state in (LinkState.DIVERGENT, LinkState.OTHER):
            text = describe(state, home.read / name, target)
            draft.problems.append(f"account {home.account}: {text}")
        elif state in _NEEDS_LINK:
            draft.links.append((home.final / name, target))
            if state is LinkState.FULL_DIR:
                sources.append((home.final / name, _scan(home.read / name, draft)))
    _merge(draft, name, target, shared, sources)


def _scan(top: Path, draft: _Draft) -> dict[PurePosixPath, _Entry]:
    """Every entry under ``top`` by relative path, symlinks not followed; our temps go stale."""
    found: dict[PurePosixPath, _Entry] = {}
    pending = [PurePosixPath()]
    while pending:
        rel = pending.pop()
        with os.scandir(top / rel) as entries:
            for entry in entries:
                path = Path(entry.path)
                kind = _kind(entry)
                if kind == "dir":
                    pending.append(rel / entry.name)
                elif entry.name.startswith(TEMP_PREFIX) and kind != "other":
                    draft.stale.append(path)
                    continue
                found[rel / entry.name] = _Entry(kind, path)
    return found


def _kind(entry: os.DirEntry[str]) -> str:
    if entry.is_symlink():
        return "symlink"
    if entry.is_dir(follow_symlinks=False):
        return "dir"
    return "file" if entry.is_file(follow_symlinks=False) else "other"


def _merge(
    draft: _Draft,
    name: str,
    target: Path,
    shared: dict[PurePosixPath, _Entry],
    sources: Sequence[tuple[Path, dict[PurePosixPath, _Entry]]],
) -> None:
    """Plan folders, moves and conflicts for every relative path found in a home."""
    rels = sorted({rel for _, entries in sources for rel in entries})
    for rel in rels:
        theirs = [(base / rel, entries[rel]) for base, entries in sources if rel in entries]
        here = shared.get(rel)
        everyone = [entry for _, entry in theirs] + ([here] if here else [])
        odd = [entry.path for entry in everyone if entry.kind == "other"]
        if odd:
            draft.problems += [
                f"{path}: not a file, folder or symlink; move it by hand" for path in odd
            ]
            continue
        if len({entry.kind for entry in everyone}) > 1:
            paths = ", ".join(str(entry.path) for entry in everyone)
            draft.conflicts.append(f"{name}/{rel}: a folder in one place, not in another ({paths})")
            continue
        if theirs[0][1].kind == "dir":
            if here is None:
                mode = stat.S_IMODE(theirs[0][1].path.lstat().st_mode)
                draft.make_dirs.append((target / rel, mode))
            draft.prune += [src for src, _ in theirs]
            continue
        reference = here or theirs[0][1]
        differing = [e.path for _, e in theirs if not same_content(e.path, reference.path)]
        if differing:
            others = ", ".join(str(path) for path in differing)
            draft.conflicts.append(f"{name}/{rel}: {reference.path} differs from {others}")
            continue
        for i, (src, _) in enumerate(theirs):
            draft.moves.append(FileMove(src, target / rel, duplicate=here is not None or i > 0))


def same_content(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` are the same file, equal files, or symlinks with equal text."""
    sa, sb = a.lstat(), b.lstat()
    if os.path.samestat(sa, sb):
        return True
    if stat.S_IFMT(sa.st_mode) != stat.S_IFMT(sb.st_mode):
        return False
    if stat.S_ISLNK(sa.st_mode):
        return a.readlink() == b.readlink()
    if not stat.S_ISREG(sa.st_mode) or sa.st_size != sb.st_size:
        return False
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            chunk = fa.read(_CHUNK)
            if chunk != fb.read(_CHUNK):
                return False
            if not chunk:
                return True


# --- running the plan -----------------------------------------------------------------------


def run_init(plan: InitPlan, dry_run: bool, out: Callable[[str], None]) -> int:
    """Carry out ``plan`` (or only print it), one line per step before it is taken.

    Returns 0 when done (or nothing to do), 1 when the plan is refused (nothing changed).

    Raises:
        AccountError: a step failed; the steps before it stay done and a re-run goes on.
    """
    if plan.refused:
        _report_refusal(plan, out)
        return 1
    if plan.empty:
        out(f"nothing to do: the account homes already share {plan.shared_root}")
        return 0
    out("note: stop every agent session using these homes first; files move under them")
    prefix = "would " if dry_run else ""
    done = 0
    try:
        for text, action in _actions(plan):
            out(prefix + text)
            if not dry_run:
                action()
                logger.info("accounts init step", extra={"step": text})
            done += 1
    except OSError as exc:
        raise AccountError(
            [f"accounts init stopped: {exc}; the steps done are kept, fix the cause and re-run"]
        ) from exc
    out("dry run: nothing was changed" if dry_run else f"done: {done} steps")
    return 0


def _report_refusal(plan: InitPlan, out: Callable[[str], None]) -> None:
    out(
        f"refused: {len(plan.conflicts)} conflict(s), {len(plan.problems)} problem(s);"
        " nothing was changed"
    )
    for problem in plan.problems:
        out(f"problem: {problem}")
    for conflict in plan.conflicts:
        out(f"conflict: {conflict}")
    if plan.conflicts:
        out("keep one version of each conflicting file (move the others away), then re-run")


def _actions(plan: InitPlan) -> Iterator[tuple[str, Callable[[], None]]]:
    """The plan as (step text, action) pairs, in the order that keeps every file safe."""
    for path in plan.stale:
        yield f"remove leftover temp {path}", partial(_unlink, path)
    if plan.adopt is not None:
        source, home = plan.adopt
        yield f"rename {source} -> {home}", partial(_rename_new, source, home)
    for folder, mode in plan.make_dirs:
        yield f"create directory {folder}", partial(_mkdir, folder, mode)
    if plan.active is not None:
        # Early, so the active link (``~/.claude``) is missing only between rename and link.
        link, home = plan.active
        yield f"link {link} -> {home}", partial(flip_active_link, link, home)
    for move in plan.moves:
        if not move.duplicate:
            yield f"move {move.src} -> {move.dest}", partial(_place, move.src, move.dest)
    if plan.moves:
        made = {f for f, _ in plan.make_dirs} | {f.parent for f, _ in plan.make_dirs}
        folders = sorted({m.dest.parent for m in plan.moves} | made)
        yield f"sync {len(folders)} new or changed folder(s)", partial(_fsync_all, folders)
    by_folder: dict[Path, list[FileMove]] = {}
    for move in plan.moves:
        by_folder.setdefault(move.src.parent, []).append(move)
    for folder, moves in by_folder.items():
        text = f"remove {len(moves)} moved original(s) from {folder} (each checked identical)"
        yield text, partial(_drop_originals, folder, moves)
    for folder in plan.prune:
        yield f"remove empty directory {folder}", partial(_rmdir, folder)
    for link, target in plan.links:
        yield f"link {link} -> {target}", partial(_link_folder, link, target)


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


def _rename_new(source: Path, dest: Path) -> None:
    """Rename ``source`` to ``dest``, which must not exist (a folder is never merged blindly)."""
    if os.path.lexists(dest):
        raise AccountError([f"{dest} appeared meanwhile; nothing renamed, re-run"])
    source.rename(dest)
    fsync_dir(dest.parent)


def _mkdir(folder: Path, mode: int) -> None:
    folder.mkdir(mode=mode, parents=True, exist_ok=True)


def _place(src: Path, dest: Path) -> None:
    """Give ``dest`` the content of ``src`` without touching ``src`` (link, else copy)."""
    if os.path.lexists(dest):
        if same_content(src, dest):
            return
        raise AccountError([f"{dest} appeared with other content meanwhile; nothing moved, re-run"])
    try:
        os.link(src, dest, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in _COPY_ERRNOS:
            raise
        _copy_into(src, dest)


def _copy_into(src: Path, dest: Path) -> None:
    """Copy ``src`` to a temp name beside ``dest``, fsync, verify, then link it in place."""
    temp = temp_path(dest.parent)
    try:
        if src.is_symlink():
            temp.symlink_to(src.readlink())
        else:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            with src.open("rb") as reader, os.fdopen(os.open(temp, flags, 0o600), "wb") as writer:
                shutil.copyfileobj(reader, writer, _CHUNK)
                writer.flush()
                os.fsync(writer.fileno())
            shutil.copystat(src, temp)
        if not same_content(src, temp):
            raise AccountError([f"the copy of {src} does not match it; nothing removed"])
        os.link(temp, dest, follow_symlinks=False)
    finally:
        temp.unlink(missing_ok=True)


def _fsync_all(folders: Sequence[Path]) -> None:
    for folder in folders:
        fsync_dir(folder)


def _drop_originals(folder: Path, moves: Sequence[FileMove]) -> None:
    """Remove each original whose new copy is verified identical; refuse otherwise."""
    for move in moves:
        if not os.path.lexists(move.src):
            continue
        if not os.path.lexists(move.dest) or not same_content(move.src, move.dest):
            raise AccountError([f"{move.dest} does not match {move.src}; {move.src} kept, re-run"])
        move.src.unlink()
    fsync_dir(folder)


def _rmdir(folder: Path) -> None:
    """Remove an emptied source folder; one that gained files stops the run (re-run moves them)."""
    if not os.path.lexists(folder):
        return
    folder.rmdir()
    fsync_dir(folder.parent)


def _link_folder(link: Path, target: Path) -> None:
    """Replace an emptied (or missing) home folder by the link to its shared folder."""
    if link.is_symlink():
        if points_to(link, target):
            return
        raise AccountError([describe(LinkState.DIVERGENT, link, target)])
    if link.is_dir():
        link.rmdir()
    flip_active_link(link, target)
