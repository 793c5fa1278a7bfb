"""What the gateway answers on ``tools/call`` (MCP spec, tools: ``isError`` results), and what it
measures of an upstream result for the effect record.

Refusals are tool results with ``isError: true`` (not JSON-RPC errors) so the agent's model sees
them and can act: the text starts with a stable code, then a message; ``_meta["tether/error"]``
carries the same as data, and ``_meta["tether/verdict"]`` the verdict when there is one. After
``approval_required``, the agent retries the same call with ``_meta["tether/approval"]`` set to
the approval id once a human approved it.

Gateway codes (besides tether's :class:`~tether.core.errors.ErrorCode` and the verdict reason
codes): ``tool_descriptor_changed``, ``upstream_failed``, ``upstream_result_too_large``,
``tool_not_found``, ``resource_not_mapped``, ``invalid_arguments``, ``grant_missing``,
``unauthenticated``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import mcp_types as types
from mcp_types import methods
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from tether.core.effect import EffectStatus
from tether.core.errors import ErrorCode, TetherError
from tether.core.scope import JSONValue
from tether.core.verdict import Decision, Verdict
from tether.mcp.config import RecordCount, ToolMapping

#: ``_meta`` keys the gateway sets on results; reserved protocol keys from upstreams are dropped.
META_ERROR = "tether/error"
META_VERDICT = "tether/verdict"
#: The ``_meta`` key on a ``tools/call`` request naming the approval to use.
META_APPROVAL = "tether/approval"
_RESERVED_META_PREFIX = "io.modelcontextprotocol/"


class GatewayCode(StrEnum):
    TOOL_DESCRIPTOR_CHANGED = "tool_descriptor_changed"
    UPSTREAM_FAILED = "upstream_failed"
    UPSTREAM_RESULT_TOO_LARGE = "upstream_result_too_large"
    UPSTREAM_LEAKED_SECRET = ErrorCode.UPSTREAM_LEAKED_SECRET.value
    TOOL_NOT_FOUND = "tool_not_found"
    RESOURCE_NOT_MAPPED = "resource_not_mapped"
    INVALID_ARGUMENTS = "invalid_arguments"
    GRANT_MISSING = "grant_missing"
    UNAUTHENTICATED = "unauthenticated"


def tool_error(code: str, message: str, **extra: JSONValue) -> types.CallToolResult:
    code = str(code)
    meta: dict[str, Any] = {META_ERROR: {"code": code, "message": message, **extra}}
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=f"{code}: {message}")],
        is_error=True,
        _meta=meta,
    )


def from_tether_error(error: TetherError) -> types.CallToolResult:
    """Every tether error code maps here, by its own stable code."""
    return tool_error(error.code.value, error.message)


def refusal(verdict: Verdict) -> types.CallToolResult:
    """A ``deny`` or ``approval_required`` verdict as a tool error the agent can act on."""
    reasons = "; ".join(f"{r.code.value}: {r.message}" for r in verdict.reasons) or "denied"
    error: dict[str, JSONValue] = {
        "code": verdict.decision.value,
        "decision_id": verdict.decision_id,
        "reasons": [r.to_json() for r in verdict.reasons],
    }
    if verdict.decision is Decision.APPROVAL_REQUIRED and verdict.approval_id is not None:
        error["approval_id"] = verdict.approval_id
        text = (
            f"approval_required (decision {verdict.decision_id}, approval "
            f"{verdict.approval_id}): {reasons}. A human must approve {verdict.approval_id}; "
            f'then retry exactly this call with _meta {{"{META_APPROVAL}": '
            f'"{verdict.approval_id}"}}.'
        )
    elif verdict.decision is Decision.APPROVAL_REQUIRED:
        text = f"approval_required (decision {verdict.decision_id}): {reasons}; treat as a deny"
    else:
        text = f"denied by tether (decision {verdict.decision_id}): {reasons}"
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)],
        is_error=True,
        _meta={META_ERROR: error, META_VERDICT: verdict.to_json()},
    )


def wire(result: types.CallToolResult) -> dict[str, Any]:
    """A result the gateway built, in its wire form."""
    return result.model_dump(by_alias=True, mode="json", exclude_none=True)


def for_agent(result: dict[str, Any], protocol_version: str) -> dict[str, Any]:
    """The upstream's raw ``tools/call`` result as the agent may get it: checked against the
    agent's protocol revision and sieved to it by the SDK (``mcp_types.methods``), less the
    upstream's protocol ``_meta``. Raises ``pydantic.ValidationError`` for a result that is
    not a valid ``CallToolResult``."""
    modern = protocol_version in MODERN_PROTOCOL_VERSIONS
    plain = _text_only(result, modern)
    if plain is not None:
        return plain
    if modern:
        # The upstream session speaks a handshake revision, whose results are all complete.
        result = {**result, "resultType": "complete"}
    shaped = methods.serialize_server_result("tools/call", protocol_version, result)
    meta = shaped.get("_meta")
    if isinstance(meta, dict):
        kept = {k: v for k, v in meta.items() if not k.startswith(_RESERVED_META_PREFIX)}
        if kept:
            shaped["_meta"] = kept
        else:
            del shaped["_meta"]
    return shaped


def _text_only(result: dict[str, Any], modern: bool) -> dict[str, Any] | None:
    """What the SDK's check and sieve (``methods.serialize_server_result``) make of the most
    common result, text content alone: ``content`` a list of objects each with exactly
    ``type`` ("text") and ``text`` (a string), and at most a boolean ``isError`` beside it
    (and ``resultType``, which the SDK drops on a handshake revision and :func:`for_agent`
    replaces on a modern one). The same object, members in the SDK's order; ``None`` for any
    other result, which the SDK checks. In a warm loop the SDK's check costs ~4.5 µs, in the
    gateway ~100 µs: its validator's tables leave the CPU's caches between calls. A test holds
    the two to the same answer on every revision."""
    content = result.get("content")
    if type(content) is not list:
        return None
    for key in result:
        if key != "content" and key != "isError" and key != "resultType":
            return None
    is_error = result.get("isError", False)
    if type(is_error) is not bool:
        return None
    items: list[dict[str, Any]] = []
    for item in content:
        if type(item) is not dict or len(item) != 2 or item.get("type") != "text":
            return None
        text = item.get("text")
        if type(text) is not str:
            return None
        items.append({"text": text, "type": "text"})
    shaped: dict[str, Any] = {"content": items}
    if "isError" in result:
        shaped["isError"] = is_error
    if modern:
        shaped["resultType"] = "complete"
    return shaped


def encoded(result: dict[str, Any]) -> bytes:
    """The result's JSON as it goes on the wire (sizes and leak scans are taken on this)."""
    return json.dumps(result, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# -- measuring an effect -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Measured:
    status: EffectStatus
    bytes: int
    records: int | None
    recipients: tuple[str, ...]


def _count(result: dict[str, Any], how: RecordCount) -> int | None:
    value: Any = result.get("content" if how.source == "content" else "structuredContent")
    for segment in how.path:
        if isinstance(value, dict):
            value = value.get(segment)
        elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
            value = value[int(segment)]
        else:
            return None
    return len(value) if isinstance(value, list) else None


def _recipients(arguments: dict[str, Any], name: str | None) -> tuple[str, ...]:
    if name is None:
        return ()
    value = arguments.get(name)
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(v for v in value if isinstance(v, str))
    return ()


def measure(
    result: dict[str, Any], size: int, mapping: ToolMapping, arguments: dict[str, Any]
) -> Measured:
    """What the effect record says of a result (its wire form, ``size`` bytes of JSON)."""
    return Measured(
        status=EffectStatus.ERROR if result.get("isError") is True else EffectStatus.OK,
        bytes=size,
        records=None if mapping.count_records is None else _count(result, mapping.count_records),
        recipients=_recipients(arguments, mapping.recipients_arg),
    )


@dataclass(frozen=True, slots=True)
class Handed:
    """What an allowed call handed back to the agent: the result of ``tool`` (read from
    ``dataset``), whose values provenance records before the task's next decision."""

    tool: str
    dataset: str | None
    result: dict[str, Any]

    def __repr__(self) -> str:
        return f"Handed(tool={self.tool!r}, dataset={self.dataset!r})"
