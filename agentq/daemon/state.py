"""``state.json``: the daemon's cache of counters and health, atomic and versioned.

The folders are the source of truth; this file only remembers what they cannot
say (counters, watch modes, swap history). A corrupt file is moved aside and a
fresh state is started: the daemon never crash-loops on it (reliability R26).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agentq.core import crashpoints, durable
from agentq.core.errors import StateFileError

logger = logging.getLogger(__name__)

STATE_VERSION = 1
STATE_FILENAME = "state.json"


class Counters:
    """The daemon's event counters (``state.json`` ``counters``); one owner, the daemon."""

    def __init__(self) -> None:
        self._values: dict[str, int] = {}
        self.changed = False

    def restore(self, saved: object) -> None:
        """Continue from the counters a previous run saved (anything malformed is dropped)."""
        if isinstance(saved, Mapping):
            self._values = {str(k): v for k, v in saved.items() if isinstance(v, int)}

    def bump(self, name: str, by: int = 1) -> None:
        """Add ``by`` to counter ``name``."""
        if by:
            self._values[name] = self._values.get(name, 0) + by
            self.changed = True

    def get(self, name: str) -> int:
        """The value of counter ``name`` (0 when never bumped)."""
        return self._values.get(name, 0)

    def as_dict(self) -> dict[str, int]:
        """Every counter, for ``state.json`` and status output."""
        return dict(self._values)


def encode(state: Mapping[str, Any]) -> bytes:
    """The file's text: one top-level key a line, in order, each value compact JSON.

    Readable enough, and made by json's C encoder: an indented dump is encoded in Python,
    many times slower, and the state is written every second while the queue is busy.
    """
    lines = [
        f" {json.dumps(str(k))}: {json.dumps(state[k], sort_keys=True)}" for k in sorted(state)
    ]
    return ("{\n" + ",\n".join(lines) + "\n}\n").encode()


def empty_state() -> dict[str, Any]:
    """A fresh state document."""
    return {"version": STATE_VERSION, "counters": {}, "watches": {}, "daemon": {}}


class StateFile:
    """Load and save ``state_dir/state.json``."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / STATE_FILENAME

    def load(self) -> dict[str, Any]:
        """Read the state; a missing file gives a fresh state, a corrupt one is moved aside."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return empty_state()
        except OSError as exc:
            raise StateFileError(f"cannot read {self.path}: {exc.strerror}") from exc
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
                raise ValueError("unknown state version")
        except ValueError:
            aside = self.path.with_name(f"{STATE_FILENAME}.corrupt-{time.time_ns()}")
            os.replace(self.path, aside)
            logger.warning("corrupt state file moved aside; rebuilding", extra={"path": str(aside)})
            return empty_state()
        for key, value in empty_state().items():
            data.setdefault(key, value)
        return data

    def peek(self) -> dict[str, Any]:
        """Read the state for display only; a bad file is left for the daemon to move aside."""
        try:
            data = json.loads(self.path.read_bytes())
        except (OSError, ValueError):
            return empty_state()
        return data if isinstance(data, dict) else empty_state()

    def save(self, state: dict[str, Any]) -> None:
        """Write the state atomically (temp file, fsync, rename, folder fsync)."""
        self.write(self.encode(state))

    def encode(self, state: dict[str, Any]) -> bytes:
        """The file's text for ``state`` (stamped with the current version)."""
        state["version"] = STATE_VERSION
        return encode(state)

    def write(self, data: bytes) -> None:
        """Write text made by :meth:`encode` atomically (temp file, fsync, rename, folder fsync)."""
        try:
            durable.write_atomic(self.path, data, crash_point="mid_state_write")
        except OSError as exc:
            raise StateFileError(f"cannot write {self.path}: {exc.strerror}") from exc
        crashpoints.hit("after_state_write")
