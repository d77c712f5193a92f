"""Task files: parse markdown with YAML frontmatter safely, and render/strip result footers.

A task file is UTF-8 Markdown, optionally opening with a ``---`` delimited YAML frontmatter.
When agentq finishes a task it appends a footer::

    <!-- agentq-footer bytes=N -->      N = UTF-8 length of everything after this line
    ## agentq result                    (``## agentq error`` when the task failed)
    | field | value |                   status, executor, session/provider, … then details
    ### Result                          the result (or error) in a fenced block
    <!-- /agentq-footer -->

A footer is recognised only at the very end of the text, only when its byte count matches and
only when it re-renders to exactly the same text, so a body or a result that quotes the
markers cannot confuse the parser. Everything here is pure: bytes and strings in, data out.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

import pydantic
import yaml
from frontmatter.default_handlers import YAMLHandler

from agentq.core.durations import format_duration, parse_duration
from agentq.core.errors import TaskFileError
from agentq.queue.isolation import check_base
from agentq.queue.schedule import check_after

logger = logging.getLogger(__name__)

MAX_FILE_BYTES = 1024 * 1024
MAX_FRONTMATTER_BYTES = 64 * 1024
MAX_YAML_DEPTH = 64
# The keys the scheduler reads before a claim (dependencies, isolation, and the routing keys
# that tell whether a task will run in the project at all).
_SCHEDULE_KEY_RE = re.compile(
    r"^(?:after|isolation|needs_claude_code|preferred_ai|allow_delegation|complexity_hint)"
    r"[ \t]*:",
    re.MULTILINE,
)

_REASON_LIMIT = 300
_MERGE_TAG = "tag:yaml.org,2002:merge"
# libyaml's safe loader is ~10x faster on a hostile 64 KiB document (R22 allows it); the
# pure-Python SafeLoader is the fallback. Both build only plain Python types.
_SAFE_LOADER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(
    yaml, "CSafeLoader", yaml.SafeLoader
)


# --------------------------------------------------------------------------- frontmatter schema


class TaskMeta(pydantic.BaseModel, extra="allow", frozen=True):
    """The frontmatter of a task; unknown keys are kept in ``model_extra``."""

    title: pydantic.StrictStr | None = None
    priority: int = 0
    needs_claude_code: pydantic.StrictBool | None = None
    preferred_ai: pydantic.StrictStr | None = None
    allow_delegation: pydantic.StrictBool | None = None
    complexity_hint: Literal["low", "medium", "high"] | None = None
    timeout: Annotated[float | None, pydantic.Field(description="seconds")] = None
    session: pydantic.StrictStr | None = None
    isolation: Literal["none", "worktree"] | None = None
    base: pydantic.StrictStr | None = None
    after: tuple[str, ...] = ()

    _check_base = pydantic.field_validator("base")(check_base)
    _check_after = pydantic.field_validator("after", mode="before")(check_after)

    @pydantic.field_validator("priority", mode="before")
    @classmethod
    def _no_bool_priority(cls, value: object) -> object:
        # pydantic's lax int takes True as 1; a boolean priority is a typo, not a number.
        if isinstance(value, bool):
            raise ValueError("expected an integer, got a boolean")
        return value

    @pydantic.field_validator("timeout", mode="before")
    @classmethod
    def _parse_timeout(cls, value: object) -> object:
        if value is None:
            return None
        if not isinstance(value, str | int | float):
            raise ValueError("expected a duration like 45m or a number of seconds")
        seconds = parse_duration(value)
        if not math.isfinite(seconds) or seconds <= 0:
            raise ValueError("expected a positive, finite duration")
        return seconds


@dataclass(frozen=True)
class Task:
    """A parsed task file; ``text`` is the file's text without any agentq footer."""

    name: str
    meta: TaskMeta
    body: str
    text: str


# --------------------------------------------------------------------------- parsing


def parse_task(data: bytes, name: str) -> Task:
    """Parse a task file's bytes.

    Raises:
        TaskFileError: the file is too large, not UTF-8, or its frontmatter is invalid.
    """
    if len(data) > MAX_FILE_BYTES:
        raise TaskFileError(f"file too large: {len(data)} bytes (limit {MAX_FILE_BYTES})")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TaskFileError(f"invalid UTF-8 at byte {exc.start}") from None
    text = text.removeprefix("\ufeff")
    text = text[: _footers_start(text)]
    frontmatter, body = _split_frontmatter(text)
    meta = TaskMeta() if frontmatter is None else _parse_meta(frontmatter)
    return Task(name=name, meta=meta, body=body, text=text)


