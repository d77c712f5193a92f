"""The daemon as systemd runs it: the notify protocol on a fake ``NOTIFY_SOCKET``, and its logs.

The test binds an ``AF_UNIX`` datagram socket, names it in ``NOTIFY_SOCKET``, asks for a
watchdog with ``WATCHDOG_USEC`` and records every message with its arrival time
(reliability T23). Collaborators that misbehave (a main loop that hangs, an executor
that holds tasks) come in through ``tests.support.launch``, never through a switch in
shipped code.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentq.daemon.health import PROBE_NAME
from agentq.daemon.sdnotify import Notifier, forget_environment, watchdog_bound
from agentq.sessions.tmux import TmuxDriver
from tests.support.daemon import Daemon, drop, make_projects
from tests.support.launch import WEDGE_FILENAME
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
#: 2 s: pings are due at least every 1 s (half), and the loop aims at every 0.5 s.
WATCHDOG_USEC = 2_000_000
BOUND = WATCHDOG_USEC / 2e6


@dataclass
class Message:
    """One notify datagram and when it arrived (time.monotonic())."""

    at: float
    fields: dict[str, str]


@dataclass
class Service:
    """``agentq run`` (or the test launcher) with a notify socket; records every message."""

    root: Path
    tweaks: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    messages: list[Message] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    sock: socket.socket | None = None

    @property
    def state_dir(self) -> Path:
        """The daemon's state dir."""
        return self.root / "state"

    def start(self, stderr: Path | None = None) -> None:
        """Bind the socket, write the config, start the process (READY is not awaited)."""
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        address = self.root / "notify.sock"
        self.sock.bind(str(address))
        # A free port for the API: several test daemons run at once, and 8377 may be taken.
        config = {"state_dir": str(self.state_dir), "api": {"listen": "127.0.0.1:0"}}
        config.update(self.config)
        config_path = self.root / "config.yaml"
        config_path.write_text(yaml.safe_dump(config))
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("AGENTQ_", "TMUX", "NOTIFY_"))
        }
        env.update(
            NOTIFY_SOCKET=str(address),
            WATCHDOG_USEC=str(WATCHDOG_USEC),
            HOME=str(self.root / "home"),
            **self.env,
        )
        run = ["run", "--config", str(config_path)]
        if self.tweaks:
            argv = [sys.executable, "-m", "tests.support.launch", self.tweaks, "--", *run]
        else:
            argv = [sys.executable, "-m", "agentq", *run]
        with (stderr or self.root / "daemon.log").open("ab") as log:
            self.proc = subprocess.Popen(
                argv, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=REPO
            )

    def receive(self, timeout: float) -> Message | None:
        """The next message within ``timeout`` seconds, recorded; None if none came."""
        assert self.sock is not None
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            return None
        fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        message = Message(time.monotonic(), fields)
        self.messages.append(message)
        return message

    def until(self, want: Callable[[Message], bool], timeout: float = 30) -> Message:
        """Receive until a message satisfies ``want``; fail with the log on timeout or death."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.receive(min(0.2, deadline - time.monotonic()))
            if message is not None and want(message):
                return message
            assert self.proc is not None
            if message is None and self.proc.poll() is not None:
                pytest.fail(f"daemon exited ({self.proc.returncode}); log:\n{self.log()}")
        pytest.fail(f"no such message within {timeout}s; log:\n{self.log()}")

    def collect(self, seconds: float) -> list[Message]:
        """Every message of the next ``seconds`` seconds."""
        end = time.monotonic() + seconds
        got = []
        while (left := end - time.monotonic()) > 0:
            message = self.receive(left)
            if message is not None:
                got.append(message)
        return got

    def log(self) -> str:
        """The daemon's output so far."""
        path = self.root / "daemon.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        """Kill the process if it still runs; close the socket."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        if self.sock is not None:
            self.sock.close()


