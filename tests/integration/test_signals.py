"""The signal relay: a signal's action runs on the relay's thread, never inside the handler."""

from __future__ import annotations

import signal
import threading

import pytest

from agentq.daemon.signals import SignalRelay
from tests.support.wait import wait_until

pytestmark = pytest.mark.integration


def test_an_action_runs_on_the_relay_thread_and_close_gives_the_signal_back() -> None:
    """SIGUSR1's action runs on the relay's thread; afterwards SIGUSR1 is as it was."""
    before = signal.getsignal(signal.SIGUSR1)
    ran: list[str] = []
    with SignalRelay({signal.SIGUSR1: lambda: ran.append(threading.current_thread().name)}):
        signal.raise_signal(signal.SIGUSR1)
        wait_until(lambda: ran, 10, message="the action did not run")
    assert ran == ["agentq-signals"]
    assert signal.getsignal(signal.SIGUSR1) is before
    assert not any(t.name == "agentq-signals" for t in threading.enumerate())


def test_a_signal_while_the_main_thread_holds_the_events_lock_sets_it_later() -> None:
    """The action sets an event whose lock the main thread holds when the signal lands."""
    wake = threading.Event()
    with SignalRelay({signal.SIGUSR1: wake.set}):
        # The lock Event.wait and Event.clear hold for a moment (private: not in the stubs).
        with getattr(wake, "_cond"):  # noqa: B009
            signal.raise_signal(signal.SIGUSR1)  # Python's handler runs before this returns
            assert not wake.is_set()
        assert wake.wait(10)


def test_an_ignored_signal_is_ignored_until_close() -> None:
    """An ignored signal does nothing while the relay is installed."""
    before = signal.getsignal(signal.SIGIO)
    with SignalRelay({}, ignored=(signal.SIGIO,)):
        assert signal.getsignal(signal.SIGIO) is signal.SIG_IGN
        signal.raise_signal(signal.SIGIO)  # its default action would end the test process
    assert signal.getsignal(signal.SIGIO) is before
