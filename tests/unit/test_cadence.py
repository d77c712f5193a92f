"""When the session executor looks at a slot again."""

from __future__ import annotations

import pytest

from agentq.sessions import cadence
from agentq.sessions.model import Slot, SlotState


@pytest.mark.parametrize(
    ("state", "quiet_for", "expected"),
    [
        (SlotState.PASTED, 0.0, cadence.MIN_WAIT),
        (SlotState.PASTED, 0.02, 0.02),
        (SlotState.PASTED, 3.0, cadence.FAST_CAP),
        (SlotState.LAUNCHING, 0.04, 0.04),
        (SlotState.LAUNCHING, 3.0, cadence.LAUNCH_CAP),
        (SlotState.EXITING, 1.0, cadence.FAST_CAP),
        (SlotState.SUBMITTED, 0.001, cadence.MIN_WAIT),
        (SlotState.BUSY, 0.3, 0.3),
        (SlotState.BUSY, 60.0, cadence.BUSY_CAP),
        (SlotState.QUOTA, 60.0, cadence.BUSY_CAP),
        (SlotState.IDLE, 0.0, None),
        (SlotState.EMPTY, 5.0, None),
        (SlotState.PARKED, 5.0, None),
    ],
    ids=[
        "a paste is looked for at once",
        "then after as long as it has been quiet (the wait doubles)",
        "never later than the fast cap",
        "a starting agent the same way",
        "up to its own cap",
        "an exiting one the same way",
        "a submitted prompt the same way",
        "a busy agent doubles too",
        "up to the busy cap",
        "an agent at its limit like a busy one",
        "an idle slot is not looked at on a timer",
        "nor an empty one",
        "nor a parked one",
    ],
)
def test_next_wait_doubles_from_the_last_event_up_to_the_states_cap(
    state: SlotState, quiet_for: float, expected: float | None
) -> None:
    """Soon after something happened, calmer as nothing does, never slower than the cap."""
    assert cadence.next_wait(Slot("s", state), quiet_for) == expected


def test_a_parked_slot_whose_resume_waits_for_its_session_id_is_looked_at_like_a_launch() -> None:
    """The late hook or the transcript that names the id is looked for on a timer."""
    waiting = Slot("s", SlotState.PARKED, resume_on="b")
    assert cadence.next_wait(waiting, 0.04) == 0.04
    assert cadence.next_wait(waiting, 3.0) == cadence.LAUNCH_CAP


@pytest.mark.parametrize("state", list(SlotState), ids=lambda state: state.value)
def test_only_a_paste_is_looked_for_at_once(state: SlotState) -> None:
    """A paste shows at once; starting, taking a prompt, exiting take the agent a while."""
    assert cadence.starts_quick(state) is (state is SlotState.PASTED)
