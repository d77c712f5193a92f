"""Unit tests for agentq.taskfile: safe parsing, refusals, footers and their round trips."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentq.core.errors import TaskFileError
from agentq.queue import taskfile
from agentq.queue.taskfile import (
    MAX_FILE_BYTES,
    MAX_FRONTMATTER_BYTES,
    MAX_YAML_DEPTH,
    Footer,
    Task,
    TaskMeta,
    count_footers,
    footer_bytes,
    parse_task,
    render_footer,
    render_task,
    split_footer,
)

# Property tests build big inputs; a deadline would be a timing assertion.
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SAMPLE_FOOTER = Footer(
    status="done",
    executor="local",
    target="agentq-1",
    account="work",
    started=datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
    finished=datetime(2024, 5, 1, 12, 2, 5, tzinfo=UTC),
    attempts=1,
    cost="unknown",
    result="All tests pass.",
    claim_id="c-123",
    details=(("model", "opus"),),
)
FAILED_FOOTER = Footer(
    status="failed",
    executor="provider",
    target="gemini",
    attempts=3,
    cost="$0.0123",
    error="HTTP 402: no credits",
)
BILLION_LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{name}: &{name} [{','.join([f'*{prev}'] * 9)}]\n"
    for prev, name in zip("abcdef", "bcdefg", strict=True)
)


@pytest.fixture(params=["libyaml if present", "pure-Python loader"])
def either_loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run a test with the C loader (when built) and with PyYAML's pure-Python SafeLoader."""
    if request.param == "pure-Python loader":
        monkeypatch.setattr(taskfile, "_SAFE_LOADER", yaml.SafeLoader)


def task_bytes(frontmatter: str, body: str = "Do it.\n") -> bytes:
    """A task file with the given frontmatter text."""
    return f"---\n{frontmatter}---\n{body}".encode()


def reason_of(data: bytes) -> str:
    """The TaskFileError reason parse_task gives for ``data``."""
    with pytest.raises(TaskFileError) as info:
        parse_task(data, "t.md")
    return info.value.reason


# --------------------------------------------------------------------------- parsing


def test_file_without_frontmatter_is_all_body() -> None:
    """No frontmatter gives empty meta and the whole text as the body."""
    task = parse_task(b"Fix the login page.\n", "fix.md")
    assert task == Task("fix.md", TaskMeta(), "Fix the login page.", "Fix the login page.\n")


def test_known_keys_are_parsed_and_typed() -> None:
    """Every documented key is read with its type; timeout accepts a duration."""
    data = task_bytes(
        "title: Fix login\npriority: 5\nneeds_claude_code: true\npreferred_ai: gemini\n"
        "allow_delegation: false\ncomplexity_hint: high\ntimeout: 45m\nsession: agentq-2\n"
    )
    meta = parse_task(data, "t.md").meta
    assert meta.title == "Fix login"
    assert meta.priority == 5
    assert meta.needs_claude_code is True
    assert meta.preferred_ai == "gemini"
    assert meta.allow_delegation is False
    assert meta.complexity_hint == "high"
    assert meta.timeout == 2700.0
    assert meta.session == "agentq-2"


def test_unknown_keys_are_kept() -> None:
    """Unknown keys survive in model_extra with their YAML values."""
    meta = parse_task(task_bytes("owner: ana\nlabels: [ui, auth]\n"), "t.md").meta
    assert meta.model_extra == {"owner": "ana", "labels": ["ui", "auth"]}


def test_body_follows_the_frontmatter() -> None:
    """The body is the text after the closing delimiter, trimmed."""
    task = parse_task(task_bytes("title: x\n", "\n\nLine one\n---\nLine two\n\n"), "t.md")
    assert task.body == "Line one\n---\nLine two"


def test_empty_frontmatter_gives_default_meta() -> None:
    """An empty frontmatter block is allowed."""
    assert parse_task(b"---\n---\nbody\n", "t.md").meta == TaskMeta()


def test_bom_and_crlf_are_accepted() -> None:
    """A UTF-8 BOM is dropped and CRLF line endings parse like LF."""
    data = b"\xef\xbb\xbf---\r\ntitle: Win\r\npriority: 2\r\n---\r\nBody line\r\n"
    task = parse_task(data, "t.md")
    assert (task.meta.title, task.meta.priority, task.body) == ("Win", 2, "Body line")
    assert task.text == "---\r\ntitle: Win\r\npriority: 2\r\n---\r\nBody line\r\n"


