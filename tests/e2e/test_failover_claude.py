"""Issue 5 end to end: quota failover with the real Claude Code CLI on two subscriber accounts.

Each account home holds its own ``.credentials.json`` token; the mock API keeps quota per token
and answers an exhausted one with the subscriber 429 (``anthropic-ratelimit-unified-*``).

The failover: account A runs three tasks, then three long turns (the mock holds them); A's
token is exhausted while they are in flight, so each ends on the 429. The daemon must swap to B
exactly once, relaunch the pool on B resuming each cut task with ``--resume`` in the same
transcript, run the queued tasks on B, and resume the operator's dedicated session (left at its
shell) on B without giving it a task. The swap, from the detection to the first resumed session
busy again, must take under 10 s.

The ``/rate-limit-options`` menu: the CLI opens it about 0.1-0.5 s after the limit line, by
which time the swap has usually killed the session, so the failover cannot show its dismissal
reliably. The second test holds a session at its limit (the swap cooldown) to see it dismissed.
On 2.1.332 the menu opens only because pool sessions start with ``autoContinueAtUsageLimit``
off (otherwise the CLI arms its automatic continue instead): the second test checks that too.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from agentq.agents.classify import Activity, classify_activity
from agentq.agents.hooks import Signal, read_signals
from agentq.agents.transcript import last_assistant_text
from agentq.core.errors import TmuxError
from agentq.queue import taskfile
from agentq.sessions.delivery import CONTINUE_PROMPT, SHELLS, has_pending_input
from agentq.sessions.tmux import TmuxDriver
from tests.support.anthropic_mock import MockAnthropic, Rule
from tests.support.wait import wait_until

from .conftest import ClaudeHome, DaemonProcess, add_stop_recorder
from .test_claude_code import drop_task, footers

pytestmark = pytest.mark.e2e

SLOW = "MOCKSLOW"
#: A slow turn on account A is held this long; A's exhaustion ends the hold at once.
HOLD = 60.0
SWAP_BUDGET = 10.0
RUN_TIMEOUT = 60.0
OPS = "ops"
POOL = ("e2e-0", "e2e-1", "e2e-2")
MENU = "What do you want to do?"
RECORDED = ("SessionStart", "UserPromptSubmit", "Stop", "StopFailure")
# 2.1.332 repeats the session's flags: "claude --dangerously-skip-permissions --resume <uuid>".
RESUME_HINT = re.compile(r"claude(?: \S+)* --resume ([0-9a-f]{8}-[0-9a-f-]{27})")
#: The limit line of a five_hour claim, by version.
FIVE_HOUR_LIMIT = {
    "2.1.197": "You've hit your session limit",
    "2.1.332": "You've hit your 5-hour limit",
}

T = TypeVar("T")


def daemon_state(daemon: DaemonProcess) -> dict[str, Any]:
    """The daemon's ``state.json`` ({} before its first write)."""
    path = daemon.state_dir / "state.json"
    try:
        state = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def wait_for(fn: Callable[[], T], timeout: float, what: str, daemon: DaemonProcess) -> T:
    """:func:`wait_until`, failing with the daemon's log tail and state at the deadline."""
    try:
        return wait_until(fn, timeout, interval=0.1, message=what)
    except TimeoutError as exc:
        state = {k: daemon_state(daemon).get(k) for k in ("accounts", "swaps", "hold")}
        pytest.fail(f"{exc}\nstate: {state}\ndaemon log tail:\n{daemon.log()[-6000:]}")


def make_project(root: Path) -> Path:
    """A project ``alpha`` with an empty queue under ``root``."""
    project = root / "alpha"
    for sub in ("inbox", "tmp", "done", "failed"):
        (project / ".agent-queue" / sub).mkdir(parents=True)
    return project


