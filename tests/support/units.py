"""The example units committed in ``systemd/``: the repository's ``config.yaml`` for user alice.

``python -m tests.support.units`` writes them again after a template change; a unit
test checks that the committed files are exactly what the renderer makes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from agentq.cli.service import Scope, UnitSpec, render, unit_spec
from agentq.config.load import load_config

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_HOME = Path("/home/alice")
EXAMPLE_EXE = "/usr/local/bin/agentq"
EXAMPLE_CONFIG = EXAMPLE_HOME / ".config" / "agentq" / "config.yaml"
#: The committed file of each variant.
EXAMPLES = {Scope.SYSTEM: REPO / "systemd" / "agentq.service"}
EXAMPLES[Scope.USER] = REPO / "systemd" / "agentq-user.service"


def example_spec(scope: Scope) -> UnitSpec:
    """The unit of the documented example config, run by alice, agentq in /usr/local/bin."""
    env = {"HOME": str(EXAMPLE_HOME), "USER": "alice", "LOGNAME": "alice"}
    config = load_config(REPO / "config.yaml", env)
    command = [EXAMPLE_EXE, "run", "--config", str(EXAMPLE_CONFIG)]
    return unit_spec(config, scope, command, EXAMPLE_HOME, env, lambda _name: None, "alice")


def main() -> int:
    """Write every example unit; print which ones changed."""
    for scope, path in EXAMPLES.items():
        text = render(example_spec(scope))
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
