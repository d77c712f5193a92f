"""The janitor: archive old results, sweep orphans (a pure plan, a thin shell)."""