def _config(root: Path, project_root: Path, claude_bin: str, homes: list[ClaudeHome]) -> Any:
    return {
        "projects": {"roots": [str(project_root)]},
        "agent": {
            "profile": "claude-code",
            "command": claude_bin,
            "args": ["--dangerously-skip-permissions"],
            "env": homes[0].env,
        },
        "accounts": [{"name": h.name, "home": str(h.path)} for h in homes],
        "active_link": str(root / "home" / ".claude"),
        "shared": {"root": str(root / "claude-shared")},
        "pool": {"prefix": "e2e-", "min": 1, "max": 3, "dedicated": [{"name": OPS}]},
        # Three turns of the one project in flight at once (plain tasks otherwise run singly).
        "dispatch": {"rescan_interval": "2s", "quiet_period": "0.2s", "max_parallel": 3},
        "completion": {"idle_timeout": "2m", "task_timeout": "3m"},
        "quota": {"cooldown": "1s"},
        "logging": {"format": "json"},
    }


def _idle(driver: TmuxDriver, session: str) -> bool:
    activity = classify_activity(driver.capture(session), driver.pane_title(session))
    return activity is Activity.IDLE


def start_operator_session(driver: TmuxDriver, claude_bin: str, home: ClaudeHome, cwd: Path) -> str:
    """The operator's own session: a shell on ``home`` running the agent for one prompt, exited.

    Returns the agent session's UUID (from the CLI's ``claude --resume <uuid>`` hint).
    """
    driver.new_session(OPS, cwd, None, {**home.env, "CLAUDE_CONFIG_DIR": str(home.path)})
    wait_until(lambda: driver.pane_command(OPS) in SHELLS, 10, message="the operator's shell")
    driver.send_keys(OPS, shlex.join([claude_bin, "--dangerously-skip-permissions"]), literal=True)
    driver.send_keys(OPS, "Enter")
    wait_until(lambda: _idle(driver, OPS), 30, interval=0.1, message="the operator's agent up")
    driver.paste(OPS, "Say hello to the operator.")
    wait_until(lambda: has_pending_input(driver.capture(OPS)), 10, message="operator paste")
    driver.send_keys(OPS, "Enter")
    wait_until(
        lambda: "DONE: mock reply" in driver.capture(OPS) and _idle(driver, OPS),
        30,
        interval=0.1,
        message="the operator's answer",
    )
    driver.send_keys(OPS, "/exit", literal=True)
    driver.send_keys(OPS, "Enter")
    hint = wait_until(
        lambda: RESUME_HINT.search(driver.capture(OPS, lines=200)), 15, message="resume hint"
    )
    wait_until(lambda: driver.pane_command(OPS) in SHELLS, 10, message="back at the shell")
    assert hint is not None
    return hint.group(1)


class MenuWatcher:
    """Samples the pool's panes in a thread and keeps the first capture showing the menu."""

    def __init__(self, driver: TmuxDriver, sessions: tuple[str, ...]) -> None:
        self.driver = driver
        self.sessions = sessions
        self.seen: dict[str, str] = {}
        self._stop = threading.Event()

    def run(self) -> None:
        """Sample every 50 ms until stopped (a missing session is skipped)."""
        while not self._stop.wait(0.05):
            for session in self.sessions:
                try:
                    screen = self.driver.capture(session)
                except TmuxError:
                    continue
                if MENU in screen:
                    self.seen.setdefault(session, screen)

    @contextmanager
    def watching(self) -> Iterator[MenuWatcher]:
        """Run the sampler for the duration of the ``with`` block."""
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(timeout=10)


def log_events(daemon: DaemonProcess) -> list[dict[str, Any]]:
    """The daemon's JSON log lines (other output skipped), in order, ``time`` parsed."""
    events = []
    for line in daemon.log().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and "message" in event:
            events.append({**event, "time": datetime.fromisoformat(event["time"])})
    return events


