"""Unit tests for agentq.adoption (``agentq accounts init``): moves, conflicts, crash + re-run."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from agentq.accounts.adoption import _copy_into, plan_init, run_init, same_content
from agentq.accounts.links import DEFAULT_LINKS, validate
from agentq.accounts.setup import account_problems
from agentq.cli.accounts import run_accounts_init
from agentq.config.load import config_from_dict
from agentq.config.models import Config
from agentq.core.durable import TEMP_PREFIX
from agentq.core.errors import AccountError

LINKS = list(DEFAULT_LINKS)
SESSION = "3f2b8c1e-4d5a-4b6c-8d7e-9f0a1b2c3d4e"
OTHER_SESSION = "0a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d"

Snapshot = dict[str, tuple[str, bytes]]


class Crash(Exception):
    """Stands for the process dying at a step."""


def transcript(session: str, turns: int) -> bytes:
    """A small but realistic Claude Code transcript (JSONL)."""
    lines = []
    for i in range(turns):
        lines.append({"type": "user", "sessionId": session, "message": {"content": f"task {i}"}})
        lines.append({"type": "assistant", "sessionId": session, "message": {"content": "ok"}})
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def claude_home(home: Path) -> Snapshot:
    """Fill ``home`` like a used ~/.claude; return what must survive under the shared folders."""
    files = {
        f"projects/-home-u-code-app/{SESSION}.jsonl": transcript(SESSION, 3),
        f"projects/-home-u-code-app/{OTHER_SESSION}.jsonl": transcript(OTHER_SESSION, 1),
        f"projects/-home-u-code-lib/{SESSION}.jsonl": transcript(SESSION, 2),
        f"file-history/{SESSION}/a1b2c3d4@v1": b"print('v1')\n",
        f"file-history/{SESSION}/a1b2c3d4@v2": b"print('v2')\n",
        f"session-env/{SESSION}/env.sh": b"export X=1\n",
    }
    for rel, data in files.items():
        (home / rel).parent.mkdir(parents=True, exist_ok=True)
        (home / rel).write_bytes(data)
    (home / "session-env" / OTHER_SESSION).mkdir()
    (home / "projects" / "-home-u-code-app" / "latest").symlink_to(f"{SESSION}.jsonl")
    (home / "settings.json").write_text('{"hooks": {}}')
    (home / ".credentials.json").write_text('{"claudeAiOauth": {}}')
    return {rel: ("file", data) for rel, data in files.items()} | {
        f"session-env/{OTHER_SESSION}": ("dir", b""),
        "projects/-home-u-code-app/latest": ("symlink", f"{SESSION}.jsonl".encode()),
    }


def snapshot(top: Path) -> Snapshot:
    """Every entry under ``top``: kind and content (files), target (symlinks); never followed."""
    found: Snapshot = {}
    for folder, dirs, files in os.walk(top):
        for name in dirs + files:
            path = Path(folder) / name
            rel = str(path.relative_to(top))
            if path.is_symlink():
                found[rel] = ("symlink", str(path.readlink()).encode())
            elif path.is_dir():
                found[rel] = ("dir", b"")
            else:
                found[rel] = ("file", path.read_bytes())
    return found


def shared_holds(shared: Path, expected: Snapshot) -> None:
    """Assert every expected entry sits under ``shared`` unchanged."""
    got = snapshot(shared)
    for rel, entry in expected.items():
        assert got.get(rel) == entry, rel


def crash_at(k: int) -> tuple[list[str], Callable[[str], None]]:
    """An ``out`` that records lines and raises Crash on the k-th (0-based)."""
    lines: list[str] = []

    def out(line: str) -> None:
        if len(lines) == k:
            raise Crash(line)
        lines.append(line)

    return lines, out


def config_for(home: Path, **extra: object) -> Config:
    """Accounts a and b at ~/.claude-a and ~/.claude-b, shared root ~/.claude-shared."""
    data: dict[str, object] = {
        "accounts": [{"name": n, "home": f"~/.claude-{n}"} for n in ("a", "b")],
        **extra,
    }
    return config_from_dict(data, {"HOME": str(home)}, home)


@pytest.fixture
def home() -> Path:
    """The test's HOME (tmp, set by the autouse fixture)."""
    return Path(os.environ["HOME"])


