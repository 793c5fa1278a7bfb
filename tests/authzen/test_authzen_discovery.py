"""AuthZEN Policy Decision Point Metadata, request identifiers, and the OpenAPI document."""

from __future__ import annotations

from authzen_shapes import Pdp, subject, tool

REQUEST_ID = "bfe9eb29-ab87-4ca3-be83-a1d5d8305716"


def test_the_metadata_document_names_the_evaluation_endpoints(pdp: Pdp) -> None:
    # Policy Decision Point Metadata Request: a plain GET, no credentials.
    response = pdp.client.get("/.well-known/authzen-configuration")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert "max-age" in response.headers["cache-control"]
    base = str(pdp.client.base_url).rstrip("/")
    assert response.json() == {
        "policy_decision_point": base,
        "access_evaluation_endpoint": f"{base}/access/v1/evaluation",
        "access_evaluations_endpoint": f"{base}/access/v1/evaluations",
    }  # no search endpoints: their absence tells the PEP tether offers none


def test_a_pep_can_follow_the_metadata_to_a_decision(pdp: Pdp) -> None:
    endpoint = pdp.client.get("/.well-known/authzen-configuration").json()[
        "access_evaluation_endpoint"
    ]
    body = {
        "subject": subject(pdp.grant()),
        "action": {"name": "read"},
        "resource": tool("crm.query", "crm"),
    }
    response = pdp.client.post(endpoint, json=body, headers=pdp.analyst.headers)
    assert response.json()["decision"] is True


def test_the_request_id_is_echoed_on_every_answer_of_these_routes(pdp: Pdp) -> None:
    headers = {"X-Request-ID": REQUEST_ID}
    unauthenticated = pdp.client.post("/access/v1/evaluation", json={}, headers=headers)
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["x-request-id"] == REQUEST_ID
    too_big = pdp.client.post(
        "/access/v1/evaluations",
        content=b"{" + b" " * (300 * 1024) + b"}",
        headers={**headers, **pdp.analyst.headers, "content-type": "application/json"},
    )
    assert too_big.status_code == 413
    assert too_big.headers["x-request-id"] == REQUEST_ID
    metadata = pdp.client.get("/.well-known/authzen-configuration", headers=headers)
    assert metadata.headers["x-request-id"] == REQUEST_ID
    # Other routes are not AuthZEN's: left as they were.
    assert "x-request-id" not in pdp.client.get("/healthz", headers=headers).headers
    assert "x-request-id" not in pdp.client.get("/.well-known/authzen-configuration").headers


def test_the_openapi_document_lists_the_authzen_routes(pdp: Pdp) -> None:
    spec = pdp.client.get("/openapi.json").json()
    paths = spec["paths"]
    assert paths["/access/v1/evaluation"]["post"]["tags"] == ["authzen"]
    assert paths["/access/v1/evaluations"]["post"]["tags"] == ["authzen"]
    assert paths["/.well-known/authzen-configuration"]["get"]["tags"] == ["authzen"]
    schemas = spec["components"]["schemas"]
    assert {"subject", "action", "resource", "context"} <= set(
        schemas["EvaluationIn"]["properties"]
    )
    assert {"evaluations", "options"} <= set(schemas["EvaluationsIn"]["properties"])
    assert "403" in paths["/access/v1/evaluation"]["post"]["responses"]
