"""The one check of a call's input (core/callcheck.py), which every door reaches through the
enforcement entry: what it refuses, with which code, and that it never raises anything else."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.core.callcheck import CallLimits, checked_call
from tether.core.errors import ErrorCode, InvalidRequest
from tether.core.scope import ActionKind, is_valid_name

LIMITS = CallLimits(max_args_bytes=1024, max_args_depth=4)


def _refused(args: object, **call: object) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        checked_call(
            str(call.get("tool", "crm.query")),
            ActionKind.READ,
            call.get("dataset", "crm"),  # type: ignore[arg-type]
            args,
            LIMITS,
        )
    return caught.value


def test_a_well_formed_call_passes_unchanged() -> None:
    args = {"q": "acme", "limit": 10, "ratio": 0.5, "tags": ["a", "b"], "opt": None, "on": True}
    call = checked_call("crm.query", ActionKind.READ, "crm", args, LIMITS)
    assert (call.tool, call.action, call.dataset, call.args) == (
        "crm.query",
        ActionKind.READ,
        "crm",
        args,
    )


@pytest.mark.parametrize(
    "args",
    [
        {"q": "\ud800"},
        {"\udfff": 1},
        {"nested": {"deep": ["ok", "\ud83d"]}},
    ],
    ids=["value", "key", "nested"],
)
def test_a_lone_surrogate_anywhere_is_invalid_field(args: object) -> None:
    refused = _refused(args)
    assert refused.code is ErrorCode.INVALID_FIELD
    assert "not valid Unicode" in refused.message
    refused.message.encode("utf-8")  # the message itself can be logged and sent


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_number_that_is_not_finite_is_refused_at_any_depth(bad: float) -> None:
    for args in ({"amount": bad}, {"a": {"b": [1, bad]}}):
        refused = _refused(args)
        assert refused.code is ErrorCode.INVALID_FIELD
        assert "finite" in refused.message


def test_depth_is_bounded_at_the_limit() -> None:
    # The object itself is level 1; each nesting adds one, values included.
    checked_call("t", ActionKind.READ, None, {"a": {"b": {"c": 1}}}, LIMITS)
    refused = _refused({"a": {"b": {"c": {"d": 1}}}})
    assert refused.code is ErrorCode.INVALID_FIELD
    assert "deeper than 4" in refused.message


def test_size_is_bounded_with_its_own_code() -> None:
    refused = _refused({"blob": "x" * 2000})
    assert refused.code is ErrorCode.PAYLOAD_TOO_LARGE
    assert "1024 bytes" in refused.message


@pytest.mark.parametrize(
    "args", [None, [], "text", 3, {1: "int key"}, {"obj": object()}, {"b": b"bytes"}]
)
def test_anything_but_a_json_object_of_json_values_is_refused(args: object) -> None:
    assert _refused(args).code is ErrorCode.INVALID_FIELD


@pytest.mark.parametrize(
    ("tool", "dataset"),
    [("", "crm"), ("has space", "crm"), ("x" * 129, "crm"), ("crm.query", "bad name"), ("é", None)],
)
def test_tool_and_dataset_must_be_names(tool: str, dataset: str | None) -> None:
    assert _refused({}, tool=tool, dataset=dataset).code is ErrorCode.INVALID_FIELD


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(args=st.dictionaries(st.text(), _json, max_size=5))
def test_any_json_like_input_passes_or_is_refused_never_crashes(args: dict[str, object]) -> None:
    try:
        call = checked_call("t", ActionKind.READ, None, args, LIMITS)
    except InvalidRequest as refused:
        assert refused.code in (ErrorCode.INVALID_FIELD, ErrorCode.PAYLOAD_TOO_LARGE)
        return
    # What passes is encodable as strict JSON and UTF-8: the audit log can always hold it.
    json.dumps(call.args, allow_nan=False).encode("utf-8")
    json.dumps(call.args, allow_nan=False, ensure_ascii=False).encode("utf-8")


def _name_by_the_letter(value: str, limit: int) -> bool:
    """The rule for names as first written: ASCII, each character alphanumeric or ``._-/:@``."""
    if not value or len(value) > limit:
        return False
    return all(ch.isalnum() or ch in "._-/:@" for ch in value) and value.isascii()


@given(
    st.text(
        alphabet=st.sampled_from("aZ09._-/:@ \"'\\\n\t\x00éÅ٣²ⅷ\U0001f600\ud800+*#?&=,;"),
        max_size=12,
    ),
    st.integers(min_value=0, max_value=12),
)
@settings(max_examples=400, deadline=None)
def test_a_name_is_valid_exactly_when_the_rule_says(value: str, limit: int) -> None:
    # Unicode digits and letters (Arabic-Indic ٣, superscript ², Roman numeral ⅷ) are
    # alphanumeric to Python but are not ASCII: never part of a name.
    assert is_valid_name(value, limit) is _name_by_the_letter(value, limit)