def test_integer_like_values_are_coerced() -> None:
    """A quoted integer priority and a bare-number timeout are fine."""
    meta = parse_task(task_bytes("priority: '3'\ntimeout: 90\n"), "t.md").meta
    assert (meta.priority, meta.timeout) == (3, 90.0)


@pytest.mark.parametrize(
    ("frontmatter", "expected"),
    [
        pytest.param("priority: high\n", "invalid frontmatter: priority:", id="word priority"),
        pytest.param("priority: true\n", "invalid frontmatter: priority:", id="bool priority"),
        pytest.param(
            "needs_claude_code: 'yes'\n",
            "invalid frontmatter: needs_claude_code:",
            id="string yes for a bool",
        ),
        pytest.param(
            "allow_delegation: 1\n", "invalid frontmatter: allow_delegation:", id="int for a bool"
        ),
        pytest.param(
            "complexity_hint: extreme\n",
            "invalid frontmatter: complexity_hint:",
            id="unknown complexity",
        ),
        pytest.param("timeout: soon\n", "invalid frontmatter: timeout:", id="word timeout"),
        pytest.param("timeout: 0\n", "invalid frontmatter: timeout:", id="zero timeout"),
        pytest.param("timeout: .inf\n", "invalid frontmatter: timeout:", id="infinite timeout"),
        pytest.param("title: [a, b]\n", "invalid frontmatter: title:", id="list title"),
        pytest.param("session: 3\n", "invalid frontmatter: session:", id="number session"),
    ],
)
def test_schema_errors_name_the_key(frontmatter: str, expected: str) -> None:
    """A value of the wrong type is refused with the key in the reason."""
    assert reason_of(task_bytes(frontmatter)).startswith(expected)


# --------------------------------------------------------------------------- refusals (T29)


def test_file_over_the_cap_is_refused_before_decoding() -> None:
    """A file over 1 MiB is refused by size, even when it is not UTF-8."""
    data = b"\xff" * (MAX_FILE_BYTES + 1)
    assert reason_of(data) == f"file too large: {MAX_FILE_BYTES + 1} bytes (limit 1048576)"


def test_ten_mib_frontmatter_is_refused_by_size() -> None:
    """10 MiB of frontmatter never reaches the YAML parser."""
    data = task_bytes("k: " + "x" * (10 * 1024 * 1024) + "\n")
    assert reason_of(data).startswith("file too large: ")


def test_frontmatter_over_its_cap_is_refused() -> None:
    """Frontmatter over 64 KiB in a file under 1 MiB is refused as invalid frontmatter."""
    data = task_bytes("k: " + "x" * MAX_FRONTMATTER_BYTES + "\n")
    assert reason_of(data).startswith("invalid frontmatter: too large: ")


def test_invalid_utf8_reports_the_byte_offset() -> None:
    """The reason names the first bad byte."""
    assert reason_of(b"abc\xffdef") == "invalid UTF-8 at byte 3"


@pytest.mark.usefixtures("either_loader")
def test_billion_laughs_is_refused() -> None:
    """The 272-byte alias bomb is refused before anything is expanded."""
    payload = BILLION_LAUGHS.encode()
    assert len(payload) == 272
    reason = reason_of(task_bytes(BILLION_LAUGHS))
    assert reason == "invalid frontmatter: YAML anchors and aliases are not allowed"


def test_a_lone_anchor_is_refused() -> None:
    """Anchors are refused even when nothing refers to them."""
    assert "anchors" in reason_of(task_bytes("title: &t hello\n"))


@pytest.mark.parametrize(
    "frontmatter",
    [
        pytest.param("k: " + "[" * 10_000 + "]" * 10_000 + "\n", id="flow lists"),
        pytest.param("k: " + "{a: " * 10_000 + "1" + "}" * 10_000 + "\n", id="flow mappings"),
        pytest.param(
            "k:\n" + "".join(" " * i + "-\n" for i in range(1, 300)), id="block lists, 300 levels"
        ),
    ],
)
@pytest.mark.usefixtures("either_loader")
def test_deep_nesting_is_refused_without_recursion(frontmatter: str) -> None:
    """Nesting past MAX_YAML_DEPTH is refused while walking events, never by recursing."""
    reason = reason_of(task_bytes(frontmatter))
    assert reason == f"invalid frontmatter: nesting deeper than {MAX_YAML_DEPTH} levels"


