"""Task worktrees: made before delivery, reported on and tidied when the task ends.

Life cycle of a task with ``isolation: worktree`` (the daemon drives it):

1. :meth:`Worktrees.prepare`, before the executor starts: check the project is a git
   repository and resolve ``base:`` (default ``HEAD``) to a commit; pick a free name
   (``agentq/<stem>``, then ``-2``, ``-3`` …); **record the intent** (path, branch, base
   commit) in the task's control record; ``git worktree add -b``; record it ready. A
   failure removes whatever was made, so a task is never left half set up.
2. The agent works in the worktree (``Job.cwd``); the project's checkout and ``HEAD``
   are never touched.
3. :meth:`Worktrees.conclude`, when the task ends (done or failed): commits, diffstat and
   uncommitted files for the footer; a clean worktree is removed (its branch stays), one
   with uncommitted changes (or with ``keep_worktree``) is kept, its folder's mtime set to
   the end of the task (the janitor's ``keep_worktrees`` counts from it).
4. :meth:`Worktrees.discard`, when a task goes back to the inbox without having run
   (a restart before delivery): its worktree and branch go, unless they hold work.

:func:`list_orphans` lists the worktrees whose task is no longer in flight, and
:func:`prune_orphan` removes one (the janitor's lister and its pruner).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from agentq.core import crashpoints
from agentq.core.errors import GitError, WorkspaceError
from agentq.queue.isolation import BRANCH_PREFIX, WORKTREES_DIRNAME, Worktree
from agentq.queue.protocol import QUEUE_DIRNAME, Claim, Project
from agentq.queue.vetting import NameKind, classify_name
from agentq.workspace.git import Commit, DiffStat, Git, require_repository

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: How many suffixed names (``-2`` …) are tried before giving up.
MAX_SUFFIX = 1000
#: How many commit subjects and uncommitted files a footer lists.
LIST_LIMIT = 10


@dataclass(frozen=True)
class Report:
    """What a task left in its worktree, for the footer."""

    worktree: Worktree
    commits: tuple[Commit, ...] = ()
    diffstat: DiffStat = field(default_factory=DiffStat)
    uncommitted: tuple[str, ...] = ()
    #: Why the folder was kept ('' when it was removed).
    kept: str = ""
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class Orphan:
    """A worktree folder under ``.agent-queue/worktrees/`` whose task is not in flight."""

    path: Path
    branch: str | None
    modified: float


class Worktrees:
    """Makes, reports on and removes task worktrees, through the git adapter."""

    def __init__(self, git: Git) -> None:
        self._git = git

    def prepare(self, claim: Claim, base_ref: str | None) -> Worktree:
        """Make the claimed task's worktree and record it; see the module docstring.

        Raises:
            WorkspaceError: not a git repository, an unknown ``base:``, or git refused;
                nothing is left behind (no folder, no branch, nothing recorded).
        """
        project = claim.project
        require_repository(self._git, project.path)
        ref = base_ref or "HEAD"
        base = self._git.resolve(project.path, ref)
        if base is None:
            if base_ref is None:
                raise WorkspaceError("the repository has no commit yet: HEAD names none")
            raise WorkspaceError(f"unknown base: {ref!r} is not a commit of this repository")
        folder = _worktrees_folder(project)
        path, branch = self._free_names(project.path, folder, claim.name)
        worktree = Worktree(path, branch, base, ref, self._git.prefix(project.path))
        project.note_worktree(claim, worktree)  # the intent: a restart finds it (crash safety)
        crashpoints.hit("after_worktree_intent")
        try:
            self._git.worktree_add(project.path, path, branch, base)
        except GitError as exc:
            self.discard(project, worktree)
            project.note_worktree(claim, None)
            raise WorkspaceError(f"cannot create the task's worktree: {exc.stderr}") from exc
        crashpoints.hit("after_worktree_add")
        ready = replace(worktree, ready=True)
        project.note_worktree(claim, ready)
        logger.info(
            "worktree created",
            extra={"task": claim.task_id, "branch": branch, "path": str(path), "base": base},
        )
        return ready

    def _free_names(self, repo: Path, folder: Path, name: str) -> tuple[Path, str]:
        stem = branch_stem(name)
        for n in range(1, MAX_SUFFIX + 1):
            candidate = stem if n == 1 else f"{stem}-{n}"
            branch = BRANCH_PREFIX + candidate
            path = folder / candidate
            if os.path.lexists(path) or self._git.branch_commit(repo, branch) is not None:
                continue
            if not self._git.is_branch_name(repo, branch):
                raise WorkspaceError(f"cannot name a branch for {name!r}: {branch!r} is invalid")
            return path, branch
        raise WorkspaceError(f"no free branch name for {name!r} (tried {MAX_SUFFIX})")

    def conclude(self, project: Project, worktree: Worktree, keep: bool) -> Report:
        """Report what the task left and remove its worktree unless it must be kept.

        Never raises for git trouble: what could not be found out is listed in
        ``problems`` (the task's result matters more than its report). Safe to repeat.
        """
        problems: list[str] = []
        uncommitted: list[str] = []
        exists = worktree.path.is_dir()
        if exists:
            uncommitted = self._try(problems, lambda: self._git.changed_files(worktree.path), [])
        no_commits: list[Commit] = []
        commits = self._try(
            problems,
            lambda: self._git.commits(project.path, worktree.base, worktree.branch),
            no_commits,
        )
        diffstat = self._try(
            problems,
            lambda: self._git.diffstat(project.path, worktree.base, worktree.branch),
            DiffStat(),
        )
        kept = ""
        if exists and (keep or uncommitted or problems):
            kept = (
                "keep_worktree"
                if keep
                else "uncommitted changes"
                if uncommitted
                else "see problems"
            )
            with contextlib.suppress(OSError):
                os.utime(worktree.path)  # the janitor's keep_worktrees counts from now
        elif exists:
            try:
                self._git.worktree_remove(project.path, worktree.path)
            except GitError as exc:
                kept, problems = "could not remove it", [*problems, exc.stderr]
        else:
            self._try(problems, lambda: self._git.worktree_prune(project.path), None)
        return Report(worktree, tuple(commits), diffstat, tuple(uncommitted), kept, tuple(problems))

    def discard(self, project: Project, worktree: Worktree) -> bool:
        """Remove a worktree (and its branch) that its task never worked in; True when gone.

        A worktree holding work (uncommitted files, or a branch moved past its base) is
        kept: nothing anyone made is ever deleted.
        """
        path, repo = worktree.path, project.path
        registered = _resolved(path) in {_resolved(p) for p in self._git.worktrees(repo)}
        if registered:
            head = self._git.branch_commit(repo, worktree.branch)
            if self._git.changed_files(path) or head not in (None, worktree.base):
                logger.warning("worktree holds work; kept", extra={"path": str(path)})
                return False
            self._git.worktree_remove(repo, path, force=True)
        elif os.path.lexists(path) and _inside(path, _worktrees_folder(project)):
            # Made by a `git worktree add` that never finished: nothing of anyone's is in it.
            shutil.rmtree(path)
        self._git.worktree_prune(repo)
        if self._git.branch_commit(repo, worktree.branch) == worktree.base:
            self._git.delete_branch(repo, worktree.branch)
        logger.info("worktree discarded", extra={"path": str(path), "branch": worktree.branch})
        return True

    @staticmethod
    def _try(problems: list[str], action: Callable[[], T], default: T) -> T:
        try:
            return action()
        except GitError as exc:
            problems.append(str(exc))
            return default


def branch_stem(name: str) -> str:
    """The branch and folder name part for task ``name`` (``fix-login.md`` → ``fix-login``)."""
    stem = name[:-3] if name.endswith(".md") else name
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", stem)
    stem = re.sub(r"\.{2,}", ".", stem).strip(".-")
    if stem.endswith(".lock"):
        stem = stem[: -len(".lock")] + "-lock"
    return stem or "task"


def report_details(report: Report) -> tuple[tuple[str, str], ...]:
    """The footer rows of a worktree report."""
    tree = report.worktree
    rows = [("branch", tree.branch), ("base", f"{tree.base[:12]} ({tree.base_ref})")]
    subjects = "; ".join(f"{c.short} {c.subject}" for c in report.commits[:LIST_LIMIT])
    more = len(report.commits) - LIST_LIMIT
    subjects += f"; … {more} more" if more > 0 else ""
    rows.append(("commits", f"{len(report.commits)}" + (f": {subjects}" if subjects else "")))
    stat_ = report.diffstat
    rows.append(
        (
            "diffstat",
            f"{stat_.files} file(s) changed, {stat_.insertions} insertion(s)(+), "
            f"{stat_.deletions} deletion(s)(-)",
        )
    )
    files = ", ".join(report.uncommitted[:LIST_LIMIT])
    more = len(report.uncommitted) - LIST_LIMIT
    files += f", … {more} more" if more > 0 else ""
    rows.append(("uncommitted", f"{len(report.uncommitted)}: {files}" if files else "none"))
    rows.append(("worktree", f"kept at {tree.path} ({report.kept})" if report.kept else "removed"))
    rows += [("worktree problem", problem) for problem in report.problems]
    return tuple(rows)


def list_orphans(project: Project, git: Git | None = None) -> list[Orphan]:
    """Worktree folders under ``.agent-queue/worktrees/`` whose task is no longer in flight.

    In flight means a ``.working``/``.delegated`` file in the inbox whose control record
    names the worktree. Kept worktrees of finished tasks are orphans too: deciding how
    old one may get is the caller's business.
    """
    folder = project.queue / WORKTREES_DIRNAME
    if not folder.is_dir():
        return []
    live: set[Path] = set()
    for entry in os.scandir(project.inbox):
        kind = classify_name(entry.name)
        if kind in (NameKind.WORKING, NameKind.DELEGATED):
            record = project.load_record(entry.name.rsplit(".", 1)[0])
            if record is not None and record.worktree is not None:
                live.add(_resolved(record.worktree.path))
    git = git or Git()
    try:
        registered = git.worktrees(project.path)
    except GitError:
        registered = {}  # no repository (any more): every folder is an orphan, without branch
    branches = {_resolved(p): b for p, b in registered.items()}
    orphans = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        path = Path(entry.path)
        if _resolved(path) in live or not entry.is_dir(follow_symlinks=False):
            continue
        modified = entry.stat(follow_symlinks=False).st_mtime
        orphans.append(Orphan(path, branches.get(_resolved(path)), modified))
    return orphans


def prune_orphan(path: Path, git: Git | None = None) -> None:
    """Remove a task worktree's folder, whatever it holds (its branch stays): a janitor's pruner.

    Raises:
        WorkspaceError: ``path`` is not a folder under some ``.agent-queue/worktrees/``.
    """
    git = git or Git()
    queue = path.parent.parent
    if path.parent.name != WORKTREES_DIRNAME or queue.name != QUEUE_DIRNAME or path.is_symlink():
        raise WorkspaceError(f"{path} is not a task worktree", path)
    repo = queue.parent
    try:
        registered = _resolved(path) in {_resolved(p) for p in git.worktrees(repo)}
    except GitError:
        registered = False
    if registered:
        git.worktree_remove(repo, path, force=True)
    elif path.is_dir():
        shutil.rmtree(path)
    with contextlib.suppress(GitError):
        git.worktree_prune(repo)
    logger.info("worktree pruned", extra={"path": str(path), "registered": registered})


def _worktrees_folder(project: Project) -> Path:
    """``.agent-queue/worktrees/`` (made 0700); refused when it is a link or not a folder."""
    folder = project.queue / WORKTREES_DIRNAME
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        mode = folder.lstat().st_mode
    except OSError as exc:
        raise WorkspaceError(f"cannot create {folder}: {exc.strerror}", folder) from exc
    if not stat.S_ISDIR(mode):
        raise WorkspaceError(f"refusing {folder}: a symbolic link or not a folder", folder)
    return folder


def _resolved(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _inside(path: Path, folder: Path) -> bool:
    return _resolved(path).parent == _resolved(folder)