@pytest.fixture
def service(tmp_path: Path) -> Any:
    """A service under test in ``tmp_path`` running the instant profile over two projects."""
    (tmp_path / "home").mkdir(exist_ok=True)
    make_projects(tmp_path / "projects", 2)
    made = Service(
        tmp_path,
        config={
            "projects": {"roots": [str(tmp_path / "projects")]},
            "agent": {"profile": "instant"},
        },
    )
    yield made
    made.close()


def is_ready(m: Message) -> bool:
    return m.fields.get("READY") == "1"


def pings(messages: list[Message]) -> list[float]:
    return [m.at for m in messages if m.fields.get("WATCHDOG") == "1"]


def pending(projects: Path) -> list[Path]:
    return sorted(projects.glob("*/.agent-queue/inbox/*.md"))


def test_ready_comes_only_after_the_preseeded_tasks_were_claimed(service: Service) -> None:
    """At the moment ``READY=1`` arrives no pre-seeded task is still pending in an inbox."""
    projects = service.root / "projects"
    an_hour_ago = time.time() - 3600
    for i in range(60):
        task = drop(projects / f"proj{i % 2:02d}", f"t{i:02d}.md")
        # Written before the daemon started: past the quiet period, ready at the first scan.
        os.utime(task, (an_hour_ago, an_hour_ago))
    assert len(pending(projects)) == 60
    service.start()
    ready = service.until(is_ready)
    left = pending(projects)  # looked at the moment READY arrived
    assert left == [], f"READY=1 came while {len(left)} tasks were still pending"
    assert service.messages[0] is ready, "READY=1 is the first message"
    assert ready.fields["STATUS"] == "0 pending, 0 working"
    done = wait_until(lambda: len(list(projects.glob("*/.agent-queue/done/*.md"))) == 60)
    assert done


def test_status_follows_the_queue_reload_is_bracketed_and_sigterm_stops_cleanly(
    tmp_path: Path, service: Service
) -> None:
    """``STATUS=`` on change; SIGHUP: RELOADING=1 then READY=1; SIGTERM: STOPPING=1 and exit 0."""
    service.tweaks = "hold"
    service.start()
    assert service.until(is_ready).fields["STATUS"] == "0 pending, 0 working"
    project = service.root / "projects" / "proj00"
    drop(project, "first.md")
    service.until(lambda m: m.fields.get("STATUS") == "0 pending, 1 working")
    drop(project, "second.md")
    service.until(lambda m: m.fields.get("STATUS") == "1 pending, 1 working")

    assert service.proc is not None
    sent_at = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    service.proc.send_signal(signal.SIGHUP)
    reloading = service.until(lambda m: m.fields.get("RELOADING") == "1")
    stamp = int(reloading.fields["MONOTONIC_USEC"])
    assert sent_at <= stamp <= time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    service.until(is_ready)
    assert service.proc.poll() is None, "SIGHUP must not end the daemon"
    service.until(lambda m: m.fields.get("WATCHDOG") == "1")

    service.proc.send_signal(signal.SIGTERM)
    service.until(lambda m: m.fields.get("STOPPING") == "1")
    assert service.proc.wait(timeout=30) == 0
    kinds = [next(iter(m.fields)) for m in service.messages if "WATCHDOG" not in m.fields]
    assert kinds.index("RELOADING") < len(kinds) - 1 - kinds[::-1].index("READY")


def test_sigterm_while_the_loop_holds_its_wake_up_lock_still_stops_it(service: Service) -> None:
    """SIGTERM handled while the main thread holds the wake-up event's lock: exit 0.

    A handler that set the event itself deadlocked there (the daemon never stopped).
    """
    service.tweaks = "sigterm-in-wake"
    service.start()
    service.until(is_ready)
    service.until(lambda m: m.fields.get("STOPPING") == "1")
    assert service.proc is not None
    assert service.proc.wait(timeout=30) == 0
    assert "signal received signal=SIGTERM" in service.log()