def test_init_adopts_a_single_claude_home(home: Path) -> None:
    """~/.claude becomes account a's home; its folders move to the shared root; all linked."""
    expected = claude_home(home / ".claude")
    config = config_for(home, active_link="~/.claude")
    lines: list[str] = []
    assert run_accounts_init(config, dry_run=False, out=lines.append) == 0
    shared = home / ".claude-shared"
    assert (home / ".claude").readlink() == home / ".claude-a"
    assert (home / ".claude-a" / "settings.json").read_text() == '{"hooks": {}}'
    assert (home / ".claude-a" / ".credentials.json").exists()
    for account in ("a", "b"):
        for name in LINKS:
            assert (home / f".claude-{account}" / name).readlink() == shared / name
    shared_holds(shared, expected)
    assert account_problems(config) == []
    assert any(line.startswith(f"rename {home / '.claude'}") for line in lines)
    assert lines[-1].startswith("done:")
    assert not [p for p in snapshot(home) if TEMP_PREFIX in p or ".tmp-" in p]


def test_init_in_place_when_the_first_home_is_the_used_one(home: Path) -> None:
    """Without an active link the used home keeps its place; only its folders move."""
    expected = claude_home(home / ".claude-a")
    config = config_for(home)
    assert run_accounts_init(config, dry_run=False, out=lambda _: None) == 0
    shared_holds(home / ".claude-shared", expected)
    assert (home / ".claude-b").is_dir()
    assert account_problems(config) == []


def test_rerun_after_success_has_nothing_to_do(home: Path) -> None:
    """A second run finds the layout in place and changes nothing."""
    claude_home(home / ".claude")
    config = config_for(home, active_link="~/.claude")
    run_accounts_init(config, dry_run=False, out=lambda _: None)
    before = snapshot(home)
    lines: list[str] = []
    assert run_accounts_init(config, dry_run=False, out=lines.append) == 0
    assert lines == [f"nothing to do: the account homes already share {home / '.claude-shared'}"]
    assert snapshot(home) == before


def test_dry_run_prints_every_step_and_changes_nothing(home: Path) -> None:
    """--dry-run lists each step as 'would …' and leaves the tree byte-identical."""
    claude_home(home / ".claude")
    before = snapshot(home)
    lines: list[str] = []
    assert run_accounts_init(config_for(home, active_link="~/.claude"), True, lines.append) == 0
    assert snapshot(home) == before
    steps = [line for line in lines if line.startswith("would ")]
    assert sum(line.startswith("would move ") for line in steps) == 7
    assert any(line.startswith("would link ") for line in steps)
    assert lines[-1] == "dry run: nothing was changed"


def test_single_account_init_does_nothing(home: Path) -> None:
    """With one account nothing is shared: init says so and touches nothing."""
    claude_home(home / ".claude-a")
    before = snapshot(home)
    config = config_from_dict(
        {"accounts": [{"name": "a", "home": "~/.claude-a"}]}, {"HOME": str(home)}, home
    )
    lines: list[str] = []
    assert run_accounts_init(config, dry_run=False, out=lines.append) == 0
    assert "nothing is shared" in lines[0]
    assert snapshot(home) == before


