"""Unit tests for agentq.accounts: the shared-state link rules on tmp dirs, and the config glue."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agentq.accounts.links import (
    DEFAULT_LINKS,
    TEMP_LINK_INFIX,
    LinkState,
    active_link_problems,
    ensure,
    flip_active_link,
    link_state,
    sweep_temp_links,
    temp_links,
    validate,
)
from agentq.accounts.setup import account_problems, ensure_accounts
from agentq.config.load import config_from_dict
from agentq.config.models import Config
from agentq.core.errors import AccountError

LINKS = list(DEFAULT_LINKS)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The shared root (not created: the code under test creates it)."""
    return tmp_path / "shared"


def make_home(tmp_path: Path, name: str = "a") -> Path:
    """An existing, empty account home."""
    home = tmp_path / f"claude-{name}"
    home.mkdir()
    return home


def config_for(home: Path, accounts: list[str], **extra: object) -> Config:
    """A config with the given account names, homes ~/.claude-<name>, HOME = ``home``."""
    data: dict[str, object] = {
        "accounts": [{"name": n, "home": f"~/.claude-{n}"} for n in accounts],
        **extra,
    }
    return config_from_dict(data, {"HOME": str(home)}, home)


# --- link states ----------------------------------------------------------------------------


def test_default_link_set_is_pinned(tmp_path: Path) -> None:
    """The default links are projects, file-history, session-env: absolute, one shared parent."""
    home = Path(os.environ["HOME"])
    config = config_for(home, ["a", "b"])
    assert config.shared.links == ["projects", "file-history", "session-env"]
    assert list(DEFAULT_LINKS) == config.shared.links
    for account in config.accounts:
        account.home.mkdir()
    ensure_accounts(config)
    for account in config.accounts:
        targets = [(account.home / name).readlink() for name in config.shared.links]
        assert all(target.is_absolute() for target in targets)
        assert {target.parent for target in targets} == {home / ".claude-shared"}
        assert [t.name for t in targets] == ["projects", "file-history", "session-env"]


def test_missing_links_and_targets_are_created(tmp_path: Path, root: Path) -> None:
    """ensure creates the shared folders and an absolute link for each name."""
    home = make_home(tmp_path)
    steps = ensure(home, root, LINKS)
    for name in LINKS:
        assert (home / name).is_symlink()
        assert (home / name).readlink() == root / name
        assert (root / name).is_dir()
    assert any("linked" in step for step in steps)
    assert not list(home.glob(f"*{TEMP_LINK_INFIX}*"))


def test_correct_links_need_no_step(tmp_path: Path, root: Path) -> None:
    """A second ensure finds everything correct and does nothing."""
    home = make_home(tmp_path)
    ensure(home, root, LINKS)
    assert ensure(home, root, LINKS) == []
    assert validate([("a", home), ("b", home)], root, LINKS) == []


def test_relative_link_to_the_right_place_is_correct(tmp_path: Path, root: Path) -> None:
    """A link written relative but naming the shared folder counts as correct."""
    home = make_home(tmp_path)
    (root / "projects").mkdir(parents=True)
    (home / "projects").symlink_to(Path("..") / "shared" / "projects")
    assert link_state(home / "projects", root / "projects") is LinkState.CORRECT


