"""ASGI wrappers put in *front* of a FastAPI application, outside FastAPI's own middleware.

FastAPI wraps every request in middleware of its own (the server-error page, exception
telemetry, its body limit) before the application's. The hot operations (``POST /v1/authorize``,
``POST /v1/effects``, :mod:`tether.api.hotpath`) need none of it: they read their bounded body,
answer every error themselves and never raise. Measured in process, those layers cost about 8 µs
per request. So what must see those operations (the hot path itself, and the request observer
that carries a caller's trace context and times an authorize) is put in front, in the order
added, the last outermost; every other request passes through to FastAPI as before.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from starlette.types import ASGIApp

Wrapper = Callable[[ASGIApp], ASGIApp]


def add_front(app: FastAPI, wrapper: Wrapper) -> None:
    """Put ``wrapper`` in front of everything ``app`` holds so far, FastAPI's middleware too.
    Starlette builds the stack on the first request; before it, as for its middleware."""
    if app.middleware_stack is not None:
        raise RuntimeError("cannot add to the front after the application has started")
    build = app.build_middleware_stack

    def built() -> ASGIApp:
        return wrapper(build())

    app.build_middleware_stack = built  # type: ignore[method-assign]


__all__ = ["Wrapper", "add_front"]
