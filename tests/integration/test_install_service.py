"""``agentq install-service`` as users run it, and the units it prints through systemd-analyze.

The gates (reliability T21, T22): ``systemd-analyze verify`` prints nothing (its exit
code is 0 even on warnings, so the output is what counts) and ``systemd-analyze
security --offline=yes`` scores the unit at most :data:`MAX_EXPOSURE`. Both for the
system and the user unit. systemd need not be running: verify only needs the
``ExecStart=`` binary to exist (the real ``agentq`` script), and the user manager's
variant needs a runtime folder (``$XDG_RUNTIME_DIR``), which the test makes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
#: The agreed exposure threshold (systemd-analyze security: 0 safest … 10 unsafe).
MAX_EXPOSURE = 4.0
#: The console script installed beside this interpreter: the real executable ExecStart names.
AGENTQ = Path(sys.executable).with_name("agentq")

needs_analyze = pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze not found")
needs_script = pytest.mark.skipif(not AGENTQ.exists(), reason=f"no agentq script at {AGENTQ}")


def install_service(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``agentq`` script (so that argv[0] is the real executable)."""
    return subprocess.run(
        [str(AGENTQ), "install-service", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def analyze(*args: str, runtime: Path) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze ARGS``, with a runtime folder for the ``--user`` variants."""
    assert SYSTEMD_ANALYZE is not None
    runtime.mkdir(mode=0o700, exist_ok=True)
    return subprocess.run(
        [SYSTEMD_ANALYZE, *args],
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_COLOR": "0"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def verify_output(unit: Path, user: bool, runtime: Path) -> str:
    """Everything ``systemd-analyze verify`` says about ``unit`` (empty means clean)."""
    scope = ["--user"] if user else []
    out = analyze(*scope, "verify", str(unit), runtime=runtime)
    return (out.stdout + out.stderr).strip()


def printed_unit(tmp_path: Path, user: bool) -> Path:
    """``agentq install-service --print --config config.yaml [--user]`` saved as a .service."""
    out = install_service("--print", "--config", str(REPO / "config.yaml"), *(["--user"] * user))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("# agentq as a")
    folder = tmp_path / ("user" if user else "system")
    folder.mkdir()
    unit = folder / "agentq.service"
    unit.write_text(out.stdout)
    return unit


@needs_analyze
@needs_script
@pytest.mark.parametrize("user", [False, True], ids=["the system unit", "the user unit"])
def test_verify_prints_nothing_and_the_exposure_is_at_most_the_threshold(
    tmp_path: Path, user: bool
) -> None:
    """The printed unit passes ``verify`` silently and scores <= 4.0 in ``security``."""
    unit = printed_unit(tmp_path, user)
    assert f"ExecStart={AGENTQ.resolve()} run --config {REPO / 'config.yaml'}" in unit.read_text()
    assert verify_output(unit, user, tmp_path / "runtime") == ""
    scope = ["--user"] if user else []
    out = analyze(*scope, "security", "--offline=yes", str(unit), runtime=tmp_path / "runtime")
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", out.stdout)
    assert match, out.stdout + out.stderr
    score = float(match.group(1))
    print(f"\n{'user' if user else 'system'} unit exposure: {score}\n{out.stdout}")
    assert score <= MAX_EXPOSURE


@needs_analyze
@needs_script
def test_the_verify_gate_fails_on_a_misspelled_directive(tmp_path: Path) -> None:
    """Self-test of the gate: one wrong key makes verify say something (while exiting 0)."""
    unit = printed_unit(tmp_path, user=False)
    unit.write_text(unit.read_text().replace("NoNewPrivileges=", "NoNewPrivilege="))
    said = verify_output(unit, False, tmp_path / "runtime")
    assert "NoNewPrivilege" in said


def test_install_writes_the_unit_prints_the_commands_and_never_overwrites(tmp_path: Path) -> None:
    """Into --unit-dir: written once, then up to date, then refused unless --force."""
    folder = tmp_path / "units"
    args = ["--config", str(REPO / "config.yaml"), "--unit-dir", str(folder)]
    first = _agentq_module("install-service", *args)
    assert first.returncode == 0, first.stderr
    unit = folder / "agentq.service"
    assert f"wrote {unit}" in first.stdout
    assert "systemctl daemon-reload" in first.stdout
    assert "systemctl enable --now agentq.service" in first.stdout
    assert "[Service]" in unit.read_text()
    again = _agentq_module("install-service", *args)
    assert again.returncode == 0 and "up to date" in again.stdout
    unit.write_text(unit.read_text() + "# a local edit\n")
    refused = _agentq_module("install-service", *args)
    assert refused.returncode == 1
    assert "exists and differs" in refused.stderr
    assert unit.read_text().endswith("# a local edit\n")
    forced = _agentq_module("install-service", *args, "--force")
    assert forced.returncode == 0, forced.stderr
    assert not unit.read_text().endswith("# a local edit\n")


def test_the_user_unit_goes_into_the_user_unit_folder(tmp_path: Path) -> None:
    """``--user`` writes ``$XDG_CONFIG_HOME/systemd/user/agentq.service``; linger is suggested."""
    out = _agentq_module("install-service", "--user", "--config", str(REPO / "config.yaml"))
    assert out.returncode == 0, out.stderr
    unit = Path(os.environ["XDG_CONFIG_HOME"]) / "systemd" / "user" / "agentq.service"
    assert unit.is_file()
    assert "User=" not in unit.read_text()
    assert "systemctl --user enable --now agentq.service" in out.stdout
    assert "loginctl enable-linger" in out.stdout


def test_run_as_with_user_is_a_usage_error(tmp_path: Path) -> None:
    """``--run-as`` names the system unit's user; with ``--user`` it makes no sense."""
    out = _agentq_module("install-service", "--user", "--run-as", "root", "--print")
    assert out.returncode == 2
    assert "--run-as" in out.stderr


def _agentq_module(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agentq", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
