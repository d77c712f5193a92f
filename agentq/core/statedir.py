"""The state folder's layout (``state_dir``): who writes what where.

- ``lock``: the daemon's single-instance lock;
- ``state.json``: the daemon's cache of counters and health;
- ``signals/``: one small file per agent hook call (written by the hook script, see
  :mod:`agentq.agents.hooks`);
- ``requests/``: operator requests (``agentq swap``, ``agentq reload``) and their answers.
"""

from __future__ import annotations

LOCK = "lock"
STATE = "state.json"
SIGNALS_DIR = "signals"
REQUESTS_DIR = "requests"
