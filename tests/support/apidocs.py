"""The JSON examples of ``docs/api.md``, and a shape comparison against live answers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
_SECTION = re.compile(r"^### (GET|POST) (\S+)[^\n]*\n(.*?)(?=^### |^## |\Z)", re.M | re.S)
_JSON = re.compile(r"```json\n(.*?)```", re.S)


def example(method: str, path: str) -> Any:
    """The first JSON example under the heading ``### METHOD path``."""
    for found in _SECTION.finditer(DOC.read_text()):
        if found.group(1) == method and found.group(2).split("?")[0] == path:
            block = _JSON.search(found.group(3))
            assert block is not None, f"no JSON example under {method} {path}"
            return json.loads(block.group(1))
    raise AssertionError(f"docs/api.md has no section {method} {path}")


def shape_problems(
    documented: Any, actual: Any, where: str = "$", free: frozenset[str] = frozenset()
) -> list[str]:
    """Where ``actual`` differs in shape from ``documented`` (keys, and types where not null).

    ``free`` names the objects whose keys are data (paths, names): only their values count.
    A ``null`` answer matches any documented example (the example shows the non-null form).
    """
    if actual is None:
        return []
    if isinstance(documented, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected an object, got {type(actual).__name__}"]
        if where in free:
            if documented and actual:
                first = next(iter(documented.values()))
                return [
                    p
                    for k, v in actual.items()
                    for p in shape_problems(first, v, f"{where}[{k}]", free)
                ]
            return []
        problems = []
        missing = documented.keys() - actual.keys()
        extra = actual.keys() - documented.keys()
        problems += [f"{where}.{k}: documented but missing" for k in sorted(missing)]
        problems += [f"{where}.{k}: present but not documented" for k in sorted(extra)]
        for key in documented.keys() & actual.keys():
            problems += shape_problems(documented[key], actual[key], f"{where}.{key}", free)
        return problems
    if isinstance(documented, list):
        if not isinstance(actual, list):
            return [f"{where}: expected a list, got {type(actual).__name__}"]
        if documented and actual:
            return shape_problems(documented[0], actual[0], f"{where}[0]", free)
        return []
    if documented is None or actual is None:
        return []
    numbers = (int, float)
    if isinstance(documented, numbers) and not isinstance(documented, bool):
        ok = isinstance(actual, numbers) and not isinstance(actual, bool)
    else:
        ok = isinstance(actual, type(documented))
    return (
        [] if ok else [f"{where}: {type(actual).__name__}, documented {type(documented).__name__}"]
    )
