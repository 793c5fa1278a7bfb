"""The lean path for ``tools/call`` over streamable HTTP: one request, decided and forwarded
without the SDK's per-message session machinery (MCP streamable HTTP, revisions 2025-06-18,
2025-11-25 and 2026-07-28).

The gateway's HTTP app is the SDK's (sessions, ``initialize``, GET streams, listings, every other
method). :class:`LeanFront` sits in front of it, after the bearer check, and takes only a POST
that carries one ``tools/call`` request it can answer exactly as the SDK would:

- **2026-07-28** (``MCP-Protocol-Version`` names a modern revision): the SDK's own checks of the
  single-exchange entry, in its order (transport security, ``Accept``, the body as one JSON-RPC
  request, duplicated routing headers, the per-request envelope with
  :func:`~mcp.shared.inbound.classify_inbound_request`); the answer is the same JSON body with
  the same HTTP status.
- **2025-06-18 / 2025-11-25** (a session): the ``Mcp-Session-Id`` of a live session whose
  handshake is done (:class:`LeanSessions` learns each from the SDK's own handling of the
  session's ``initialize`` and later messages), no protocol-version header or
  the session's own, ``Accept`` naming both JSON and SSE as the SDK requires. The answer is the
  JSON-RPC message the SDK would put in its SSE stream, as an ``application/json`` body, which the
  spec lets a server choose for any POSTed request ("either ``Content-Type: text/event-stream``
  … or ``Content-Type: application/json``"). The request holds the session open as one the SDK
  serves does (its idle countdown pauses), and marks the agent session for notifications
  (:mod:`tether.mcp.listeners`).

Either way the call goes through :func:`tether.mcp.server.answer_call`, the one function the SDK
path calls too: the params checked against the agent's revision by the SDK
(``mcp_types.methods``), :meth:`Gateway.forward_call` (descriptor pin, the decision through the
one enforcement entry, forwarding, size cap, credential echo, effect), the 2026 ``serverInfo``
stamp. Everything else goes on to the SDK unchanged, the body replayed as read: a batch, a
notification, another method, ``initialize``, a request asking for progress (``progressToken``:
its notifications need the SDK's SSE stream), an unknown or ended session, a header the SDK
would refuse. What the lean path does not do: the SDK's OpenTelemetry span per request, and
honouring a ``notifications/cancelled`` for a call it serves (the call runs to its end and its
effect is recorded; the spec lets a receiver finish a request it was asked to cancel).
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import anyio
import orjson
from mcp.server import Server
from mcp.server.runner import modern_error_data
from mcp.server.session import ServerSession
from mcp.server.streamable_http import (
    MCP_SESSION_ID_HEADER,
    StreamableHTTPServerTransport,
    check_accept_headers,
)
from mcp.server.transport_security import TransportSecurityMiddleware
from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    MCP_PROTOCOL_VERSION_HEADER,
    InboundLadderRejection,
    classify_inbound_request,
    find_duplicated_routing_header,
)
from mcp.shared.jsonrpc_dispatcher import (
    handler_exception_to_error_data,
    progress_token_from_params,
)
from mcp_types import ErrorData, JSONRPCError, JSONRPCRequest, JSONRPCResponse, RequestId
from mcp_types import jsonrpc_message_adapter as _messages
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tether.logs import get_logger
from tether.mcp.callers import Caller, caller_from_scope

log = get_logger("tether.mcp.lean")

TOOLS_CALL: Final = "tools/call"
#: Handshake-era sessions remembered for the lean path (the SDK's own session limit).
MAX_LEAN_SESSIONS: Final = 10_000

#: The one call both paths make: (caller, params, protocol revision) → the result object.
AnswerCall = Callable[[Caller | None, dict[str, Any] | None, str], Awaitable[dict[str, Any]]]


@dataclass
class LeanStats:
    """How many ``tools/call`` requests each path answered (for tests and operators)."""

    #: Answered on the lean path, by era.
    modern: int = 0
    session: int = 0
    #: POSTs to the MCP path handed to the SDK's transport.
    passed_on: int = 0

    @property
    def lean(self) -> int:
        return self.modern + self.session


class LeanSessions:
    """Handshake-era agent sessions: ``Mcp-Session-Id`` → the SDK's ``ServerSession``, learned
    from every message the SDK serves on a session, ``initialize`` included (:meth:`note`).
    Whether its handshake is done and at which revision is read from the SDK's session when
    a call comes (:meth:`ready`), so a call is served here from the moment the SDK itself
    would serve one; a session the SDK ended is dropped when the lean path next meets it."""

    def __init__(self, limit: int = MAX_LEAN_SESSIONS) -> None:
        self._sessions: OrderedDict[str, ServerSession] = OrderedDict()
        self._limit = limit

    def note(self, session: ServerSession) -> None:
        """Remember ``session`` (any message the SDK serves on it, from its ``initialize`` on,
        before the answer is written: the next request can be served here)."""
        # The session's id as its transport assigned it (mcp 2.3 keeps it on the connection
        # only; an initialize request carries none yet).
        session_id = getattr(getattr(session, "_connection", None), "session_id", None)
        if not isinstance(session_id, str):
            return
        self._sessions[session_id] = session
        self._sessions.move_to_end(session_id)
        while len(self._sessions) > self._limit:
            self._sessions.popitem(last=False)

    @staticmethod
    def ready(session: ServerSession) -> bool:
        """Is the session's handshake done (the SDK's own gate: ``initialize`` answered), at a
        handshake-era revision?"""
        return (
            session.client_params is not None
            and session.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS
        )

    def get(self, session_id: str) -> ServerSession | None:
        return self._sessions.get(session_id)

    def forget(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)


class _PassOn(Exception):
    """Not for the lean path: the SDK serves it."""


class LeanFront:
    """ASGI middleware answering single ``tools/call`` POSTs ahead of the SDK's app ``app``
    (which ``server.streamable_http_app`` built: its settings are read from its session
    manager)."""

    def __init__(
        self,
        app: ASGIApp,
        server: Server[Any],
        answer: AnswerCall,
        sessions: LeanSessions,
        *,
        path: str,
        listen: Callable[[str, Caller, ServerSession], None],
        stats: LeanStats | None = None,
    ) -> None:
        manager = server.session_manager
        self.app = app
        self.stats = stats if stats is not None else LeanStats()
        self._answer = answer
        self._sessions = sessions
        self._path = path
        self._listen = listen
        self._security = TransportSecurityMiddleware(manager.security_settings)
        self._max_body = manager.max_request_body_size
        self._idle_timeout = manager.session_idle_timeout
        self._json_only = manager.json_response
        # The SDK's table of live sessions (mcp 2.3: StreamableHTTPSessionManager keeps no public
        # one): a session it ended or never had answers 404 from it, so it is never served here.
        self._transports: dict[str, StreamableHTTPServerTransport] = manager._server_instances

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self._path:
            await self.app(scope, receive, send)
            return
        read: list[Message] = []
        try:
            await self._serve(scope, receive, send, read)
        except _PassOn:
            self.stats.passed_on += 1
            await self.app(scope, _replay(read, receive), send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, read: list[Message]) -> None:
        request = Request(scope)
        headers = request.headers
        version = headers.get(MCP_PROTOCOL_VERSION_HEADER)
        if await self._security.validate_request(request, is_post=True) is not None:
            raise _PassOn
        has_json, has_sse = check_accept_headers(request)
        if version is not None and version in MODERN_PROTOCOL_VERSIONS:
            if not has_json or (not self._json_only and not has_sse):
                raise _PassOn
            await self._modern(scope, headers, await _body(receive, read, self._max_body), send)
        elif version is None or version in HANDSHAKE_PROTOCOL_VERSIONS:
            if not has_json or not has_sse or self._json_only:
                raise _PassOn
            await self._session(scope, headers, version, receive, send, read)
        else:
            raise _PassOn

    # -- 2026-07-28: one self-contained request ------------------------------------------------

    async def _modern(self, scope: Scope, headers: Headers, body: bytes, send: Send) -> None:
        try:
            decoded = json.loads(body)
        except (ValueError, RecursionError):
            raise _PassOn from None
        if not isinstance(decoded, dict) or "id" not in decoded:
            raise _PassOn
        try:
            request = JSONRPCRequest.model_validate(decoded)
        except ValidationError:
            raise _PassOn from None
        if request.method != TOOLS_CALL or progress_token_from_params(request.params) is not None:
            raise _PassOn
        if find_duplicated_routing_header(headers.items()) is not None:
            raise _PassOn
        verdict = classify_inbound_request(decoded, headers=dict(headers))
        if isinstance(verdict, InboundLadderRejection):
            raise _PassOn
        # The SDK's next check, of Mcp-Param-* headers against the tool's input schema, finds
        # no schema: the gateway's server answers none (server._no_schema), so it never refuses.
        self.stats.modern += 1
        try:
            result = await self._answer(
                caller_from_scope(scope), request.params, verdict.protocol_version
            )
        except Exception as error:
            data = modern_error_data(error)
            failed = JSONRPCError(jsonrpc="2.0", id=request.id, error=data)
            # As the SDK's single-exchange entry writes it.
            dumped = failed.model_dump(mode="json", by_alias=True, exclude_none=True)
            status = ERROR_CODE_HTTP_STATUS.get(data.code, 200)
            await _respond(send, status, json.dumps(dumped, separators=(",", ":")).encode(), ())
            return
        await _respond(send, 200, _answered(request.id, result), ())

    # -- 2025-06-18, 2025-11-25: a request on a live session -----------------------------------

    async def _session(
        self,
        scope: Scope,
        headers: Headers,
        version: str | None,
        receive: Receive,
        send: Send,
        read: list[Message],
    ) -> None:
        session_id = headers.get(MCP_SESSION_ID_HEADER)
        if session_id is None:
            raise _PassOn
        session = self._sessions.get(session_id)
        if session is None or not self._sessions.ready(session):
            raise _PassOn
        transport = self._transports.get(session_id)
        if transport is None or transport.is_terminated:
            self._sessions.forget(session_id)
            raise _PassOn
        negotiated = session.protocol_version
        if version is not None and version != negotiated:
            raise _PassOn
        idle = transport.idle_scope
        if idle is not None and idle.cancel_called:
            raise _PassOn
        body = await _body(receive, read, self._max_body)
        try:
            # What the SDK's transport reads, parsed and checked in one step.
            message = _messages.validate_json(body, by_name=False)
        except ValidationError:
            raise _PassOn from None
        if (
            not isinstance(message, JSONRPCRequest)
            or message.method != TOOLS_CALL
            or progress_token_from_params(message.params) is not None
        ):
            raise _PassOn
        self.stats.session += 1
        caller = caller_from_scope(scope)
        if caller is not None:
            self._listen(session_id, caller, session)
        with _held(transport, self._idle_timeout):
            try:
                result = await self._answer(caller, message.params, negotiated)
                body_out = _answered(message.id, result)
            except Exception as error:
                data = handler_exception_to_error_data(error)
                if data is None:
                    # As the SDK's dispatcher answers a handler that raised (code 0).
                    log.exception("tools_call_failed")
                    data = ErrorData(code=0, message=str(error))
                failed = JSONRPCError(jsonrpc="2.0", id=message.id, error=data)
                # The message the SDK would send as the request's SSE event, as a JSON body.
                body_out = failed.model_dump_json(by_alias=True, exclude_unset=True).encode()
        await _respond(send, 200, body_out, ((b"mcp-session-id", session_id.encode()),))


class _held:
    """Hold a session open while the lean path serves one of its requests, as the SDK's
    transport does for each request it serves: the idle countdown pauses, and restarts when
    the last request in flight ends (mcp 2.3 ``StreamableHTTPServerTransport.handle_request``)."""

    def __init__(self, transport: StreamableHTTPServerTransport, timeout: float | None) -> None:
        self._transport = transport
        self._timeout = timeout

    def __enter__(self) -> None:
        idle = self._transport.idle_scope
        if idle is None or self._timeout is None:
            return
        self._transport._requests_in_flight += 1
        idle.deadline = math.inf

    def __exit__(self, *exc: object) -> None:
        idle = self._transport.idle_scope
        if idle is None or self._timeout is None:
            return
        self._transport._requests_in_flight -= 1
        if not self._transport._requests_in_flight:
            idle.deadline = anyio.current_time() + self._timeout


async def _body(receive: Receive, read: list[Message], limit: int) -> bytes:
    """The request body, at most ``limit`` bytes (else the SDK answers ``413``); every message
    read is kept in ``read`` for the SDK if the request goes on to it."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        read.append(message)
        if message["type"] != "http.request":
            raise _PassOn  # the client left
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _PassOn
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(read: list[Message], receive: Receive) -> Receive:
    """``receive`` with the messages the lean path already read given back first."""
    pending = list(read)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


def _answered(request_id: RequestId, result: dict[str, Any]) -> bytes:
    """The JSON-RPC answer carrying ``result`` (a JSON object already shaped for the agent), as
    compact JSON: the message the SDK's ``JSONRPCResponse`` writes, members in the same order,
    written by orjson without building and dumping the model (a model's dump walks the whole
    result a second time). What orjson refuses (an integer past 64 bits) goes the model's way."""
    message = {"jsonrpc": "2.0", "id": request_id, "result": result}
    try:
        return orjson.dumps(message)
    except orjson.JSONEncodeError:
        return JSONRPCResponse.model_validate(message).model_dump_json(by_alias=True).encode()


async def _respond(
    send: Send, status: int, body: bytes, extra: tuple[tuple[bytes, bytes], ...]
) -> None:
    headers = [
        (b"content-length", str(len(body)).encode()),
        (b"content-type", b"application/json"),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
