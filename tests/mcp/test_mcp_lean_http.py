"""The lean channel's HTTP/1.1 client (tether.mcp.lean_http), against a real uvicorn server on
loopback: answers read whole and streamed, keep-alive connections reused only while sound, a
POST never sent twice, failures raised as httpx's errors; and through the gateway, a streamable
HTTP upstream's calls going over it with the upstream's credential."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import anyio
import httpx2
import pytest
from loopback import read_body, serve_asgi
from mcp.shared.exceptions import MCPError
from mcp_harness import MAIL, MAIL_TOKEN, Gw, connect, run, text_of
from starlette.types import Receive, Scope, Send

from tether.mcp.lean_http import LeanHttp, serves
from tether.mcp.lean_upstream import HttpRoute, LeanChannel, Relay, SessionIdWatch

HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


@dataclass
class Seen:
    """What the test server received: each request's body and the client port it came from."""

    bodies: list[bytes] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)


def echo_app(seen: Seen):  # type: ignore[no-untyped-def]
    """Answers a POST with its own body as JSON; ``?sse`` as an SSE stream sent in pieces,
    ``?close`` with ``Connection: close``, ``?short`` with a body shorter than it said."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        seen.bodies.append(body)
        seen.ports.append(scope["client"][1])
        query = scope["query_string"]
        headers = [(b"content-type", b"application/json")]
        if query == b"sse":
            start = {"type": "http.response.start", "status": 200}
            await send({**start, "headers": [(b"content-type", b"text/event-stream")]})
            for piece in (b"event: message\ndata: ", body, b"\n\n"):
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        if query == b"close":
            headers.append((b"connection", b"close"))
        if query == b"short":
            headers.append((b"content-length", str(len(body) + 10).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


@contextmanager
def serving(**options: object) -> Iterator[tuple[str, Seen]]:
    seen = Seen()
    with serve_asgi(echo_app(seen), **options) as base:
        yield base, seen


async def post(pool: LeanHttp, body: bytes) -> tuple[int, bytes]:
    response = await pool.post(HEADERS, body)
    try:
        return response.status_code, await response.aread()
    finally:
        await response.aclose()


def test_calls_reuse_one_keep_alive_connection() -> None:
    with serving() as (base, seen):
        pool = LeanHttp(f"{base}/mcp")

        async def scenario() -> list[tuple[int, bytes]]:
            try:
                return [await post(pool, f'{{"n":{n}}}'.encode()) for n in range(5)]
            finally:
                pool.close()

        answers = run(scenario)
    assert answers == [(200, f'{{"n":{n}}}'.encode()) for n in range(5)]
    assert seen.bodies == [f'{{"n":{n}}}'.encode() for n in range(5)]
    assert pool.opened == 1 and len(set(seen.ports)) == 1


def test_an_sse_answer_streams_and_its_connection_is_reused() -> None:
    with serving() as (base, _seen):
        pool = LeanHttp(f"{base}/mcp?sse")

        async def scenario() -> list[list[str]]:
            events = []
            try:
                for body in (b'{"a":1}', b'{"b":2}'):
                    response = await pool.post(HEADERS, body)
                    try:
                        events.append([e.data async for e in httpx2.EventSource(response)])
                    finally:
                        await response.aclose()
            finally:
                pool.close()
            return events

        answers = run(scenario)
    assert answers == [['{"a":1}'], ['{"b":2}']]
    assert pool.opened == 1


def test_an_answer_saying_connection_close_is_not_reused() -> None:
    with serving() as (base, seen):
        pool = LeanHttp(f"{base}/mcp?close")

        async def scenario() -> list[tuple[int, bytes]]:
            try:
                return [await post(pool, b"{}") for _ in range(3)]
            finally:
                pool.close()

        assert run(scenario) == [(200, b"{}")] * 3
    assert pool.opened == 3 and len(set(seen.ports)) == 3


def test_a_connection_the_upstream_closed_while_idle_is_not_reused_nor_the_post_resent() -> None:
    # uvicorn closes a keep-alive connection idle for timeout_keep_alive seconds.
    with serving(timeout_keep_alive=0.05) as (base, seen):
        pool = LeanHttp(f"{base}/mcp")

        async def scenario() -> list[tuple[int, bytes]]:
            try:
                first = await post(pool, b'{"first":1}')
                with anyio.fail_after(10):  # until the server has closed it (a condition)
                    while not all(c.dead for c in pool._idle):
                        await anyio.sleep(0.01)
                return [first, await post(pool, b'{"second":2}')]
            finally:
                pool.close()

        answers = run(scenario)
    assert answers == [(200, b'{"first":1}'), (200, b'{"second":2}')]
    assert seen.bodies == [b'{"first":1}', b'{"second":2}']  # each sent once
    assert pool.opened == 2


def test_an_answer_cut_short_is_a_read_error_and_its_connection_is_dropped() -> None:
    with serving() as (base, seen):
        short = LeanHttp(f"{base}/mcp?short")

        async def scenario() -> None:
            try:
                with pytest.raises(httpx2.ReadError):
                    await post(short, b'{"x":1}')
                assert short._idle == []
            finally:
                short.close()

        run(scenario)
    assert seen.bodies == [b'{"x":1}']


def test_no_upstream_listening_is_a_connect_error() -> None:
    with serving() as (base, _seen):
        pass  # the server stopped: nothing listens on its port now
    pool = LeanHttp(f"{base}/mcp")

    async def scenario() -> None:
        with pytest.raises(httpx2.ConnectError):
            await post(pool, b"{}")

    run(scenario)


def test_a_header_holding_a_line_break_is_refused_and_nothing_is_sent() -> None:
    with serving() as (base, seen):
        pool = LeanHttp(f"{base}/mcp")

        async def scenario() -> None:
            try:
                for value in ("a\r\nx-injected: 1", "a\nb", "a\rb"):
                    with pytest.raises(httpx2.LocalProtocolError):
                        await pool.post({**HEADERS, "mcp-session-id": value}, b"{}")
            finally:
                pool.close()

        run(scenario)
    assert seen.bodies == []


def test_only_plain_http_without_a_proxy_is_served() -> None:
    assert serves("http://127.0.0.1:8080/mcp", {})
    assert not serves("https://mail.example.com/mcp", {})
    assert not serves("http://user:secret@127.0.0.1:8080/mcp", {})
    for variable in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        assert not serves("http://127.0.0.1:8080/mcp", {variable: "http://proxy.test:3128"})


def test_the_channel_reads_an_answer_from_the_lean_client_as_from_httpx() -> None:
    """The same JSON-RPC answer through LeanChannel, with and without the lean client."""
    with serving() as (base, seen):

        async def scenario() -> list[object]:
            results = []
            async with httpx2.AsyncClient() as client:
                for lean in (LeanHttp(f"{base}/mcp"), None):
                    route = HttpRoute(client, f"{base}/mcp", SessionIdWatch(), lean)
                    channel = LeanChannel(Relay(lambda _m: None), None, "2025-11-25", route)
                    # The test server answers the request's own body: a JSON-RPC request is
                    # not an answer, so the channel must say so the same way both times.
                    try:
                        await channel.request("tools/call", {"name": "x"}, 5)
                    except Exception as error:  # compared below
                        results.append((type(error).__name__, str(error)))
                    if lean is not None:
                        lean.close()
            return results

        lean_result, httpx_result = run(scenario)
    assert lean_result == httpx_result
    assert [json.loads(b)["method"] for b in seen.bodies] == ["tools/call", "tools/call"]


def test_a_gateway_sends_an_http_upstreams_calls_over_one_connection_with_its_credential(
    gw: Gw,
) -> None:
    sender = gw.grant("sender", MAIL)
    before_calls, before_refused = len(gw.mail.call_ports), gw.mail.refused

    async def scenario() -> list[object]:
        async with connect(gw.url, sender) as client:
            return [
                await client.call_tool("email.send", {"to": "bob@example.com", "subject": f"{n}"})
                for n in range(4)
            ]

    results = run(scenario)
    assert all(not r.is_error for r in results), [text_of(r) for r in results]  # type: ignore[attr-defined]
    ports = gw.mail.call_ports[before_calls:]
    assert len(ports) == 4 and len(set(ports)) == 1
    assert gw.mail.refused == before_refused  # each carried the credential
    assert MAIL_TOKEN not in str([r.model_dump() for r in results])  # type: ignore[attr-defined]


def test_a_lean_request_cancelled_while_waiting_drops_its_connection() -> None:
    """A timed-out request leaves no connection half read in the pool."""

    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await receive()
        await asyncio.sleep(3600)  # never answers; the client gives up

    with serve_asgi(slow, timeout_graceful_shutdown=1) as base:
        pool = LeanHttp(f"{base}/mcp")

        async def scenario() -> None:
            with anyio.move_on_after(0.2):
                await pool.post(HEADERS, b"{}")
            assert pool._idle == [] and pool.opened == 1

        run(scenario)


#: Answers the test server gives (``ID`` is the request's id), and what the channel makes of
#: each: the result object, or the error's (code, message). The common answer is read without
#: the message union; everything else is validated by the union as before.
ANSWERS: dict[str, tuple[str, object]] = {
    "plain": ('{"jsonrpc":"2.0","id":ID,"result":{"content":[],"n":1}}', {"content": [], "n": 1}),
    "extra member": ('{"jsonrpc":"2.0","id":ID,"result":{"n":1},"x":2}', {"n": 1}),
    "past 64 bits": (
        '{"jsonrpc":"2.0","id":ID,"result":{"n":1180591620717411303424}}',
        {"n": 2**70},
    ),
    "an error": (
        '{"jsonrpc":"2.0","id":ID,"error":{"code":-32000,"message":"boom"}}',
        (-32000, "boom"),
    ),
    "another id": (
        '{"jsonrpc":"2.0","id":"tether-99","result":{}}',
        (-32700, "the answer is not the request's"),
    ),
    "a result not an object": (
        '{"jsonrpc":"2.0","id":ID,"result":[1]}',
        (-32700, "Failed to parse JSON response"),
    ),
    "another version": (
        '{"jsonrpc":"1.0","id":ID,"result":{}}',
        (-32700, "Failed to parse JSON response"),
    ),
    "not JSON": ("{", (-32700, "Failed to parse JSON response")),
}


@pytest.mark.parametrize("case", ANSWERS)
def test_the_channel_reads_each_answer_as_the_message_union_does(case: str) -> None:
    template, expected = ANSWERS[case]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request_id = json.loads(await read_body(receive))["id"]
        body = template.replace("ID", json.dumps(request_id)).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    with serve_asgi(app) as base:

        async def scenario() -> object:
            async with httpx2.AsyncClient() as client:
                lean = LeanHttp(f"{base}/mcp")
                route = HttpRoute(client, f"{base}/mcp", SessionIdWatch(), lean)
                channel = LeanChannel(Relay(lambda _m: None), None, "2025-11-25", route)
                try:
                    return await channel.request("tools/call", {"name": "x"}, 5)
                except MCPError as error:
                    return (error.error.code, error.error.message)
                finally:
                    lean.close()

        assert run(scenario) == expected
