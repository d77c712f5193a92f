"""Unit tests for agentq.config: defaults, durations, paths, and problems reported with lines."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

from agentq.config.load import config_from_dict, load_config, validate_config_file
from agentq.config.models import NOTIFICATION_EVENTS, Config, expand_path
from agentq.core.errors import ConfigError

REPO_EXAMPLE = Path(__file__).resolve().parents[2] / "config.yaml"


@pytest.fixture(autouse=True)
def _fake_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the real home out of reach even though the code under test never reads it."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An environment mapping with a fake home."""
    return {"HOME": str(tmp_path / "home")}


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    """Write a dedented config file and return its path."""
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def problems_of(data: dict[str, Any], env: dict[str, str], tmp_path: Path) -> list[str]:
    """Return the problems config_from_dict reports for ``data`` (none if it is valid)."""
    try:
        config_from_dict(data, env, tmp_path)
    except ConfigError as exc:
        return exc.problems
    return []


def test_defaults_fill_every_section(env: dict[str, str], tmp_path: Path) -> None:
    """An empty mapping gives the documented defaults, with ~ taken from env HOME."""
    home = Path(env["HOME"])
    config = config_from_dict({}, env, tmp_path)
    assert config.state_dir == home / ".local/state/agentq"
    assert config.shared.root == home / ".claude-shared"
    assert config.shared.links == ["projects", "file-history", "session-env"]
    assert config.api.token_file == home / ".config/agentq/token"
    assert config.api.enabled is True
    assert config.api.listen == "127.0.0.1:8377"
    assert config.api.address() == ("127.0.0.1", 8377)
    assert config.api.allowed_hosts == []
    assert config.agent.profile == "claude-code"
    assert config.agent.on_permission == "fail"
    assert config.accounts == []
    assert config.active_link is None
    assert config.pool_names() == ["agentq-0", "agentq-1", "agentq-2", "agentq-3"]
    assert config.dispatch.rescan_interval == 30.0
    assert config.dispatch.tmp_max_age == 36 * 3600
    assert config.completion.idle_timeout == 1800.0
    assert config.completion.task_timeout is None
    assert config.quota.timezone == "UTC"
    assert config.janitor.keep_failed == 90 * 86400
    assert config.janitor.keep_worktrees == 7 * 86400
    assert config.logging.level == "INFO"


def test_empty_file_means_all_defaults(env: dict[str, str], tmp_path: Path) -> None:
    """A file with nothing but a comment loads as the defaults."""
    path = write(tmp_path, "# nothing set yet\n")
    assert load_config(path, env) == config_from_dict({}, env, tmp_path)


def test_empty_section_takes_its_defaults(env: dict[str, str], tmp_path: Path) -> None:
    """A section or key left empty (everything under it commented out) takes its default."""
    path = write(tmp_path, "pool:\n  # max: 8\ndispatch:\n  max_attempts:\n")
    config = load_config(path, env)
    assert config.pool.max == 4
    assert config.dispatch.max_attempts == 3


def test_repo_example_loads(tmp_path: Path) -> None:
    """The documented config.yaml is valid with any HOME."""
    config = load_config(REPO_EXAMPLE, {"HOME": str(tmp_path)})
    assert config.accounts
    assert config.delegation.providers
    assert validate_config_file(REPO_EXAMPLE, {"HOME": "/nonexistent"}) == []


def _missing_keys(model: type[pydantic.BaseModel], data: Any, where: str) -> list[str]:
    """List the model fields the example leaves out, recursing into sections and list items."""
    missing: list[str] = []
    for name, field in model.model_fields.items():
        if not isinstance(data, dict) or name not in data:
            missing.append(f"{where}{name}")
            continue
        value = data[name]
        inner = field.annotation
        args = getattr(inner, "__args__", ())
        if isinstance(inner, type) and issubclass(inner, pydantic.BaseModel):
            missing += _missing_keys(inner, value, f"{where}{name}.")
        elif args and isinstance(args[-1], type) and issubclass(args[-1], pydantic.BaseModel):
            # A list's items together must show every key (some keys exclude each other).
            items = value.values() if isinstance(value, dict) else value
            merged = {key: v for item in items for key, v in item.items()}
            missing += _missing_keys(args[-1], merged, f"{where}{name}[].")
    return missing


def test_repo_example_shows_every_key() -> None:
    """Every key of the configuration appears in the documented example."""
    data = yaml.safe_load(REPO_EXAMPLE.read_text(encoding="utf-8"))
    assert _missing_keys(Config, data, "") == []


