"""``python -m agentq`` runs the command line."""

from __future__ import annotations

from agentq.cli.main import main

raise SystemExit(main())