def swap_detection(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The quota monitor's log lines that decided a swap."""
    return [
        e
        for e in events
        if e["message"].startswith("quota monitor:") and "decision=swap" in e["message"]
    ]


def first_delivery_after(
    events: list[dict[str, Any]], after: dict[str, Any], tasks: set[str]
) -> dict[str, Any]:
    """The first ``task delivered`` line for one of ``tasks`` logged after ``after``."""
    later = events[events.index(after) + 1 :]
    found = [e for e in later if e["message"] == "task delivered" and e.get("task") in tasks]
    assert found, f"no resumed task delivered after the swap; log tail:\n{events[-40:]}"
    return found[0]


def finished(project: Path) -> int:
    """How many tasks of ``project`` sit in done/ or failed/."""
    return len(footers([project], "done")) + len(footers([project], "failed"))


def held_turns(api: MockAnthropic, token: str) -> int:
    """How many slow task turns (not title requests) the mock holds for ``token``."""
    held = api.in_flight()
    return sum(e["token"] == token and "<session>" not in e["prompt"] for e in held)


def _text(entry: dict[str, Any]) -> str:
    content = (entry.get("message") or {}).get("content")
    if isinstance(content, str):
        return content
    blocks = content if isinstance(content, list) else []
    return "\n".join(str(b.get("text", "")) for b in blocks if isinstance(b, dict))


def transcript(shared: Path, session_id: str) -> tuple[Path, list[dict[str, Any]]]:
    """The one transcript named ``<session_id>.jsonl`` in the shared projects, and its entries."""
    files = list((shared / "projects").rglob(f"{session_id}.jsonl"))
    assert len(files) == 1, f"transcripts of {session_id}: {files}"
    lines = files[0].read_text().splitlines()
    return files[0], [json.loads(line) for line in lines if line.strip()]


def check_resumed(
    name: str, footer: taskfile.Footer, shared: Path
) -> tuple[str, list[dict[str, Any]]]:
    """A cut task: resumed on B in the same transcript, its answer the resumed turn's."""
    details = dict(footer.details)
    session_id = details.get("session_id") or ""
    assert details.get("resumed") == f"{session_id} on account b", (name, footer.details)
    path, entries = transcript(shared, session_id)
    assert {e["sessionId"] for e in entries if "sessionId" in e} == {session_id}, name
    users = [_text(e) for e in entries if e.get("type") == "user"]
    asked = [i for i, t in enumerate(users) if f"[agentq task {name} " in t and SLOW in t]
    continued = [i for i, t in enumerate(users) if t == CONTINUE_PROMPT]
    assert asked and continued and asked[0] < continued[-1], (name, users)
    assert footer.result == last_assistant_text(path), name
    return session_id, entries


def recorded(record_dir: Path, session: str, event: str) -> list[Signal]:
    """The recorder's signals of ``session`` for ``event``, oldest first."""
    return [s for s in read_signals(record_dir) if s.session == session and s.event == event]


def check_cut_and_queued_tasks(
    done: dict[str, taskfile.Footer], api: MockAnthropic, homes: list[ClaudeHome], shared: Path
) -> None:
    """a* done on A; b* cut on A and resumed on B in their own transcripts; c* done on B."""
    home_a, home_b = homes
    names = [f"{p}{i}.md" for p, n in (("a", 3), ("b", 3), ("c", 2)) for i in range(n)]
    assert sorted(done) == names
    assert all(done[n].account == ("a" if n.startswith("a") else "b") for n in names)
    b_replies = {e["reply"] for e in api.messages() if e["token"] == home_b.token}
    cut = [check_resumed(f"b{i}.md", done[f"b{i}.md"], shared) for i in range(3)]
    assert len({session_id for session_id, _ in cut}) == 3
    limits = [
        e
        for _, entries in cut
        for e in entries
        if e.get("isApiErrorMessage") and e.get("error") == "rate_limit"
    ]
    assert limits, "no cut transcript holds the usage-limit turn"
    for name in names[3:]:
        assert done[name].result in b_replies, (name, done[name].result)
        assert ("resumed" in dict(done[name].details)) == name.startswith("b"), name
    slow_on_a = [e for e in api.messages() if SLOW in e["prompt"] and e["token"] == home_a.token]
    assert slow_on_a and {e["status"] for e in slow_on_a} == {429}, slow_on_a


def check_operator_session(
    driver: TmuxDriver, recorder: Path, ops_id: str, home_b: ClaudeHome, shared: Path
) -> None:
    """The operator's session was resumed on B with ``--resume`` and was given nothing."""
    resumed = [s for s in recorded(recorder, OPS, "SessionStart") if s.source == "resume"]
    assert [s.session_id for s in resumed] == [ops_id], resumed
    screen = driver.capture(OPS, lines=300)
    assert f"--resume {ops_id}" in screen and f"CLAUDE_CONFIG_DIR={home_b.path}" in screen
    prompts = [s.prompt for s in recorded(recorder, OPS, "UserPromptSubmit")]
    assert prompts == ["Say hello to the operator."]
    _, entries = transcript(shared, ops_id)
    assert not any("[agentq task" in _text(e) for e in entries if e.get("type") == "user")


def swap_seconds(events: list[dict[str, Any]], recorder: Path) -> tuple[float, float]:
    """Detection → first resumed task delivered, from the log and from its prompt's hook."""
    detection = swap_detection(events)[0]
    resumed = {f"alpha/b{i}.md" for i in range(3)}
    delivered = first_delivery_after(events, detection, resumed)
    took = (delivered["time"] - detection["time"]).total_seconds()
    continued = [
        s.received_at
        for session in POOL
        for s in recorded(recorder, session, "UserPromptSubmit")
        if s.prompt == CONTINUE_PROMPT
    ]
    hook_took = min(continued) - detection["time"].timestamp()
    killed = next(e for e in events if e["message"] == "swapping accounts")["time"]
    print(
        f"\nswap: detection -> first resumed task delivered {took:.2f}s (its UserPromptSubmit"
        f" hook {hook_took:.2f}s; detection -> pool killed"
        f" {(killed - detection['time']).total_seconds():.2f}s)"
    )
    return took, hook_took


@pytest.mark.slow
def test_subscriber_quota_swaps_once_resumes_cut_tasks_and_the_operator_session_on_b(
    tmp_path: Path,
    claude_bin: str,
    mock_api: MockAnthropic,
    claude_home: Callable[..., ClaudeHome],
    run_daemon: Callable[[dict[str, Any]], DaemonProcess],
    tmux_socket: str,
) -> None:
    """A out after 3 tasks with 3 turns in flight: one swap to B in < 10 s, all resumed on B."""
    project = make_project(tmp_path / "projects")
    homes = [claude_home(tmp_path, name, trusted=[project, tmp_path]) for name in ("a", "b")]
    home_a, home_b = homes
    recorder = tmp_path / "recorder"
    for home in homes:
        add_stop_recorder(home.path / "settings.json", recorder, RECORDED)
    mock_api.on_prompt(Rule(SLOW, delay=HOLD, tokens=frozenset({home_a.token})))
    daemon = run_daemon(_config(tmp_path, tmp_path / "projects", claude_bin, homes))
    driver = TmuxDriver(tmux_socket)
    ops_id = start_operator_session(driver, claude_bin, home_a, tmp_path)

    for i in range(3):
        drop_task(project, f"a{i}.md", f"Reply with a greeting for task a{i}.")
    wait_for(lambda: finished(project) == 3, RUN_TIMEOUT, "A's three tasks", daemon)
    for i in range(3):
        drop_task(project, f"b{i}.md", f"Work on the long task b{i}. {SLOW}")
    wait_for(
        lambda: held_turns(mock_api, home_a.token) == 3,
        RUN_TIMEOUT,
        "three turns in flight on A",
        daemon,
    )
    for i in range(2):
        drop_task(project, f"c{i}.md", f"Reply with a greeting for task c{i}.")
    mock_api.exhaust(home_a.token, (int(datetime.now(UTC).timestamp()) // 60 + 150) * 60)
    wait_for(
        lambda: finished(project) == 8 or daemon_state(daemon).get("hold"),
        RUN_TIMEOUT,
        "eight tasks finished",
        daemon,
    )
    state = daemon_state(daemon)
    # B never answered a 429: a hold means B was taken for exhausted on A's old limit line.
    assert not state.get("hold"), f"queue held: {state['accounts']}; log:\n{daemon.log()[-3000:]}"
    wait_for(
        lambda: any(s.source == "resume" for s in recorded(recorder, OPS, "SessionStart")),
        30,
        "the operator's session resumed",
        daemon,
    )
    state = daemon_state(daemon)
    events = log_events(daemon)
    shared = tmp_path / "claude-shared"

    assert footers([project], "failed") == {}, daemon.log()[-6000:]
    assert [(s["from"], s["to"]) for s in state["swaps"]] == [("a", "b")], state["swaps"]
    assert state["swaps"][0]["trigger"].startswith("quota: "), state["swaps"]
    assert state["active_account"] == "b" and state["accounts"]["b"]["exhausted_until"] is None
    assert (tmp_path / "home" / ".claude").resolve() == home_b.path.resolve()
    assert len(swap_detection(events)) == 1, swap_detection(events)
    done = footers([project], "done")
    check_cut_and_queued_tasks(done, mock_api, homes, shared)
    assert all(footer.target != OPS for footer in done.values())
    check_operator_session(driver, recorder, ops_id, home_b, shared)
    for session in POOL:  # none is left on the rate-limit menu
        if driver.has_session(session):
            assert MENU not in driver.capture(session), f"{session} still shows the menu"
    took, hook_took = swap_seconds(events, recorder)
    assert took < SWAP_BUDGET, f"the swap took {took:.2f}s"
    assert hook_took < SWAP_BUDGET, f"the first resumed prompt came {hook_took:.2f}s after"


def _menu_dismissed(driver: TmuxDriver, session: str) -> bool:
    """The session lives, its menu is gone and its live input line is back."""
    if not driver.has_session(session):
        return False
    return MENU not in driver.capture(session) and _idle(driver, session)


def manual_swap(daemon: DaemonProcess, to: str) -> None:
    """``agentq swap --to <to>`` against the running daemon."""
    argv = [sys.executable, "-m", "agentq", "swap", "--to", to]
    argv += ["--config", str(daemon.config_path)]
    swapped = subprocess.run(argv, env=daemon.env, capture_output=True, text=True, timeout=60)
    assert swapped.returncode == 0, swapped.stdout + swapped.stderr


@pytest.mark.slow
def test_a_limit_hit_in_the_swap_cooldown_waits_with_the_rate_limit_menu_dismissed(
    tmp_path: Path,
    claude_bin: str,
    claude_version: str,
    mock_api: MockAnthropic,
    claude_home: Callable[..., ClaudeHome],
    run_daemon: Callable[[dict[str, Any]], DaemonProcess],
    tmux_socket: str,
) -> None:
    """B out right after a manual swap: no second swap in the cooldown; the menu is dismissed."""
    project = make_project(tmp_path / "projects")
    homes = [claude_home(tmp_path, name, trusted=[project]) for name in ("a", "b")]
    config = _config(tmp_path, tmp_path / "projects", claude_bin, homes)
    config["pool"] = {"prefix": "e2e-", "min": 1, "max": 1}
    config["quota"] = {"cooldown": "10m"}
    daemon = run_daemon(config)
    manual_swap(daemon, "b")
    driver = TmuxDriver(tmux_socket)
    session = POOL[0]

    def up_on_b() -> bool:  # its start-up probe passed before B runs out
        on_b = any(e["token"] == homes[1].token for e in mock_api.messages())
        return on_b and driver.has_session(session) and _idle(driver, session)

    wait_for(up_on_b, 30, "the pool session up on B", daemon)
    mock_api.exhaust(homes[1].token, (int(datetime.now(UTC).timestamp()) // 60 + 150) * 60)
    with MenuWatcher(driver, (session,)).watching() as menus:
        drop_task(project, "limited.md", "Reply with a greeting.")
        wait_for(lambda: menus.seen, 30, "the CLI's /rate-limit-options menu", daemon)
        try:
            wait_until(lambda: _menu_dismissed(driver, session), 15, interval=0.1)
        except TimeoutError:
            pytest.fail(f"the menu was never dismissed; pane:\n{driver.capture(session)}")
    state = daemon_state(daemon)
    events = log_events(daemon)

    assert [s["trigger"] for s in state["swaps"]] == ["manual (agentq swap)"], state["swaps"]
    assert swap_detection(events) == []
    waits = [e["message"] for e in events if e["message"].startswith("quota monitor:")]
    assert any("decision=hold" in m and "cooldown since the swap" in m for m in waits), waits
    assert footers([project], "done") == {} and footers([project], "failed") == {}
    assert FIVE_HOUR_LIMIT[claude_version] in driver.capture(session)
