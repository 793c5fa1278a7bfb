"""The one check of a call's input, made at the enforcement entry for every door.

The v1 API, AuthZEN, the MCP gateway and the egress proxy each receive a tool call in their own
wire format; each hands tool, action, dataset and arguments to :func:`checked_call`, which
refuses what cannot be decided safely:

- a tool or dataset name that is not a name;
- arguments that are not a JSON object of plain JSON values, nest too deep or are too large;
- a number that is not finite (NaN and ±Infinity compare false with every bound, and a JSON
  literal such as ``1e400`` parses as Infinity);
- a string or key that is not valid Unicode (a lone UTF-16 surrogate cannot be encoded, so it
  could be neither audited nor hashed nor forwarded).

Rules that depend on the grant (a budgeted argument must be a finite number ≥ 0) belong to the
decision, not here: they deny with an audited verdict instead of refusing the request.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

from tether.core.call import Call
from tether.core.errors import ErrorCode, InvalidRequest
from tether.core.scope import MAX_DATASET_NAME, MAX_TOOL_NAME, ActionKind, JSONValue, is_valid_name

__all__ = ["CallLimits", "checked_args", "checked_call"]

# json.dumps(args, allow_nan=False, separators=(",", ":")), with its encoder built once.
_wire_form = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode


@dataclass(frozen=True, slots=True)
class CallLimits:
    """How much one call may carry."""

    max_args_bytes: int = 64 * 1024
    max_args_depth: int = 8


def checked_call(
    tool: str,
    action: ActionKind,
    dataset: str | None,
    args: object,
    limits: CallLimits,
) -> Call:
    """The call, if its input is safe to decide on; else :class:`InvalidRequest` naming the
    first problem (``invalid_field``, or ``payload_too_large`` for size)."""
    if not isinstance(tool, str) or not is_valid_name(tool, MAX_TOOL_NAME):
        raise InvalidRequest("tool is not a valid tool name", code=ErrorCode.INVALID_FIELD)
    if dataset is not None and (
        not isinstance(dataset, str) or not is_valid_name(dataset, MAX_DATASET_NAME)
    ):
        raise InvalidRequest("dataset is not a valid dataset name", code=ErrorCode.INVALID_FIELD)
    return Call(tool, action, dataset, checked_args(args, limits))


def checked_args(args: object, limits: CallLimits) -> dict[str, JSONValue]:
    """``args`` as a JSON object of plain values within ``limits``, or :class:`InvalidRequest`."""
    if not isinstance(args, Mapping):
        raise InvalidRequest(
            "args must be a JSON object of argument name to value", code=ErrorCode.INVALID_FIELD
        )
    _walk(args, limits.max_args_depth)
    # The size the arguments take on the wire, as every door and the audit log serialise them.
    size = len(_wire_form(args))
    if size > limits.max_args_bytes:
        raise InvalidRequest(
            f"args are limited to {limits.max_args_bytes} bytes; these take {size}",
            code=ErrorCode.PAYLOAD_TOO_LARGE,
        )
    return dict(args)


def _walk(args: Mapping[object, object], max_depth: int) -> None:
    """Every value plain JSON, finite, valid Unicode, and at most ``max_depth`` deep."""
    stack: list[tuple[object, int, str]] = [(args, 1, "args")]
    while stack:
        value, depth, where = stack.pop()
        if depth > max_depth:
            raise InvalidRequest(
                f"args nest deeper than {max_depth} levels", code=ErrorCode.INVALID_FIELD
            )
        if isinstance(value, str):
            _unicode(value, where)
        elif isinstance(value, bool) or value is None or isinstance(value, int):
            pass
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise InvalidRequest(
                    f"{where} is not a finite number; NaN and Infinity are not accepted",
                    code=ErrorCode.INVALID_FIELD,
                )
        elif isinstance(value, Mapping | list | tuple):
            if isinstance(value, Mapping):
                for key, item in value.items():
                    if not isinstance(key, str):
                        raise InvalidRequest(
                            f"{where} has a key that is not a string", code=ErrorCode.INVALID_FIELD
                        )
                    _unicode(key, f"a key of {where}")
                    stack.append((item, depth + 1, f"{where}.{key[:64]}"))
            else:
                stack.extend((item, depth + 1, f"{where}[{i}]") for i, item in enumerate(value))
        else:
            raise InvalidRequest(f"{where} is not a JSON value", code=ErrorCode.INVALID_FIELD)


def _unicode(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate ("\ud800" in JSON): no encoding can carry it to the audit log.
        raise InvalidRequest(
            f"{where[:96]} holds a string that is not valid "
            "Unicode (a lone surrogate); send text as UTF-8",
            code=ErrorCode.INVALID_FIELD,
        ) from None