@pytest.mark.parametrize(
    ("written", "seconds"),
    [("90s", 90.0), ("1h30m", 5400.0), ("500ms", 0.5), (45, 45.0), ("2d", 172800.0)],
    ids=["seconds", "hours and minutes", "milliseconds", "a bare number", "days"],
)
def test_durations_are_seconds(
    written: str | int, seconds: float, env: dict[str, str], tmp_path: Path
) -> None:
    """Durations are written as text or numbers and held as seconds."""
    config = config_from_dict({"dispatch": {"rescan_interval": written}}, env, tmp_path)
    assert config.dispatch.rescan_interval == seconds


@pytest.mark.parametrize(
    ("line", "seconds"),
    [
        ("keep_worktrees: 3d", 3 * 86400.0),
        ("keep_worktrees: null", None),
        ("keep_worktrees: off", None),
        ("keep_worktrees: never", None),
        ("keep_worktrees:", None),
        ("keep_done: 1d", 7 * 86400.0),
    ],
    ids=["a duration", "null", "off", "never", "left empty", "not written: 7 days"],
)
def test_keep_worktrees_is_a_duration_or_forever(
    line: str, seconds: float | None, env: dict[str, str], tmp_path: Path
) -> None:
    """``janitor.keep_worktrees``: null, empty, ``off`` or ``never`` keep worktrees forever."""
    path = write(tmp_path, f"janitor:\n  {line}\n")
    assert load_config(path, env).janitor.keep_worktrees == seconds


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("10x", "dispatch.rescan_interval: expected a duration like 30s, 5m or 1h30m, got '10x'"),
        (0, "dispatch.rescan_interval: must be > 0"),
        ([1], "dispatch.rescan_interval: expected a duration like 30s, 5m or 1h30m"),
        (True, "dispatch.rescan_interval: expected a duration like 30s, 5m or 1h30m"),
    ],
    ids=["an unknown unit", "zero where time must pass", "a list", "a boolean"],
)
def test_bad_durations_are_problems(
    written: object, expected: str, env: dict[str, str], tmp_path: Path
) -> None:
    """A duration that does not parse, or is zero where it must be positive, is one problem."""
    data = {"dispatch": {"rescan_interval": written}}
    assert problems_of(data, env, tmp_path) == [expected]


def test_optional_duration_accepts_null(env: dict[str, str], tmp_path: Path) -> None:
    """task_timeout may be null (no limit) or a duration."""
    assert config_from_dict({"completion": {"task_timeout": None}}, env, tmp_path)
    config = config_from_dict({"completion": {"task_timeout": "45m"}}, env, tmp_path)
    assert config.completion.task_timeout == 2700.0


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("~", "/home/u"),
        ("~/code", "/home/u/code"),
        ("$CODE/x", "/srv/code/x"),
        ("${CODE}/x", "/srv/code/x"),
        ("~/$SUB", "/home/u/tree"),
        ("/abs/path", "/abs/path"),
        ("rel/dir", "/base/rel/dir"),
        ("./rel", "/base/rel"),
    ],
    ids=[
        "a bare tilde",
        "tilde slash",
        "a plain variable",
        "a braced variable",
        "tilde and a variable",
        "an absolute path",
        "a relative path",
        "a dot-relative path",
    ],
)
def test_expand_path(written: str, expected: str) -> None:
    """~ and $VAR expand from the mapping given; relative paths join the base folder."""
    env = {"HOME": "/home/u", "CODE": "/srv/code", "SUB": "tree"}
    assert expand_path(written, env, Path("/base")) == Path(expected)


@pytest.mark.parametrize(
    ("written", "env", "message"),
    [
        ("$NOPE/x", {"HOME": "/h"}, "environment variable NOPE is not set"),
        ("${NOPE}", {"HOME": "/h"}, "environment variable NOPE is not set"),
        ("~/x", {}, "HOME is not set"),
        ("~bob/x", {"HOME": "/h"}, "~bob is not supported"),
        ("${1x}", {"HOME": "/h"}, "not a valid variable reference"),
        ("", {"HOME": "/h"}, "must not be empty"),
    ],
    ids=[
        "an unset variable",
        "an unset braced variable",
        "no HOME for a tilde",
        "another user's home",
        "a malformed reference",
        "an empty path",
    ],
)
def test_expand_path_refuses(written: str, env: dict[str, str], message: str) -> None:
    """Expansion that cannot be done exactly is an error naming the reason."""
    with pytest.raises(ValueError, match=message):
        expand_path(written, env, Path("/base"))


