"""The hot path's HTTP door: ``POST /v1/authorize`` and ``POST /v1/effects`` as plain ASGI.

Every tool call of every agent crosses ``/v1/authorize``, so its HTTP side does the least that
answers it right. :class:`HotPaths` sits in front of the FastAPI app and serves these two
operations itself; every other request (another method on these paths too, answered ``405``)
goes on to FastAPI. Per request it does, in one pass and in FastAPI's order:

1. read the body, at most :data:`~tether.api.body.MAX_BODY_BYTES` (``413`` past it);
2. read it as JSON with the strict reader when its type is JSON (``application/json`` or
   ``application/*+json``), as FastAPI does;
3. verify the caller's SVID (``401``);
4. validate the body against the same pydantic model the OpenAPI document shows
   (:class:`~tether.api.models.AuthorizeIn`, :class:`~tether.api.models.EffectIn`), its errors
   described by the same function (:func:`tether.api.errors.describe_validation`);
5. decide through :meth:`Authorizer.enforce_async`: on the event loop when the store allows,
   the durable write awaited from the store's writer thread, so no thread-pool hop carries the
   request (an effect, a plain write, takes one hop to a worker thread);
6. answer with the body the response model gives (same fields, same order).

Errors are the one error body of :mod:`tether.api.errors`, with the same codes and messages as
the rest of the API. The FastAPI routes of these operations stay declared in
:mod:`tether.api.app`, answering through the same :func:`authorize_answer` and
:func:`effect_answer`: they give the OpenAPI document its operations (and the ``405``), and
serve a request only when it does not pass through here. Validation: pydantic's ``TypeAdapter``
took about 1 µs per authorize body here and msgspec 0.2 µs, both under 1 % of a request; pydantic
stays, for the identical error messages and one model for the document and the check.
"""

from __future__ import annotations

import asyncio
import email.message
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

import orjson
from pydantic import TypeAdapter, ValidationError
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as AsgiScope

from tether.api.body import MAX_BODY_BYTES, BodyTooLarge, read_bounded, read_json, too_large
from tether.api.errors import describe_validation, error_response
from tether.api.leases import credential_json
from tether.api.models import AuthorizeIn, EffectIn
from tether.api.observations import checked_result
from tether.core.effect import Effect
from tether.core.errors import ErrorCode, InvalidRequest, TetherError
from tether.core.identity import Workload
from tether.core.ids import DecisionId, IdKind, is_well_formed
from tether.core.scope import JSONValue
from tether.core.verdict import Verdict
from tether.logs import get_logger
from tether.service.enforce import CallRequest
from tether.service.flows import Expect
from tether.service.provenance import Recorded

if TYPE_CHECKING:
    from tether.api.app import ApiDeps

log = get_logger("tether.api")

AUTHORIZE_PATH: Final = "/v1/authorize"
EFFECTS_PATH: Final = "/v1/effects"

#: An operation's answer: its status, its body and whether no cache may keep it.
Answer = tuple[int, dict[str, JSONValue], bool]
_Handler = Callable[["ApiDeps", Workload, Any], Awaitable[Answer]]
_MISSING: Final = object()
_JSON_HEADERS: Final = [(b"content-type", b"application/json")]
# What FastAPI's JSONResponse writes: json.dumps(out, ensure_ascii=False, allow_nan=False,
# separators=(",", ":")), its encoder built once.
_encode_std: Final = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":")
).encode


def _encode(out: object) -> bytes:
    """The answer's JSON, written by orjson: the same document (members in the same order, no
    spaces, UTF-8), several times faster. An answer holds strings, integers, booleans and
    nulls, never a float; what orjson refuses (a key that is not a string, an integer past 64
    bits) takes the standard library's path."""
    try:
        return orjson.dumps(out)
    except orjson.JSONEncodeError:
        return _encode_std(out).encode("utf-8")


