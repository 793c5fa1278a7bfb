"""The HTTP side of observability: ``GET /metrics``, and a middleware that times authorize
requests and joins a caller's trace.

``/metrics`` needs no credentials, like ``/healthz``: it shows counts, durations, tool names and
reason codes, never a token, an id or an argument. Turn it off with ``tether serve --no-metrics``
(``RuntimeConfig.metrics``) when the listener is reachable from where such counts should not be,
or keep it and block the path at the load balancer.

The middleware reads only the W3C trace context headers (``traceparent``, ``tracestate``) of a
request: an enforcement point that traces its tool calls sees tether's spans inside its own
trace. Other headers, the Authorization header above all, are never copied.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio.to_thread
from opentelemetry import context as otel_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as AsgiScope

from tether.observability import Observability
from tether.observability.metrics import CONTENT_TYPE, Metrics
from tether.service.ports import Clock
from tether.store.sql import SqlStore

if TYPE_CHECKING:  # only `tether serve` has a FastAPI app; the gateway and proxy never import it
    from fastapi import FastAPI

METRICS_PATH = "/metrics"
AUTHORIZE_PATH = "/v1/authorize"

_TRACE_HEADERS = frozenset({b"traceparent", b"tracestate"})
_propagator = TraceContextTextMapPropagator()


class ObserveRequests:
    """ASGI middleware: the caller's trace context for the request, and the time an authorize
    request takes from its first byte in to its last byte out."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope.get("headers", [])
            if name in _TRACE_HEADERS
        }
        token = otel_context.attach(_propagator.extract(carrier)) if carrier else None
        timed = scope.get("path") == AUTHORIZE_PATH and scope.get("method") == "POST"
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            if timed:
                self.metrics.authorize_request(time.perf_counter() - started)
            if token is not None:
                otel_context.detach(token)


def install_observability(
    app: FastAPI,
    observability: Observability,
    store: SqlStore,
    clock: Clock,
    *,
    front: Callable[[Callable[[ASGIApp], ASGIApp]], None],
    metrics: bool = True,
) -> None:
    """Put the request observer in ``front`` of ``app`` (outside every middleware, so that it
    sees the hot operations served ahead of FastAPI's own) and, when ``metrics``, add ``GET
    /metrics`` with the store's gauges."""
    metered = observability.metrics
    front(lambda inner: ObserveRequests(inner, metrics=metered))
    if not metrics:
        return
    observability.metrics.watch_store(store, clock)

    @app.get(METRICS_PATH, include_in_schema=False)
    def scrape() -> Response:
        return Response(observability.metrics.exposition(), media_type=CONTENT_TYPE)


class ServeMetrics:
    """ASGI: ``GET /metrics`` answered here, before authentication and routing; everything else
    to ``app``. The MCP gateway and the egress proxy serve their scrape through it, so the path
    is never handed to an upstream."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") != METRICS_PATH:
            await self.app(scope, receive, send)
            return
        response: Response
        if scope.get("method") not in {"GET", "HEAD"}:
            error = {"code": "method_not_allowed", "message": "use GET /metrics"}
            response = JSONResponse({"error": error}, status_code=405, headers={"allow": "GET"})
        else:
            # The scrape reads the store's gauges: off the event loop.
            body = await anyio.to_thread.run_sync(self.metrics.exposition)
            response = Response(body, media_type=CONTENT_TYPE)
        await response(scope, receive, send)
