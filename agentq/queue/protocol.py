"""The queue protocol of ARCHITECTURE.md §2 on one project's ``.agent-queue/`` folder.

Vet (the inbox scan of :mod:`agentq.queue.scan`), claim, complete, refuse, requeue,
recover and sweep. Each transition is one atomic rename or link; content is never
edited in place (see :mod:`agentq.durable`).
Per-task control records (attempt counter, claim id, delivery phase, session; see
:mod:`agentq.queue.records`) live in ``.agent-queue/.agentq/<name>.json`` so that they
survive crashes and restarts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentq.core import crashpoints, durable
from agentq.core.errors import QueueError, RefusedEntryError
from agentq.queue.isolation import Worktree
from agentq.queue.records import KEEP, ControlRecord, Keep, Phase
from agentq.queue.scan import InboxScanner, ScanResult
from agentq.queue.taskfile import MAX_FILE_BYTES
from agentq.queue.vetting import (
    DELEGATED_SUFFIX,
    NAME_RE,
    WORKING_SUFFIX,
    NameKind,
    classify_name,
    refusal_reason,
    task_of,
)

logger = logging.getLogger(__name__)

QUEUE_DIRNAME = ".agent-queue"
CONTROL_DIRNAME = ".agentq"
QUARANTINE_DIRNAME = "quarantine"


@dataclass
class Claim:
    """A task this daemon owns: ``inbox/<name>.working`` plus its control record."""

    project: Project
    name: str
    record: ControlRecord
    suffix: str = WORKING_SUFFIX
    claimed_ns: int = 0  #: when the claim's rename happened (its ctime; 0: not a fresh claim)

    @property
    def path(self) -> Path:
        """The claimed file: ``inbox/<name>.working`` (local) or ``<name>.delegated`` (remote)."""
        return self.project.inbox / (self.name + self.suffix)

    @property
    def task_id(self) -> str:
        """A stable identifier for logs and ledgers: ``<project>/<name>``."""
        return f"{self.project.path.name}/{self.name}"

    def progress(
        self,
        phase: Phase | Keep = KEEP,
        *,
        session: str | Keep | None = KEEP,
        session_id: str | Keep | None = KEEP,
    ) -> None:
        """Record how far delivery went, on disk before this returns.

        The executor calls this before it types anything (``delivering``), so that a
        crash never leaves keystrokes sent that recovery does not know about; fields
        left at :data:`KEEP` are not changed.
        """
        record = self.record
        if not isinstance(phase, Keep):
            record.phase = phase
        if not isinstance(session, Keep):
            record.session = session
        if not isinstance(session_id, Keep):
            record.session_id = session_id
        self.project.save_record(record)


class Project:
    """One project's queue folder and the protocol operations on it."""

    def __init__(self, path: Path, control: Path | None = None) -> None:
        """``control`` puts the control records elsewhere (a fleet worker keeps them in its
        own state folder, out of its checkout of the project)."""
        self.path = path
        self.queue = path / QUEUE_DIRNAME
        self.inbox = self.queue / "inbox"
        self.tmp = self.queue / "tmp"
        self.done = self.queue / "done"
        self.failed = self.queue / "failed"
        self.control = control or self.queue / CONTROL_DIRNAME
        self.quarantine = self.queue / QUARANTINE_DIRNAME
        self._uid = os.getuid()
        self._scanner = InboxScanner(self.inbox, self._uid)

    def __repr__(self) -> str:
        return f"Project({str(self.path)!r})"

    # -- set-up ---------------------------------------------------------------------

    def ensure_dirs(self) -> None:
        """Create the queue folders (0700), an ``lstat`` each if there; refuse symlinked ones."""
        for folder in (self.queue, self.inbox, self.tmp, self.done, self.failed, self.control):
            try:
                st = os.lstat(folder)
            except FileNotFoundError:
                try:
                    folder.mkdir(mode=0o700, exist_ok=True)
                    st = os.lstat(folder)
                except OSError as exc:
                    raise QueueError(f"cannot create {folder}: {exc.strerror}", folder) from exc
            if not stat.S_ISDIR(st.st_mode):
                raise QueueError(
                    f"refusing project: {folder} is a symbolic link or not a folder", folder
                )

    # -- scanning -------------------------------------------------------------------

    def scan(
        self, now_ns: int, quiet_ns: int, whole: Mapping[str, tuple[int, int]] | None = None
    ) -> ScanResult:
        """List the inbox and sort every entry (see :class:`agentq.queue.scan.InboxScanner`)."""
        return self._scanner.scan(self._list(self.inbox), now_ns, quiet_ns, whole)

    def _list(self, folder: Path) -> Iterator[os.DirEntry[str]]:
        try:
            with os.scandir(folder) as it:
                yield from it
        except FileNotFoundError:
            return
        except OSError as exc:
            raise QueueError(f"cannot list {folder}: {exc.strerror}", folder) from exc

    # -- claiming -------------------------------------------------------------------

    def claim(self, name: str) -> Claim | None:
        """Claim ``inbox/<name>`` by renaming it to ``<name>.working``; ``None`` if it is gone."""
        src = self.inbox / name
        dst = self.inbox / (name + WORKING_SUFFIX)
        try:
            if os.path.lexists(dst):
                return None  # a claim of the same name is in flight; wait for it
            os.rename(src, dst)
        except FileNotFoundError:
            return None
        crashpoints.hit("after_claim")
        st = os.lstat(dst)
        record = self.load_record(name)
        if record is None or record.ino != st.st_ino:
            record = ControlRecord(name=name, ino=st.st_ino)
        return Claim(self, name, record, claimed_ns=st.st_ctime_ns)

    def begin_attempt(self, claim: Claim, executor: str, now_iso: str) -> None:
        """Count this attempt and persist it before any side effect (R11)."""
        # Providers that failed terminally stay excluded for the task's later attempts.
        claim.record.begin(secrets.token_hex(8), now_iso, executor)
        self.save_record(claim.record)
        crashpoints.hit("after_attempt_persist")

    def read_claimed(self, claim: Claim) -> bytes:
        """Read a claimed file's bytes (up to the size cap + 1) without following links."""
        fd = os.open(claim.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            reason = refusal_reason(os.fstat(fd), self._uid)
            if reason:
                raise RefusedEntryError(reason, claim.path)
            chunks = []
            remaining = MAX_FILE_BYTES + 1
            while remaining > 0:
                chunk = os.read(fd, min(remaining, 1 << 20))
                if not chunk:
                    break
                chunks.append(chunk)
                remaining -= len(chunk)
        finally:
            os.close(fd)
        return b"".join(chunks)

    def mark_delegated(self, claim: Claim, content: bytes) -> Claim:
        """Replace ``<name>.working`` by the marker ``<name>.delegated`` holding ``content``.

        The marker is written whole (temp file, fsync, rename) before the working
        file goes, so a crash leaves the marker, the working file, or both: recovery
        keeps the marker when both exist.
        """
        marker = self.inbox / (claim.name + DELEGATED_SUFFIX)
        durable.write_atomic(marker, content, crash_point="mid_marker_write")
        claim.record.ino = os.lstat(marker).st_ino  # the marker is a new file: keep the count
        self.save_record(claim.record)
        crashpoints.hit("after_marker")
        with contextlib.suppress(FileNotFoundError):
            claim.path.unlink()
        durable.fsync_dir(self.inbox)
        return Claim(self, claim.name, claim.record, DELEGATED_SUFFIX)

    def release(self, claim: Claim) -> None:
        """Undo a claim that did nothing: the attempt is given back, the file goes back."""
        rec = claim.record
        rec.attempts = max(0, rec.attempts - 1)
        rec.claim_id = ""
        rec.phase = Phase.RELEASED
        self._return(claim)

    def requeue(self, claim: Claim) -> None:
        """Give a claimed task back to the inbox (its attempt count is kept)."""
        claim.record.phase = Phase.REQUEUED
        self._return(claim)
        durable.fsync_dir(self.inbox)

    def _return(self, claim: Claim) -> None:
        """Put a claimed file back as ``<name>``, never over a newer task of the same name."""
        rec = claim.record
        rec.ino = os.lstat(claim.path).st_ino
        self.save_record(rec)
        try:
            final = durable.link_noclobber(claim.path, self.inbox, claim.name)
        except OSError:  # not linkable (a folder swapped in): a plain rename, checked first
            final = durable.rename_noclobber(claim.path, self.inbox, claim.name)
        else:
            claim.path.unlink()
        if final.name != claim.name:  # the record follows the task to its new name
            rec.name = final.name
            self.save_record(rec)
            self.remove_record(claim.name)

    # -- completing -----------------------------------------------------------------

    def finish(self, claim: Claim, done: bool, head: bytes | None, footer: bytes) -> Path:
        """Move a claimed task to ``done/`` or ``failed/`` with its footer, never clobbering.

        ``head`` is the task text to keep (the file without an old footer); ``None``
        copies the claimed file's bytes as they are (for files that could not be parsed).
        Returns the final path.
        """
        folder = self.done if done else self.failed
        tmp = durable.temp_path(folder)
        self._write_result(tmp, claim.path, head, footer)
        try:
            final = durable.link_noclobber(tmp, folder, claim.name)
        finally:
            tmp.unlink(missing_ok=True)
        crashpoints.hit("after_move_before_dir_fsync")
        durable.fsync_dir(folder)
        crashpoints.hit("after_move_before_cleanup")
        self.drop(claim)
        if final.name != claim.name:
            logger.warning(
                "name collision: stored under a suffix",
                extra={"task": claim.task_id, "path": str(final)},
            )
        return final

    def _write_result(self, tmp: Path, src: Path, head: bytes | None, footer: bytes) -> None:
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600
        )
        try:
            with os.fdopen(fd, "wb", closefd=False) as out:
                if head is not None:
                    out.write(head)
                else:
                    self._copy_raw(src, out)
                crashpoints.hit("mid_footer_write")
                out.write(footer)
                out.flush()
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)

    def _copy_raw(self, src: Path, out: Any) -> None:
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            if refusal_reason(os.fstat(fd), self._uid):
                return  # never copy bytes of something that is not plainly ours
            with os.fdopen(fd, "rb", closefd=False) as inp:
                shutil.copyfileobj(inp, out, 1 << 20)
        finally:
            os.close(fd)

    def drop(self, claim: Claim) -> None:
        """Remove a claimed file and its record once its result is safely elsewhere.

        No folder fsync: if a power cut brings the claimed file back, recovery finds
        its result by claim id in ``done/``/``failed/`` and drops it again. Something
        that is not a file (a folder swapped in after the claim) goes to quarantine.
        """
        try:
            claim.path.unlink()
        except FileNotFoundError:
            pass
        except OSError:
            self.quarantine.mkdir(mode=0o700, exist_ok=True)
            durable.rename_noclobber(claim.path, self.quarantine, claim.name)
        self.remove_record(claim.name)

    def refuse(self, name: str, reason: str, footer: bytes) -> Path | None:
        """Refuse an entry that must not be read: a stub in ``failed/``, the entry in quarantine.

        The entry itself (a link, FIFO, folder, hard link…) is renamed, never opened,
        so nothing it points at is read or changed. Returns the stub's path.
        """
        src = self.inbox / name
        if not os.path.lexists(src):
            return None
        stub = (
            f"# {name}\n\nagentq refused this inbox entry and moved it, untouched, to "
            f"`.agent-queue/{QUARANTINE_DIRNAME}/`.\n"
        ).encode()
        tmp = durable.write_temp(self.failed, [stub, footer])
        try:
            final = durable.link_noclobber(tmp, self.failed, _safe_stub_name(name))
        finally:
            tmp.unlink(missing_ok=True)
        durable.fsync_dir(self.failed)
        self.quarantine.mkdir(mode=0o700, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            durable.rename_noclobber(src, self.quarantine, name)
        durable.fsync_dir(self.inbox)
        self.remove_record(name)
        return final

    # -- control records ------------------------------------------------------------

    def _record_path(self, name: str) -> Path:
        return self.control / (name + ".json")

    def note_worktree(self, claim: Claim, worktree: Worktree | None) -> None:
        """Record (or forget) the claimed task's worktree, on disk before this returns."""
        claim.record.worktree = worktree
        self.save_record(claim.record)

    def load_record(self, name: str) -> ControlRecord | None:
        """Read a task's control record; a corrupt one is moved aside and ``None`` returned."""
        path = self._record_path(name)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return ControlRecord.from_json(raw)
        except (ValueError, KeyError, TypeError):
            logger.warning("corrupt control record moved aside", extra={"path": str(path)})
            os.replace(path, path.with_name(path.name + ".corrupt"))
            return None

    def save_record(self, record: ControlRecord) -> None:
        """Persist a control record atomically.

        Atomic against a daemon crash but not fsynced: a power cut can at worst roll
        a record back by one step (one attempt not counted, a delivery phase
        forgotten), which recovery treats as the earlier state. Task files, the
        only thing users must never lose, are always fsynced.
        """
        durable.write_atomic(self._record_path(record.name), record.to_json(), sync=False)

    def remove_record(self, name: str) -> None:
        """Delete a task's control record once the task left the inbox."""
        with contextlib.suppress(FileNotFoundError):
            self._record_path(name).unlink()  # an orphan left by a power cut is swept at start

    def find_result(self, name: str, claim_id: str) -> Path | None:
        """Find the ``done/``/``failed/`` file a crashed completion already wrote for a claim."""
        if not claim_id:
            return None
        stem = name[:-3] if name.endswith(".md") else name
        marker = claim_id.encode()
        for folder in (self.done, self.failed):
            for entry in self._list(folder):
                named_alike = entry.name.startswith(stem) and not entry.name.startswith(".")
                if named_alike and marker in _tail(Path(entry.path)):
                    return Path(entry.path)
        return None

    # -- housekeeping ---------------------------------------------------------------

    def sweep(self, now: float, tmp_max_age: float) -> int:
        """Remove stale temp files: ours anywhere, producers' in ``tmp/`` after the max age."""
        removed = 0
        for folder in (self.done, self.failed, self.control, self.inbox, self.quarantine):
            for entry in self._list(folder):
                if entry.name.startswith(durable.TEMP_PREFIX) and entry.is_file(
                    follow_symlinks=False
                ):
                    _unlink_quietly(Path(entry.path))
                    removed += 1
        for path in self.stale_tmp(now, tmp_max_age) + self.orphan_records():
            _unlink_quietly(path)
            removed += 1
        return removed

    def stale_tmp(self, now: float, max_age: float) -> list[Path]:
        """Producers' entries (no folders) in ``tmp/`` older than ``max_age`` (Maildir's 36 h)."""
        stale = []
        for entry in self._list(self.tmp):
            with contextlib.suppress(FileNotFoundError):
                st = entry.stat(follow_symlinks=False)
                if now - st.st_mtime > max_age and not stat.S_ISDIR(st.st_mode):
                    stale.append(Path(entry.path))
        return stale

    def orphan_records(self) -> list[Path]:
        """Control records whose task has no entry left in the inbox (records listed first)."""
        records = [e for e in self._list(self.control) if e.name.endswith(".json")]
        live = {task_of(e.name) for e in self._list(self.inbox)}
        return [Path(e.path) for e in records if e.name[: -len(".json")] not in live]

    def counts(self) -> dict[str, int]:
        """Count tasks by state from the folders alone."""
        pending = working = delegated = 0
        for entry in self._list(self.inbox):
            kind = classify_name(entry.name)
            pending += kind is NameKind.PENDING
            working += kind is NameKind.WORKING
            delegated += kind is NameKind.DELEGATED
        done = sum(1 for e in self._list(self.done) if not e.name.startswith("."))
        failed = sum(1 for e in self._list(self.failed) if not e.name.startswith("."))
        return {
            "pending": pending,
            "working": working,
            "delegated": delegated,
            "done": done,
            "failed": failed,
        }


def _tail(path: Path, size: int = 8192) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return b""
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return b""
        os.lseek(fd, max(0, st.st_size - size), os.SEEK_SET)
        return os.read(fd, size)
    finally:
        os.close(fd)


def _safe_stub_name(name: str) -> str:
    """A name for a refusal stub that is a plain ``.md`` file name even when ``name`` is not."""
    if NAME_RE.fullmatch(name):
        return name
    cleaned = re.sub(r"[^A-Za-z0-9._+@=-]", "_", name).lstrip("._-") or "task"
    cleaned = cleaned[:190]
    return cleaned if cleaned.endswith(".md") else cleaned + ".md"


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.warning("cannot remove stale file", extra={"path": str(path), "error": exc.strerror})


def find_projects(roots: list[Path], paths: list[Path]) -> list[Path]:
    """Every ``<root>/*/.agent-queue`` project plus the explicit project paths, de-duplicated."""
    found: dict[Path, None] = {}
    for root in roots:
        try:
            children = sorted(os.scandir(root), key=lambda e: e.name)
        except OSError:
            continue
        for child in children:
            if child.is_dir(follow_symlinks=False) and (Path(child.path) / QUEUE_DIRNAME).is_dir():
                found[Path(child.path)] = None
    for path in paths:
        found[path] = None
    return list(found)
