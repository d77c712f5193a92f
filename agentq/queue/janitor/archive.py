"""Monthly archives as ``.tar.gz``: the one module that imports ``tarfile`` and ``gzip``.

An archive is a plain gzip-compressed POSIX (pax) tar: ``tar -tzf`` lists it and
``tar -xzf`` restores its files, on any machine. Each member is a file as it was in
``done/`` or ``failed/`` (bytes, mtime, mode) with a standard pax ``comment`` record,
``{"name": <its name there>, "sha256": <hex>}``, which tar ignores and a later pass reads
to tell whether an original is already inside (by name, size and content).

Writing is crash-safe (reliability R4, R5): a temp file in ``archive/`` receives the
archive's current members (when it grows) and the new files, is fsynced, then renamed
over the archive (or linked to a new name, never clobbering), then ``archive/`` is fsynced.
A finished archive is never written in place; the caller removes originals only after
:func:`write_archive` returned.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import tarfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from agentq.core import crashpoints, durable
from agentq.core.errors import ArchiveError
from agentq.queue.janitor.plan import ArchiveIndex, Entry, Member
from agentq.queue.vetting import refusal_reason

#: gzip's own default: archives are rewritten while they grow, so speed matters as much as size.
COMPRESS_LEVEL = 6
_CHUNK = 1 << 20
_OPEN_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
#: What reading a damaged archive can raise (truncated, bad CRC, not gzip, not tar).
_DAMAGED = (tarfile.TarError, EOFError, zlib.error, OSError, ValueError)


class _HashingReader:
    """A file reader that hashes what passes through it (what tar stored is what we hashed)."""

    def __init__(self, inner: IO[bytes]) -> None:
        self._inner = inner
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._inner.read(size)
        self.digest.update(data)
        return data


def file_sha256(path: Path) -> str | None:
    """The SHA-256 of a plain file of ours, read without following links; None if not one."""
    try:
        fd = os.open(path, _OPEN_READ)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if refusal_reason(os.fstat(fd), os.getuid()):
            return None
        return hashlib.file_digest(f, "sha256").hexdigest()


def read_index(path: Path) -> ArchiveIndex:
    """Read every member of an archive, hashing its bytes and checking the gzip CRC.

    Raises:
        ArchiveError: the archive is damaged or a member differs from its recorded hash.
    """
    members: list[Member] = []
    try:
        with _open_tar(path) as tar:
            for info in tar:
                if info.isreg():
                    members.append(_check(tar, info, _Sink(), path))
    except _DAMAGED as exc:
        raise ArchiveError(f"unreadable ({exc})", path) from exc
    return ArchiveIndex(tuple(members))


def write_archive(target: Path, files: Sequence[Entry], *, extend: bool) -> list[Entry]:
    """Write ``target`` anew with its current members (``extend``) and ``files``.

    A file that is gone or changed since it was listed is left out. Nothing is written
    when no file was stored. Returns the files stored: only those may be removed.

    Raises:
        ArchiveError: the current archive is damaged, or writing failed; the archive is
            as it was and the temp file is gone.
    """
    folder = target.parent
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass
    else:
        durable.fsync_dir(folder.parent)  # the new folder itself must survive a power cut
    tmp = durable.temp_path(folder)
    try:
        stored = _write(tmp, target, files, extend)
    except _DAMAGED as exc:
        tmp.unlink(missing_ok=True)
        raise ArchiveError(f"cannot write ({exc})", target) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if not stored:
        tmp.unlink(missing_ok=True)
        return []
    crashpoints.hit("janitor_before_rename")
    if extend:
        os.replace(tmp, target)
    else:
        try:
            os.link(tmp, target, follow_symlinks=False)
        except FileExistsError as exc:
            raise ArchiveError("appeared while it was being written", target) from exc
        finally:
            tmp.unlink(missing_ok=True)
    durable.fsync_dir(folder)
    crashpoints.hit("janitor_after_archive")
    return stored


def _write(tmp: Path, target: Path, files: Sequence[Entry], extend: bool) -> list[Entry]:
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    stored: list[Entry] = []
    with os.fdopen(fd, "wb") as raw:
        inner_name = target.name.removesuffix(".gz")  # what gzip -d would name it
        gz = gzip.GzipFile(inner_name, "wb", COMPRESS_LEVEL, raw)
        with gz, tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            taken: set[str] = set()
            if extend:
                _copy_members(target, tar, taken)
            for entry in files:
                if _add_file(tar, entry, taken, target):
                    stored.append(entry)
                crashpoints.hit("janitor_mid_archive")
        raw.flush()
        os.fsync(raw.fileno())
    return stored


@contextlib.contextmanager
def _open_tar(path: Path) -> Iterator[tarfile.TarFile]:
    """Open an archive for one sequential read; on leaving, read on to the gzip trailer."""
    fd = os.open(path, _OPEN_READ)
    with os.fdopen(fd, "rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz:
        with tarfile.open(fileobj=gz, mode="r|") as tar:
            yield tar
        while gz.read(_CHUNK):  # the CRC and length are checked only at the very end
            pass


class _Sink:
    """A tar that swallows what it is given (reading an index copies nothing)."""

    def addfile(self, info: tarfile.TarInfo, fileobj: _HashingReader) -> None:
        while fileobj.read(_CHUNK):
            pass


def _check(tar: tarfile.TarFile, info: tarfile.TarInfo, out: Any, path: Path) -> Member:
    """Pass one member to ``out`` (a tar or a sink); it must match its recorded hash."""
    data = tar.extractfile(info)
    if data is None:
        raise ArchiveError(f"member {info.name!r} has no data", path)
    reader = _HashingReader(data)
    out.addfile(_copy_of(info), reader)
    digest = reader.digest.hexdigest()
    original, recorded = _parse_comment(info.pax_headers.get("comment", ""))
    if recorded is not None and recorded != digest:
        raise ArchiveError(f"member {info.name!r} differs from its recorded hash", path)
    return Member(info.name, original or info.name, info.size, digest)


def _copy_members(target: Path, tar: tarfile.TarFile, taken: set[str]) -> None:
    """Copy the current archive's members, each checked against its hash, into ``tar``."""
    try:
        with _open_tar(target) as old:
            for info in old:
                if info.isreg():
                    taken.add(_check(old, info, tar, target).name)
                crashpoints.hit("janitor_mid_archive")
    except _DAMAGED as exc:
        raise ArchiveError(f"unreadable ({exc})", target) from exc