def test_nesting_at_the_limit_is_accepted() -> None:
    """Exactly MAX_YAML_DEPTH levels (the top mapping included) still parse."""
    depth = MAX_YAML_DEPTH - 1
    meta = parse_task(task_bytes("k: " + "[" * depth + "]" * depth + "\n"), "t.md").meta
    assert meta.model_extra is not None
    assert "k" in meta.model_extra


@pytest.mark.usefixtures("either_loader")
def test_python_tags_execute_nothing(tmp_path: Path) -> None:
    """A python/object/apply tag is refused and the command never runs."""
    canary = tmp_path / "pwned"
    frontmatter = f'x: !!python/object/apply:os.system ["touch {canary}"]\n'
    reason = reason_of(task_bytes(frontmatter))
    assert reason.startswith("invalid frontmatter: ")
    assert "python/object/apply" in reason
    assert not canary.exists()


@pytest.mark.parametrize(
    "frontmatter",
    [
        pytest.param("title: a\ntitle: b\n", id="same key twice"),
        pytest.param("allow_delegation: true\nallow_delegation: false\n", id="bool key twice"),
        pytest.param("yes: 1\ntrue: 2\n", id="yes and true build the same key"),
        pytest.param("extra:\n  a: 1\n  a: 2\n", id="nested duplicate"),
    ],
)
@pytest.mark.usefixtures("either_loader")
def test_duplicate_keys_are_refused(frontmatter: str) -> None:
    """A key given twice is refused instead of silently keeping the last value."""
    assert reason_of(task_bytes(frontmatter)).startswith("invalid frontmatter: duplicate key ")


def test_same_text_as_string_and_number_is_not_a_duplicate() -> None:
    """'1' and 1 are different keys, as they are after loading."""
    meta = parse_task(task_bytes("extra: {'1': a, 1: b}\n"), "t.md").meta
    assert meta.model_extra == {"extra": {"1": "a", 1: "b"}}


def test_merge_keys_are_refused() -> None:
    """A ``<<`` merge key could hide a duplicate; it is refused."""
    assert "merge keys" in reason_of(task_bytes("<<: {title: x}\ntitle: y\n"))


@pytest.mark.parametrize(
    ("frontmatter", "kind"),
    [
        pytest.param("- a\n- b\n", "a list", id="list"),
        pytest.param("just text\n", "a string", id="scalar"),
        pytest.param("42\n", "a number", id="number"),
    ],
)
def test_non_mapping_frontmatter_is_refused(frontmatter: str, kind: str) -> None:
    """Frontmatter must be a mapping."""
    reason = reason_of(task_bytes(frontmatter))
    assert reason == f"invalid frontmatter: expected a mapping of keys to values, got {kind}"


def test_non_string_keys_are_refused() -> None:
    """Top-level keys must be strings."""
    assert reason_of(task_bytes("1: one\n")) == "invalid frontmatter: key 1 is not a string"


def test_unclosed_frontmatter_is_refused() -> None:
    """A missing closing delimiter would turn routing keys into prompt text; refuse it."""
    reason = reason_of(b"---\nneeds_claude_code: true\nDo it.\n")
    assert reason == "invalid frontmatter: no closing '---' line"


def test_yaml_syntax_error_names_the_line() -> None:
    """A YAML syntax error is one phrase with its line number."""
    reason = reason_of(task_bytes("title: ok\nbad: [unclosed\n"))
    assert reason.startswith("invalid frontmatter: ")
    assert "(line " in reason


def test_bad_timestamp_value_is_a_task_file_error() -> None:
    """Scalar constructors' plain ValueErrors become TaskFileError."""
    assert reason_of(task_bytes("when: 2024-13-45\n")).startswith("invalid frontmatter: ")


