"""``python -m agentq.sim`` runs the simulated agent."""

from __future__ import annotations

from agentq.sim.program import main

raise SystemExit(main())
