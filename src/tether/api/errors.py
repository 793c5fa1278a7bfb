"""The one place the error tree meets HTTP: every code has a status, every error a JSON body.

Errors are ``{"error": {"code", "message"}}``. A bad token is ``401``, never a ``500``. A method
a route does not take is ``405`` with an ``Allow`` header naming the ones it does (RFC 9110
section 15.5.6).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from tether.core.errors import ErrorCode, InvalidRequest, TetherError
from tether.logs import get_logger

log = get_logger("tether.api")

HTTP_STATUS: Final[dict[ErrorCode, int]] = {
    ErrorCode.MALFORMED_JSON: 400,
    ErrorCode.INVALID_FIELD: 400,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.UNKNOWN_CONSTRAINT: 400,
    ErrorCode.INVALID_CONSTRAINT: 400,
    ErrorCode.INVALID_SCOPE: 400,
    ErrorCode.MISSING_TOKEN: 401,
    ErrorCode.INVALID_TOKEN: 401,
    ErrorCode.NOTHING_GRANTED: 403,
    ErrorCode.GRANT_NOT_BOUND: 403,
    ErrorCode.NOT_TASK_OWNER: 403,
    ErrorCode.DEV_ISSUER_REFUSED: 403,
    ErrorCode.NOT_AN_APPROVER: 403,
    ErrorCode.DELEGATION_WIDENS: 403,
    ErrorCode.DELEGATION_TOO_DEEP: 403,
    ErrorCode.AGENT_REVOKED: 403,
    ErrorCode.NOT_A_GATEWAY: 403,
    ErrorCode.TASK_NOT_FOUND: 404,
    ErrorCode.DECISION_NOT_FOUND: 404,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.APPROVAL_NOT_FOUND: 404,
    ErrorCode.BREAKGLASS_NOT_FOUND: 404,
    ErrorCode.LEASE_NOT_FOUND: 404,
    ErrorCode.TASK_NOT_OPEN: 409,
    ErrorCode.EFFECT_ALREADY_REPORTED: 409,
    ErrorCode.EVENT_REPLAYED: 409,
    ErrorCode.APPROVAL_NOT_PENDING: 409,
    ErrorCode.BUDGET_EXCEEDED: 409,
    ErrorCode.LEASE_NOT_RENEWABLE: 409,
    ErrorCode.STORE_UNAVAILABLE: 503,
    ErrorCode.CREDENTIAL_UNAVAILABLE: 503,
    ErrorCode.UPSTREAM_LEAKED_SECRET: 502,
    ErrorCode.AUDIT_UNAVAILABLE: 503,
    ErrorCode.POLICY_UNAVAILABLE: 503,
    ErrorCode.PDP_UNAVAILABLE: 503,
    ErrorCode.INTERNAL: 500,
    ErrorCode.CONFIGURATION: 500,
    ErrorCode.POLICY_INVALID: 500,
}


class RefusedBody(StarletteHTTPException):
    """A request body refused while FastAPI reads it (``tether.api.body``): FastAPI lets only an
    ``HTTPException`` out of its body reading, so the error travels inside one."""

    def __init__(self, error: InvalidRequest) -> None:
        super().__init__(HTTP_STATUS[error.code], error.message)
        self.error = error


def error_response(code: ErrorCode, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if HTTP_STATUS[code] == 401 else None
    return JSONResponse(
        {"error": {"code": code.value, "message": message}},
        status_code=HTTP_STATUS[code],
        headers=headers,
    )


def describe_validation(problems: Sequence[Any]) -> tuple[ErrorCode, str]:
    """The code and message of a body that failed its model (pydantic's error list, as
    FastAPI's ``RequestValidationError`` or pydantic's ``ValidationError`` gives it)."""
    if any(p.get("type") == "json_invalid" for p in problems):
        return ErrorCode.MALFORMED_JSON, "the request body is not valid JSON"
    first = problems[0] if problems else {}
    loc = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    kind = first.get("type", "")
    if kind == "extra_forbidden":
        return ErrorCode.INVALID_FIELD, f"unknown field {loc!r}; see /openapi.json"
    if kind == "missing":
        return ErrorCode.INVALID_FIELD, f"field {loc!r} is required"
    if kind in {"model_attributes_type", "dict_type"} and not loc:
        return ErrorCode.MALFORMED_JSON, "the request body must be a JSON object"
    message = str(first.get("msg", "invalid value"))
    return ErrorCode.INVALID_FIELD, f"field {loc!r}: {message}" if loc else message


def _allowed_methods(request: Request) -> str:
    """Every method some route takes on this path (two routes may share a path, as GET and
    POST ``/ui/login`` do)."""
    probe = {
        "type": "http",
        "path": request.scope["path"],
        "root_path": request.scope.get("root_path", ""),
        "method": request.method,
    }
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(probe)
        if match is not Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TetherError)
    async def _tether(_: Request, exc: TetherError) -> JSONResponse:
        return error_response(exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        code, message = describe_validation(exc.errors())
        return error_response(code, message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc, RefusedBody):
            return error_response(exc.error.code, exc.error.message)
        if exc.status_code == 404:
            return error_response(ErrorCode.NOT_FOUND, "no such route; see /openapi.json")
        if exc.status_code == 405:
            allow = _allowed_methods(request)
            response = error_response(
                ErrorCode.INVALID_FIELD, f"method not allowed on this route; use {allow}"
            )
            response.status_code = 405
            response.headers["Allow"] = allow
            return response
        if exc.status_code == 413:
            return error_response(ErrorCode.PAYLOAD_TOO_LARGE, "the request body is too large")
        return error_response(ErrorCode.INVALID_FIELD, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected_error", error_type=type(exc).__name__)
        return error_response(ErrorCode.INTERNAL, "tether hit an internal error; see its log")