ALL_REFUSALS = [
    pytest.param(b"x" * (MAX_FILE_BYTES + 1), id="too large"),
    pytest.param(b"ok\n\xc3\x28", id="invalid utf-8"),
    pytest.param(task_bytes("k: " + "x" * MAX_FRONTMATTER_BYTES + "\n"), id="frontmatter cap"),
    pytest.param(task_bytes(BILLION_LAUGHS), id="billion laughs"),
    pytest.param(task_bytes("k: " + "[" * 10_000 + "]" * 10_000 + "\n"), id="deep nesting"),
    pytest.param(task_bytes('x: !!python/object/apply:os.system ["true"]\n'), id="python tag"),
    pytest.param(task_bytes("a: 1\na: 2\n"), id="duplicate keys"),
    pytest.param(task_bytes("- a\n"), id="not a mapping"),
    pytest.param(task_bytes("priority: [1,\n  2]\ntimeout: x\n"), id="two schema errors"),
    pytest.param(task_bytes("a: 'multi\n  line\n  \n  broken: [\n"), id="multi-line yaml error"),
    pytest.param(task_bytes("title: |\n  a\n  b\npriority: |\n  x\n  y\n"), id="multi-line value"),
    pytest.param(b"---\ntitle: x\n", id="unclosed"),
]


@pytest.mark.parametrize("data", ALL_REFUSALS)
@pytest.mark.usefixtures("either_loader")
def test_every_refusal_reason_is_one_line(data: bytes) -> None:
    """Reasons go into footers and logs as they are, so each is a single line."""
    reason = reason_of(data)
    assert reason
    assert len(reason.splitlines()) == 1
    assert len(reason) <= 300


# --------------------------------------------------------------------------- footers


def test_footer_layout_is_delimited_and_readable() -> None:
    """The footer has the markers, the heading, the field table and the fenced result."""
    text = render_footer(SAMPLE_FOOTER)
    lines = text.split("\n")
    assert lines[0] == ""
    assert lines[1].startswith("<!-- agentq-footer bytes=")
    assert lines[2] == "## agentq result"
    assert "| session | agentq-1 |" in lines
    assert "| duration | 2m05s |" in lines
    assert "| cost | unknown |" in lines
    assert "| model | opus |" in lines
    assert "### Result" in lines
    assert text.endswith("```\nAll tests pass.\n```\n\n<!-- /agentq-footer -->\n")


def test_failed_footer_shows_the_error_and_the_provider() -> None:
    """A failed footer uses the error heading, the provider label and the error block."""
    text = render_footer(FAILED_FOOTER)
    assert "## agentq error" in text
    assert "| provider | gemini |" in text
    assert "| cost | $0.0123 |" in text
    assert "### Error\n\n```\nHTTP 402: no credits\n```" in text
    assert "### Result" not in text


def test_fence_is_longer_than_any_run_inside() -> None:
    """A result full of fences cannot close the footer's block early."""
    result = "```python\nx = 1\n```\n~~~~~\n``````"
    text = render_footer(Footer(status="done", executor="local", result=result))
    assert f"\n```````\n{result}\n```````\n" in text


def test_table_cells_escape_pipes_and_newlines() -> None:
    """A pipe or line break in a value keeps the row on one line."""
    footer = Footer(
        status="done", executor="local", account="a|b", details=(("note", "x\ny\r\u2028z\\"),)
    )
    text = render_footer(footer)
    assert "| account | a\\|b |" in text
    assert "| note | x\\ny\\r\\u2028z\\\\ |" in text
    assert split_footer(text)[1] == footer


def test_duration_is_left_out_when_a_time_is_missing() -> None:
    """No finished time, no duration row."""
    footer = Footer(status="done", executor="local", started=datetime(2024, 1, 1, tzinfo=UTC))
    assert "| duration |" not in render_footer(footer)


def test_empty_optional_strings_count_as_absent() -> None:
    """Footer('') equals Footer(None) for optional strings, so rendering is unambiguous."""
    assert Footer(status="done", executor="x", account="", cost="") == Footer(
        status="done", executor="x"
    )


def test_footer_refuses_an_unknown_status() -> None:
    """Only done and failed exist."""
    with pytest.raises(ValueError, match="status"):
        Footer(status="maybe", executor="local")  # type: ignore[arg-type]


def test_text_without_footer_splits_to_itself() -> None:
    """No footer at the end means (text, None)."""
    assert split_footer("plain\n") == ("plain\n", None)


