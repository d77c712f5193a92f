"""The simulated agent as a program: its command line and its event loop.

``python -m agentq.sim [--resume UUID] [--dangerously-skip-permissions]`` (other Claude Code
arguments are accepted and ignored); the agent itself is :class:`agentq.sim.agent.Sim`.
"""

from __future__ import annotations

import argparse
import os
import select
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from agentq.sim.agent import Sim, read_text
from agentq.sim.record import Session
from agentq.sim.rules import UUID_RE, parse_hooks
from agentq.sim.term import BRACKETED_PASTE_OFF, BRACKETED_PASTE_ON, KeyParser, Screen, raw_terminal


def run(sim: Sim, fd_in: int, source: str) -> int:
    """The event loop: read keys with a timeout, advance the clock, redraw."""
    keys = KeyParser()
    with raw_terminal(fd_in):
        sim.screen.write(BRACKETED_PASTE_ON)
        sim.start(source)
        while sim.exit_code is None:
            now = time.monotonic()
            ready, _, _ = select.select([fd_in], [], [], sim.timeout(now, keys.pending_escape))
            if ready:
                data = os.read(fd_in, 65536)
                if not data:
                    return 0  # the terminal went away
                events = keys.feed(data)
            else:
                events = keys.flush() if keys.pending_escape else []
            for event in events:
                sim.on_key(event, time.monotonic())
                if sim.exit_code is not None:
                    break
            sim.tick(time.monotonic())
            sim.render()
        sim.screen.write(BRACKETED_PASTE_OFF)
    return sim.exit_code or 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m agentq.sim``; other Claude Code arguments are ignored."""
    parser = argparse.ArgumentParser(prog="python -m agentq.sim", allow_abbrev=False)
    parser.add_argument("--resume", "-r", metavar="UUID")
    parser.add_argument("--dangerously-skip-permissions", action="store_true")
    args, _ignored = parser.parse_known_args(argv)
    env = dict(os.environ)
    config_dir = Path(env.get("CLAUDE_CONFIG_DIR") or Path("~/.claude").expanduser())
    cwd = str(Path.cwd())
    session = Session(config_dir, cwd, args.resume or str(uuid.uuid4()), resumed=bool(args.resume))
    if args.resume and not (UUID_RE.fullmatch(args.resume) and session.transcript.is_file()):
        print(f"No conversation found with session ID: {args.resume}", file=sys.stderr)
        return 1
    sim = Sim(
        session=session,
        env=env,
        bypass=args.dangerously_skip_permissions,
        screen=Screen(sys.stdout.fileno()),
        hooks=parse_hooks(read_text(config_dir / "settings.json")),
    )
    return run(sim, sys.stdin.fileno(), "resume" if args.resume else "startup")