def test_undefined_variable_is_a_config_problem(env: dict[str, str], tmp_path: Path) -> None:
    """An undefined variable in a path field is reported with the key, line and variable."""
    path = write(tmp_path, "accounts:\n  - name: a\n    home: $ACCOUNT_ROOT/a\n")
    assert validate_config_file(path, env) == [
        "line 3: accounts[0].home: environment variable ACCOUNT_ROOT is not set"
    ]


def test_relative_paths_start_at_the_config_folder(env: dict[str, str], tmp_path: Path) -> None:
    """A relative path in the file is taken from the folder the file is in."""
    path = write(tmp_path, "state_dir: state\nprojects: {roots: [../code]}\n", "etc/agentq.yaml")
    config = load_config(path, env)
    assert config.state_dir == tmp_path / "etc" / "state"
    assert config.projects.roots == [tmp_path / "etc" / ".." / "code"]


def test_models_never_read_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the mapping handed in counts, even when the process environment has the name."""
    monkeypatch.setenv("AGENTQ_TEST_ROOT", str(tmp_path))
    assert problems_of({"state_dir": "$AGENTQ_TEST_ROOT/s"}, {}, tmp_path) == [
        "state_dir: environment variable AGENTQ_TEST_ROOT is not set",
        "shared.root: cannot expand ~: HOME is not set",
        "api.token_file: cannot expand ~: HOME is not set",
    ]


def test_direct_construction_refuses_to_guess_home() -> None:
    """Building a model without an environment cannot expand ~, so it fails loudly."""
    with pytest.raises(pydantic.ValidationError, match="without an environment"):
        Config()


def test_three_mistakes_give_three_problems_with_lines(env: dict[str, str], tmp_path: Path) -> None:
    """Every problem is reported at once, one line each, in file order."""
    path = write(
        tmp_path,
        """
        state_dir: ~/state
        pool:
          min: 2
          max: 1
        quota:
          confirm_pols: 3
        agent:
          profile: clod
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, env)
    assert caught.value.problems == [
        "line 4: pool.max: must be >= pool.min (2)",
        "line 6: quota.confirm_pols: unknown key",
        "line 8: agent.profile: must be one of 'claude-code', 'sim' or 'instant', got 'clod'",
    ]
    assert caught.value.path == path
    assert str(path) in str(caught.value)


def test_unknown_key_names_key_and_line(env: dict[str, str], tmp_path: Path) -> None:
    """A misspelt key is named with its line, nested or at the top level."""
    path = write(tmp_path, "quota:\n  poll_interval: 5s\n  confirm_pols: 2\nstate_dri: /x\n")
    assert validate_config_file(path, env) == [
        "line 3: quota.confirm_pols: unknown key",
        "line 4: state_dri: unknown key",
    ]


def test_problems_inside_list_items_point_at_the_item(env: dict[str, str], tmp_path: Path) -> None:
    """A missing key in a list item is reported at the item's line."""
    path = write(tmp_path, "accounts:\n  - name: a\n    home: /a\n  - name: b\n")
    assert validate_config_file(path, env) == ["line 4: accounts[1].home: required key is missing"]


def test_duplicate_yaml_keys_are_problems(env: dict[str, str], tmp_path: Path) -> None:
    """A key written twice in one mapping is reported (safe_load would keep the last silently)."""
    path = write(tmp_path, "pool:\n  max: 4\n  max: 6\n")
    assert validate_config_file(path, env) == ["line 3: pool.max: duplicate key (first at line 2)"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- a\n- b\n", "the top level must be a mapping of keys, got list"),
        ("just text\n", "the top level must be a mapping of keys, got str"),
        ("pool: [\n", "line 2: invalid YAML: expected the node content, but found '<stream end>'"),
        ("pool: 3\n", "line 1: pool: must be a mapping of keys"),
    ],
    ids=["a list", "a scalar", "broken YAML", "a section that is not a mapping"],
)
def test_malformed_files_give_one_clear_problem(
    text: str, expected: str, env: dict[str, str], tmp_path: Path
) -> None:
    """A file that is not a mapping of sections is one problem."""
    assert validate_config_file(write(tmp_path, text), env) == [expected]


def test_missing_file_is_one_problem(env: dict[str, str], tmp_path: Path) -> None:
    """A file that does not exist is one problem naming the cause and the path."""
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path, env)
    assert caught.value.problems == ["cannot read the config file: No such file or directory"]
    assert str(path) in str(caught.value)