def test_quoted_markers_in_the_body_do_not_confuse_the_split() -> None:
    """A body quoting the markers, even a whole footer mid-text, keeps its footer count at one."""
    quoted = (
        "Example:\n" + render_footer(SAMPLE_FOOTER) + "\nand more text\n<!-- /agentq-footer -->"
    )
    task = parse_task(task_bytes("title: q\n", quoted), "t.md")
    assert task.body == quoted.strip()
    rendered = render_task(task, FAILED_FOOTER)
    assert split_footer(rendered) == (task.text, FAILED_FOOTER)
    assert count_footers(rendered) == 1


def test_result_quoting_a_footer_round_trips() -> None:
    """A result that is itself a rendered footer stays inside the outer footer."""
    inner = render_footer(SAMPLE_FOOTER)
    footer = Footer(status="done", executor="local", result=inner + inner, error=inner)
    text = "body\n" + render_footer(footer)
    assert split_footer(text) == ("body\n", footer)
    assert count_footers(text) == 1


def test_edited_footer_is_no_longer_recognised() -> None:
    """A footer whose byte count no longer matches is left alone, not half-parsed."""
    text = "body\n" + render_footer(SAMPLE_FOOTER).replace("opus", "sonnet")
    assert split_footer(text) == (text, None)


def test_footer_shape_with_stray_lines_is_not_a_footer() -> None:
    """A matching byte count is not enough: the block must re-render exactly."""
    _, _, tail = render_footer(SAMPLE_FOOTER).partition("-->\n")
    tail = tail.replace("\n<!-- /agentq-footer -->", "stray line\n\n<!-- /agentq-footer -->")
    forged = f"\n<!-- agentq-footer bytes={len(tail.encode())} -->\n{tail}"
    assert split_footer("body\n" + forged) == ("body\n" + forged, None)


def test_task_moved_back_from_failed_gets_exactly_one_footer() -> None:
    """Retrying a failed task strips the old footer, so the done file has only the new one."""
    original = task_bytes("title: retry\n")
    failed = render_task(parse_task(original, "t.md"), FAILED_FOOTER).encode()
    retried = parse_task(failed, "t.md")
    assert retried == parse_task(original, "t.md")
    done = render_task(retried, SAMPLE_FOOTER)
    assert count_footers(done) == 1
    assert split_footer(done)[1] == SAMPLE_FOOTER


def test_stacked_footers_are_all_stripped() -> None:
    """A file that collected two footers (edited by hand) parses back to the bare task."""
    text = "task\n" + render_footer(FAILED_FOOTER) + render_footer(SAMPLE_FOOTER)
    assert count_footers(text) == 2
    assert parse_task(text.encode(), "t.md").text == "task\n"


def test_footer_bytes_can_be_appended_to_undecodable_files() -> None:
    """The raw footer is valid UTF-8 and ends the file with a recognisable footer."""
    raw = b"bad \xff bytes\n" + footer_bytes(FAILED_FOOTER)
    tail = raw[raw.index(b"\n<!-- agentq-footer") :].decode()
    assert split_footer(tail) == ("", FAILED_FOOTER)
    assert reason_of(raw) == "invalid UTF-8 at byte 4"


def test_lone_surrogates_become_replacement_characters() -> None:
    """A footer is always encodable, whatever text an agent produced."""
    footer = Footer(status="done", executor="local", result="a\udcffb")
    assert "a\ufffdb" in footer_bytes(footer).decode()


# --------------------------------------------------------------------------- properties

