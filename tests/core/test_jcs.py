"""RFC 8785 canonical JSON: the RFC's own examples and number vectors (Appendix B)."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.core import jcs
from tether.core.audit import canonical_json
from tether.core.jcs import canonicalize, number
from tether.core.scope import ActionKind


def _double(bits: str) -> float:
    value: float = struct.unpack(">d", bytes.fromhex(bits))[0]
    return value


# RFC 8785 Appendix B: IEEE-754 bit patterns and their canonical text.
NUMBERS = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "text"), NUMBERS)
def test_appendix_b_numbers(bits: str, text: str) -> None:
    assert number(_double(bits)) == text


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 10**400])
def test_what_json_numbers_cannot_be_is_refused(bad: float) -> None:
    with pytest.raises(ValueError):
        canonicalize({"n": bad})


def test_section_3_2_2_example() -> None:
    value = json.loads(
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    assert (
        canonicalize(value)
        == (
            '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
            '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
        ).encode()
    )


def test_section_3_2_3_sorts_names_by_utf16_code_units() -> None:
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    order = [k for k in json.loads(canonicalize(value))]
    assert order == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


def test_integers_and_whole_floats_are_one_number() -> None:
    assert canonicalize([1, 1.0, -0.0, 100, 1e20, 2**60]) == (
        b"[1,1,0,100,100000000000000000000,1152921504606847000]"
    )


def test_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(ValueError):
        canonicalize({"s": "\ud800"})


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_every_finite_double_round_trips(x: float) -> None:
    assert float(number(x)) == x


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(-(2**53), 2**53)
    | st.text(st.characters(exclude_categories=["Cs"])),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=12,
)


@given(json_values)
def test_canonical_text_is_json_and_a_fixed_point(value: object) -> None:
    text = canonicalize(value)  # type: ignore[arg-type]
    assert canonicalize(json.loads(text)) == text


_plain_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(exclude_categories=("Cs",))),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(alphabet=st.characters(max_codepoint=127), max_size=8), inner, max_size=4
        )
    ),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(value=_plain_values)
def test_the_fast_path_writes_exactly_the_rule_by_rule_bytes(value: object) -> None:
    # Whatever the fast path accepts, it writes as RFC 8785's rules do one by one.
    assert jcs.canonicalize(value) == jcs._general(value)  # type: ignore[arg-type]


def test_values_outside_the_fast_path_take_the_rule_by_rule_path() -> None:
    for value in ({"é": 1}, {"a": 1e-7}, [2**60], {"a": [{"\U0001f600": 0}]}, [1e21]):
        with pytest.raises(jcs._NotPlain):
            jcs._plain_form(value)
    assert jcs._plain_form({"a": 100.0, "b": [0.5]}) == {"a": 100, "b": [0.5]}
    assert jcs.canonicalize({"a": 1.0, "b": 2**60}) == b'{"a":1,"b":1152921504606847000}'


def _outcome(write: Callable[[], bytes]) -> bytes | str:
    try:
        return write()
    except ValueError:
        return "ValueError"


def _before_as_is(value: object) -> bytes:
    """``canonicalize`` as it was before the ``as_is`` check: every value rebuilt first."""
    try:
        plain = jcs._plain_form(value)
    except jcs._NotPlain:
        return jcs._general(value)  # type: ignore[arg-type]
    try:
        return jcs._plain(plain).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("lone surrogate") from None


_awkward_floats = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [0.0, -0.0, 1.0, -3.0, 1e-4, 9.9999e-5, 1e16, 1e21, 1e-7, 2.0**53, 2.0**60, 0.1, 5e-324]
)
_record_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**64), 2**64)
    | _awkward_floats
    | st.text(),  # every code point: astral, private use, lone surrogates
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.text(max_size=6), inner, max_size=5)
        | st.dictionaries(st.text(st.characters(max_codepoint=127), max_size=6), inner, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=800, deadline=None, derandomize=True)
@given(value=_record_like)
def test_canonical_bytes_are_the_rule_by_rule_bytes_and_what_they_were(value: object) -> None:
    # The fast check changed how the bytes are reached, never which bytes (or which refusal):
    # existing format-2 chains re-hash to the hashes they hold.
    now = _outcome(lambda: canonicalize(value))  # type: ignore[arg-type]
    assert now == _outcome(lambda: jcs._general(value))  # type: ignore[arg-type]
    assert now == _outcome(lambda: _before_as_is(value))
    # Format 1's text: json.dumps as it was called on every write, from one encoder now.
    assert _outcome(lambda: canonical_json(value)) == _outcome(  # type: ignore[arg-type]
        lambda: json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")
    )
    if jcs.as_is(value) and isinstance(now, bytes):
        # As is, the RFC 8785 text is also format 1's (Python's sorted compact JSON).
        assert canonical_json(value) == now  # type: ignore[arg-type]


def test_as_is_sends_what_json_dumps_writes_differently_to_the_careful_path() -> None:
    for value in (
        {"a": 1.0},  # Python writes 1.0, JCS 1
        [1e-5],
        [1e16],
        [2**53 + 1],
        {"é": 1},
        {"a": ("tuple",)},
        {"a": ActionKind.READ},  # a subclass of str
        {1: "non-string name"},
    ):
        assert not jcs.as_is(value), value
    assert jcs.as_is({"a": [None, True, 0.5, -(2**53), "\U0001f600"], "b": {}})
