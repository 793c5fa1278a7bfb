"""The proxy's refusals and how each meets HTTP: one stable code, one status, one JSON shape.

Every answer the proxy makes itself is ``{"error": {"code", "message", …}}`` (the API's shape);
a verdict that refused a call adds ``"verdict"``. tether's own error codes
(:class:`~tether.core.errors.ErrorCode`) keep the API's statuses (``tether.api.errors``); the
codes below are the proxy's:

    400  invalid_path, invalid_query, query_not_allowed, invalid_body, invalid_arguments
    401  grant_missing                (and tether's missing_token / invalid_token)
    403  denied, approval_required    (with the verdict)
    404  route_not_found              (a request no route names is never forwarded)
    405  method_not_allowed
    413  payload_too_large
    502  upstream_unreachable, upstream_timeout, upstream_response_too_large,
         upstream_malformed, upstream_leaked_secret
                                      (the call was allowed; its effect is recorded as error)
    503  credential_unavailable, effect_not_recorded
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from starlette.responses import JSONResponse

from tether.api.errors import HTTP_STATUS
from tether.core.errors import ErrorCode, TetherError
from tether.core.scope import JSONValue
from tether.core.verdict import Decision, Verdict


class ProxyCode(StrEnum):
    # A code the proxy shares with tether's error tree has the tree's value (a test checks it).
    INVALID_PATH = "invalid_path"
    INVALID_QUERY = "invalid_query"
    QUERY_NOT_ALLOWED = "query_not_allowed"
    INVALID_BODY = "invalid_body"
    INVALID_ARGUMENTS = "invalid_arguments"
    GRANT_MISSING = "grant_missing"
    DENIED = "denied"
    APPROVAL_REQUIRED = "approval_required"
    ROUTE_NOT_FOUND = "route_not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UPSTREAM_UNREACHABLE = "upstream_unreachable"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    UPSTREAM_RESPONSE_TOO_LARGE = "upstream_response_too_large"
    UPSTREAM_LEAKED_SECRET = ErrorCode.UPSTREAM_LEAKED_SECRET.value
    UPSTREAM_MALFORMED = "upstream_malformed"
    CREDENTIAL_UNAVAILABLE = "credential_unavailable"
    EFFECT_NOT_RECORDED = "effect_not_recorded"


PROXY_STATUS: Final[dict[ProxyCode, int]] = {
    ProxyCode.INVALID_PATH: 400,
    ProxyCode.INVALID_QUERY: 400,
    ProxyCode.QUERY_NOT_ALLOWED: 400,
    ProxyCode.INVALID_BODY: 400,
    ProxyCode.INVALID_ARGUMENTS: 400,
    ProxyCode.GRANT_MISSING: 401,
    ProxyCode.DENIED: 403,
    ProxyCode.APPROVAL_REQUIRED: 403,
    ProxyCode.ROUTE_NOT_FOUND: 404,
    ProxyCode.METHOD_NOT_ALLOWED: 405,
    ProxyCode.PAYLOAD_TOO_LARGE: 413,
    ProxyCode.UPSTREAM_UNREACHABLE: 502,
    ProxyCode.UPSTREAM_TIMEOUT: 502,
    ProxyCode.UPSTREAM_RESPONSE_TOO_LARGE: 502,
    ProxyCode.UPSTREAM_LEAKED_SECRET: 502,
    ProxyCode.UPSTREAM_MALFORMED: 502,
    ProxyCode.CREDENTIAL_UNAVAILABLE: 503,
    ProxyCode.EFFECT_NOT_RECORDED: 503,
}


class Refused(Exception):
    """A request the proxy answers itself, before (or instead of) the upstream."""

    def __init__(self, code: ProxyCode, message: str, **extra: JSONValue) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra

    def __repr__(self) -> str:
        return f"Refused(code={self.code.value!r}, message={self.message!r})"


def _response(
    status: int, body: dict[str, JSONValue], headers: dict[str, str] | None = None
) -> JSONResponse:
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": 'Bearer realm="tether"'}
    return JSONResponse(body, status_code=status, headers=headers)


def refused_response(refusal: Refused) -> JSONResponse:
    error: dict[str, JSONValue] = {
        "code": refusal.code.value,
        "message": refusal.message,
        **refusal.extra,
    }
    headers = {"Allow": "GET, HEAD, POST, PUT, PATCH, DELETE"}
    return _response(
        PROXY_STATUS[refusal.code],
        {"error": error},
        headers if refusal.code is ProxyCode.METHOD_NOT_ALLOWED else None,
    )


def tether_error_response(error: TetherError) -> JSONResponse:
    """tether's own errors, at the statuses the API gives them."""
    return _response(
        HTTP_STATUS[error.code], {"error": {"code": error.code.value, "message": error.message}}
    )


def verdict_response(verdict: Verdict) -> JSONResponse:
    """A ``deny`` or ``approval_required`` verdict: 403, the reasons, and the verdict itself."""
    reasons = "; ".join(f"{r.code.value}: {r.message}" for r in verdict.reasons) or "denied"
    error: dict[str, JSONValue] = {
        "code": ProxyCode.DENIED.value,
        "message": f"denied by tether (decision {verdict.decision_id}): {reasons}",
        "decision_id": verdict.decision_id,
        "reasons": [r.to_json() for r in verdict.reasons],
    }
    if verdict.decision is Decision.APPROVAL_REQUIRED:
        error["code"] = ProxyCode.APPROVAL_REQUIRED.value
        error["approval_id"] = verdict.approval_id
        error["message"] = (
            f"approval required (decision {verdict.decision_id}): {reasons}. A human must "
            f"approve {verdict.approval_id}; then retry exactly this request with the header "
            f"X-Tether-Approval: {verdict.approval_id}"
            if verdict.approval_id is not None
            else f"approval required (decision {verdict.decision_id}): {reasons}; treat as a deny"
        )
    return _response(403, {"error": error, "verdict": verdict.to_json()})