def _add_file(tar: tarfile.TarFile, entry: Entry, taken: set[str], target: Path) -> bool:
    """Add one original, unless it is gone or no longer the file that was listed."""
    try:
        fd = os.open(entry.path, _OPEN_READ)
    except FileNotFoundError:
        return False  # moved away meanwhile (a retry: ``mv failed/x.md inbox/``)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        listed = (entry.ino, entry.size, entry.mtime_ns)
        if (st.st_ino, st.st_size, st.st_mtime_ns) != listed or refusal_reason(st, os.getuid()):
            return False
        digest = hashlib.file_digest(f, "sha256").hexdigest()
        f.seek(0)
        name = next((n for n in durable.candidate_names(entry.name) if n not in taken), None)
        if name is None:
            raise ArchiveError(f"no free member name for {entry.name!r}", target)
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = st.st_size, st.st_mtime_ns / 1e9, st.st_mode & 0o777
        info.uid, info.gid = st.st_uid, st.st_gid
        info.pax_headers = {"comment": json.dumps({"name": entry.name, "sha256": digest})}
        reader = _HashingReader(f)
        tar.addfile(info, reader)
        if reader.digest.hexdigest() != digest:
            raise ArchiveError(f"{entry.path} changed while it was archived", target)
    taken.add(name)
    return True


def _copy_of(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """A fresh header for a member that is copied: the same name, size, times, mode and comment."""
    copy = tarfile.TarInfo(info.name)
    copy.size, copy.mtime, copy.mode = info.size, info.mtime, info.mode
    copy.uid, copy.gid = info.uid, info.gid
    if "comment" in info.pax_headers:
        copy.pax_headers = {"comment": info.pax_headers["comment"]}
    return copy


def _parse_comment(comment: str) -> tuple[str | None, str | None]:
    """The original name and hash recorded in a member's comment (None when absent)."""
    try:
        record = json.loads(comment) if comment else {}
    except ValueError:
        return None, None
    if not isinstance(record, dict):
        return None, None
    name, digest = record.get("name"), record.get("sha256")
    return (
        name if isinstance(name, str) else None,
        digest if isinstance(digest, str) else None,
    )