def test_watchdog_pings_are_never_further_apart_than_half_the_interval(service: Service) -> None:
    """Over 10 s the largest gap between two ``WATCHDOG=1`` is at most WATCHDOG_USEC / 2."""
    service.start()
    ready = service.until(is_ready)
    times = [ready.at, *pings(service.collect(10.0))]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    print(
        f"\n{len(gaps)} pings in 10 s; gap max {max(gaps):.3f} s, "
        f"mean {sum(gaps) / len(gaps):.3f} s; bound {BOUND:.3f} s"
    )
    assert len(gaps) >= 10 / BOUND
    assert max(gaps) <= BOUND


def test_pings_stop_when_the_main_loop_stops_turning(service: Service) -> None:
    """A main loop wedged in a collaborator sends no ``WATCHDOG=1`` (a timer thread would)."""
    service.tweaks = "wedge"
    service.start()
    service.until(is_ready)
    assert len(pings(service.collect(2.0))) >= 2
    (service.state_dir / WEDGE_FILENAME).touch()
    wedged_at = time.monotonic()
    after = pings(service.collect(4 * BOUND))
    assert all(at <= wedged_at + BOUND for at in after), after
    assert service.proc is not None and service.proc.poll() is None, "wedged, not dead"


def test_pings_stop_while_the_state_dir_cannot_be_written_and_resume_after(
    service: Service,
) -> None:
    """The disk write probe failing withholds pings and says why in ``STATUS=``."""
    service.start()
    service.until(is_ready)
    probe = service.state_dir / PROBE_NAME
    probe.unlink(missing_ok=True)
    probe.mkdir()  # writing the probe file now fails (EISDIR), even for root
    service.until(lambda m: m.fields.get("STATUS", "").startswith("unhealthy (state dir"))
    quiet_from = time.monotonic()
    assert pings(service.collect(3 * BOUND)) == [], "no ping while unhealthy"
    assert time.monotonic() - quiet_from >= 3 * BOUND
    probe.rmdir()
    since = len(service.messages)
    service.until(lambda m: m.fields.get("WATCHDOG") == "1")
    healthy = "0 pending, 0 working"
    service.until(
        lambda m: any(x.fields.get("STATUS") == healthy for x in service.messages[since:])
    )
    assert "daemon unhealthy; watchdog pings withheld" in service.log()


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_logs_under_journald(service: Service, fmt: str) -> None:
    """With JOURNAL_STREAM naming stderr: text lines carry ``<N>`` and no time; JSON stays JSON."""
    stderr = service.root / "stderr.log"
    stderr.touch()
    info = os.stat(stderr)
    service.env["JOURNAL_STREAM"] = f"{info.st_dev}:{info.st_ino}"
    service.config["logging"] = {"level": "INFO", "format": fmt}
    service.start(stderr=stderr)
    service.until(is_ready)
    assert service.proc is not None
    service.proc.send_signal(signal.SIGTERM)
    assert service.proc.wait(timeout=30) == 0
    lines = stderr.read_text().splitlines()
    assert lines, "the daemon logged nothing"
    if fmt == "text":
        for line in lines:
            assert re.match(r"<[2-7]>(DEBUG|INFO|WARNING|ERROR|CRITICAL) agentq[.\w]*: ", line), (
                line
            )
        assert "<6>INFO agentq.daemon.loop: agentq ready projects=2" in lines
    else:
        docs = [json.loads(line) for line in lines]
        assert {"agentq ready", "agentq stopped"} <= {d["message"] for d in docs}
        assert all(d["priority"] in (2, 3, 4, 6, 7) for d in docs)


# -- the notifier on its own -------------------------------------------------------------


def test_the_notifier_reaches_an_abstract_socket_and_sends_status_only_on_change() -> None:
    """``@name`` is the abstract namespace; an unchanged ``STATUS=`` is not sent again."""
    name = f"agentq-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "30000000"}, 1)
        assert notifier.watchdog_bound == 15.0
        notifier.ready("0 pending")
        notifier.status("0 pending")
        notifier.status("1 pending\nand more")
        notifier.stopping()
        got = [sock.recv(4096).decode() for _ in range(3)]
    assert got == [
        "READY=1\nSTATUS=0 pending",
        "STATUS=1 pending and more",
        "STOPPING=1\nSTATUS=stopping",
    ]


