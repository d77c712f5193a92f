"""Start the daemon with test collaborators: ``python -m tests.support.launch TWEAKS -- ARGS``.

``TWEAKS`` is a comma-separated list of names from :data:`TWEAKS`; ``ARGS`` are the
``agentq`` command line (``run --config PATH``). Apart from the collaborators the
tweaks replace, this is ``python -m agentq run``: the same configuration loading,
logging set-up and exit codes. Shipped code reads no fault switch; a test that
needs a failing part asks for it here.

Add a tweak: a function from :class:`Parts` to :class:`Parts`, registered in :data:`TWEAKS`.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from agentq.accounts.links import SharedLinks
from agentq.accounts.switcher import AccountLinks
from agentq.cli.main import build_parser, cmd_run, execute
from agentq.config.models import Config
from agentq.core.errors import AccountError
from agentq.daemon.instant import InstantExecutor
from agentq.daemon.loop import Daemon
from agentq.daemon.wiring import (
    LEDGER_FILENAME,
    Context,
    Local,
    LocalFactory,
    Remote,
    RemoteFactory,
    WatcherFactory,
)
from agentq.queue.jobs import Job, Outcome
from agentq.queue.watcher import InboxWatcher

#: Under the ``wedge`` tweak, the main loop hangs for good once this file is in the state dir.
WEDGE_FILENAME = "wedge"
#: A task whose body has this line kills the daemon under the ``poison-instant`` tweak.
POISON_LINE = "poison: exit"
#: The exit status of a daemon killed by a poison task.
POISON_EXIT = 3
#: Retry waits under ``fast-retries``: the first wait of a retried request, in seconds.
FAST_BACKOFF_BASE = 0.001


@dataclass(frozen=True)
class Parts:
    """The daemon's injectable collaborators; ``None`` keeps the daemon's own."""

    local_executor: LocalFactory | None = None
    remote_executor: RemoteFactory | None = None
    #: Builds the account-links adapter the swap uses, from the daemon's configuration.
    account_links: Callable[[Config], AccountLinks] | None = None
    watcher: WatcherFactory | None = None


# -- wedge ----------------------------------------------------------------------------------


@dataclasses.dataclass
class WedgingExecutor(InstantExecutor):
    """The instant executor, except that :meth:`poll` never returns once the trigger exists.

    ``poll`` runs on the main loop's thread on every pass, so the loop stops turning:
    the stand-in for a hung disk, a hung tmux call or a deadlock.
    """

    trigger: Path = Path("/nonexistent")

    def poll(self, now: datetime) -> Sequence[Outcome]:
        """Hang forever when the trigger file exists, else the instant executor's poll."""
        if self.trigger.exists():
            threading.Event().wait()
        return super().poll(now)


def _wedge(parts: Parts) -> Parts:
    def make(ctx: Context) -> Local:
        state_dir = ctx.config.state_dir
        return Local(
            WedgingExecutor(
                state_dir / LEDGER_FILENAME,
                ctx.config.agent.answer,
                trigger=state_dir / WEDGE_FILENAME,
            )
        )

    return dataclasses.replace(parts, local_executor=make)


# -- hold -----------------------------------------------------------------------------------


@dataclasses.dataclass
class HoldingExecutor(InstantExecutor):
    """Takes one task at a time and never finishes it: the next ones stay pending."""

    held: list[Job] = dataclasses.field(default_factory=list)

    def capacity(self) -> int:
        """One task, then none."""
        return 0 if self.held else 1

    def start(self, job: Job) -> None:
        """Keep the job (it stays ``.md.working``)."""
        self.held.append(job)


def _hold(parts: Parts) -> Parts:
    def make(ctx: Context) -> Local:
        config = ctx.config
        return Local(HoldingExecutor(config.state_dir / LEDGER_FILENAME, config.agent.answer))

    return dataclasses.replace(parts, local_executor=make)


# -- swap-ensure-fails, swap-rollback-fails -------------------------------------------------


class FailingLinks:
    """The real account links, except that ``ensure`` (and, if asked, the flip back) fails.

    A swap's flip to the target succeeds; ``ensure`` of the target's shared links fails, so
    the switcher rolls back by flipping the link to the source, which fails too when
    ``rollback_fails``: the partial-swap state.
    """

    def __init__(self, real: SharedLinks, *, rollback_fails: bool) -> None:
        self._real = real
        self._rollback_fails = rollback_fails
        self._flips = 0

    def flip(self, link: Path, home: Path) -> None:
        """Flip like the real adapter; the second flip of a swap (the rollback) may fail."""
        self._flips += 1
        if self._rollback_fails and self._flips % 2 == 0:
            raise AccountError(["injected rollback failure"])
        self._real.flip(link, home)

    def ensure(self, home: Path) -> None:
        """Always fails, as a home whose shared links cannot be made right."""
        raise AccountError(["injected ensure failure"])


def _failing_links(rollback_fails: bool) -> Callable[[Parts], Parts]:
    def tweak(parts: Parts) -> Parts:
        def make(config: Config) -> AccountLinks:
            shared = len(config.accounts) > 1
            real = SharedLinks(config.shared.root, config.shared.links, shared)
            return FailingLinks(real, rollback_fails=rollback_fails)

        return dataclasses.replace(parts, account_links=make)

    return tweak


# -- poison-instant -------------------------------------------------------------------------


