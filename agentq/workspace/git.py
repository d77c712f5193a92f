"""The git adapter: the one module that runs git.

Every call is an argument list (never a shell), with ``--`` or ``--end-of-options``
before anything a task could have written, ``GIT_TERMINAL_PROMPT=0`` (git never
waits for a password) and ``core.hooksPath=/dev/null`` plus ``core.fsmonitor=false``
(agentq's own git calls run no repository hook or monitor command). A failing
command raises :class:`~agentq.core.errors.GitError` with git's message; queries
that may fairly find nothing return ``None`` instead.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from agentq.core.errors import GitError, WorkspaceError

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 60.0
_SAFETY = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false")
_SHORTSTAT = re.compile(r"(\d+) (file|insertion|deletion)")
#: A revision as :meth:`Git.resolve` accepts it before git sees it.
_REVISION_RE = re.compile(r"^[^\s\x00-\x1f\x7f-][^\s\x00-\x1f\x7f]{0,199}$")


@dataclass(frozen=True)
class DiffStat:
    """``git diff --shortstat`` as numbers."""

    files: int = 0
    insertions: int = 0
    deletions: int = 0


@dataclass(frozen=True)
class Commit:
    """One commit: its short id and subject line."""

    short: str
    subject: str


class Git:
    """Runs git with a fixed, safe environment.

    Args:
        env: the environment git runs with (the daemon's own by default); agentq adds
            ``GIT_TERMINAL_PROMPT=0`` and ``LC_ALL=C`` (its output is parsed).
        timeout: seconds one git command may take.
    """

    def __init__(self, env: Mapping[str, str] | None = None, timeout: float = DEFAULT_TIMEOUT):
        base = dict(os.environ if env is None else env)
        base.update({"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "GIT_OPTIONAL_LOCKS": "0"})
        self._env = base
        self._timeout = timeout

    def run(self, cwd: Path, *args: str) -> str:
        """Run ``git ARGS`` in ``cwd``; return its standard output.

        Raises:
            GitError: git is missing, timed out or exited non-zero.
        """
        command = ["git", *_SAFETY, *args]
        logger.debug("git", extra={"args": list(args), "cwd": str(cwd)})
        try:
            done = subprocess.run(
                command,
                cwd=cwd,
                env=self._env,
                capture_output=True,
                text=True,
                timeout=self._timeout,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except FileNotFoundError as exc:
            raise GitError(list(args), f"cannot run git in {cwd}: {exc.strerror}", cwd) from exc
        except subprocess.TimeoutExpired as exc:
            raise GitError(list(args), f"timed out after {self._timeout:g}s", cwd) from exc
        except OSError as exc:
            raise GitError(list(args), str(exc), cwd) from exc
        if done.returncode != 0:
            raise GitError(list(args), done.stderr.strip() or done.stdout.strip(), cwd)
        return done.stdout

    def query(self, cwd: Path, *args: str) -> str | None:
        """Like :meth:`run`, but ``None`` when git says no (a lenient query)."""
        try:
            return self.run(cwd, *args)
        except GitError:
            return None

    # -- repositories --------------------------------------------------------------

    def toplevel(self, path: Path) -> Path | None:
        """The top folder of the work tree ``path`` is in, or ``None`` outside a repository."""
        if not path.is_dir():
            return None
        out = self.query(path, "rev-parse", "--show-toplevel")
        return Path(out.strip()) if out and out.strip() else None

    def prefix(self, path: Path) -> str:
        """``path``'s place inside its work tree ('' at the top)."""
        return (self.query(path, "rev-parse", "--show-prefix") or "").strip().rstrip("/")

    def resolve(self, repo: Path, revision: str) -> str | None:
        """The full commit id ``revision`` names in ``repo``, or ``None`` when it names none."""
        if not _REVISION_RE.fullmatch(revision):
            return None
        out = self.query(
            repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{revision}^{{commit}}"
        )
        return out.strip() if out and out.strip() else None

    def is_branch_name(self, repo: Path, name: str) -> bool:
        """Whether ``name`` is a valid branch name (``git check-ref-format``)."""
        if name.startswith("-"):
            return False
        return self.query(repo, "check-ref-format", f"refs/heads/{name}") is not None

    def branch_commit(self, repo: Path, branch: str) -> str | None:
        """The commit a local branch points at, or ``None`` when there is no such branch."""
        return self.resolve(repo, f"refs/heads/{branch}")

    def delete_branch(self, repo: Path, branch: str) -> None:
        """Delete a local branch (``-D``: the caller checked it holds no work)."""
        self.run(repo, "branch", "-D", "--end-of-options", branch)

    # -- worktrees -----------------------------------------------------------------

    def worktree_add(self, repo: Path, path: Path, branch: str, commit: str) -> None:
        """``git worktree add -b BRANCH PATH COMMIT``: a new branch checked out in a new folder."""
        self.run(
            repo, "worktree", "add", "--quiet", "--no-track", "-b", branch, "--", str(path), commit
        )

    def worktree_remove(self, repo: Path, path: Path, force: bool = False) -> None:
        """Remove a worktree's folder and its administrative files (the branch stays)."""
        self.run(repo, "worktree", "remove", *(["--force"] if force else []), "--", str(path))

    def worktree_prune(self, repo: Path) -> None:
        """Forget worktrees whose folders are gone."""
        self.run(repo, "worktree", "prune")

    def worktrees(self, repo: Path) -> dict[Path, str | None]:
        """Every worktree of ``repo``: folder → branch (``None`` when detached)."""
        out = self.run(repo, "worktree", "list", "--porcelain")
        found: dict[Path, str | None] = {}
        current: Path | None = None
        for line in out.splitlines():
            if line.startswith("worktree "):
                current = Path(line[len("worktree ") :])
                found[current] = None
            elif line.startswith("branch refs/heads/") and current is not None:
                found[current] = line[len("branch refs/heads/") :]
        return found

    # -- what a task did -----------------------------------------------------------

    def commits(self, repo: Path, base: str, branch: str) -> list[Commit]:
        """The commits on ``branch`` that ``base`` does not have, oldest first."""
        out = self.run(
            repo, "log", "--reverse", "--format=%h %s", f"{base}..refs/heads/{branch}", "--"
        )
        commits = []
        for line in out.splitlines():
            short, _, subject = line.partition(" ")
            commits.append(Commit(short, subject))
        return commits

    def diffstat(self, repo: Path, base: str, branch: str) -> DiffStat:
        """Files changed, insertions and deletions from ``base`` to ``branch``."""
        out = self.run(repo, "diff", "--shortstat", base, f"refs/heads/{branch}", "--")
        numbers = {kind: int(count) for count, kind in _SHORTSTAT.findall(out)}
        return DiffStat(
            numbers.get("file", 0), numbers.get("insertion", 0), numbers.get("deletion", 0)
        )

    def changed_files(self, worktree: Path) -> list[str]:
        """Files changed but not committed in a work tree (untracked ones included)."""
        out = self.run(worktree, "status", "--porcelain", "--untracked-files=all", "-z")
        names = []
        entries = out.split("\0")
        index = 0
        while index < len(entries):
            entry = entries[index]
            index += 1
            if len(entry) < 4:
                continue
            names.append(entry[3:])
            if entry[0] in "RC":
                index += 1  # a rename's source path follows as its own entry
        return names

    # -- what an agent does (the simulator) ----------------------------------------

    def commit_all(self, worktree: Path, message: str) -> str:
        """``git add -A`` then ``git commit -m MESSAGE``; return the new commit's short id."""
        self.run(worktree, "add", "-A", "--", ".")
        self.run(worktree, "commit", "--quiet", "--no-verify", "-m", message)
        return self.run(worktree, "rev-parse", "--short", "HEAD").strip()

    def init(self, path: Path, branch: str = "main") -> None:
        """Make ``path`` a new repository whose first branch is ``branch``."""
        self.run(path, "init", "--quiet", f"--initial-branch={branch}")


def require_repository(git: Git, path: Path) -> Path:
    """The top of the work tree ``path`` is in.

    Raises:
        WorkspaceError: ``path`` is not inside a git work tree.
    """
    top = git.toplevel(path)
    if top is None:
        raise WorkspaceError(
            f"{path} is not a git repository (isolation: worktree needs one)", path
        )
    return top
