"""The audit seal's orjson encoder writes the standard library's bytes, or refuses the same."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.core import jcs
from tether.core.audit import AuditKind, ChainFormat, seal_with_leaf
from tether.store import fastjson


def _outcome(write: Callable[[], tuple[bytes, bool]]) -> tuple[bytes, bool] | str:
    try:
        return write()
    except ValueError:
        return "ValueError"


_floats = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [0.5, -0.25, 1e-4, 9.9999e-5, 1e16, 1e16 - 2, 0.1, 1 / 3, 123456789012345.6, 5e-324, 1.0]
)
_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | st.sampled_from([2**53, -(2**53), 2**53 + 1])
    | _floats
    | st.text(),  # every code point: controls, astral, DEL, U+2028, lone surrogates
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.text(st.characters(max_codepoint=127), max_size=6), inner, max_size=5)
        | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=30,
)


@settings(max_examples=1500, deadline=None, derandomize=True)
@given(value=_values)
def test_orjson_writes_the_standard_librarys_canonical_bytes(value: object) -> None:
    fast = _outcome(lambda: jcs.canonicalize_as_is(value, fastjson.plain))  # type: ignore[arg-type]
    assert fast == _outcome(lambda: jcs.canonicalize_as_is(value))  # type: ignore[arg-type]


def test_every_control_character_and_separator_is_escaped_alike() -> None:
    text = "".join(chr(c) for c in range(0x80)) + "\u2028\u2029\x7f\u00e9\U0001f600"
    value = {"s": text, "list": [text, 0.5, None, True, -(2**53)]}
    assert fastjson.plain(value) == jcs.plain_bytes(value)


def test_what_orjson_refuses_takes_the_standard_path() -> None:
    # A lone surrogate: refused as RFC 8785 refuses it, with the same error.
    for bad in ({"a": "\ud800"}, ["x", "\udfff"]):
        assert jcs.as_is(bad)
        with pytest.raises(ValueError, match="lone surrogate"):
            jcs.canonicalize_as_is(bad, fastjson.plain)
    # Nesting past orjson's depth limit: written by the standard library, the same bytes.
    deep: object = "leaf"
    for _ in range(300):
        deep = [deep]
    assert fastjson.plain(deep) == jcs.plain_bytes(deep)


def test_a_record_sealed_with_orjson_has_the_hash_the_standard_library_gives() -> None:
    fields = {
        "record_id": "aud_1",
        "at": "2026-12-07T10:00:00.000001+00:00",
        "kind": AuditKind.DECISION,
        "agent": "spiffe://tether.local/agent/a",
        "task_id": "tsk_1",
        "body": {"call": {"tool": "crm.query", "args": {"q": "é\n\u2028", "n": 0.25}}},
        "format": ChainFormat.JCS,
    }
    fast = seal_with_leaf(None, **fields, plain=fastjson.plain)  # type: ignore[arg-type]
    std = seal_with_leaf(None, **fields)  # type: ignore[arg-type]
    assert fast.record.hash == std.record.hash
    assert fast.leaf_hash == std.leaf_hash
    assert fast.body_text == std.body_text is not None
