"""When the session executor looks at a slot again: soon after something happened, calmer after.

Pure. After an event on a slot the next look comes :data:`MIN_WAIT` later, and every look
that finds nothing new doubles the wait, up to its state's cap: :data:`FAST_CAP` while an
agent takes a paste or exits, :data:`LAUNCH_CAP` while it starts, :data:`BUSY_CAP` while it
works. Events are the
agent's hooks (a prompt is drawn right after ``SessionStart``, the process ends right after
``SessionEnd``, a dialog follows ``PermissionRequest``) and a paste (it shows within
milliseconds). Other state changes are not: an agent takes a while to start, to take a
prompt or to exit, and its hooks say when. Idle, empty and parked slots are not looked at
on a timer (a hook or another slot's look brings them along), except a parked slot whose
resume waits for its session id: it is looked at like a launch until the id is found.
"""

from __future__ import annotations

from agentq.sessions.model import Slot, SlotState

MIN_WAIT = 0.005
FAST_CAP = 0.1
BUSY_CAP = 0.5
#: An agent starting is looked at less often until its ``SessionStart`` hook speaks.
LAUNCH_CAP = 0.25

_CAPS = {
    SlotState.LAUNCHING: LAUNCH_CAP,
    SlotState.PASTED: FAST_CAP,
    SlotState.SUBMITTED: FAST_CAP,
    SlotState.EXITING: FAST_CAP,
    SlotState.BUSY: BUSY_CAP,
    SlotState.QUOTA: BUSY_CAP,
}


def starts_quick(state: SlotState) -> bool:
    """Whether entering ``state`` counts as an event (looked at again at once)."""
    return state is SlotState.PASTED


def next_wait(slot: Slot, quiet_for: float) -> float | None:
    """Seconds until the next look at ``slot``, ``quiet_for`` after its last event.

    None: no look on a timer.
    """
    waiting = slot.state is SlotState.PARKED and slot.resume_on is not None
    cap = LAUNCH_CAP if waiting else _CAPS.get(slot.state)
    if cap is None:
        return None
    return min(cap, max(MIN_WAIT, quiet_for))