def test_non_utf8_file_is_one_problem(env: dict[str, str], tmp_path: Path) -> None:
    """A binary file is refused before YAML parsing."""
    path = tmp_path / "config.yaml"
    path.write_bytes(b"pool: \xff\n")
    assert validate_config_file(path, env) == ["the config file is not UTF-8 text (byte 6)"]


# --- sections' own rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listen", "address"),
    [
        ("127.0.0.1:8377", ("127.0.0.1", 8377)),
        ("[::1]:9000", ("::1", 9000)),
        ("localhost:0", ("localhost", 0)),
    ],
    ids=["IPv4 loopback", "IPv6 loopback", "localhost with any port"],
)
def test_api_listens_on_loopback(
    listen: str, address: tuple[str, int], env: dict[str, str], tmp_path: Path
) -> None:
    """Loopback addresses are accepted and split into host and port."""
    config = config_from_dict({"api": {"listen": listen}}, env, tmp_path)
    assert config.api.address() == address


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        ("0.0.0.0:8377", "host must be loopback (127.0.0.1, ::1 or localhost), got '0.0.0.0'"),
        (
            "192.168.1.5:80",
            "host must be loopback (127.0.0.1, ::1 or localhost), got '192.168.1.5'",
        ),
        ("[::]:8377", "host must be loopback (127.0.0.1, ::1 or localhost), got '::'"),
        ("8377", "'8377' is not host:port (e.g. 127.0.0.1:8377)"),
        ("127.0.0.1:70000", "port 70000 is out of range (0-65535)"),
    ],
    ids=["all IPv4 interfaces", "a LAN address", "all IPv6 interfaces", "no host", "a bad port"],
)
def test_api_refuses_other_addresses(
    listen: str, message: str, env: dict[str, str], tmp_path: Path
) -> None:
    """The API never listens beyond loopback."""
    assert problems_of({"api": {"listen": listen}}, env, tmp_path) == [f"api.listen: {message}"]


@pytest.mark.parametrize(
    ("api", "listen"),
    [
        ({"listen": None}, None),
        ({"enabled": False}, None),
        ({"enabled": False, "listen": "127.0.0.1:9000"}, None),
        ({"enabled": True, "listen": "127.0.0.1:9000"}, "127.0.0.1:9000"),
        ({"enabled": True}, "127.0.0.1:8377"),
    ],
    ids=[
        "listen null turns it off",
        "an old enabled false turns it off",
        "enabled false wins over a listen address",
        "an old enabled true keeps the address",
        "an old enabled true alone keeps the default",
    ],
)
def test_api_listen_null_and_the_old_enabled_key(
    api: dict[str, Any], listen: str | None, env: dict[str, str], tmp_path: Path
) -> None:
    """``listen: null`` is off; configs that still say ``enabled`` mean what they meant."""
    config = config_from_dict({"api": api}, env, tmp_path)
    assert config.api.listen == listen
    assert config.api.enabled is (listen is not None)


@pytest.mark.parametrize(
    ("api", "message"),
    [
        ({"enabled": "yes"}, "api: enabled (deprecated) must be true or false"),
        ({"allowed_hosts": ["evil example"]}, "api.allowed_hosts: 'evil example' is not a host"),
    ],
    ids=["enabled that is not a boolean", "an allowed host with a space"],
)
def test_api_settings_that_make_no_sense_are_named(
    api: dict[str, Any], message: str, env: dict[str, str], tmp_path: Path
) -> None:
    """A bad ``enabled`` or allowed host is reported with its key."""
    problems = problems_of({"api": api}, env, tmp_path)
    assert len(problems) == 1 and problems[0].startswith(message), problems


def test_dedicated_session_inside_pool_range_is_refused(
    env: dict[str, str], tmp_path: Path
) -> None:
    """A dedicated session named like a pool session would be driven by agentq, so it is refused."""
    path = write(
        tmp_path,
        """
        pool:
          prefix: w-
          start_index: 2
          max: 3
          dedicated:
            - name: w-4
            - name: w-5
            - name: ops
            - name: ops
        """,
    )
    assert validate_config_file(path, env) == [
        "line 6: pool.dedicated[0].name: 'w-4' is inside the pool's own range; choose another name",
        "line 9: pool.dedicated[3].name: duplicate dedicated session 'ops' (also item 2)",
    ]