@pytest.mark.parametrize(
    ("env", "bound"),
    [
        ({"WATCHDOG_USEC": "1000000"}, 0.5),
        ({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "42"}, 0.5),
        ({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "43"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
    ids=[
        "half of WATCHDOG_USEC",
        "WATCHDOG_PID names us",
        "WATCHDOG_PID names another process",
        "zero is off",
        "garbage is off",
        "unset is off",
    ],
)
def test_watchdog_bound(env: dict[str, str], bound: float | None) -> None:
    """As sd_watchdog_enabled(3) reads the variables (our pid is 42 here)."""
    assert watchdog_bound(env, 42) == bound


def test_the_notifier_without_a_socket_does_nothing_and_never_raises(tmp_path: Path) -> None:
    """No socket: no-ops; a socket nobody reads: a logged failure, not an exception."""
    assert not Notifier({}, 1).send("READY=1")
    assert Notifier({"NOTIFY_SOCKET": "relative"}, 1).enabled is False
    gone = Notifier({"NOTIFY_SOCKET": str(tmp_path / "missing.sock")}, 1)
    assert gone.send("READY=1") is False


def test_children_do_not_inherit_the_notify_variables() -> None:
    """The tmux server and the agents must not see NOTIFY_SOCKET or WATCHDOG_*."""
    environ = {"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1", "WATCHDOG_PID": "2", "HOME": "/h"}
    forget_environment(environ)
    assert environ == {"HOME": "/h"}


# -- what KillMode=process relies on ---------------------------------------------------------


def _server_pid(socket_name: str) -> int:
    out = subprocess.run(
        ["tmux", "-L", socket_name, "display-message", "-p", "#{pid}"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return int(out.stdout.strip())


def _open_files(pid: int) -> set[str]:
    folder = Path(f"/proc/{pid}/fd")
    return {os.path.realpath(folder / fd) for fd in os.listdir(folder)}


def test_a_restart_keeps_the_tmux_server_and_its_sessions(tmp_path: Path, socket_name: str) -> None:
    """SIGTERM leaves the tmux server the daemon started, the pool and the operator's own
    session running, holding none of our locks; the next start serves the queue again.

    This is what systemd's KillMode=process relies on: only the daemon is signalled.
    """
    projects = make_projects(tmp_path / "projects", 1)
    config = {
        "agent": {"profile": "sim"},
        "projects": {"roots": [str(tmp_path / "projects")]},
        "pool": {"prefix": "rs-", "min": 1, "max": 1, "dedicated": [{"name": "ops"}]},
        "tmux": {"socket_name": socket_name},
        "dispatch": {"quiet_period": "0.2s", "delivery_timeout": "10s"},
    }
    daemon = Daemon(tmp_path, config)
    driver = TmuxDriver(socket_name)
    try:
        daemon.start()
        assert daemon.wait_ready()
        wait_until(lambda: driver.has_session("rs-0"), 30, message="the pool session")
        server = _server_pid(socket_name)  # started by the daemon
        tmux = ["tmux", "-L", socket_name]
        subprocess.run([*tmux, "new-session", "-d", "-s", "ops"], check=True, timeout=10)
        locks = {str(daemon.state_dir / "lock"), str(projects[0] / ".agent-queue/.agentq/lock")}
        assert not locks & _open_files(server), "tmux inherited a lock: a restart would fail"
        assert daemon.stop() == 0
        assert driver.has_session("rs-0") and driver.has_session("ops")
        assert _server_pid(socket_name) == server

        daemon.start()
        assert daemon.wait_ready(), f"the second start failed:\n{daemon.log()}"
        drop(projects[0], "after-restart.md", "say hi")
        done = projects[0] / ".agent-queue" / "done" / "after-restart.md"
        wait_until(done.exists, 60, message=f"the task after the restart; log:\n{daemon.log()}")
        assert driver.has_session("ops"), "the operator's session is never touched"
        assert _server_pid(socket_name) == server, "the same tmux server throughout"
        assert daemon.stop() == 0
    finally:
        daemon.close()