def peek_meta(head: bytes) -> TaskMeta:
    """The frontmatter the scheduler needs, read from the first bytes of a pending task.

    Lenient: anything unreadable reads as the defaults; the full parse after the claim
    refuses the file with its reason. A file that mentions none of the keys the
    scheduler reads (``after``, ``isolation`` and the routing keys) is not parsed.
    """
    text = head.decode("utf-8", errors="replace").removeprefix("\ufeff")
    if not _SCHEDULE_KEY_RE.search(text):
        return TaskMeta()
    try:
        frontmatter, _ = _split_frontmatter(text)
        return TaskMeta() if frontmatter is None else _parse_meta(frontmatter)
    except TaskFileError:
        return TaskMeta()


class _SplitOnlyHandler(YAMLHandler):
    """python-frontmatter's ``---`` delimiters without its loader: we parse the YAML ourselves."""

    def load(self, fm: str, **kwargs: object) -> Any:
        raise NotImplementedError("agentq parses frontmatter with its own hardened loader")


_SPLITTER = _SplitOnlyHandler()


def _split_frontmatter(text: str) -> tuple[str | None, str]:
    """Return (frontmatter text or None, body) without parsing any YAML."""
    if not _SPLITTER.detect(text):
        return None, text.strip()
    try:
        frontmatter, content = _SPLITTER.split(text)
    except ValueError:
        # An unclosed block would silently turn routing keys into prompt text; refuse it.
        raise _invalid("no closing '---' line") from None
    size = len(frontmatter.encode("utf-8"))
    if size > MAX_FRONTMATTER_BYTES:
        raise _invalid(f"too large: {size} bytes (limit {MAX_FRONTMATTER_BYTES})")
    return frontmatter, content.strip()


def _parse_meta(frontmatter: str) -> TaskMeta:
    """Check the YAML event stream, then safe_load it and validate the schema."""
    try:
        _check_events(frontmatter)
        data = _safe_load(frontmatter)
    except yaml.MarkedYAMLError as exc:
        raise _invalid(_marked_reason(exc)) from None
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
        # Scalar constructors raise plain ValueError (e.g. 2024-13-45, huge ints).
        raise _invalid(str(exc) or type(exc).__name__) from None
    if data is None:
        return TaskMeta()
    if not isinstance(data, dict):
        raise _invalid(f"expected a mapping of keys to values, got {_yaml_kind(data)}")
    for key in data:
        if not isinstance(key, str):
            raise _invalid(f"key {key!r} is not a string")
    try:
        return TaskMeta.model_validate(data)
    except pydantic.ValidationError as exc:
        raise _invalid(_schema_reason(exc)) from None


def _safe_load(text: str) -> Any:
    """What ``yaml.safe_load`` does, through libyaml's safe loader when it is there."""
    loader = _SAFE_LOADER(text)  # only ever SafeLoader or CSafeLoader: no arbitrary tags
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


@dataclass
class _Collection:
    """An open YAML collection while walking events; mappings track their keys."""

    is_mapping: bool
    keys: set[Hashable] = field(default_factory=set)
    expect_key: bool = True


