"""The OpenAPI document says what the server really answers (OpenAPI 3.1, Responses Object).

- Each operation names its bearer security scheme (``tether.api.bearer``: ``svid`` or
  ``approverToken``), from the dependency that checks the caller.
- Each operation lists every error status it can answer, with the one error body tether sends,
  ``{"error": {"code", "message"}}`` (:class:`~tether.api.models.ErrorOut`). The table below is
  the single place those lists live; :func:`document_errors` refuses to build an app with a
  route it does not list, so a new route cannot ship undocumented.
- FastAPI's ``422 HTTPValidationError`` is removed: tether never sends it (bad input is
  ``400`` with a stable code, ``tether.api.errors``).

The lists follow from how requests are handled, in this order: ``413`` on every route (the body
limit runs before routing); ``400`` where a route takes a body, a path id or a query; ``401`` and
``403`` where it takes a token (``403``: a workload on an approver route, a revoked agent, the
development issuer refused in production, a service's own refusal); ``404``/``409`` where the
service it calls can answer them; ``503`` where it reaches the store. The schemathesis run in
``tests/api`` checks every answer against these lists.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from fastapi import FastAPI
from fastapi.routing import APIRoute

from tether.api.models import ErrorOut
from tether.core.errors import ConfigurationError

_DESCRIPTIONS: Final[dict[int, str]] = {
    400: "Bad input: malformed JSON or a repeated key (malformed_json), an unknown, missing or "
    "invalid field, or a string that is not Unicode text (invalid_field), an invalid scope or "
    "constraint.",
    401: "No bearer token, or one that does not verify (missing_token, invalid_token).",
    403: "A verified caller asking for what it may not have (e.g. not_an_approver, "
    "agent_revoked, nothing_granted, subject_mismatch, grant_not_bound, not_a_gateway).",
    404: "The named task, decision, approval, break-glass request, lease or agent is not "
    "there for this caller.",
    409: "The request clashes with the current state (e.g. task_not_open, "
    "approval_not_pending, effect_already_reported, event_replayed).",
    413: "The body is over 256 KiB (declared or chunked), or args or a batch over its limit "
    "(payload_too_large).",
    503: "A store, the audit log or the policy set cannot be used now; retry later.",
}

_EVERYWHERE: Final = frozenset({413})
_AGENT: Final = frozenset({400, 401, 403, 413, 503})
_APPROVER: Final = _AGENT

#: Every error status each operation can answer (success statuses come from the route).
ERROR_STATUSES: Final[dict[tuple[str, str], frozenset[int]]] = {
    ("GET", "/healthz"): _EVERYWHERE,
    ("GET", "/readyz"): _EVERYWHERE | {503},
    ("POST", "/v1/tasks"): _AGENT,
    ("POST", "/v1/tasks/{task_id}/delegate"): _AGENT | {404, 409},
    ("POST", "/v1/tasks/{task_id}/close"): _AGENT | {404, 409},
    ("POST", "/v1/authorize"): _AGENT | {409},
    ("POST", "/v1/effects"): _AGENT | {404, 409},
    ("POST", "/v1/observations"): _AGENT | {409},
    ("GET", "/v1/identity"): _AGENT,
    ("GET", "/v1/grant"): _AGENT,
    ("POST", "/v1/gateway/events"): _AGENT | {409},
    ("GET", "/v1/approvals"): _APPROVER,
    ("GET", "/v1/approvals/{approval_id}"): _APPROVER | {404},
    ("POST", "/v1/approvals/{approval_id}/approve"): _APPROVER | {404, 409},
    ("POST", "/v1/approvals/{approval_id}/deny"): _APPROVER | {404, 409},
    ("GET", "/v1/approvals/{approval_id}/status"): _AGENT | {404},
    ("POST", "/access/v1/evaluation"): _AGENT | {409},
    ("POST", "/access/v1/evaluations"): _AGENT | {409},
    ("GET", "/.well-known/authzen-configuration"): _EVERYWHERE,
    ("POST", "/v1/tasks/{task_id}/breakglass"): _AGENT | {404, 409},
    ("GET", "/v1/breakglass"): _APPROVER,
    ("GET", "/v1/breakglass/{breakglass_id}"): _APPROVER | {404},
    ("POST", "/v1/breakglass/{breakglass_id}/approve"): _APPROVER | {404, 409},
    ("POST", "/v1/breakglass/{breakglass_id}/deny"): _APPROVER | {404, 409},
    ("POST", "/v1/breakglass/{breakglass_id}/review"): _APPROVER | {404, 409},
    ("POST", "/v1/agents/revoke"): _APPROVER,
    ("POST", "/v1/agents/restore"): _APPROVER | {404},
    ("GET", "/v1/agents/revoked"): (_APPROVER - {400}),
    ("GET", "/.well-known/jwks.json"): _EVERYWHERE | {404},
    ("POST", "/v1/leases/introspect"): _AGENT,
    ("GET", "/v1/tasks/{task_id}/leases"): _AGENT | {404},
    ("POST", "/v1/leases/{lease_id}/revoke"): _AGENT | {404, 409},
}

_ERROR_REF: Final = "#/components/schemas/ErrorOut"
_UNSENT: Final = ("422",)
_UNSENT_SCHEMAS: Final = ("HTTPValidationError", "ValidationError")


def _error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": _DESCRIPTIONS[status],
        "content": {"application/json": {"schema": {"$ref": _ERROR_REF}}},
    }
    if status == 401:
        response["headers"] = {
            "WWW-Authenticate": {
                "description": "Bearer (RFC 6750 section 3).",
                "schema": {"type": "string"},
            }
        }
    return response


def document_errors(app: FastAPI) -> None:
    """Give every documented route its error responses from :data:`ERROR_STATUSES`, and make
    the app's ``openapi()`` drop what tether never sends. Call after every route is added."""
    for route in app.routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        for method in sorted(route.methods or ()):
            statuses = ERROR_STATUSES.get((method, route.path))
            if statuses is None:
                raise ConfigurationError(
                    f"{method} {route.path} has no error statuses in tether.api.openapi"
                )
            route.responses = {
                **route.responses,
                **{status: _error_response(status) for status in sorted(statuses)},
            }
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            _finish(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override


def _finish(document: dict[str, Any]) -> None:
    """Drop what tether never sends; add the error envelope the error responses refer to (they
    are set on routes after FastAPI built them, so FastAPI does not collect the model)."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            for status in _UNSENT:
                operation.get("responses", {}).pop(status, None)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name in _UNSENT_SCHEMAS:
        schemas.pop(name, None)
    envelope = ErrorOut.model_json_schema(
        ref_template="#/components/schemas/{model}", mode="serialization"
    )
    schemas.update(envelope.pop("$defs", {}))
    schemas[ErrorOut.__name__] = envelope