def test_conflicts_are_listed_and_nothing_changes(tmp_path: Path) -> None:
    """Same relative path, different bytes in two homes: refused, every conflict listed."""
    a, b, shared = tmp_path / "a", tmp_path / "b", tmp_path / "shared"
    claude_home(a)
    claude_home(b)
    (b / "projects" / "-home-u-code-app" / f"{SESSION}.jsonl").write_bytes(b"other\n")
    (b / "file-history" / SESSION / "a1b2c3d4@v1").write_bytes(b"changed\n")
    before = snapshot(tmp_path)
    lines: list[str] = []
    plan = plan_init([("a", a), ("b", b)], shared, LINKS)
    assert run_init(plan, dry_run=False, out=lines.append) == 1
    assert snapshot(tmp_path) == before
    conflicts = [line for line in lines if line.startswith("conflict: ")]
    assert len(conflicts) == 2
    assert any(f"projects/-home-u-code-app/{SESSION}.jsonl" in c for c in conflicts)
    assert any(f"file-history/{SESSION}/a1b2c3d4@v1" in c for c in conflicts)
    assert lines[0].startswith("refused: 2 conflict(s)")


def test_conflict_with_the_shared_folder_is_refused(tmp_path: Path) -> None:
    """A file already in the shared folder with other bytes is a conflict too."""
    a, b, shared = tmp_path / "a", tmp_path / "b", tmp_path / "shared"
    claude_home(a)
    b.mkdir()
    (shared / "session-env" / SESSION).mkdir(parents=True)
    (shared / "session-env" / SESSION / "env.sh").write_bytes(b"export X=2\n")
    plan = plan_init([("a", a), ("b", b)], shared, LINKS)
    assert plan.refused
    assert len(plan.conflicts) == 1
    assert "session-env" in plan.conflicts[0]


def test_identical_copies_merge_into_one(tmp_path: Path) -> None:
    """The same file in two homes is no conflict: one copy is kept, both homes link to it."""
    a, b, shared = tmp_path / "a", tmp_path / "b", tmp_path / "shared"
    expected = claude_home(a)
    claude_home(b)
    (b / "projects" / "-home-u-only-b").mkdir()
    (b / "projects" / "-home-u-only-b" / "s.jsonl").write_bytes(b"b only\n")
    plan = plan_init([("a", a), ("b", b)], shared, LINKS)
    assert not plan.refused
    assert run_init(plan, dry_run=False, out=lambda _: None) == 0
    shared_holds(shared, expected | {"projects/-home-u-only-b/s.jsonl": ("file", b"b only\n")})
    assert validate([("a", a), ("b", b)], shared, LINKS) == []


def test_a_divergent_link_refuses_the_whole_init(tmp_path: Path) -> None:
    """A home whose link points elsewhere is a problem: nothing at all is moved."""
    a, b, shared = tmp_path / "a", tmp_path / "b", tmp_path / "shared"
    claude_home(a)
    b.mkdir()
    (b / "projects").symlink_to(tmp_path)
    before = snapshot(tmp_path)
    lines: list[str] = []
    assert run_init(plan_init([("a", a), ("b", b)], shared, LINKS), False, lines.append) == 1
    assert any(line.startswith("problem: account b:") for line in lines)
    assert snapshot(tmp_path) == before


def test_active_folder_beside_an_existing_first_home_is_refused(home: Path) -> None:
    """A real ~/.claude and an existing ~/.claude-a cannot be merged automatically."""
    claude_home(home / ".claude")
    (home / ".claude-a").mkdir()
    lines: list[str] = []
    assert run_accounts_init(config_for(home, active_link="~/.claude"), False, lines.append) == 1
    assert any("merge them by hand" in line for line in lines)


@pytest.mark.slow
def test_crash_at_any_step_then_rerun_loses_nothing(tmp_path: Path) -> None:
    """Interrupted at each step in turn, a re-run finishes; no transcript is lost or changed."""
    total = _count_lines(tmp_path / "probe")
    assert total > 15
    for k in range(1, total):
        top = tmp_path / f"crash-{k}"
        active, shared = top / ".claude", top / "shared"
        expected = claude_home(active)
        homes = [("a", top / ".claude-a"), ("b", top / ".claude-b")]
        _, out = crash_at(k)
        with pytest.raises(Crash):
            run_init(plan_init(homes, shared, LINKS, active_link=active), False, out)
        _assert_nothing_lost(top, expected)
        plan = plan_init(homes, shared, LINKS, active_link=active)
        assert not plan.refused, (k, plan.problems, plan.conflicts)
        assert run_init(plan, dry_run=False, out=lambda _: None) == 0
        shared_holds(shared, expected)
        assert validate(homes, shared, LINKS) == []
        assert active.readlink() == top / ".claude-a"


