"""The lean path's upstream side: a ``tools/call`` sent to an upstream session as one JSON-RPC
message and its answer matched by id, without the SDK client's per-request machinery (its
dispatcher's pending table and per-request streams, its session, and for streamable HTTP its
POST task, message models and read-stream hop). MCP basic protocol (JSON-RPC 2.0) and
transports (stdio, streamable HTTP), revisions 2025-06-18 and 2025-11-25.

The SDK still owns each upstream session: its transport, its handshake, pings, listings and every
other request. :class:`Relay` sits between the SDK's transport and its dispatcher and sees every
message the upstream sends, in wire order:

- an answer to a request sent here (ids ``tether-N``: strings, so never one of the SDK's integer
  ids) goes to its waiter and no further;
- a notification is first shown to ``tap`` (the gateway re-checks pins on
  ``notifications/tools/list_changed`` before any answer that followed it on the wire is seen),
  then passed on, with everything else, to the SDK's dispatcher unchanged.

:class:`LeanChannel` sends the request. Over stdio it goes into the SDK transport's write stream
(the SDK writes the line); the answer comes back through the relay. Over streamable HTTP it is a
plain POST on the session's own pooled ``httpx`` client (its credential included) with the
session's id and protocol revision, answered as JSON or as an SSE stream whose other messages
(a log line, a request of the server's) are handed to the relay as if they had come the SDK's
way. Failures map to the errors the SDK's path raises (``MCPError`` with the same codes: a
timeout is ``REQUEST_TIMEOUT``, a closed connection ``CONNECTION_CLOSED``, an HTTP error status
what the SDK's transport makes of it), so the gateway reports them alike. A call asking for
progress is not sent here (the gateway uses the SDK's path for it).
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import anyio
import httpx2
import orjson
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from httpx2 import EventSource
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp.shared.message import SessionMessage
from mcp_types import (
    CONNECTION_CLOSED,
    INTERNAL_ERROR,
    INVALID_REQUEST,
    PARSE_ERROR,
    REQUEST_TIMEOUT,
    JSONRPCError,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    jsonrpc_message_adapter,
)
from pydantic import ValidationError

from tether.mcp.lean_http import LeanHttp

SESSION_ID_HEADER: Final = "mcp-session-id"
#: The SDK client's limit on one SSE event (mcp.client.streamable_http).
MAX_SSE_EVENT_BYTES: Final = 16 * 1024 * 1024

Item = SessionMessage | Exception
Answer = JSONRPCResponse | JSONRPCError


@dataclass(eq=False)
class _Waiter:
    done: anyio.Event
    answer: Answer | None = None


class Relay:
    """Between an upstream transport's read stream and the SDK's dispatcher (see the module)."""

    def __init__(self, tap: Callable[[str], None]) -> None:
        self._tap = tap
        self._send, self.receive = anyio.create_memory_object_stream[Item](0)
        self._waiters: dict[str, _Waiter] = {}
        self._ids = itertools.count(1)
        self._closed = False

    async def run(self, source: MemoryObjectReceiveStream[Item] | Any) -> None:
        """Read ``source`` (the SDK transport's read stream) until it ends."""
        try:
            async with self._send:
                async for item in source:
                    if isinstance(item, SessionMessage) and self._claimed(item.message):
                        continue
                    await self._send.send(item)
        finally:
            self._closed = True
            for waiter in self._waiters.values():
                waiter.done.set()  # no answer: the connection closed

    def _claimed(self, message: Any) -> bool:
        """Hand an answer to its waiter; show a notification to ``tap`` (it goes on too)."""
        if isinstance(message, JSONRPCResponse | JSONRPCError):
            waiter = self._waiters.get(message.id) if isinstance(message.id, str) else None
            if waiter is None:
                return False
            waiter.answer = message
            waiter.done.set()
            return True
        if isinstance(message, JSONRPCNotification):
            self._tap(message.method)
        return False

    async def deliver(self, raw: Any) -> None:
        """A message from an upstream's SSE answer that is not the answer: on, as if it had come
        the SDK's way (a malformed one is dropped, as the SDK drops it)."""
        try:
            message = jsonrpc_message_adapter.validate_python(raw, by_name=False)
        except ValidationError:
            return
        if not self._claimed(message):
            await self._send.send(SessionMessage(message))

    def waiter(self) -> tuple[str, _Waiter]:
        if self._closed:
            raise MCPError(code=CONNECTION_CLOSED, message="Connection closed")
        request_id = f"tether-{next(self._ids)}"
        waiter = self._waiters[request_id] = _Waiter(anyio.Event())
        return request_id, waiter

    def forget(self, request_id: str) -> None:
        self._waiters.pop(request_id, None)


class SessionIdWatch:
    """An ``httpx`` response hook keeping the session id an HTTP upstream assigned (at its
    ``initialize`` answer, read by the SDK's transport too)."""

    def __init__(self) -> None:
        self.session_id: str | None = None

    async def __call__(self, response: httpx2.Response) -> None:
        value = response.headers.get(SESSION_ID_HEADER)
        if value:
            self.session_id = value


class Credential(Protocol):
    """An upstream's credential header (:class:`tether.mcp.upstreams.InjectedCredential`)."""

    def header(self) -> tuple[str, str]: ...


@dataclass(frozen=True)
class HttpRoute:
    """Where a streamable HTTP session's requests go: its pooled client and endpoint."""

    client: httpx2.AsyncClient
    url: str
    session: SessionIdWatch
    #: The lean client for ``tools/call`` POSTs (:mod:`tether.mcp.lean_http`), for the
    #: upstreams it serves; ``None``: they go through ``client`` too.
    lean: LeanHttp | None = None
    #: The credential ``client`` adds to each request, added to the lean client's.
    credential: Credential | None = None


class LeanChannel:
    """Requests on one upstream session, sent as one JSON-RPC message each (see the module)."""

    def __init__(
        self,
        relay: Relay,
        write: MemoryObjectSendStream[SessionMessage] | Any,
        protocol_version: str,
        http: HttpRoute | None = None,
    ) -> None:
        self._relay = relay
        self._write = write
        self._version = protocol_version
        self._http = http
        #: Requests sent on this channel (tests and operators see the lean path is taken).
        self.sent = 0

    async def request(
        self, method: str, params: Mapping[str, Any] | None, timeout: float
    ) -> dict[str, Any]:
        """The result object of ``method``; raises ``MCPError`` as the SDK's path does."""
        request_id, waiter = self._relay.waiter()
        self.sent += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = dict(params)
        try:
            with anyio.fail_after(timeout):
                if self._http is None:
                    request = JSONRPCRequest.model_validate(message)
                    await self._write.send(SessionMessage(request))
                    await waiter.done.wait()
                    answer = waiter.answer
                else:
                    answer = await self._post(message, request_id)
        except TimeoutError:
            await self._cancel(request_id)
            raise MCPError(code=REQUEST_TIMEOUT, message="Request timed out") from None
        finally:
            self._relay.forget(request_id)
        if answer is None:
            raise MCPError(code=CONNECTION_CLOSED, message="Connection closed")
        if isinstance(answer, JSONRPCError):
            raise MCPError.from_error_data(answer.error)
        return answer.result

    async def _cancel(self, request_id: str) -> None:
        """Tell the upstream a request timed out (``notifications/cancelled``), best effort."""
        note = JSONRPCNotification(
            jsonrpc="2.0",
            method="notifications/cancelled",
            params={"requestId": request_id, "reason": "timed out"},
        )
        with anyio.move_on_after(1), _quietly():
            if self._http is None:
                await self._write.send(SessionMessage(note))
            else:
                await self._http.client.post(
                    self._http.url,
                    content=note.model_dump_json(by_alias=True, exclude_unset=True),
                    headers=self._headers(),
                )

    def _headers(self) -> dict[str, str]:
        headers = {
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
            MCP_PROTOCOL_VERSION_HEADER: self._version,
        }
        assert self._http is not None
        session_id = self._http.session.session_id
        if session_id is not None:
            headers[SESSION_ID_HEADER] = session_id
        return headers

    async def _post(self, message: dict[str, Any], request_id: str) -> Answer:
        """One POST, its answer read as the SDK's transport reads it (mcp 2.3
        ``StreamableHTTPTransport._handle_post_request``)."""
        route = self._http
        assert route is not None
        body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
        headers = self._headers()
        if route.lean is None:
            async with route.client.stream(
                "POST", route.url, content=body, headers=headers
            ) as response:
                return await self._read(response, request_id)
        if route.credential is not None:
            name, value = route.credential.header()
            headers[name] = value
        response = await route.lean.post(headers, body)
        try:
            await route.session(response)  # as the client's response hook
            return await self._read(response, request_id)
        finally:
            await response.aclose()

    async def _read(self, response: httpx2.Response, request_id: str) -> Answer:
        """The answer in ``response``, as the SDK's transport reads it."""
        status = response.status_code
        content_type = response.headers.get("content-type", "").lower()
        if status == 202 or 300 <= status < 400:
            return _error(request_id, INVALID_REQUEST, "no answer to the request")
        if status >= 400:
            if content_type.startswith("application/json"):
                with _quietly():
                    parsed = jsonrpc_message_adapter.validate_json(
                        await response.aread(), by_name=False
                    )
                    if isinstance(parsed, JSONRPCError):
                        return JSONRPCError(jsonrpc="2.0", id=request_id, error=parsed.error)
            if status == 404:
                return _error(request_id, INVALID_REQUEST, "Session terminated")
            return _error(request_id, INTERNAL_ERROR, "Server returned an error response")
        if content_type.startswith("application/json"):
            body = await response.aread()
            with contextlib.suppress(orjson.JSONDecodeError):
                answered = _plain_answer(orjson.loads(body), request_id)
                if answered is not None:
                    return answered
            try:
                parsed = jsonrpc_message_adapter.validate_json(body, by_name=False)
            except ValidationError:
                return _error(request_id, PARSE_ERROR, "Failed to parse JSON response")
            return _answer(parsed, request_id)
        if content_type.startswith("text/event-stream"):
            return await self._events(response, request_id)
        return _error(request_id, INVALID_REQUEST, "Unexpected content type")

    async def _events(self, response: httpx2.Response, request_id: str) -> Answer:
        async for event in EventSource(response, max_event_size=MAX_SSE_EVENT_BYTES):
            if event.event != "message" or not event.data:
                continue
            try:
                raw = json.loads(event.data)
            except ValueError:
                continue
            answered = _plain_answer(raw, request_id)
            if answered is not None:
                return answered
            if isinstance(raw, dict) and raw.get("id") == request_id and "method" not in raw:
                try:
                    parsed = jsonrpc_message_adapter.validate_python(raw, by_name=False)
                except ValidationError:
                    return _error(request_id, PARSE_ERROR, "Failed to parse the answer")
                return _answer(parsed, request_id)
            await self._relay.deliver(raw)
        raise MCPError(code=CONNECTION_CLOSED, message="the answer stream ended without an answer")


def _plain_answer(parsed: Any, request_id: str) -> JSONRPCResponse | None:
    """The answer ``parsed`` (decoded JSON) when it is the common one: an object with exactly
    the members ``jsonrpc`` ("2.0"), ``id`` (``request_id``) and ``result`` (an object), which
    is a ``JSONRPCResponse`` to this request as the message union validates it. ``None`` for
    anything else (an error, a mismatched id, extra members), which the union then validates
    and judges as before. The union's validation costs ~3 µs in a warm loop but ~30 µs in the
    gateway, where its tables have left the CPU's caches between calls; these checks touch
    only the parsed members, and the tool's result is validated in full as the agent's
    ``CallToolResult`` (:func:`tether.mcp.results.for_agent`) either way."""
    if (
        type(parsed) is dict
        and len(parsed) == 3
        and parsed.get("jsonrpc") == "2.0"
        and parsed.get("id") == request_id
        and type(parsed.get("result")) is dict
    ):
        result = parsed["result"]
        return JSONRPCResponse.model_construct(jsonrpc="2.0", id=request_id, result=result)
    return None


def _answer(parsed: Any, request_id: str) -> Answer:
    if isinstance(parsed, JSONRPCResponse | JSONRPCError) and parsed.id == request_id:
        return parsed
    return _error(request_id, PARSE_ERROR, "the answer is not the request's")


def _error(request_id: str, code: int, message: str) -> JSONRPCError:
    return JSONRPCError.model_validate(
        {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}
    )


def _quietly() -> contextlib.suppress:
    """Suppress what a best-effort step may raise (a network, stream or protocol error)."""
    return contextlib.suppress(
        httpx2.HTTPError,
        ValidationError,
        anyio.BrokenResourceError,
        anyio.ClosedResourceError,
        OSError,
    )