class PoisonInstantExecutor(InstantExecutor):
    """The instant executor, except that a task whose body says :data:`POISON_LINE` kills us."""

    def start(self, job: Job) -> None:
        """Exit the process on a poison task (a crash mid-execution), else run it at once."""
        if POISON_LINE in (line.strip() for line in job.task.body.splitlines()):
            os._exit(POISON_EXIT)
        super().start(job)


def _poison_instant(parts: Parts) -> Parts:
    def make(ctx: Context) -> Local:
        ledger = ctx.config.state_dir / LEDGER_FILENAME
        return Local(PoisonInstantExecutor(ledger, ctx.config.agent.answer))

    return dataclasses.replace(parts, local_executor=make)


# -- fast-retries ---------------------------------------------------------------------------


def _fast_retries(parts: Parts) -> Parts:
    """Delegation whose retry waits are milliseconds (the waits are not what such tests test)."""

    def make(ctx: Context) -> Remote:
        if not ctx.config.delegation.providers:
            return Remote()
        from agentq.delegation.manager import build_delegation

        executor, available, warnings = build_delegation(
            ctx.config, ctx.env, wake=ctx.wake, backoff_base=FAST_BACKOFF_BASE
        )
        return Remote(executor, available, warnings)

    return dataclasses.replace(parts, remote_executor=make)


# -- watch-enospc ---------------------------------------------------------------------------


class RefusingReader:
    """An inotify reader whose every watch fails the way a full watch table does (ENOSPC)."""

    def __init__(self, code: int = errno.ENOSPC) -> None:
        self.daemon = True
        self._code = code

    def start(self) -> None:
        """Nothing runs."""

    def stop(self) -> None:
        """Nothing runs."""

    def join(self, timeout: float | None = None) -> None:
        """Nothing runs."""

    def is_alive(self) -> bool:
        """Nothing runs."""
        return False

    def add_callback(self, path: bytes, mask: Any, callback: Any, id_: Any) -> Any:
        """Refuse, as ``inotify_add_watch`` does when ``max_user_watches`` is reached."""
        raise OSError(self._code, os.strerror(self._code), os.fsdecode(path))

    def remove_callbacks(self, callbacks: list[tuple[Any, Any]]) -> None:
        """Nothing was added."""


def _watch_enospc(parts: Parts) -> Parts:
    def make(wake: threading.Event) -> InboxWatcher:
        return InboxWatcher(wake, reader=RefusingReader())

    return dataclasses.replace(parts, watcher=make)


# -- sigterm-in-wake -----------------------------------------------------------------------


class SelfSignallingWatcher(InboxWatcher):
    """The inbox watcher, SIGTERMing its own process once while holding the wake-up lock.

    In the first pass after READY, on the main loop's thread, inside the lock of the loop's
    wake-up event. ``Event.wait`` and ``Event.clear`` hold that lock for a few bytecodes; a
    SIGTERM landing there (a test run saw it) met a handler that set the event: it waited
    for itself.
    """

    def __init__(self, wake: threading.Event) -> None:
        super().__init__(wake)
        self._calls = 0

    def take_dirty(self) -> set[Path]:
        """On the second call (start-up makes the first), signal ourselves; then take."""
        self._calls += 1
        if self._calls == 2:
            # The event's condition lock, held as Event.wait holds it around the wait.
            with getattr(self._wake, "_cond"):  # noqa: B009 (private: not in the stubs)
                signal.raise_signal(signal.SIGTERM)  # Python's handler runs before this returns
        return super().take_dirty()


def _sigterm_in_wake(parts: Parts) -> Parts:
    return dataclasses.replace(parts, watcher=SelfSignallingWatcher)


#: Every tweak by name.
TWEAKS: dict[str, Callable[[Parts], Parts]] = {
    "fast-retries": _fast_retries,
    "hold": _hold,
    "poison-instant": _poison_instant,
    "sigterm-in-wake": _sigterm_in_wake,
    "swap-ensure-fails": _failing_links(rollback_fails=False),
    "swap-rollback-fails": _failing_links(rollback_fails=True),
    "watch-enospc": _watch_enospc,
    "wedge": _wedge,
}


def parts_for(names: Iterable[str]) -> Parts:
    """The collaborators the named tweaks replace, applied in order."""
    parts = Parts()
    for name in names:
        parts = TWEAKS[name](parts)
    return parts


def main(argv: Sequence[str]) -> int:
    """Parse ``TWEAKS -- ARGS`` and run ``agentq ARGS`` with the tweaked daemon."""
    if len(argv) < 2 or argv[1] != "--":
        print("usage: python -m tests.support.launch TWEAK[,TWEAK] -- run ARGS", file=sys.stderr)
        return 2
    names = [n for n in argv[0].split(",") if n]
    unknown = [n for n in names if n not in TWEAKS]
    if unknown:
        print(f"unknown tweak(s) {unknown}; known: {sorted(TWEAKS)}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv[2:])
    if args.command != "run":
        print("tests.support.launch only runs the daemon ('run')", file=sys.stderr)
        return 2
    parts = parts_for(names)

    def make_daemon(config: Config, env: Mapping[str, str], path: Path) -> Daemon:
        links = parts.account_links(config) if parts.account_links else None
        return Daemon(
            config,
            env,
            local_executor=parts.local_executor,
            remote_executor=parts.remote_executor,
            account_links=links,
            watcher=parts.watcher,
            config_path=path,
        )

    args.func = lambda a: cmd_run(a, make_daemon)
    return execute(args)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
