"""Terminal plumbing for the simulated agent: raw mode, key parsing, a bottom "live" region.

Kept apart from :mod:`agentq.sim` (the agent's behaviour) because it is about bytes
and screen cells, not about what Claude Code does. The drawing model mirrors Ink's:
finished lines are printed once and scroll into tmux's history; only the region at
the bottom (input box, spinner, dialog) is erased and drawn again.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import re
import termios
import tty
import unicodedata
from collections.abc import Iterator

PASTE_START = b"\x1b[200~"
PASTE_END = b"\x1b[201~"
BRACKETED_PASTE_ON = "\x1b[?2004h"
BRACKETED_PASTE_OFF = "\x1b[?2004l"

_CSI_RE = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]")
_CSI_PARTIAL_RE = re.compile(rb"\x1b(?:\[[0-?]*[ -/]*|O)?\Z")
_TEXT_RE = re.compile(rb"[^\x00-\x1f\x7f]+")
_CONTROL_KEYS = {
    0x0D: "enter",
    0x0A: "newline",
    0x7F: "backspace",
    0x08: "backspace",
    0x03: "ctrl-c",
    0x04: "ctrl-d",
    0x09: "tab",
}

#: One input event: ("text", typed text), ("paste", pasted text) or ("key", name).
Key = tuple[str, str]


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """Put the terminal on ``fd`` in raw mode for the block (no-op if it is not a tty)."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    # TCSANOW, not the default TCSAFLUSH: keys typed before we were ready are kept,
    # as Claude Code keeps them.
    tty.setraw(fd, termios.TCSANOW)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _partial_suffix(data: bytes, marker: bytes) -> int:
    """Length of the longest tail of ``data`` that could be the start of ``marker``."""
    for size in range(min(len(marker) - 1, len(data)), 0, -1):
        if data.endswith(marker[:size]):
            return size
    return 0


class KeyParser:
    """Turn terminal input bytes into key, text and bracketed-paste events."""

    def __init__(self) -> None:
        self._buf = b""
        self._paste: bytearray | None = None
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    @property
    def pending_escape(self) -> bool:
        """True when an ESC waits for more bytes (a lone ESC is the Escape key after a pause)."""
        return self._paste is None and self._buf.startswith(b"\x1b")

    def feed(self, data: bytes) -> list[Key]:
        """Add input bytes; return the complete events they make."""
        self._buf += data
        return self._drain(final=False)

    def flush(self) -> list[Key]:
        """The pause after an ESC passed: read what is buffered as Escape and keys."""
        return self._drain(final=True)

    def _drain(self, final: bool) -> list[Key]:
        keys: list[Key] = []
        while self._buf:
            if self._paste is not None:
                if not self._take_paste(keys):
                    break
            elif self._buf[0] == 0x1B:
                if not self._take_escape(keys, final):
                    break
            elif self._buf[0] < 0x20 or self._buf[0] == 0x7F:
                keys.append(("key", _CONTROL_KEYS.get(self._buf[0], "ctrl")))
                self._buf = self._buf[1:]
            else:
                match = _TEXT_RE.match(self._buf)
                chunk = match.group() if match else self._buf[:1]
                self._buf = self._buf[len(chunk) :]
                text = self._decoder.decode(chunk)
                if text:
                    keys.append(("text", text))
        return keys

    def _take_paste(self, keys: list[Key]) -> bool:
        end = self._buf.find(PASTE_END)
        if end < 0:
            keep = _partial_suffix(self._buf, PASTE_END)
            self._paste = (self._paste or bytearray()) + self._buf[: len(self._buf) - keep]
            self._buf = self._buf[len(self._buf) - keep :]
            return False
        data = bytes(self._paste or b"") + self._buf[:end]
        self._buf = self._buf[end + len(PASTE_END) :]
        self._paste = None
        # tmux sends each LF of a paste as CR (paste-buffer without -r), as terminals do.
        text = data.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")
        keys.append(("paste", text))
        return True

    def _take_escape(self, keys: list[Key], final: bool) -> bool:
        match = _CSI_RE.match(self._buf)
        if match:
            seq = match.group()
            self._buf = self._buf[len(seq) :]
            if seq == PASTE_START:
                self._paste = bytearray()
            else:
                keys.append(("key", "csi"))  # arrows, function keys: not used
            return True
        if self._buf.startswith(b"\x1bO") and len(self._buf) >= 3:
            self._buf = self._buf[3:]
            keys.append(("key", "ss3"))
            return True
        if not final and _CSI_PARTIAL_RE.match(self._buf):
            return False  # wait for the rest of the sequence or the Escape pause
        keys.append(("key", "escape"))
        self._buf = self._buf[1:]
        return True


def cell_width(ch: str) -> int:
    """Terminal columns one character takes (wide East Asian 2, combining 0)."""
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def fit(text: str, width: int) -> tuple[str, str]:
    """Split ``text`` into the longest head that fits ``width`` columns and the rest."""
    used = 0
    for index, ch in enumerate(text):
        used += cell_width(ch)
        if used > width:
            return text[:index], text[index:]
    return text, ""


class Screen:
    """Writes history lines above a bottom region that is redrawn in place."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._live_height = 0
        self._title = ""

    def columns(self) -> int:
        """The terminal's width (80 when unknown)."""
        try:
            return max(os.get_terminal_size(self._fd).columns, 20)
        except OSError:
            return 80

    def write(self, text: str) -> None:
        """Write text to the terminal, all of it."""
        data = memoryview(text.encode("utf-8"))
        while data:
            written = os.write(self._fd, data)
            data = data[written:]

    def draw(self, history: list[str], live: list[str]) -> None:
        """Erase the live region, print ``history``, draw ``live`` (the cursor stays on it)."""
        width = self.columns()
        parts = []
        if self._live_height:
            parts.append("\r")
            if self._live_height > 1:
                parts.append(f"\x1b[{self._live_height - 1}A")
            parts.append("\x1b[J")
        # Raw mode turns off output processing: every line ends in an explicit CR LF.
        parts.extend(line + "\r\n" for line in history)
        # Live lines never wrap, or erasing them would miss a row.
        parts.append("\r\n".join(fit(line, width)[0] for line in live))
        self._live_height = len(live)
        self.write("".join(parts))

    def clear(self) -> None:
        """Clear the screen and its scrollback (``/clear``)."""
        self.write("\x1b[H\x1b[2J\x1b[3J")
        self._live_height = 0

    def set_title(self, title: str) -> None:
        """Set the pane title (OSC 0), only when it changes."""
        if title != self._title:
            self._title = title
            self.write(f"\x1b]0;{title}\x07")
