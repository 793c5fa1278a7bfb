"""The served OpenAPI document tells the truth: bearer security schemes, the real error body on
every error status, and none of FastAPI's ``422 HTTPValidationError``, which tether never sends."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

ERROR_REF = "#/components/schemas/ErrorOut"
METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture
def document(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def test_no_422_and_no_validation_error_schema_anywhere(document: dict[str, Any]) -> None:
    for method, path, operation in _operations(document):
        assert "422" not in operation["responses"], f"{method} {path}"
    text = json.dumps(document)
    assert "HTTPValidationError" not in text
    assert '"ValidationError"' not in text


def test_the_bearer_schemes_are_declared(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["svid"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": schemes["svid"]["description"],
    }
    assert schemes["approverToken"]["type"] == "http"
    assert schemes["approverToken"]["scheme"] == "bearer"


def test_routes_name_the_token_they_take(document: dict[str, Any]) -> None:
    security = {(m, p): op.get("security") for m, p, op in _operations(document)}
    assert security[("POST", "/v1/authorize")] == [{"svid": []}]
    assert security[("POST", "/access/v1/evaluation")] == [{"svid": []}]
    assert security[("POST", "/v1/approvals/{approval_id}/approve")] == [{"approverToken": []}]
    # The task's agent or an approver may ask for break-glass: either scheme will do.
    assert security[("POST", "/v1/tasks/{task_id}/breakglass")] == [
        {"svid": []},
        {"approverToken": []},
    ]
    assert security[("GET", "/healthz")] is None
    # The token is the security scheme's, not a free-form header parameter.
    for method, path, operation in _operations(document):
        names = {p["name"].lower() for p in operation.get("parameters", [])}
        assert "authorization" not in names, f"{method} {path}"


def test_every_error_response_is_the_error_envelope(document: dict[str, Any]) -> None:
    for method, path, operation in _operations(document):
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": ERROR_REF}, f"{method} {path} {status}"
    envelope = document["components"]["schemas"]["ErrorOut"]
    assert envelope["required"] == ["error"]
    body = document["components"]["schemas"][envelope["properties"]["error"]["$ref"].split("/")[-1]]
    assert set(body["required"]) == {"code", "message"}


def test_each_route_lists_the_statuses_it_answers(document: dict[str, Any]) -> None:
    for method, path, operation in _operations(document):
        statuses = set(operation["responses"])
        assert "413" in statuses, f"{method} {path}: the body limit runs before every route"
        assert "500" not in statuses, f"{method} {path}: tether never answers 500 on purpose"
        if operation.get("security"):
            assert {"401", "403"} <= statuses, f"{method} {path}"
        if operation.get("parameters") or "requestBody" in operation:
            assert "400" in statuses, f"{method} {path}"
    responses = {(m, p): set(op["responses"]) for m, p, op in _operations(document)}
    assert responses[("POST", "/v1/effects")] == {
        "201",
        "400",
        "401",
        "403",
        "404",
        "409",
        "413",
        "503",
    }
    assert responses[("GET", "/healthz")] == {"200", "413"}
