"""Wrappers in front of FastAPI's own middleware (:mod:`tether.api.front`)."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from tether.api.front import add_front


def _tagging(tag: str, seen: list[str]) -> object:
    def wrap(inner: ASGIApp) -> ASGIApp:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await inner(scope, receive, send)
                return
            seen.append(tag)
            if scope["path"] == f"/{tag}":
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": tag.encode()})
                return
            await inner(scope, receive, send)

        return app

    return wrap


def test_the_last_wrapper_added_is_outermost_and_others_pass_through() -> None:
    app = FastAPI()
    seen: list[str] = []

    @app.middleware("http")
    async def fastapis(request, call_next):  # type: ignore[no-untyped-def]
        seen.append("middleware")
        return await call_next(request)

    @app.get("/route")
    def route() -> dict[str, str]:
        return {"ok": "yes"}

    add_front(app, _tagging("inner", seen))  # type: ignore[arg-type]
    add_front(app, _tagging("outer", seen))  # type: ignore[arg-type]
    with TestClient(app) as client:
        assert client.get("/inner").text == "inner"
        assert seen == ["outer", "inner"]  # answered in front: no middleware of FastAPI's ran
        seen.clear()
        assert client.get("/route").json() == {"ok": "yes"}
        assert seen == ["outer", "inner", "middleware"]


def test_nothing_is_put_in_front_once_the_app_has_started() -> None:
    app = FastAPI()
    with TestClient(app) as client:
        client.get("/missing")
        with pytest.raises(RuntimeError, match="after the application has started"):
            add_front(app, _tagging("late", []))  # type: ignore[arg-type]
