"""The lean channel's HTTP/1.1 client for a plain ``http://`` streamable HTTP upstream: each
``tools/call`` POST written in one piece on a keep-alive connection of its own pool, the answer
parsed by httptools (uvicorn's C parser, a declared dependency) and handed back as an ``httpx``
response, which :mod:`tether.mcp.lean_upstream` reads exactly as it reads one from ``httpx``'s
client (status, content type, JSON or an SSE stream, content encodings).

Why: on loopback ``httpx``'s client spends ~0.35 ms of CPU on one such POST, this ~0.05 ms
(``bench/mcp_gateway.py``). The SDK's transport (``initialize``, listings, the GET stream, every
other request) keeps ``httpx``, and so does the lean channel for an upstream this client does
not serve (:func:`serves`): TLS (``https://``, ``httpx``'s TLS settings), a user named in the
URL or a proxy named in the environment (``httpx``'s auth and proxy rules).

What it does as ``httpx``'s pool does: an idle connection is reused only if the upstream has
not closed it (any byte or end of stream while idle makes it unusable) and it has been idle for
less than :data:`KEEPALIVE_EXPIRY` seconds; a connection goes back to the pool only after a
complete answer without ``Connection: close``; a POST is never sent twice. Failures raise the
``httpx`` error for them (``ConnectError``, ``WriteError``, ``ReadError``,
``RemoteProtocolError``), which the channel maps like any other.
"""

from __future__ import annotations

import asyncio
import os
import select
import socket
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Final, cast

import httptools
import httpx2

#: As ``httpx``'s pool: an idle connection older than this is closed, not reused.
KEEPALIVE_EXPIRY: Final = 5.0
#: Idle connections kept per upstream session.
MAX_IDLE: Final = 16
#: Received answer bytes held before reading from the socket pauses (the reader is behind).
_HIGH_WATER: Final = 1024 * 1024
_PROXY_VARIABLES: Final = ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def serves(url: str, environ: Mapping[str, str] | None = None) -> bool:
    """Is ``url`` one this client serves: plain ``http://``, no user in it (``httpx`` would
    send it as basic auth) and no proxy in the environment (``httpx`` would send it through
    one)?"""
    env = os.environ if environ is None else environ
    parsed = httpx2.URL(url)
    return (
        parsed.scheme == "http"
        and not parsed.userinfo
        and not any(env.get(v) for v in _PROXY_VARIABLES)
    )


def _readable(transport: asyncio.Transport) -> bool:
    """Has an idle connection's socket anything to read (the upstream closed it, or sent what
    nobody asked for), not yet seen by the event loop? As httpcore checks before reusing one."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return True
    poll = select.poll()
    poll.register(sock.fileno(), select.POLLIN)
    return bool(poll.poll(0))


class _Answer:
    """One answer as the parser finds it (httptools callbacks)."""

    def __init__(self, parser_owner: _Connection) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.started = False  # status line and headers read
        self.complete = False
        self.keep_alive = False
        #: The body's end is marked (a length, or chunks), not the end of the stream.
        self.framed = False
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.error: Exception | None = None
        self._owner = parser_owner

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self.framed = True

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.started = True
        self._owner.wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        self._owner.wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()
        self._owner.wake()


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: at most one request on it at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.dead = False
        self.idle_since = 0.0
        self.answer: _Answer | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        answer = self.answer
        if answer is None or answer.complete:
            self._kill()  # bytes nobody asked for: never reuse this connection
            return
        try:
            answer.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(httpx2.RemoteProtocolError(f"malformed HTTP answer: {error}"))
            return
        if answer.buffered > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.dead = True
        answer = self.answer
        if answer is not None and not answer.complete and answer.error is None:
            if answer.started and not answer.framed:
                answer.complete = True  # a body delimited by the end of the stream
            else:
                answer.error = httpx2.ReadError("the upstream closed the connection")
        self.wake()

    # -- the request's side ----------------------------------------------------------------

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Until the parser or the connection has news for the request."""
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def consumed(self, size: int) -> None:
        answer = self.answer
        if answer is None:
            return
        answer.buffered -= size
        if self._paused and answer.buffered <= _HIGH_WATER // 2 and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    def _fail(self, error: Exception) -> None:
        if self.answer is not None and self.answer.error is None:
            self.answer.error = error
        self._kill()
        self.wake()

    def _kill(self) -> None:
        self.dead = True
        if self.transport is not None:
            self.transport.close()

    def close(self) -> None:
        self._kill()


