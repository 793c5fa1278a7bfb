"""Serve an ASGI app with uvicorn on 127.0.0.1 for a test (loopback only, ever)."""

from __future__ import annotations

import socketserver
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn
from starlette.types import ASGIApp, Receive


@contextmanager
def serve_asgi(app: ASGIApp, **options: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 (an OS-chosen port), with more of uvicorn's
    ``options`` if given; yield its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", **options)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.01)  # waiting for a socket to bind and upstreams to connect, not a clock
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


async def read_body(receive: Receive) -> bytes:
    """An ASGI request's whole body."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


class LosingProxy(socketserver.ThreadingTCPServer):
    """An HTTP/1.1 proxy on loopback to ``target`` that can lose answers: while ``losing`` is
    set, each request reaches ``target``, which acts on it, and its answer is dropped with the
    connection, as a dropped connection or a load balancer's timeout would."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, target: str) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.target = target
        self.losing = threading.Event()
        #: Answers lost so far.
        self.lost = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Forward(socketserver.StreamRequestHandler):
    server: LosingProxy

    def handle(self) -> None:
        while True:
            line = self.rfile.readline()
            if not line:
                return
            method, path, _ = line.decode("latin-1").split(" ", 2)
            headers: dict[str, str] = {}
            while (header := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
                name, value = header.decode("latin-1").split(":", 1)
                headers[name.strip().lower()] = value.strip()
            body = self.rfile.read(int(headers.get("content-length", "0")))
            forwarded = {k: v for k, v in headers.items() if k not in {"host", "connection"}}
            answer = httpx.request(
                method, self.server.target + path, headers=forwarded, content=body, timeout=30
            )
            if self.server.losing.is_set():
                self.server.lost += 1
                return  # the target acted; the caller never hears of it
            head = f"HTTP/1.1 {answer.status_code} {answer.reason_phrase}\r\n"
            head += f"content-type: {answer.headers.get('content-type', 'text/plain')}\r\n"
            head += f"content-length: {len(answer.content)}\r\n\r\n"
            self.wfile.write(head.encode("latin-1") + answer.content)
            self.wfile.flush()


@contextmanager
def losing_proxy(target: str) -> Iterator[LosingProxy]:
    """A :class:`LosingProxy` to ``target``, served on a thread while the block runs."""
    server = LosingProxy(target)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
