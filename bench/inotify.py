"""A plain inotify reader through ctypes: the floor of the pickup row and the bench's own eyes.

The bench watches folders the daemon works in (the inboxes, the signals folder) to see
when a claim or a hook happened, without asking the daemon. Events are read with a
deadline and time-stamped as they are read (``time.time_ns()``), so the floor row and
every measurement pay the same reading cost.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import select
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_Q_OVERFLOW = 0x00004000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000

_HEADER = struct.Struct("iIII")
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


@dataclass(frozen=True)
class Event:
    """One inotify event: the folder, the name in it, the mask and when it was read (ns)."""

    folder: Path
    name: str
    mask: int
    read_ns: int


class Inotify:
    """One inotify instance; :meth:`read` returns the events that are ready (or waits)."""

    def __init__(self) -> None:
        fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self.fd = fd
        self._folders: dict[int, Path] = {}

    def add(self, folder: Path, mask: int = IN_MOVED_TO | IN_CREATE) -> None:
        """Watch ``folder`` for ``mask`` events."""
        wd = _libc.inotify_add_watch(self.fd, os.fsencode(folder), mask)
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_add_watch {folder}: {os.strerror(err)}")
        self._folders[wd] = folder

    def read(self, timeout: float) -> list[Event]:
        """Events ready within ``timeout`` seconds (empty when none came)."""
        ready, _, _ = select.select([self.fd], [], [], max(timeout, 0.0))
        if not ready:
            return []
        try:
            data = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return []
        except OSError as exc:  # pragma: no cover - the kernel ran out of patience
            if exc.errno == errno.EINTR:
                return []
            raise
        now = time.time_ns()
        events, offset = [], 0
        while offset < len(data):
            wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
            offset += _HEADER.size
            raw = data[offset : offset + length].rstrip(b"\0")
            offset += length
            folder = self._folders.get(wd, Path("?"))
            events.append(Event(folder, os.fsdecode(raw), mask, now))
        return events

    def wait_for(self, match: Callable[[Event], bool], timeout: float) -> Event | None:
        """The first event ``match(event)`` accepts within ``timeout`` seconds, else None."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            for event in self.read(left):
                if match(event):
                    return event
        return None

    def wait_name(self, name: str, timeout: float) -> Event | None:
        """The first event for the entry ``name`` within ``timeout`` seconds, else None."""
        return self.wait_for(lambda event: event.name == name, timeout)

    def drain(self) -> None:
        """Forget every event read so far."""
        while self.read(0):
            pass

    def close(self) -> None:
        """Close the inotify descriptor."""
        os.close(self.fd)

    def __enter__(self) -> Inotify:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