class _Body(httpx2.AsyncByteStream):
    """An answer's body as it arrives; closing it gives the connection back or closes it."""

    def __init__(self, pool: LeanHttp, connection: _Connection, answer: _Answer) -> None:
        self._pool = pool
        self._connection = connection
        self._answer = answer
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        answer, connection = self._answer, self._connection
        while True:
            while answer.chunks:
                chunk = answer.chunks.popleft()
                connection.consumed(len(chunk))
                yield chunk
            if answer.complete:
                return
            if answer.error is not None:
                raise answer.error
            await connection.wait()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        answer, connection = self._answer, self._connection
        connection.answer = None
        if answer.complete and answer.keep_alive and answer.error is None and not answer.chunks:
            self._pool.release(connection)
        else:
            connection.close()


class LeanHttp:
    """The pool of one upstream session's lean connections (see the module)."""

    def __init__(self, url: str) -> None:
        parsed = httpx2.URL(url)
        self._host = parsed.host
        self._port = parsed.port or 80
        target = parsed.raw_path.decode("ascii")
        self._head = f"POST {target} HTTP/1.1\r\nhost: {parsed.netloc.decode('ascii')}\r\n"
        #: What each answer names as its request (httpx's errors and SSE reader read it):
        #: where it went; the headers and body sent are not kept.
        self._request = httpx2.Request("POST", url)
        self._idle: list[_Connection] = []
        #: Connections opened (tests and operators see they are reused).
        self.opened = 0

    async def post(self, headers: Mapping[str, str], body: bytes) -> httpx2.Response:
        """POST ``body`` with ``headers``; the answer once its status and headers are read
        (its body streams: close it, as an ``httpx`` streamed response)."""
        connection = self._reusable() or await self._connect()
        answer = connection.answer = _Answer(connection)
        fields = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        if fields.count("\n") != len(headers) or "\r" in fields.replace("\r\n", ""):
            raise httpx2.LocalProtocolError("a header holds a line break")
        head = f"{self._head}{fields}content-length: {len(body)}\r\n\r\n"
        transport = connection.transport
        try:
            if transport is None or transport.is_closing():
                raise httpx2.WriteError("the connection closed")
            transport.write(head.encode("latin-1") + body)
            while not answer.started:
                if answer.error is not None:
                    raise answer.error
                await connection.wait()
        except BaseException:
            connection.answer = None
            connection.close()
            raise
        return httpx2.Response(
            answer.status,
            headers=answer.headers,
            stream=_Body(self, connection, answer),
            request=self._request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    def _reusable(self) -> _Connection | None:
        now = asyncio.get_running_loop().time()
        while self._idle:
            connection = self._idle.pop()
            transport = connection.transport
            if (
                not connection.dead
                and transport is not None
                and not transport.is_closing()
                and now - connection.idle_since < KEEPALIVE_EXPIRY
                and not _readable(transport)
            ):
                return connection
            connection.close()
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _transport, connection = await loop.create_connection(
                _Connection, self._host, self._port
            )
        except OSError as error:
            raise httpx2.ConnectError(f"{type(error).__name__} connecting") from None
        self.opened += 1
        return connection

    def release(self, connection: _Connection) -> None:
        if connection.dead or len(self._idle) >= MAX_IDLE:
            connection.close()
            return
        connection.idle_since = asyncio.get_running_loop().time()
        self._idle.append(connection)

    def close(self) -> None:
        """Close every idle connection (the session ends)."""
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
