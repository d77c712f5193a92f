"""Reading ``config.yaml`` and turning validation errors into one line each, with line numbers.

Private to ``agentq.config``: the YAML file is read twice, once with ``yaml.safe_load`` for the
data and once with ``yaml.compose`` for the node tree, whose marks give each key's line.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from agentq.core.errors import ConfigError

logger = logging.getLogger(__name__)

ISSUES_ERROR = "agentq_config_issues"
MAX_CONFIG_BYTES = 1024 * 1024
# Far above any real config; refuses YAML alias bombs before anything walks them.
MAX_CONFIG_VALUES = 100_000
_KEY_MARKER = "[key]"

Loc = tuple[str | int, ...]
Issue = tuple[Loc, str]  # a cross-field finding: (location below the field, message)
Problem = tuple[int | None, str]  # (1-based YAML line if known, "where: what")
ModelT = TypeVar("ModelT", bound=BaseModel)


def issues_error(issues: list[Issue]) -> PydanticCustomError:
    """Bundle several findings of one validator into one pydantic error; ``validate`` splits it."""
    message = "; ".join(text for _, text in issues)
    return PydanticCustomError(ISSUES_ERROR, "{message}", {"message": message, "issues": issues})


def read_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    """Return the parsed data and the node tree of a YAML file.

    Raises:
        ConfigError: the file is missing, unreadable, too big, not UTF-8 or not YAML.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"cannot read the config file: {exc.strerror or exc}"], path) from exc
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError([f"the config file is larger than {MAX_CONFIG_BYTES} bytes"], path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"the config file is not UTF-8 text (byte {exc.start})"], path) from exc
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is not None and _expanded_size(root, {}) > MAX_CONFIG_VALUES:
            raise ConfigError([f"the config expands to over {MAX_CONFIG_VALUES} values"], path)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_problem(exc)], path) from exc
    return data, root


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """Count the values a node stands for once aliases are expanded (memoised, so cheap)."""
    if id(node) not in sizes:
        sizes[id(node)] = 0  # an alias cycle counts as nothing more
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        sizes[id(node)] = 1 + sum(_expanded_size(child, sizes) for child in children)
    return sizes[id(node)]


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        problem = exc.problem or exc.context or "invalid YAML"
        return f"line {exc.problem_mark.line + 1}: invalid YAML: {problem}"
    return f"invalid YAML: {exc}"


def validate(
    model: type[ModelT],
    data: Any,
    *,
    env: Mapping[str, str],
    base_dir: Path,
    root: yaml.Node | None,
    path: Path | None,
) -> ModelT:
    """Validate ``data`` against ``model``, expanding paths from ``env`` and ``base_dir``.

    Raises:
        ConfigError: with every problem, sorted by line.
    """
    if data is None:
        data = {}  # an empty file: all defaults
    if not isinstance(data, Mapping):
        kind = type(data).__name__
        raise ConfigError([f"the top level must be a mapping of keys, got {kind}"], path)
    problems = list(duplicate_keys(root)) if root is not None else []
    result: ModelT | None = None
    try:
        result = model.model_validate(dict(data), context={"env": env, "base_dir": base_dir})
    except ValidationError as exc:
        problems += describe_errors(exc, root)
    if problems or result is None:
        raise ConfigError(render(problems), path)
    return result


def describe_errors(exc: ValidationError, root: yaml.Node | None) -> list[Problem]:
    """Return one problem per pydantic error, with its YAML line number when known."""
    problems: list[Problem] = []
    for error in exc.errors(include_url=False):
        for loc, message in _split(error):
            line = line_of(root, loc) if root is not None else None
            problems.append((line, f"{dotted(loc) or '(top level)'}: {message}"))
    return problems


def render(problems: list[Problem]) -> list[str]:
    """Sort problems by line (those without one last, in order) and render each as one line."""
    ordered = sorted(problems, key=lambda p: float("inf") if p[0] is None else p[0])
    return [text if line is None else f"line {line}: {text}" for line, text in ordered]


def _split(error: ErrorDetails) -> Iterator[tuple[Loc, str]]:
    """Yield (location, message) pairs; a bundled cross-field error holds several."""
    loc: Loc = tuple(error["loc"])
    ctx = error.get("ctx") or {}
    if error["type"] == ISSUES_ERROR:
        for below, message in ctx["issues"]:
            yield loc + tuple(below), message
        return
    yield loc, _message(error)


_SIMPLE = {
    "extra_forbidden": "unknown key",
    "missing": "required key is missing",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "dict_type": "must be a mapping of keys",
    "model_type": "must be a mapping of keys",
    "model_attributes_type": "must be a mapping of keys",
}


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind in _SIMPLE:
        return _SIMPLE[kind]
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", error["msg"]))
    if kind == "literal_error":
        return f"must be one of {ctx['expected']}, got {_short(error['input'])}"
    if kind == "string_pattern_mismatch":
        return f"{_short(error['input'])} does not match {ctx['pattern']}"
    if kind == "string_too_short":
        return "must not be empty"
    bounds = {
        "greater_than": ">",
        "greater_than_equal": ">=",
        "less_than": "<",
        "less_than_equal": "<=",
    }
    if kind in bounds:
        limit = next(iter(ctx.values()))
        if isinstance(limit, float) and limit.is_integer():
            limit = int(limit)
        return f"must be {bounds[kind]} {limit}"
    text = error["msg"]
    return text[:1].lower() + text[1:]


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def dotted(loc: Loc) -> str:
    """Render a location as ``pool.dedicated[0].name``."""
    out = ""
    for part in loc:
        if part == _KEY_MARKER:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def line_of(root: yaml.Node, loc: Loc) -> int | None:
    """Return the 1-based line of the deepest node of ``loc`` present in the YAML tree."""
    node, line = root, None
    for part in loc:
        if part == _KEY_MARKER:
            break
        if isinstance(node, yaml.MappingNode):
            # The last occurrence wins, as in safe_load.
            pairs = [(k, v) for k, v in node.value if _key_text(k) == str(part)]
            if not pairs:
                break
            key, node = pairs[-1]
            line = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _key_text(node: yaml.Node) -> str | None:
    return node.value if isinstance(node, yaml.ScalarNode) else None


def duplicate_keys(root: yaml.Node) -> Iterator[Problem]:
    """Yield a problem for each key repeated within one mapping (safe_load keeps the last)."""
    seen_nodes: set[int] = set()

    def walk(node: yaml.Node, loc: Loc) -> Iterator[Problem]:
        # Aliases share nodes; visiting each once keeps an alias bomb cheap.
        if id(node) in seen_nodes:
            return
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key, value in node.value:
                text = _key_text(key)
                line = key.start_mark.line + 1
                if text is not None and text in first:
                    where = dotted((*loc, text))
                    yield line, f"{where}: duplicate key (first at line {first[text]})"
                elif text is not None:
                    first[text] = line
                yield from walk(value, (*loc, text) if text is not None else loc)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                yield from walk(item, (*loc, i))

    yield from walk(root, ())