def _check_events(frontmatter: str) -> None:
    """Refuse anchors, aliases, merge keys, deep nesting and duplicate keys, iteratively."""
    stack: list[_Collection] = []
    for event in yaml.parse(frontmatter, Loader=_SAFE_LOADER):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _invalid("YAML anchors and aliases are not allowed")
        if isinstance(event, yaml.NodeEvent) and stack and stack[-1].is_mapping:
            _note_mapping_entry(stack[-1], event)
        if isinstance(event, yaml.CollectionStartEvent):
            stack.append(_Collection(is_mapping=isinstance(event, yaml.MappingStartEvent)))
            if len(stack) > MAX_YAML_DEPTH:
                raise _invalid(f"nesting deeper than {MAX_YAML_DEPTH} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            stack.pop()


def _note_mapping_entry(mapping: _Collection, event: yaml.NodeEvent) -> None:
    """Record a key or value node inside a mapping; refuse a key seen before."""
    is_key = mapping.expect_key
    mapping.expect_key = not is_key
    if not is_key or not isinstance(event, yaml.ScalarEvent):
        return
    tag = event.tag
    if tag is None or tag == "!":
        # The stubs leave Resolver.resolve unannotated; it returns the tag string.
        resolved: str = _RESOLVER.resolve(  # type: ignore[no-untyped-call]
            yaml.ScalarNode, event.value, event.implicit
        )
        tag = resolved
    if tag == _MERGE_TAG:
        raise _invalid("YAML merge keys (<<) are not allowed")
    identity = _key_identity(tag, event.value)
    if identity in mapping.keys:
        raise _invalid(f"duplicate key {event.value!r}")
    mapping.keys.add(identity)


_RESOLVER = yaml.resolver.Resolver()


def _key_identity(tag: str, value: str) -> Hashable:
    """The key as safe_load will build it, so ``yes`` and ``true`` count as the same key."""
    try:
        built = yaml.constructor.SafeConstructor().construct_object(yaml.ScalarNode(tag, value))
    except (yaml.YAMLError, ValueError, TypeError, OverflowError):
        # safe_load will refuse this scalar with a proper message right after.
        return ("unbuildable", tag, value)
    return built if isinstance(built, Hashable) else ("unhashable", tag, value)


def _marked_reason(exc: yaml.MarkedYAMLError) -> str:
    """A YAML error as one phrase with its line, without the multi-line snippet."""
    parts = [part for part in (exc.context, exc.problem) if part]
    text = ", ".join(parts) if parts else "YAML error"
    mark = exc.problem_mark or exc.context_mark
    return f"{text} (line {mark.line + 1})" if mark is not None else text


def _schema_reason(exc: pydantic.ValidationError) -> str:
    """Every schema error as ``key: message``, joined on one line."""
    parts = []
    for error in exc.errors(include_url=False):
        loc = ".".join(str(part) for part in error["loc"])
        parts.append(f"{loc}: {error['msg']}" if loc else error["msg"])
    return "; ".join(parts)


def _yaml_kind(value: object) -> str:
    """Name a YAML value's kind for an error message."""
    kinds = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
    return kinds.get(type(value), type(value).__name__)


def _invalid(detail: str) -> TaskFileError:
    """A TaskFileError for bad frontmatter, with a reason that is one bounded line."""
    return TaskFileError(_one_line(f"invalid frontmatter: {detail}"))


def _one_line(text: str) -> str:
    """Collapse all line breaks and runs of whitespace; cut to a footer-friendly length."""
    flat = " ".join(text.split())
    return flat if len(flat) <= _REASON_LIMIT else flat[: _REASON_LIMIT - 1] + "…"


# --------------------------------------------------------------------------- footers


@dataclass(frozen=True)
class Footer:
    """What agentq appends to a finished task; empty optional strings count as absent.

    Times round-trip exactly when their UTC offset is whole seconds (true of every real zone).
    """

    status: Literal["done", "failed"]
    executor: str
    target: str | None = None
    account: str | None = None
    started: datetime | None = None
    finished: datetime | None = None
    attempts: int = 0
    cost: str | None = None
    result: str | None = None
    error: str | None = None
    claim_id: str | None = None
    details: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.status not in _HEADINGS:
            raise ValueError(f"footer status must be 'done' or 'failed', got {self.status!r}")
        for name in ("target", "account", "cost", "claim_id"):
            if getattr(self, name) == "":
                object.__setattr__(self, name, None)
        object.__setattr__(self, "details", tuple((str(k), str(v)) for k, v in self.details))

    @classmethod
    def failure(
        cls,
        error: str,
        *,
        executor: str,
        started: datetime,
        finished: datetime,
        attempts: int = 0,
        claim_id: str | None = None,
        details: tuple[tuple[str, str], ...] = (),
    ) -> Footer:
        """The footer of a task that failed before any executor produced an outcome."""
        return cls(
            status="failed",
            executor=executor,
            started=started,
            finished=finished,
            attempts=attempts,
            error=error,
            claim_id=claim_id,
            details=details,
        )


_START_PREFIX = "<!-- agentq-footer bytes="
_START = re.compile(r"<!-- agentq-footer bytes=(\d{1,9}) -->")
_END_LINE = "<!-- /agentq-footer -->"
_TABLE_HEAD = ("| field | value |", "| --- | --- |")
_HEADINGS = {"done": "## agentq result", "failed": "## agentq error"}
_SECTIONS = (("result", "### Result"), ("error", "### Error"))
# Full parses tried per split: bounds the work a hostile file full of fake markers can cause.
_MAX_CANDIDATES = 16


def render_footer(footer: Footer) -> str:
    """Render the footer, starting with a newline so it always begins on a line of its own."""
    lines = [_HEADINGS[footer.status], "", *_TABLE_HEAD]
    lines += [f"| {_escape_cell(k)} | {_escape_cell(v)} |" for k, v in _footer_rows(footer)]
    lines.append("")
    for attr, heading in _SECTIONS:
        text = getattr(footer, attr)
        if text is not None:
            fence = _fence_for(text)
            lines += [heading, "", fence, _clean(text), fence, ""]
    lines.append(_END_LINE)
    rest = "\n".join(lines) + "\n"
    return f"\n{_START_PREFIX}{len(rest.encode('utf-8'))} -->\n{rest}"


def render_task(task: Task, footer: Footer) -> str:
    """The finished task file: the task's text followed by exactly one footer."""
    return task.text + render_footer(footer)


def footer_bytes(footer: Footer) -> bytes:
    """The footer as UTF-8, to append to a raw file that could not be decoded."""
    return render_footer(footer).encode("utf-8")


def split_footer(text: str) -> tuple[str, Footer | None]:
    """Split off the agentq footer at the very end of ``text``, if there is one."""
    found = _find_footer(text, len(text))
    if found is None:
        return text, None
    start, footer = found
    return text[:start], footer


def count_footers(text: str) -> int:
    """How many agentq footers are stacked at the end of ``text``."""
    count, end = 0, len(text)
    while (found := _find_footer(text, end)) is not None:
        count, end = count + 1, found[0]
    return count


def _footers_start(text: str) -> int:
    """Where the stack of trailing footers begins (``len(text)`` when there is none)."""
    end = len(text)
    while (found := _find_footer(text, end)) is not None:
        end = found[0]
    return end


def _footer_rows(footer: Footer) -> list[tuple[str, str]]:
    """The table rows; ``attempts`` always comes last among the fixed rows, details after."""
    rows = [("status", footer.status), ("executor", footer.executor)]
    if footer.target is not None:
        rows.append((_target_label(footer.executor), footer.target))
    if footer.account is not None:
        rows.append(("account", footer.account))
    if footer.started is not None:
        rows.append(("started", footer.started.isoformat(sep=" ")))
    if footer.finished is not None:
        rows.append(("finished", footer.finished.isoformat(sep=" ")))
    duration = _duration(footer.started, footer.finished)
    if duration is not None:
        rows.append(("duration", duration))
    if footer.cost is not None:
        rows.append(("cost", footer.cost))
    if footer.claim_id is not None:
        rows.append(("claim id", footer.claim_id))
    rows.append(("attempts", str(footer.attempts)))
    return rows + list(footer.details)


def _target_label(executor: str) -> str:
    return {"local": "session", "cluster": "host"}.get(executor, "provider")


def _duration(started: datetime | None, finished: datetime | None) -> str | None:
    """finished - started for humans, when both are known and comparable."""
    if started is None or finished is None:
        return None
    if (started.utcoffset() is None) != (finished.utcoffset() is None):
        return None
    seconds = (finished - started).total_seconds()
    return format_duration(seconds) if seconds >= 0 else f"-{format_duration(-seconds)}"


def _fence_for(text: str) -> str:
    """A backtick fence longer than any backtick or tilde run inside ``text``."""
    longest = max((len(run) for run in re.findall(r"`+|~+", text)), default=0)
    return "`" * max(3, longest + 1)


def _clean(text: str) -> str:
    """Replace lone surrogates with U+FFFD so the footer is always valid UTF-8."""
    return _SURROGATE.sub("\ufffd", text)


# Characters that some tools treat as line breaks are escaped so a row stays one line.
_CELL_ESCAPES = {"\\": "\\\\", "|": "\\|", "\n": "\\n", "\r": "\\r"}
_LINE_BREAKS = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_CELL_UNESCAPES = {v: k for k, v in _CELL_ESCAPES.items()}
_SURROGATE = re.compile("[\ud800-\udfff]")
_CELL_TOKEN = re.compile(r"\\(?:[\\|nr]|u[0-9a-f]{4})|[^\\|\n]")


def _escape_cell(value: str) -> str:
    out = []
    for char in _clean(value):
        if char in _CELL_ESCAPES:
            out.append(_CELL_ESCAPES[char])
        elif char in _LINE_BREAKS:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return "".join(out)


def _unescape_cell(cell: str) -> str:
    out = []
    for token in _CELL_TOKEN.findall(cell):
        if token in _CELL_UNESCAPES:
            out.append(_CELL_UNESCAPES[token])
        elif token.startswith("\\u"):
            out.append(chr(int(token[2:], 16)))
        else:
            out.append(token)
    return "".join(out)


_CELL = r"((?:\\(?:[\\|nr]|u[0-9a-f]{4})|[^\\|\n])*)"
_ROW = re.compile(rf"\| {_CELL} \| {_CELL} \|")


# --------------------------------------------------------------------------- footer parsing


def _find_footer(text: str, end: int) -> tuple[int, Footer] | None:
    """Find a footer ending exactly at ``end``; return (index where its text starts, footer)."""
    if not text.endswith(_END_LINE + "\n", 0, end):
        return None
    tried = 0
    for line_start, line_end, tail_bytes in _marker_candidates(text, end):
        match = _START.fullmatch(text, line_start, line_end)
        # The byte count is a cheap filter; only the exact re-render below decides.
        if match is None or int(match.group(1)) != tail_bytes:
            continue
        tried += 1
        footer = _parse_footer_body(text[line_end + 1 : end])
        # Accept only an exact re-render: this makes the split unambiguous.
        if footer is not None and render_footer(footer) == text[line_start - 1 : end]:
            return line_start - 1, footer
        if tried >= _MAX_CANDIDATES:
            break
    return None


def _marker_candidates(text: str, end: int) -> Iterator[tuple[int, int, int]]:
    """Start-marker lines before ``end``, last first, with the UTF-8 size of what follows each."""
    cursor, tail_bytes = end, 0
    search_end = end
    while (pos := text.rfind(_START_PREFIX, 0, search_end)) > 0:
        search_end = pos
        line_end = text.find("\n", pos, end)
        if text[pos - 1] != "\n" or line_end < 0:
            continue
        tail_bytes += len(text[line_end + 1 : cursor].encode("utf-8", "surrogatepass"))
        cursor = line_end + 1
        yield pos, line_end, tail_bytes


def _parse_footer_body(body: str) -> Footer | None:
    """Parse what follows the start marker; None when it is not a footer's shape."""
    lines = body.split("\n")
    status = next((s for s, h in _HEADINGS.items() if lines[0] == h), None)
    if status is None or tuple(lines[1:4]) != ("", *_TABLE_HEAD):
        return None
    rows, index = [], 4
    while index < len(lines) and (row := _ROW.fullmatch(lines[index])):
        rows.append((_unescape_cell(row.group(1)), _unescape_cell(row.group(2))))
        index += 1
    sections: dict[str, str] = {}
    for attr, heading in _SECTIONS:
        if lines[index : index + 3] == ["", heading, ""] and index + 3 < len(lines):
            found = _read_block(lines, index + 3)
            if found is None:
                return None
            sections[attr], index = found
    try:
        return _footer_from_rows(status, rows, sections)
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def _read_block(lines: list[str], start: int) -> tuple[str, int] | None:
    """Read a fenced block opening at ``lines[start]``; return (content, index after it)."""
    fence = lines[start]
    if not re.fullmatch(r"`{3,}", fence):
        return None
    for index in range(start + 1, len(lines)):
        if lines[index] == fence:
            return "\n".join(lines[start + 1 : index]), index + 1
    return None


def _footer_from_rows(
    status: str, rows: list[tuple[str, str]], sections: dict[str, str]
) -> Footer | None:
    """Build a Footer from table rows; details are the rows after ``attempts``."""
    fixed: dict[str, str] = {}
    index = 0
    while rows[index][0] != "attempts":
        fixed[rows[index][0]] = rows[index][1]
        index += 1
    executor = fixed["executor"]
    if fixed.get("status") != status or status not in ("done", "failed"):
        return None
    started, finished = fixed.get("started"), fixed.get("finished")
    return Footer(
        status="done" if status == "done" else "failed",
        executor=executor,
        target=fixed.get(_target_label(executor)),
        account=fixed.get("account"),
        started=datetime.fromisoformat(started) if started is not None else None,
        finished=datetime.fromisoformat(finished) if finished is not None else None,
        attempts=int(rows[index][1]),
        cost=fixed.get("cost"),
        result=sections.get("result"),
        error=sections.get("error"),
        claim_id=fixed.get("claim id"),
        details=tuple(rows[index + 1 :]),
    )
