"""Task workspaces: the git adapter and the worktrees tasks run in."""