def test_dedicated_session_outside_pool_range_is_kept(env: dict[str, str], tmp_path: Path) -> None:
    """Names just outside the range are the operator's own."""
    data = {"pool": {"start_index": 1, "max": 2, "dedicated": [{"name": "agentq-0"}]}}
    config = config_from_dict(data, env, tmp_path)
    assert config.pool_names() == ["agentq-1", "agentq-2"]
    assert config.dedicated_names() == ["agentq-0"]


@pytest.mark.parametrize(
    ("pool", "expected"),
    [
        ({"min": 5}, "pool.max: must be >= pool.min (5)"),
        ({"max": 0}, "pool.max: must be >= 1"),
        ({"max": 65}, "pool.max: must be <= 64"),
        ({"start_index": -1}, "pool.start_index: must be >= 0"),
        ({"prefix": "a b"}, "pool.prefix: 'a b' does not match ^[A-Za-z0-9_-]{1,32}$"),
    ],
    ids=["min above the default max", "an empty pool", "too big", "negative start", "a space"],
)
def test_pool_bounds(
    pool: dict[str, Any], expected: str, env: dict[str, str], tmp_path: Path
) -> None:
    """The pool's size and names are bounded."""
    assert problems_of({"pool": pool}, env, tmp_path) == [expected]


def test_accounts_need_unique_names_and_homes(env: dict[str, str], tmp_path: Path) -> None:
    """Two accounts may not share a name or a home; names are checked for shape."""
    data = {
        "accounts": [
            {"name": "a", "home": "~/h1"},
            {"name": "a", "home": "~/h2"},
            {"name": "b", "home": "~/h1"},
            {"name": "Bad!", "home": "~/h3"},
        ]
    }
    assert problems_of(data, env, tmp_path) == [
        "accounts[3].name: 'Bad!' is not a valid account name "
        "(1-32 of a-z, 0-9, _ and -, starting with a letter or digit)",
    ]
    del data["accounts"][3]
    home = env["HOME"]
    assert problems_of(data, env, tmp_path) == [
        "accounts[1].name: duplicate account name 'a' (also item 0)",
        f"accounts[2].home: duplicate account home '{home}/h1' (also item 0)",
    ]


def test_active_link_cannot_be_an_account_home(env: dict[str, str], tmp_path: Path) -> None:
    """Flipping the active link over an account's own home would destroy that home."""
    data = {"accounts": [{"name": "a", "home": "~/.claude"}], "active_link": "~/.claude"}
    assert problems_of(data, env, tmp_path) == [
        "active_link: must not be an account home (it is flipped between the homes)"
    ]


def test_provider_references(env: dict[str, str], tmp_path: Path) -> None:
    """Fallbacks and the complexity map may name configured providers or local only."""
    path = write(
        tmp_path,
        """
        delegation:
          providers:
            - {name: gem, kind: openai-compatible, base_url: "https://example.test/v1"}
          fallbacks:
            gem: [local, other]
            ghost: [gem]
          complexity:
            low: gem
            high: nope
        """,
    )
    assert validate_config_file(path, env) == [
        "line 5: delegation.fallbacks.gem[1]: unknown provider 'other' (configured: gem, local)",
        "line 6: delegation.fallbacks.ghost: unknown provider 'ghost' (configured: gem, local)",
        "line 9: delegation.complexity.high: unknown provider 'nope' (configured: gem, local)",
    ]


def test_valid_provider_references_load(env: dict[str, str], tmp_path: Path) -> None:
    """A fallback chain ending in local and a complexity map over providers is accepted."""
    data = {
        "delegation": {
            "providers": [
                {"name": "a", "kind": "anthropic", "base_url": "http://127.0.0.1:9/"},
                {"name": "b", "kind": "job-api", "base_url": "https://jobs.example.test"},
            ],
            "fallbacks": {"a": ["b", "local"]},
            "complexity": {"low": "b", "high": "local"},
        }
    }
    config = config_from_dict(data, env, tmp_path)
    assert config.delegation.fallbacks == {"a": ["b", "local"]}
    provider = config.provider("b")
    assert provider is not None
    assert provider.kind == "job-api"
    assert config.provider("local") is None