class HotPaths:
    """ASGI middleware serving the hot operations ahead of the app it wraps."""

    def __init__(self, app: ASGIApp, deps: ApiDeps, authenticate: Callable[[str | None], Workload]):
        self.app = app
        self._deps = deps
        self._authenticate = authenticate
        self._routes: dict[str, tuple[TypeAdapter[Any], _Handler]] = {
            AUTHORIZE_PATH: (TypeAdapter(AuthorizeIn), authorize_answer),
            EFFECTS_PATH: (TypeAdapter(EffectIn), effect_answer),
        }

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            root = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            route = self._routes.get(path)
            if route is not None:
                await self._serve(route, scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _serve(
        self,
        route: tuple[TypeAdapter[Any], _Handler],
        scope: AsgiScope,
        receive: Receive,
        send: Send,
    ) -> None:
        try:
            body = await read_bounded(scope, receive, MAX_BODY_BYTES)
        except BodyTooLarge:
            await too_large(MAX_BODY_BYTES)(scope, receive, send)
            return
        if body is None:
            return  # the client left
        authorization: str | None = None
        content_type: str | None = None
        for name, value in scope["headers"]:  # the first of a repeated header, as Starlette
            if name == b"authorization" and authorization is None:
                authorization = value.decode("latin-1")
            elif name == b"content-type" and content_type is None:
                content_type = value.decode("latin-1")
        adapter, handler = route
        try:
            document = _document(body, content_type)
            agent = await self._caller(authorization)
            if document is _MISSING:
                raise _refused([{"type": "missing", "loc": ("body",)}])
            try:
                parsed = adapter.validate_python(document, from_attributes=True)
            except ValidationError as invalid:
                raise _refused(invalid.errors()) from None
            status, out, no_store = await handler(self._deps, agent, parsed)
        except TetherError as error:
            await error_response(error.code, error.message)(scope, receive, send)
            return
        except Exception as unexpected:
            log.error("unexpected_error", error_type=type(unexpected).__name__)
            await error_response(ErrorCode.INTERNAL, "tether hit an internal error; see its log")(
                scope, receive, send
            )
            return
        content = _encode(out)
        headers = [(b"content-length", str(len(content)).encode()), *_JSON_HEADERS]
        if no_store:
            # A credential is for this caller, once: no cache or proxy may keep the response.
            headers.append((b"cache-control", b"no-store"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    async def _caller(self, authorization: str | None) -> Workload:
        if self._deps.verify_on_loop:
            return self._authenticate(authorization)
        # A verifier that may fetch keys over the network keeps off the event loop.
        return await asyncio.to_thread(self._authenticate, authorization)


def _document(body: bytes, content_type: str | None) -> Any:
    """What the model validates, as FastAPI reads it: the strict JSON reading of a JSON body;
    the raw bytes of any other (which no model takes); nothing for an empty one."""
    if not body:
        return _MISSING
    if content_type is None:
        return body
    if content_type != "application/json":
        message = email.message.Message()
        message["content-type"] = content_type
        subtype = message.get_content_subtype()
        if message.get_content_maintype() != "application" or not (
            subtype == "json" or subtype.endswith("+json")
        ):
            return body
    return read_json(body)


def _refused(problems: Sequence[Any]) -> InvalidRequest:
    """The error of a body its model refused (an empty body: as FastAPI describes a missing
    one)."""
    code, message = describe_validation(problems)
    return InvalidRequest(message, code=code)


async def authorize_answer(deps: ApiDeps, agent: Workload, body: AuthorizeIn) -> Answer:
    expect = Expect(body.expect.records, body.expect.bytes) if body.expect else None
    request = CallRequest(body.tool, body.action, body.dataset, body.args, body.approval_id, expect)
    verdict = await deps.authorizer.enforce_async(
        agent, body.grant, request, credentials=body.credential
    )
    return 200, verdict_body(verdict), verdict.credential is not None


def verdict_body(verdict: Verdict) -> dict[str, JSONValue]:
    """A verdict as ``VerdictOut`` serializes it: its fields in the model's order."""
    delegators: list[JSONValue] = list(verdict.delegators)
    return {
        "decision": verdict.decision.value,
        "decision_id": verdict.decision_id,
        "reasons": [r.to_json() for r in verdict.reasons],
        "policy_ids": list(verdict.policy_ids),
        "risks": [r.value for r in verdict.risks],
        "obligations": [o.to_json() for o in verdict.obligations],
        "policy_revision": verdict.policy_revision,
        "decided_at": verdict.decided_at.isoformat(),
        "approval_id": verdict.approval_id,
        "delegation": {"depth": len(delegators), "chain": delegators},
        "credential": (
            credential_json(verdict.credential) if verdict.credential is not None else None
        ),
    }


async def effect_answer(deps: ApiDeps, agent: Workload, body: EffectIn) -> Answer:
    if not is_well_formed(body.decision_id, IdKind.DECISION):
        raise InvalidRequest(
            "decision_id is not a tether decision id", code=ErrorCode.INVALID_FIELD
        )
    # A plain write (its transaction may wait on the database's lock): off the event loop,
    # the observation sent with the effect, if any, in the same hop and the same transaction.
    effect, recorded = await asyncio.to_thread(_record_effect, deps, agent, body)
    return (
        201,
        {
            "effect_id": effect.effect_id,
            "decision_id": effect.decision_id,
            "status": effect.status.value,
            "records": effect.records,
            "bytes": effect.bytes,
            "recipient_count": len(effect.recipients),
            "reported_at": effect.reported_at.isoformat(),
            "observation": recorded.to_json() if recorded is not None else None,
        },
        False,
    )


def _record_effect(
    deps: ApiDeps, agent: Workload, body: EffectIn
) -> tuple[Effect, Recorded | None]:
    """The observation sent with the effect checked first, then the effect; both written in
    one transaction. A refused observation writes nothing (the effect is to be reported again
    on its own); a refused effect keeps the observation (a retry after an answer that never
    came records it again, its values kept once, before the effect is refused as already
    reported); a store failure writes neither."""
    observed, recorded = (
        (None, None)
        if body.observation is None
        else checked_result(deps, agent, body.observation, body.decision_id)
    )
    effect = deps.effects.report(
        agent,
        DecisionId(body.decision_id),
        body.status,
        body.records,
        body.bytes,
        body.recipients,
        observed,
    )
    return effect, recorded