def _count_lines(top: Path) -> int:
    claude_home(top / ".claude")
    homes = [("a", top / ".claude-a"), ("b", top / ".claude-b")]
    lines: list[str] = []
    plan = plan_init(homes, top / "shared", LINKS, active_link=top / ".claude")
    run_init(plan, dry_run=True, out=lines.append)
    return len(lines)


def _assert_nothing_lost(top: Path, expected: Snapshot) -> None:
    """Each expected entry is intact in the shared folder or at one of its old places."""
    places = [top / "shared", top / ".claude", top / ".claude-a"]
    found = [
        snapshot(place) if place.is_dir() and not place.is_symlink() else {} for place in places
    ]
    for rel, entry in expected.items():
        assert any(tree.get(rel) == entry for tree in found), rel


def test_files_added_meanwhile_stop_the_run_and_are_kept(tmp_path: Path) -> None:
    """A file appearing after planning stops the run at its folder; a re-run moves it too."""
    a, b, shared = tmp_path / "a", tmp_path / "b", tmp_path / "shared"
    expected = claude_home(a)
    plan = plan_init([("a", a), ("b", b)], shared, LINKS)
    late = a / "projects" / "-home-u-code-lib" / "late.jsonl"
    late.write_bytes(b"written during the migration\n")
    with pytest.raises(AccountError, match="re-run"):
        run_init(plan, dry_run=False, out=lambda _: None)
    assert late.read_bytes() == b"written during the migration\n"
    assert run_init(plan_init([("a", a), ("b", b)], shared, LINKS), False, lambda _: None) == 0
    added = {"projects/-home-u-code-lib/late.jsonl": ("file", late.read_bytes())}
    shared_holds(shared, expected | added)


def test_leftover_temp_files_are_removed(tmp_path: Path) -> None:
    """A temp file of an interrupted copy in the shared folder is stale and goes."""
    a, b, shared = tmp_path / "a", tmp_path / "b", tmp_path / "shared"
    claude_home(a)
    (shared / "projects").mkdir(parents=True)
    leftover = shared / "projects" / f"{TEMP_PREFIX}123-abcdef012345"
    leftover.write_bytes(b"half a transcript")
    plan = plan_init([("a", a), ("b", b)], shared, LINKS)
    assert plan.stale == (leftover,)
    assert run_init(plan, dry_run=False, out=lambda _: None) == 0
    assert not leftover.exists()


def test_copy_fallback_places_verified_copies(tmp_path: Path) -> None:
    """The cross-file-system path copies a file or symlink and leaves no temp behind."""
    src_file, src_link = tmp_path / "t.jsonl", tmp_path / "latest"
    src_file.write_bytes(transcript(SESSION, 2))
    src_link.symlink_to("t.jsonl")
    dest = tmp_path / "dest"
    dest.mkdir()
    _copy_into(src_file, dest / "t.jsonl")
    _copy_into(src_link, dest / "latest")
    assert (dest / "t.jsonl").read_bytes() == src_file.read_bytes()
    assert not (dest / "t.jsonl").samefile(src_file)
    assert (dest / "latest").readlink() == Path("t.jsonl")
    assert sorted(p.name for p in dest.iterdir()) == ["latest", "t.jsonl"]


def test_same_content_compares_bytes_and_link_text(tmp_path: Path) -> None:
    """Equal bytes are the same content; a size or byte difference, or another kind, is not."""
    one, two, three = tmp_path / "1", tmp_path / "2", tmp_path / "3"
    one.write_bytes(b"abc")
    two.write_bytes(b"abc")
    three.write_bytes(b"abd")
    link = tmp_path / "l"
    link.symlink_to("1")
    assert same_content(one, two)
    assert not same_content(one, three)
    assert not same_content(one, link)
