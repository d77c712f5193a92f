"""What agentq knows about agent CLIs: profiles, pane/transcript/hook classifiers, reset times,
hooks.
"""
