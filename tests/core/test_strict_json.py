"""tether's one strict JSON reader (I-JSON, RFC 7493): what it refuses and what it keeps."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether.core import strict_json
from tether.core.strict_json import DuplicateName, JsonRefused, NotUnicode


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "a": 2}',
        '{"a": {"b": 1, "b": 1}}',  # even with the same value: readers still disagree on order
        '[{"x": 0}, {"y": 1, "y": 2}]',
        '{"a": [[{"c": 1, "c": 2}]]}',
    ],
)
def test_a_repeated_name_is_refused_at_any_depth(text: str) -> None:
    with pytest.raises(DuplicateName, match="twice"):
        strict_json.loads(text.encode())


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('{"q": "\\ud800"}', "field 'q'"),
        ('{"q": ["a", "\\udc00"]}', "field 'q[1]'"),
        ('{"a": {"\\udbff": 1}}', "a key of field 'a'"),
        ('{"\\ud800": 1}', "a key of the body"),
        ('"\\ud800"', "the body"),
        ('{"q": "\\ude00\\ud83d"}', "field 'q'"),  # low then high: not a pair
    ],
)
def test_a_lone_surrogate_is_refused_and_located(text: str, where: str) -> None:
    with pytest.raises(NotUnicode) as refused:
        strict_json.loads(text.encode())
    assert str(refused.value).startswith(where)


def test_a_surrogate_pair_is_one_character() -> None:
    assert strict_json.loads(b'{"q": "\\ud83d\\ude00"}') == {"q": "\U0001f600"}


@pytest.mark.parametrize(
    "data",
    [
        b'{"q": "\xed\xa0\x80"}',  # a surrogate's UTF-8 bytes are not UTF-8
        b'{"q": "\xff"}',
        '{"q": 1}'.encode("utf-16"),
        b'\xef\xbb\xbf{"q": 1}',  # RFC 8259 section 8.1: no byte order mark
        b'{"q": NaN}',
        b'{"q": -Infinity}',
        b'{"q": 1',
        b"[" * 100_000 + b"]" * 100_000,
        b"1" * 5000,
    ],
)
def test_what_is_not_strict_json_is_refused(data: bytes) -> None:
    with pytest.raises(JsonRefused):
        strict_json.loads(data)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=20,
)


@given(JSON)
def test_any_json_a_standard_encoder_writes_reads_back_the_same(value: object) -> None:
    assert strict_json.loads(json.dumps(value).encode()) == value


_texts = st.text(st.characters(), max_size=4)  # lone surrogates (category Cs) included
_values = st.recursive(
    st.none() | st.integers() | _texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_texts, inner, max_size=3),
    max_leaves=8,
)


def _holds_surrogate(value: object) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= c <= "\udfff" for c in value)
    if isinstance(value, list):
        return any(_holds_surrogate(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_surrogate(k) or _holds_surrogate(v) for k, v in value.items())
    return False


@given(_values, st.booleans())
def test_a_lone_surrogate_is_refused_however_it_is_written(value: object, escaped: bool) -> None:
    # As escapes in bytes or text, or (text only) as the character itself: every way in.
    written = json.dumps(value, ensure_ascii=escaped)
    forms: list[bytes | str] = [written]
    if escaped:
        forms.append(written.encode("ascii"))
    for form in forms:
        if _holds_surrogate(value):
            with pytest.raises(NotUnicode):
                strict_json.loads(form)
        else:
            assert strict_json.loads(form) == value