KNOWN_KEYS = frozenset(TaskMeta.model_fields)
FRAGMENTS = [
    "---",
    "---\n",
    "```",
    "````\n",
    "~~~",
    "|",
    "\r\n",
    "\n",
    "<!-- agentq-footer bytes=12 -->\n",
    "<!-- /agentq-footer -->\n",
    "## agentq result\n",
    "| field | value |\n",
    render_footer(SAMPLE_FOOTER),
    render_footer(FAILED_FOOTER),
]
texts = st.text(alphabet=st.characters(codec="utf-8"))
bodies = st.lists(st.one_of(st.sampled_from(FRAGMENTS), texts), max_size=8).map("".join)
simple_values = st.none() | st.booleans() | st.integers() | texts
known_values = st.fixed_dictionaries(
    {},
    optional={
        "title": texts,
        "priority": st.integers(-(10**6), 10**6),
        "needs_claude_code": st.booleans(),
        "preferred_ai": texts,
        "allow_delegation": st.booleans(),
        "complexity_hint": st.sampled_from(["low", "medium", "high"]),
        "timeout": st.integers(1, 10**6),
        "session": texts,
    },
)
extra_values = st.dictionaries(
    texts.filter(lambda key: key not in KNOWN_KEYS), simple_values, max_size=5
)
# Real zones have whole-second offsets (LMT ones have seconds); Python drops sub-second ones.
offsets = st.integers(-23 * 3600, 23 * 3600).map(lambda s: timedelta(seconds=s))
times = st.none() | st.datetimes(timezones=st.none() | st.builds(timezone, offsets))
optional_texts = st.none() | texts
footers = st.builds(
    Footer,
    status=st.sampled_from(["done", "failed"]),
    executor=st.sampled_from(["local", "provider"]) | texts,
    target=optional_texts,
    account=optional_texts,
    started=times,
    finished=times,
    attempts=st.integers(-5, 10**9),
    cost=st.none() | st.sampled_from(["$0.0123", "unknown"]) | texts,
    result=st.none() | bodies,
    error=st.none() | bodies,
    claim_id=optional_texts,
    details=st.lists(st.tuples(texts, texts), max_size=4).map(tuple),
)


def make_source(known: dict[str, object], extra: dict[str, object], body: str) -> str:
    """A task file text from frontmatter values and a body."""
    # Escaped output: PyYAML emits a raw NEL (U+0085) that its reader then folds to a space.
    dumped = yaml.safe_dump({**known, **extra}, sort_keys=False)
    return f"---\n{dumped}---\n{body}"


@PROPERTY
@given(known=known_values, extra=extra_values, body=bodies, footer=footers)
def test_render_then_parse_round_trips(
    known: dict[str, object], extra: dict[str, object], body: str, footer: Footer
) -> None:
    """Any task plus any footer splits and parses back to the same task and footer."""
    source = make_source(known, extra, body)
    task = parse_task(source.encode(), "t.md")
    assert task.meta.model_extra == extra
    assert task.meta.model_dump(include=set(known)) == known
    if split_footer(source)[1] is None:
        assert task.body == body.strip()
    rendered = render_task(task, footer)
    assert split_footer(rendered) == (task.text, footer)
    assert parse_task(rendered.encode(), "t.md") == task
    assert count_footers(rendered) == 1


@PROPERTY
@given(text=bodies, footer=footers)
def test_split_footer_inverts_render_footer_for_any_text(text: str, footer: Footer) -> None:
    """split_footer(text + footer) gives back exactly (text, footer)."""
    assert split_footer(text + render_footer(footer)) == (text, footer)


YAML_TOKENS = [
    "&a ", "*a", "[", "]", "{", "}", ": ", "- ", "!!python/name:os.system", "!!binary ",
    "<<: ", "\n", "  ", "yes", "2024-13-45", "1" * 5000, "'", '"', "?", "|", ">", "#", "%",
    "priority: ", "timeout: ", "title: ", "\t", "\x00", "\ufeff", "---", "...",
]  # fmt: skip
yamlish = st.lists(st.sampled_from(YAML_TOKENS) | texts, max_size=30).map("".join)
files = st.one_of(
    st.binary(max_size=2000),
    yamlish.map(lambda fm: f"---\n{fm}\n---\nbody\n".encode()),
    st.builds(lambda fm, rest: b"---\n" + fm + b"\n---\n" + rest, st.binary(), st.binary()),
)


@PROPERTY
@given(data=files)
def test_parse_task_only_ever_raises_task_file_error(data: bytes) -> None:
    """Arbitrary bytes either parse or raise TaskFileError with a one-line reason."""
    try:
        parse_task(data, "t.md")
    except TaskFileError as exc:
        assert len(exc.reason.splitlines()) == 1


@PROPERTY
@given(depth=st.integers(1, 200))
def test_depth_limit_holds_for_any_depth(depth: int) -> None:
    """Nesting is accepted up to the limit and refused past it, for any depth."""
    data = task_bytes("k: " + "[" * depth + "]" * depth + "\n")
    if depth + 1 <= MAX_YAML_DEPTH:
        parse_task(data, "t.md")
    else:
        assert "nesting deeper" in reason_of(data)
