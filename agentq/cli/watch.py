"""``agentq status --watch``: a live terminal view fed by the daemon's event stream.

The only module that imports rich. A reader thread follows ``/api/events`` (and
reconnects with ``Last-Event-ID`` when the stream breaks); the main thread draws
projects, sessions, accounts with reset countdowns and the last events, sized to
the terminal (80×24 is enough). Ctrl-C ends it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from datetime import datetime
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from agentq.api.client import ApiClient, ApiUnavailable, SseEvent
from agentq.config.models import Config

RECONNECT_AFTER = 2.0
KEEP_EVENTS = 200
_STATE_STYLE = {
    "busy": "bold green",
    "idle": "cyan",
    "quota": "bold red",
    "parked": "yellow",
    "launching": "blue",
    "failed": "red",
    "done": "green",
    "working": "green",
    "pending": "yellow",
}


class WatchModel:
    """What the view shows: the latest snapshot and the recent events (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.snapshot: dict[str, Any] | None = None
        self.events: deque[dict[str, Any]] = deque(maxlen=KEEP_EVENTS)
        self.connected = False
        self.problem: str | None = None
        self.last_id: str | None = None
        self.changed = threading.Event()

    def apply(self, message: SseEvent) -> None:
        """Take one message of the stream."""
        with self._lock:
            self.connected, self.problem = True, None
            if message.id:
                self.last_id = message.id
            if message.event == "snapshot":
                self.snapshot = message.data
            elif message.event == "resync":
                self.events.append({"kind": "resync", "time": None, **message.data})
            elif isinstance(message.data, dict):
                self.events.append(message.data)
        self.changed.set()

    def lost(self, problem: str) -> None:
        """The stream broke; the reader reconnects."""
        with self._lock:
            self.connected, self.problem = False, problem
        self.changed.set()

    def view(self) -> tuple[dict[str, Any] | None, list[dict[str, Any]], bool, str | None]:
        """A consistent copy for drawing."""
        with self._lock:
            return self.snapshot, list(self.events), self.connected, self.problem


def render(model: WatchModel, now: float, width: int, height: int) -> Group:
    """The whole screen as lines cut to ``width`` × ``height``."""
    snap, events, connected, problem = model.view()
    lines: list[Text] = []
    clock = datetime.fromtimestamp(now).strftime("%H:%M:%S")
    status = "live" if connected else f"reconnecting ({problem})" if problem else "connecting"
    lines.append(Text.assemble(("agentq", "bold"), f"  {status}  ", (clock, "dim")))
    if snap is None:
        return Group(*_fit(lines, width, height))
    lines += _projects(snap.get("projects", {}))
    accounts = _accounts(snap.get("accounts", {}), now)
    sessions = _sessions(snap.get("sessions", []), now)
    room = height - len(lines) - len(accounts) - 4  # keep at least a few event lines
    if len(sessions) > room > 1:
        hidden = len(sessions) - room + 1
        sessions = [*sessions[: room - 1], Text(f"  … {hidden} more sessions", style="dim")]
    lines += sessions + accounts
    lines.append(Text("Events", style="bold underline"))
    left = max(0, height - len(lines))
    for event in events[-left:] if left else []:
        lines.append(_event_line(event))
    return Group(*_fit(lines, width, height))


def _fit(lines: list[Text], width: int, height: int) -> list[Text]:
    out = []
    for line in lines[:height]:
        line.no_wrap = True
        line.overflow = "ellipsis"
        line.truncate(width, overflow="ellipsis")
        out.append(line)
    return out


def _projects(projects: dict[str, Any]) -> list[Text]:
    lines = [Text("Projects", style="bold underline")]
    for name, c in sorted(projects.items()):
        lines.append(
            Text.assemble(
                f"  {name[:18]:<18} ",
                (f"{c.get('pending', 0):>4} pending ", "yellow"),
                (f"{c.get('working', 0):>3} working ", "green"),
                f"{c.get('delegated', 0):>3} deleg ",
                f"{c.get('done', 0):>6} done ",
                (f"{c.get('failed', 0):>4} failed", "red" if c.get("failed") else ""),
            )
        )
    return lines


def _sessions(sessions: list[dict[str, Any]], now: float) -> list[Text]:
    lines = [Text("Sessions", style="bold underline")]
    for s in sessions:
        state = str(s.get("state") or "?")
        last = s.get("last_activity")
        since = _ago(now - last) if isinstance(last, int | float) else ""
        lines.append(
            Text.assemble(
                f"  {str(s.get('name'))[:14]:<14} ",
                (f"{state:<9} ", _STATE_STYLE.get(state, "")),
                f"{str(s.get('task') or '-')[:32]:<32} ",
                f"{str(s.get('account') or '')[:10]:<10} ",
                (since, "dim"),
            )
        )
    return lines


def _accounts(accounts: dict[str, Any], now: float) -> list[Text]:
    lines = [Text("Accounts", style="bold underline")]
    parts: list[Text] = []
    for a in accounts.get("accounts", []):
        name = str(a.get("name"))
        until = a.get("exhausted_until_ts")
        if name == accounts.get("active"):
            parts.append(Text(f"{name} (active)", style="bold green"))
        elif isinstance(until, int | float) and until > now:
            parts.append(Text(f"{name}: exhausted, resets in {_ago(until - now)}", style="red"))
        else:
            parts.append(Text(f"{name}: ready"))
    line = Text("  ")
    for i, part in enumerate(parts):
        line.append_text(part)
        if i < len(parts) - 1:
            line.append("   ")
    lines.append(line)
    if accounts.get("hold"):
        lines.append(Text(f"  QUEUE HELD until {accounts['hold'].get('until')}", style="bold red"))
    if accounts.get("partial_swap"):
        lines.append(Text("  PARTIAL SWAP: run `agentq swap --clear`", style="bold red"))
    return lines


def _event_line(event: dict[str, Any]) -> Text:
    raw = event.get("time")
    at = raw[11:19] if isinstance(raw, str) and len(raw) >= 19 else "--:--:--"
    kind = str(event.get("kind"))
    if kind == "task":
        state = str(event.get("state"))
        reason = f" ({event['reason']})" if event.get("reason") else ""
        what = f"{event.get('project')}/{event.get('task')} → "
        return Text.assemble(f"  {at} ", what, (state, _STATE_STYLE.get(state, "")), reason)
    if kind == "delivered":
        return Text(
            f"  {at} {event.get('project')}/{event.get('task')} delivered to {event.get('session')}"
        )
    details = ", ".join(f"{k}={v}" for k, v in event.items() if k not in ("id", "time", "kind"))
    return Text.assemble(f"  {at} ", (kind, "bold"), f" {details}")


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _follow(client: ApiClient, model: WatchModel, stop: threading.Event) -> None:
    """The reader thread: follow the stream, reconnect (resuming) when it breaks."""
    while not stop.is_set():
        try:
            for message in client.events(model.last_id):
                model.apply(message)
                if stop.is_set():
                    return
            model.lost("the stream ended")
        except ApiUnavailable as exc:
            model.lost(str(exc).split(":")[0])
        except ValueError:
            model.lost("a message could not be read")
        stop.wait(RECONNECT_AFTER)


def run_watch(config: Config, console: Console | None = None) -> int:
    """Show the live view until Ctrl-C; 1 when there is no running daemon with an API."""
    from agentq.cli.status import api_client
    from agentq.core.lock import is_locked

    console = console or Console()
    if not is_locked(config.state_dir / "lock"):
        console.print("agentq status --watch: the daemon is not running", style="bold red")
        return 1
    client = api_client(config)
    if client is None:
        console.print(
            "agentq status --watch: the daemon serves no API (api.listen is null); "
            "use `agentq status`",
            style="bold red",
        )
        return 1
    model, stop = WatchModel(), threading.Event()
    reader = threading.Thread(target=_follow, args=(client, model, stop), daemon=True)
    reader.start()
    try:
        with Live(console=console, screen=True, auto_refresh=False) as live:
            while True:
                size = console.size
                live.update(render(model, time.time(), size.width, size.height), refresh=True)
                model.changed.wait(1.0)  # redraw on news, and each second for the countdowns
                model.changed.clear()
    except KeyboardInterrupt:
        return 0
    finally:
        stop.set()