@pytest.mark.parametrize(
    ("provider", "expected"),
    [
        (
            {"name": "local"},
            "delegation.providers[0].name: 'local' is reserved for the local executor",
        ),
        (
            {"name": "claude-code"},
            "delegation.providers[0].name: 'claude-code' is reserved for the local executor",
        ),
        (
            {"base_url": "ftp://x"},
            "delegation.providers[0].base_url: 'ftp://x' is not an http:// or https:// URL",
        ),
        (
            {"api_key_env": "K", "api_key_file": "/k"},
            "delegation.providers[0].api_key_file: set api_key_env or api_key_file, not both",
        ),
        (
            {"kind": "grpc"},
            "delegation.providers[0].kind: must be one of 'job-api', "
            "'openai-compatible' or 'anthropic', got 'grpc'",
        ),
    ],
    ids=["named local", "named claude-code", "not http", "two key sources", "an unknown kind"],
)
def test_provider_fields(
    provider: dict[str, str], expected: str, env: dict[str, str], tmp_path: Path
) -> None:
    """A provider is refused for a reserved name, a non-HTTP URL, two key sources or a bad kind."""
    entry = {"name": "p", "kind": "anthropic", "base_url": "https://example.test", **provider}
    assert problems_of({"delegation": {"providers": [entry]}}, env, tmp_path) == [expected]


def test_provider_names_are_unique(env: dict[str, str], tmp_path: Path) -> None:
    """Two providers with one name are refused at the second."""
    entry = {"name": "p", "kind": "anthropic", "base_url": "https://example.test"}
    data = {"delegation": {"providers": [entry, entry]}}
    assert problems_of(data, env, tmp_path) == [
        "delegation.providers[1].name: duplicate provider 'p' (also item 0)"
    ]


def test_timezone_must_be_known(env: dict[str, str], tmp_path: Path) -> None:
    """The quota time zone must be a zoneinfo name."""
    assert config_from_dict({"quota": {"timezone": "Asia/Tokyo"}}, env, tmp_path)
    assert problems_of({"quota": {"timezone": "Mars/Base"}}, env, tmp_path) == [
        "quota.timezone: unknown time zone 'Mars/Base' (e.g. UTC, Europe/Berlin)"
    ]


def test_notifications_default_to_every_event(env: dict[str, str], tmp_path: Path) -> None:
    """A notification target without events gets all of them; an unknown event is refused."""
    data: dict[str, Any] = {"notifications": [{"kind": "ntfy", "url": "https://n.example.test/t"}]}
    config = config_from_dict(data, env, tmp_path)
    assert config.notifications[0].events == list(NOTIFICATION_EVENTS)
    data["notifications"][0]["events"] = ["swap", "explode"]
    assert problems_of(data, env, tmp_path) == [
        "notifications[0].events[1]: must be one of 'swap', 'partial_swap', 'accounts_exhausted', "
        "'accounts_available', 'task_failed', 'task_stale', 'daemon_degraded' or "
        "'daemon_started', got 'explode'"
    ]


def test_agent_env_values_become_text(env: dict[str, str], tmp_path: Path) -> None:
    """A number in the agent's environment is kept as text; a bad variable name is refused."""
    config = config_from_dict({"agent": {"env": {"DEBUG": 1}}}, env, tmp_path)
    assert config.agent.env == {"DEBUG": "1"}
    assert problems_of({"agent": {"env": {"1X": "y"}}}, env, tmp_path) == [
        "agent.env.1X: '1X' is not a valid environment variable name"
    ]


def test_logging_level_ignores_case(env: dict[str, str], tmp_path: Path) -> None:
    """`level: debug` means DEBUG."""
    assert config_from_dict({"logging": {"level": "debug"}}, env, tmp_path).logging.level == "DEBUG"


def test_config_is_frozen(env: dict[str, str], tmp_path: Path) -> None:
    """A loaded configuration cannot be changed by accident."""
    config = config_from_dict({}, env, tmp_path)
    with pytest.raises(pydantic.ValidationError):
        config.pool.max = 9


@pytest.mark.timeout(20)
def test_alias_bomb_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    """A billion-laughs file is refused before anything expands it."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    bomb = "".join(f"  {line}\n" for line in lines)
    path = write(tmp_path, f"bomb:\n{bomb}projects:\n  roots: *a8\n")
    assert validate_config_file(path, env) == ["the config expands to over 100000 values"]


def test_shared_aliases_are_fine(env: dict[str, str], tmp_path: Path) -> None:
    """Ordinary anchors and aliases load, and duplicate-key checks walk them once."""
    path = write(tmp_path, "projects:\n  roots: &r [/a, /b]\n  paths: *r\n")
    assert load_config(path, env).projects.paths == [Path("/a"), Path("/b")]
