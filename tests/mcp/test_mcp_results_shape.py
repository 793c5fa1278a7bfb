"""A tool's result as the agent gets it (``tether.mcp.results.for_agent``): the common result, text
content alone, is shaped without the SDK's check, and must come out exactly as the SDK's check
and sieve (``mcp_types.methods.serialize_server_result``) make it, on every protocol revision;
any other result, valid or not, still goes through the SDK's check."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp_types import methods
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from tether.mcp import results
from tether.mcp.results import for_agent

VERSIONS = sorted({*HANDSHAKE_PROTOCOL_VERSIONS, *MODERN_PROTOCOL_VERSIONS})

#: Members a content item or a result may carry, right or wrong, so shapes near the common one
#: are generated as often as the common one.
_values = st.one_of(
    st.text(),
    st.booleans(),
    st.none(),
    st.integers(),
    st.sampled_from(["text", "image", "complete", "input_required"]),
    st.dictionaries(st.sampled_from(["a", "audience"]), st.text(max_size=3), max_size=2),
)
_text = st.fixed_dictionaries({"type": st.just("text"), "text": st.text()})
_items = st.one_of(
    _text,
    st.dictionaries(
        st.sampled_from(["type", "text", "annotations", "_meta", "data", "mimeType"]),
        _values,
        max_size=4,
    ),
    st.text(max_size=3),
)
_results = st.one_of(
    st.fixed_dictionaries(
        {"content": st.lists(_text, max_size=4)},
        optional={"isError": st.booleans(), "resultType": st.just("complete")},
    ),
    st.fixed_dictionaries(
        {"content": st.lists(_items, max_size=4)},
        optional={
            "isError": st.one_of(st.booleans(), _values),
            "resultType": st.sampled_from(["complete", "input_required", 3]),
        },
    ),
    st.dictionaries(
        st.sampled_from(["content", "isError", "structuredContent", "_meta", "resultType"]),
        st.one_of(_values, st.lists(_items, max_size=2)),
        max_size=4,
    ),
)


def sdk(result: dict[str, Any], version: str) -> dict[str, Any] | str:
    """What the SDK makes of ``result`` as :func:`for_agent` hands it over (no ``_meta``)."""
    if version in MODERN_PROTOCOL_VERSIONS:
        result = {**result, "resultType": "complete"}
    try:
        return methods.serialize_server_result("tools/call", version, result)
    except ValidationError:
        return "refused"


def ours(result: dict[str, Any], version: str) -> dict[str, Any] | str:
    try:
        return for_agent(result, version)
    except ValidationError:
        return "refused"


@settings(max_examples=400, deadline=None)
@given(result=_results, version=st.sampled_from(VERSIONS))
def test_a_result_is_shaped_as_the_sdk_shapes_it(result: dict[str, Any], version: str) -> None:
    if "_meta" in result:
        result = {k: v for k, v in result.items() if k != "_meta"}  # for_agent strips its keys
    expected = sdk(result, version)
    got = ours(result, version)
    assert got == expected
    if isinstance(got, dict):
        assert list(got) == list(expected)  # the same members in the same order
        for mine, theirs in zip(got.get("content", []), expected.get("content", []), strict=True):
            assert list(mine) == list(theirs)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(
    "result",
    [
        {"content": [{"type": "text", "text": "hi"}]},
        {"content": [{"type": "text", "text": "a"}, {"type": "text", "text": ""}], "isError": True},
        {"content": []},
    ],
)
def test_text_content_alone_is_shaped_without_the_sdk(
    result: dict[str, Any], version: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The common result never reaches the SDK's check (so its cost is not paid)."""

    def refuse(*_: object) -> dict[str, Any]:
        raise AssertionError("the SDK's check was called")

    expected = sdk(result, version)
    monkeypatch.setattr(results.methods, "serialize_server_result", refuse)
    assert for_agent(result, version) == expected


@pytest.mark.parametrize(
    "result",
    [
        {"content": [{"type": "text", "text": "hi", "annotations": {"audience": ["user"]}}]},
        {"content": [{"type": "text", "text": 3}]},
        {"content": [{"type": "text", "text": "hi"}], "isError": "yes"},
        {"content": [{"type": "text", "text": "hi"}], "structuredContent": {"n": 1}},
    ],
)
def test_any_other_result_goes_through_the_sdks_check(
    result: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[str, Any]] = []
    check = methods.serialize_server_result

    def counted(method: str, version: str, value: dict[str, Any]) -> dict[str, Any]:
        seen.append(value)
        return check(method, version, value)

    expected = sdk(result, "2025-11-25")
    monkeypatch.setattr(results.methods, "serialize_server_result", counted)
    assert ours(result, "2025-11-25") == expected
    assert len(seen) == 1
