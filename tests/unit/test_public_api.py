"""The package's public surface stays small and deliberate."""

from __future__ import annotations

import agentq


def test_package_exports_only_its_version() -> None:
    """``agentq.__all__`` is pinned: nothing else is public at the top level."""
    assert agentq.__all__ == ["__version__"]
    assert agentq.__version__.count(".") == 2


def test_importing_the_package_starts_nothing() -> None:
    """Importing agentq loads no daemon machinery (the hook command depends on that)."""
    import subprocess
    import sys

    code = "import sys, agentq; print(sorted(m for m in sys.modules if m.startswith('agentq')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['agentq']"
