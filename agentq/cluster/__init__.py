"""The fleet: tasks handed to Temporal by a submitting daemon, run by ``agentq worker`` hosts."""
