"""Unit tests for agentq.accounts.book: the account book and its place in ``state.json``."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentq.accounts.book import AccountBook, Hold, PartialSwap, Suspicion, SwapEntry

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RESET = T0 + timedelta(hours=5)

#: ``state.json`` as the daemon wrote it before the book existed (the switcher's own keys).
OLD_STATE = {
    "version": 1,
    "counters": {"done": 3},
    "active_account": "b",
    "accounts": {"a": {"exhausted_until": RESET.isoformat()}, "b": {"exhausted_until": None}},
    "swaps": [{"time": T0.isoformat(), "from": "a", "to": "b", "trigger": "quota: x"}],
    "hold": None,
}


def test_a_fresh_book_starts_on_the_first_account_with_none_exhausted() -> None:
    """The first configured account is active; without accounts there is ``default``."""
    book = AccountBook.fresh(["a", "b"])
    assert (book.active, dict(book.exhausted_until)) == ("a", {"a": None, "b": None})
    assert AccountBook.fresh([]).accounts == ("default",)


def test_the_state_written_before_the_book_is_read() -> None:
    """Active account, exhaustion and swap history come back from an existing state.json."""
    book = AccountBook.from_dict(OLD_STATE, ["a", "b"])
    assert book.active == "b"
    assert book.exhausted_until == {"a": RESET, "b": None}
    assert book.swaps == (SwapEntry(T0, "a", "b", "quota: x"),)
    assert book.is_exhausted("a", T0) and not book.is_exhausted("a", RESET)


def test_the_book_writes_the_keys_status_and_the_tests_read() -> None:
    """``to_dict`` keeps the ``state.json`` shape: from/to, ISO times, None when unset."""
    doc = AccountBook.from_dict(OLD_STATE, ["a", "b"]).to_dict()
    assert doc["active_account"] == "b"
    assert doc["accounts"] == {
        "a": {"exhausted_until": RESET.isoformat()},
        "b": {"exhausted_until": None},
    }
    assert doc["swaps"] == OLD_STATE["swaps"]
    assert doc["hold"] is None and doc["partial_swap"] is None


@pytest.mark.parametrize(
    ("state", "active"),
    [
        ({"active_account": "gone"}, "a"),
        ({"accounts": "not a mapping", "swaps": [{"time": "yesterday"}, 3]}, "a"),
        ({"hold": {"since": "x"}, "partial_swap": ["x"], "last_swap_at": 5}, "a"),
    ],
    ids=[
        "an account no longer configured falls back to the first one",
        "malformed accounts and swaps are dropped",
        "a malformed hold, partial swap and cooldown start are dropped",
    ],
)
def test_a_damaged_state_gives_a_usable_book(state: dict[str, object], active: str) -> None:
    """``state.json`` is a cache: whatever it holds, the book that comes out is usable."""
    book = AccountBook.from_dict(state, ["a", "b"])
    assert book.active == active
    assert (book.hold, book.partial, book.last_swap_at, book.swaps) == (None, None, None, ())


def test_accounts_no_longer_configured_are_forgotten() -> None:
    """An exhausted account removed from the config does not hold the queue."""
    state = {"accounts": {"old": {"exhausted_until": RESET.isoformat()}}}
    assert AccountBook.from_dict(state, ["a"]).exhausted_until == {"a": None}


def test_a_swap_moves_the_active_account_ends_a_hold_and_starts_the_cooldown() -> None:
    """``swapped``: active, history, no hold, the cooldown from now, suspicions forgotten."""
    held = AccountBook.fresh(["a", "b"]).held(T0, RESET)
    book = replace(held, suspicions={"s": Suspicion(1, T0)})
    after = book.swapped("a", "b", T0, "manual")
    assert after.active == "b" and after.hold is None and after.last_swap_at == T0
    assert after.swaps == (SwapEntry(T0, "a", "b", "manual"),) and after.suspicions == {}
    assert book.active == "a"  # frozen: the old book is unchanged


_times = st.datetimes(timezones=st.just(UTC)) | st.none()
_names = st.sampled_from(["a", "b", "c"])


@given(
    active=_names,
    until=st.dictionaries(_names, _times),
    swaps=st.lists(
        st.builds(SwapEntry, st.datetimes(timezones=st.just(UTC)), _names, _names, st.text())
    ),
    hold=st.none()
    | st.builds(Hold, st.datetimes(timezones=st.just(UTC)), st.datetimes(timezones=st.just(UTC))),
    partial=st.none() | st.builds(PartialSwap, _names, _names, st.text(), st.text()),
    last=_times,
)
def test_to_dict_and_from_dict_round_trip(
    active: str,
    until: dict[str, datetime | None],
    swaps: list[SwapEntry],
    hold: Hold | None,
    partial: PartialSwap | None,
    last: datetime | None,
) -> None:
    """What the book writes into ``state.json`` reads back as the same book."""
    accounts = ("a", "b", "c")
    book = AccountBook(
        accounts,
        active,
        {name: until.get(name) for name in accounts},
        tuple(swaps),
        hold,
        partial,
        last,
    )
    assert AccountBook.from_dict(book.to_dict(), accounts) == book
