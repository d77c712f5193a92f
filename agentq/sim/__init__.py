"""The bundled simulated agent: a small TUI that mimics Claude Code wherever agentq looks."""
