"""Crash-safe file operations: write-temp-fsync-rename, no-clobber links, folder fsync.

Every queue transition, footer, marker and state file goes through here, so the
durability order of ARCHITECTURE.md §4 (fsync file → rename/link → fsync destination
folder → fsync source folder) lives in one place.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from agentq.core import crashpoints

#: Our temp files start with this prefix; anything carrying it may be swept.
TEMP_PREFIX = ".agentq-tmp-"


def fsync_dir(path: Path) -> None:
    """fsync a folder so a rename or link inside it survives a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path(folder: Path) -> Path:
    """A fresh, unguessable temp name in ``folder`` (same file system as its final name)."""
    return folder / f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(6)}"


def write_temp(
    folder: Path, data: bytes | list[bytes], mode: int = 0o600, *, sync: bool = True
) -> Path:
    """Write ``data`` to a new temp file in ``folder`` (fsynced unless ``sync`` is false)."""
    path = temp_path(folder)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
    try:
        chunks = data if isinstance(data, list) else [data]
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                written = os.write(fd, view)
                view = view[written:]
        if sync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    return path


def write_atomic(
    path: Path, data: bytes, mode: int = 0o600, crash_point: str = "", *, sync: bool = True
) -> None:
    """Replace ``path`` with ``data`` atomically (temp file, fsync, ``os.replace``, folder fsync).

    A crash leaves either the old content or the new one, never a torn file; a
    symlink at ``path`` is replaced, never written through. ``sync=False`` skips
    both fsyncs: still atomic against a process crash, but a power cut may bring
    back the previous content (used for records whose loss costs one retry).
    """
    tmp = write_temp(path.parent, data, mode, sync=sync)
    if crash_point:
        crashpoints.hit(crash_point)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync:
        fsync_dir(path.parent)


def candidate_names(name: str, tries: int = 1000) -> Iterator[str]:
    """``name``, then ``x.1.md``, ``x.2.md``… (the suffix goes before the extension)."""
    stem, dot, ext = name.rpartition(".")
    yield name
    for i in range(1, tries):
        yield f"{stem}.{i}.{ext}" if dot else f"{name}.{i}"


def link_noclobber(src: Path, dest_folder: Path, name: str) -> Path:
    """Hard-link ``src`` into ``dest_folder`` as ``name``, never replacing an existing file.

    On a name collision a suffix is inserted before ``.md`` (``x.1.md``) so the
    original stays byte-identical. Returns the final path.
    """
    for candidate in candidate_names(name):
        dest = dest_folder / candidate
        try:
            os.link(src, dest, follow_symlinks=False)
        except FileExistsError:
            continue
        return dest
    raise FileExistsError(errno.EEXIST, "no free name after many suffixes", str(dest_folder / name))


def rename_noclobber(src: Path, dest_folder: Path, name: str) -> Path:
    """Move any kind of entry (link, FIFO, folder) into ``dest_folder`` without overwriting.

    Entries that cannot be hard-linked (folders) are renamed onto the first free
    name, checked just before the rename. The check-then-rename race matters only
    against another agentq process, which the per-project lock excludes.
    """
    for candidate in candidate_names(name):
        dest = dest_folder / candidate
        if os.path.lexists(dest):
            continue
        os.rename(src, dest)
        return dest
    raise FileExistsError(errno.EEXIST, "no free name after many suffixes", str(dest_folder / name))


def sweep_temp_files(*folders: Path) -> int:
    """Remove our leftover temp files (a crash between write and rename) from ``folders``."""
    removed = 0
    for folder in folders:
        for path in folder.glob(TEMP_PREFIX + "*"):
            if path.is_file() and not path.is_symlink():
                path.unlink(missing_ok=True)
                removed += 1
    return removed
