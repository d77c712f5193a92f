"""agentq: markdown task files in, AI coding agents at work, results out."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