def test_divergent_link_is_reported_never_changed(tmp_path: Path, root: Path) -> None:
    """A link pointing elsewhere raises and stays exactly as it was."""
    home = make_home(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (home / "projects").symlink_to(elsewhere)
    with pytest.raises(AccountError) as caught:
        ensure(home, root, LINKS)
    assert "points to" in str(caught.value)
    assert (home / "projects").readlink() == elsewhere
    assert (home / "file-history").readlink() == root / "file-history"


def test_real_file_where_a_link_belongs_is_an_error(tmp_path: Path, root: Path) -> None:
    """A real file is refused and left intact."""
    home = make_home(tmp_path)
    (home / "session-env").write_text("keep me")
    with pytest.raises(AccountError, match="is a file"):
        ensure(home, root, LINKS)
    assert (home / "session-env").read_text() == "keep me"


def test_real_directory_with_content_needs_manual_migration(tmp_path: Path, root: Path) -> None:
    """A real folder with 3 files is refused, all 3 files intact (T35)."""
    home = make_home(tmp_path)
    folder = home / "projects" / "-home-u-app"
    folder.mkdir(parents=True)
    for i in range(3):
        (folder / f"{i}.jsonl").write_text(f"transcript {i}\n")
    with pytest.raises(AccountError, match="manual migration needed"):
        ensure(home, root, LINKS)
    assert sorted(p.read_text() for p in folder.iterdir()) == [
        f"transcript {i}\n" for i in range(3)
    ]
    assert not (home / "projects").is_symlink()


def test_empty_real_directory_becomes_a_link(tmp_path: Path, root: Path) -> None:
    """An empty real folder is replaced by the link (nothing can be lost)."""
    home = make_home(tmp_path)
    (home / "file-history").mkdir()
    ensure(home, root, LINKS)
    assert (home / "file-history").readlink() == root / "file-history"


def test_dangling_link_gets_its_shared_folder(tmp_path: Path, root: Path) -> None:
    """A correct link to a missing shared folder is dangling: validate says so, ensure fixes it."""
    home = make_home(tmp_path)
    other = make_home(tmp_path, "b")
    ensure(home, root, LINKS)
    ensure(other, root, LINKS)
    (root / "projects").rmdir()
    assert link_state(home / "projects", root / "projects") is LinkState.DANGLING
    problems = validate([("a", home), ("b", other)], root, LINKS)
    assert len(problems) == 2
    assert all("dangling" in p for p in problems)
    assert ensure(home, root, LINKS) == [f"created shared folder {root / 'projects'}"]
    assert validate([("a", home), ("b", other)], root, LINKS) == []


def test_shared_folder_that_is_a_file_is_an_error(tmp_path: Path, root: Path) -> None:
    """A file where a shared folder belongs is reported, not replaced."""
    home = make_home(tmp_path)
    root.mkdir()
    (root / "projects").write_text("not a folder")
    with pytest.raises(AccountError, match="not a directory"):
        ensure(home, root, LINKS)
    assert (root / "projects").read_text() == "not a folder"


def test_ensure_fixes_what_it_can_and_lists_every_problem(tmp_path: Path, root: Path) -> None:
    """One home with two problems: both listed; the third link is made anyway."""
    home = make_home(tmp_path)
    (home / "projects").symlink_to(tmp_path / "nowhere")
    (home / "file-history").write_text("x")
    with pytest.raises(AccountError) as caught:
        ensure(home, root, LINKS)
    assert len(caught.value.problems) == 2
    assert (home / "session-env").readlink() == root / "session-env"


def test_ensure_refuses_a_missing_home(tmp_path: Path, root: Path) -> None:
    """A home that does not exist is not created by ensure (a typo must not grow a home)."""
    with pytest.raises(AccountError, match="does not exist"):
        ensure(tmp_path / "nope", root, LINKS)
    assert not (tmp_path / "nope").exists()


# --- validate -------------------------------------------------------------------------------


def test_validate_aggregates_every_problem_of_every_account(tmp_path: Path, root: Path) -> None:
    """Problems of all homes come back together, each naming its account."""
    a, b = make_home(tmp_path, "a"), make_home(tmp_path, "b")
    ensure(a, root, LINKS)
    (a / "projects").unlink()
    (a / "projects").symlink_to(tmp_path)
    (b / "projects").mkdir()
    (b / "projects" / "x.jsonl").write_text("{}\n")
    (b / "session-env").write_text("")
    homes = [("a", a), ("b", b), ("c", tmp_path / "claude-c")]
    problems = validate(homes, root, LINKS)
    accounts = [p.split(":")[0].removeprefix("account ") for p in problems]
    assert accounts == ["a", "b", "b", "b", "c"]
    text = "\n".join(problems)
    assert "points to" in text
    assert "manual migration needed" in text
    assert "is missing" in text
    assert "is a file" in text
    assert "does not exist" in text


def test_validate_changes_nothing(tmp_path: Path, root: Path) -> None:
    """validate only reads: no link, no shared folder appears."""
    a, b = make_home(tmp_path, "a"), make_home(tmp_path, "b")
    assert len(validate([("a", a), ("b", b)], root, LINKS)) == 6
    assert list(a.iterdir()) == []
    assert not root.exists()


def test_single_account_needs_no_link(tmp_path: Path, root: Path) -> None:
    """With one account nothing is shared, so nothing is required."""
    home = make_home(tmp_path)
    (home / "projects").mkdir()
    (home / "projects" / "t.jsonl").write_text("{}\n")
    assert validate([("a", home)], root, LINKS) == []
    assert validate([], root, LINKS) == []


# --- flipping -------------------------------------------------------------------------------


def test_flip_points_the_link_at_the_new_target(tmp_path: Path) -> None:
    """flip_active_link creates and then re-points a link, leaving no temp link."""
    a, b = make_home(tmp_path, "a"), make_home(tmp_path, "b")
    link = tmp_path / ".claude"
    flip_active_link(link, a)
    assert link.readlink() == a
    flip_active_link(link, b)
    assert link.readlink() == b
    assert temp_links(link) == []


@pytest.mark.parametrize("kind", ["directory", "file"])
def test_flip_never_replaces_a_real_entry(tmp_path: Path, kind: str) -> None:
    """A real folder or file at the link's place is refused and left intact."""
    link = tmp_path / ".claude"
    if kind == "directory":
        link.mkdir()
        (link / "settings.json").write_text("{}")
    else:
        link.write_text("data")
    with pytest.raises(AccountError, match=f"real {kind}"):
        flip_active_link(link, make_home(tmp_path))
    assert not link.is_symlink()
    assert temp_links(link) == []


def test_leftover_temp_links_are_swept(tmp_path: Path, root: Path) -> None:
    """A crash between symlink and replace leaves a temp link: the next ensure removes it."""
    home = make_home(tmp_path)
    ensure(home, root, LINKS)
    leftover = home / f"projects{TEMP_LINK_INFIX}0123456789ab"
    leftover.symlink_to(tmp_path / "other")
    lookalike = home / f"projects{TEMP_LINK_INFIX}notours"
    lookalike.symlink_to(tmp_path)
    real = home / f"session-env{TEMP_LINK_INFIX}abcdefabcdef"
    real.write_text("a real file is never swept")
    steps = ensure(home, root, LINKS)
    assert steps == [f"removed leftover temp link {leftover}"]
    assert not os.path.lexists(leftover)
    assert lookalike.is_symlink()
    assert real.read_text() == "a real file is never swept"
    assert (home / "projects").readlink() == root / "projects"
    assert sweep_temp_links(home / "projects") == []


# --- the config glue --------------------------------------------------------------------------


def test_account_problems_need_two_accounts() -> None:
    """One configured account (or none) has no account problems, whatever its home holds."""
    home = Path(os.environ["HOME"])
    assert account_problems(config_for(home, [])) == []
    assert account_problems(config_for(home, ["a"])) == []


def test_account_problems_list_every_home_and_the_active_link() -> None:
    """Two fresh accounts: each missing home is listed, and a real active folder too."""
    home = Path(os.environ["HOME"])
    (home / ".claude").mkdir()
    config = config_for(home, ["a", "b"], active_link="~/.claude")
    problems = account_problems(config)
    assert len(problems) == 3
    assert "account a" in problems[0]
    assert "account b" in problems[1]
    assert "active link" in problems[2]


def test_ensure_accounts_aggregates_problems_with_account_names() -> None:
    """ensure_accounts fixes both homes where it can and raises with every problem named."""
    home = Path(os.environ["HOME"])
    config = config_for(home, ["a", "b"])
    for account in config.accounts:
        account.home.mkdir()
    (config.accounts[0].home / "projects").write_text("x")
    (config.accounts[1].home / "session-env").symlink_to(home)
    with pytest.raises(AccountError) as caught:
        ensure_accounts(config)
    assert [p.split(":")[0] for p in caught.value.problems] == ["account a", "account b"]
    assert (config.accounts[1].home / "projects").is_symlink()


def test_active_link_rules(tmp_path: Path) -> None:
    """The active link may be absent or point to a home; elsewhere or real is a problem."""
    a, b = make_home(tmp_path, "a"), make_home(tmp_path, "b")
    homes = [("a", a), ("b", b)]
    link = tmp_path / ".claude"
    assert active_link_problems(link, homes) == []
    assert active_link_problems(None, homes) == []
    link.symlink_to(b)
    assert active_link_problems(link, homes) == []
    link.unlink()
    link.symlink_to(tmp_path)
    assert "fix it by hand" in active_link_problems(link, homes)[0]
