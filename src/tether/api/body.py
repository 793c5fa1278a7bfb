"""Where a request body enters the API: its size is bounded, and JSON is read by one strict reader.

Two rules hold for every route, so no route repeats them:

- **Size.** A body over :data:`MAX_BODY_BYTES` is ``413 payload_too_large`` whether it declares a
  ``Content-Length`` or comes chunked without one. :class:`BodyLimit` reads the whole body
  (at most the limit) before any route runs, so no route ever sees part of a body or fails
  half-way through reading one.
- **JSON.** Every JSON body a route parses goes through :func:`tether.core.strict_json.loads`
  (the I-JSON profile, RFC 7493): a repeated key at any depth is ``400 malformed_json`` (tether
  and the tool must never read different arguments), a string holding a lone UTF-16 surrogate
  is ``400 invalid_field`` (it cannot be stored, hashed into the audit chain or forwarded), and
  so is anything else that is not JSON. :class:`StrictJsonRoute` makes FastAPI read bodies with
  :class:`StrictJsonRequest`; the app uses it for every route.

The approval page's forms are not JSON: ``tether.api.ui.read_form`` decodes them as strict UTF-8
(which no surrogate survives) and refuses a repeated field, the same two rules for forms.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Final

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as AsgiScope

from tether.api.errors import RefusedBody, error_response
from tether.core import strict_json
from tether.core.errors import ErrorCode, InvalidRequest

MAX_BODY_BYTES: Final = 256 * 1024


class BodyTooLarge(Exception):
    """A body over the limit, declared or seen while reading."""


async def read_bounded(scope: AsgiScope, receive: Receive, limit: int) -> bytes | None:
    """The whole request body, at most ``limit`` bytes (:class:`BodyTooLarge` past it, declared
    or chunked), or ``None`` when the client left before sending it all."""
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                too_big = int(value) > limit
            except ValueError:
                too_big = True
            if too_big:
                raise BodyTooLarge
    # Read it all first (bounded by the limit): a chunked body has no length to check up
    # front, and a limit tripped while a route reads would surface as that route's error.
    chunks: list[bytes] = []
    seen = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None  # the client left; there is no one to answer
        if message["type"] != "http.request":
            continue
        chunk = message.get("body", b"")
        seen += len(chunk)
        if seen > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def too_large(limit: int) -> Response:
    """The ``413`` of a body over ``limit``."""
    return error_response(
        ErrorCode.PAYLOAD_TOO_LARGE, f"request bodies are limited to {limit} bytes"
    )


class BodyLimit:
    """Refuse bodies over the limit with ``413``, declared or chunked, before any route runs."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            body = await read_bounded(scope, receive, self.limit)
        except BodyTooLarge:
            await too_large(self.limit)(scope, receive, send)
            return
        if body is None:
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the client's disconnect, when it comes

        await self.app(scope, replay, send)


def read_json(body: bytes) -> Any:
    """A request body read by the strict reader, or the error that refuses it."""
    try:
        return strict_json.loads(body)
    except strict_json.NotUnicode as refused:
        raise InvalidRequest(str(refused), code=ErrorCode.INVALID_FIELD) from None
    except strict_json.JsonRefused as refused:
        raise InvalidRequest(str(refused), code=ErrorCode.MALFORMED_JSON) from None


class StrictJsonRequest(Request):
    """A request whose ``json()`` is the strict reader; FastAPI calls it for every JSON body."""

    _strict_json: Any

    async def json(self) -> Any:
        if not hasattr(self, "_strict_json"):
            body = await self.body()
            try:
                self._strict_json = read_json(body)
            except InvalidRequest as error:
                # FastAPI lets only an HTTPException out of its body reading (anything else
                # becomes a bare 400), so the refusal travels inside one to tether's handler.
                raise RefusedBody(error) from None
        return self._strict_json


class StrictJsonRoute(APIRoute):
    """An API route whose handler reads its body through :class:`StrictJsonRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict
