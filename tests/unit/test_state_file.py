"""``state.json``: what is saved is what is loaded, one top-level key a line."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from agentq.daemon.state import STATE_VERSION, StateFile, encode

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@given(st.dictionaries(st.text(), _json, max_size=5))
def test_the_text_is_the_json_of_the_state(state: dict[str, object]) -> None:
    """Any JSON document reads back equal to what was encoded."""
    assert json.loads(encode(state)) == state


def test_a_saved_state_loads_back_one_key_a_line(tmp_path: Path) -> None:
    """Counters, nested documents and non-ASCII text come back as saved; keys in order."""
    state = {"waiting": [{"project": "/p/é", "task": "a.md"}], "counters": {"done": 3}}
    StateFile(tmp_path).save(state)
    lines = (tmp_path / "state.json").read_text().splitlines()
    assert [line.split(":")[0].strip() for line in lines[1:-1]] == [
        '"counters"',
        '"version"',
        '"waiting"',
    ]
    loaded = StateFile(tmp_path).load()
    assert loaded["waiting"] == state["waiting"]
    assert loaded["counters"] == {"done": 3}
    assert loaded["version"] == STATE_VERSION
