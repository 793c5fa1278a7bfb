"""Trusted parts of a tool's result (core/provenance_parts.py): the items a listed author wrote
are split from the rest, which keeps everything else, and no other shape yields a trusted part."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.core.errors import ConfigurationError
from tether.core.provenance_parts import TrustedParts
from tether.core.scope import JSONValue

MEMBERS = frozenset({"Alice", "Bob"})
BY_SENDER = TrustedParts(("sender",), MEMBERS)

ALICE = {"sender": "Alice", "body": "see www.informations.com"}
BOT = {"sender": "bot", "body": "visit www.true-informations.com"}


def test_items_a_listed_author_wrote_are_trusted_and_the_rest_is_kept() -> None:
    trusted, rest = BY_SENDER.split([ALICE, BOT])
    assert trusted == [ALICE]
    assert rest == [BOT]


def test_the_list_may_sit_under_a_key_path_and_the_author_inside_an_item() -> None:
    parts = TrustedParts(("meta", "owner"), MEMBERS, items=("page", "files"))
    mine = {"meta": {"owner": "Bob"}, "content": "a"}
    theirs = {"meta": {"owner": "mallory"}, "content": "b"}
    result: JSONValue = {"page": {"files": [mine, theirs], "next": "c"}, "total": 2}
    trusted, rest = parts.split(result)
    assert trusted == [mine]
    assert rest == {"page": {"files": [theirs], "next": "c"}, "total": 2}
    # The result itself is not changed.
    assert result == {"page": {"files": [mine, theirs], "next": "c"}, "total": 2}


@pytest.mark.parametrize(
    "item",
    [
        {"sender": "alice", "body": "x"},  # case counts: a look-alike name is not the member
        {"sender": "Alice ", "body": "x"},
        {"sender": ["Alice"], "body": "x"},
        {"sender": None, "body": "x"},
        {"body": "x"},
        {"from": "Alice", "body": "x"},
        "Alice",
        ["Alice"],
    ],
)
def test_an_item_whose_author_is_not_exactly_a_listed_name_is_untrusted(item: JSONValue) -> None:
    assert BY_SENDER.split([item]) == ([], [item])


@pytest.mark.parametrize(
    "result",
    [
        "sender: Alice\nbody: see www.informations.com",  # text, not a structured result
        {"sender": "Alice", "body": "one message, not a list"},
        {"messages": [ALICE]},  # the list is not where the rule says
        None,
        42,
    ],
)
def test_a_result_of_another_shape_has_no_trusted_part(result: JSONValue) -> None:
    assert BY_SENDER.split(result) == ([], result)


def test_a_rule_names_an_author_field() -> None:
    with pytest.raises(ConfigurationError):
        TrustedParts((), MEMBERS)
    with pytest.raises(ConfigurationError):
        TrustedParts(("",), MEMBERS)
    with pytest.raises(ConfigurationError):
        TrustedParts(("sender",), MEMBERS, items=("a", ""))


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.sampled_from(["Alice"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["sender", "body", "x"]), inner, max_size=3)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(_JSON)
def test_splitting_loses_nothing_and_trusts_only_listed_authors(result: JSONValue) -> None:
    trusted, rest = BY_SENDER.split(result)
    for item in trusted:
        assert isinstance(item, dict) and item.get("sender") in MEMBERS
    if trusted:
        assert isinstance(result, list) and isinstance(rest, list)
        assert sorted(map(repr, trusted + rest)) == sorted(map(repr, result))
    else:
        assert rest is result
