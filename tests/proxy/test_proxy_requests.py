"""Requests that must never reach the upstream: path tricks, odd methods, queries and bodies the
route does not allow, oversized or ambiguous input. Paths are sent byte for byte (http.client):
httpx would normalize some of them away before they left the test."""

from __future__ import annotations

import pytest

from proxy.harness import CRM_QUERY, CRM_UPDATE, PAY, Env


@pytest.mark.parametrize(
    "raw_path",
    [
        "/legacy/customers/../admin",
        "/legacy/customers/%2e%2e/admin",
        "/legacy/customers/%2E%2E",
        "/legacy/customers/..;/admin",
        "/legacy/./customers/c-1",
        "/../legacy/customers/c-1",
        "/legacy/customers/c-1%2F..%2F..%2Fadmin",
        "/legacy/status%2F500",  # would match /status/{code} once decoded
        "/legacy/customers/c%5c1",
        "/legacy/customers/a\\b",
        "/legacy//customers/c-1",
        "/legacy/customers/%zz",
        "/legacy/customers/%00",
        "/legacy/customers/%ff",
    ],
)
def test_path_tricks_are_refused_and_never_forwarded(env: Env, raw_path: str) -> None:
    analyst = env.agent("analyst", CRM_QUERY)
    hits = env.legacy.hits
    status, body = env.raw("GET", raw_path, analyst.headers())
    assert status == 400, (raw_path, body)
    assert body["error"]["code"] == "invalid_path"
    assert env.legacy.hits == hits


def test_parameters_are_re_encoded_for_the_upstream(env: Env) -> None:
    analyst = env.agent("analyst", CRM_QUERY)
    status, body = env.raw("GET", "/legacy/customers/caf%C3%A9%20au%20lait", analyst.headers())
    assert status == 200, body
    assert env.legacy.seen[-1].raw_path == "/api/customers/caf%C3%A9%20au%20lait"
    status, _ = env.raw("GET", "/legacy/customers/a;b=c", analyst.headers())
    assert status == 200 and env.legacy.seen[-1].raw_path == "/api/customers/a%3Bb%3Dc"


@pytest.mark.parametrize("method", ["TRACE", "OPTIONS", "PROPFIND", "CONNECT"])
def test_odd_methods_are_refused(env: Env, method: str) -> None:
    analyst = env.agent("analyst", CRM_QUERY)
    hits = env.legacy.hits
    status, body = env.raw(method, "/legacy/customers/c-1", analyst.headers())
    assert status == 405
    assert body["error"]["code"] == "method_not_allowed"
    assert env.legacy.hits == hits


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("limit=1&limit=500", "invalid_query"),  # parsers disagree on which one counts
        ("debug=true", "query_not_allowed"),
        ("limit=ten", "invalid_arguments"),
        ("limit=%zz", "invalid_query"),
    ],
)
def test_queries_the_route_does_not_allow_are_refused(env: Env, query: str, code: str) -> None:
    analyst = env.agent("analyst", CRM_QUERY)
    hits = env.legacy.hits
    response = analyst.call("GET", f"/legacy/customers/c-1?{query}")
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == code
    assert env.legacy.hits == hits


@pytest.mark.parametrize(
    ("content", "content_type", "code"),
    [
        (b'{"amount": 5, "amount": 5000}', "application/json", "invalid_body"),
        (b'{"amount": NaN}', "application/json", "invalid_body"),
        (b'{"amount": 5, "memo": "\\ud800"}', "application/json", "invalid_body"),
        (b'{"amount": 5, "x": {"k": 1, "k": 2}}', "application/json", "invalid_body"),
        (b"[5]", "application/json", "invalid_body"),
        (b"amount=5", "application/x-www-form-urlencoded", "invalid_body"),
        (b'{"amount": "5"}', "application/json", "invalid_arguments"),
        (b'{"amount": 5.5}', "application/json", "invalid_arguments"),
    ],
)
def test_bodies_that_could_be_read_two_ways_are_refused(
    env: Env, content: bytes, content_type: str, code: str
) -> None:
    analyst = env.agent("analyst", PAY)
    hits = env.legacy.hits
    response = analyst.call(
        "POST", "/legacy/payments", content=content, headers={"Content-Type": content_type}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == code
    assert env.legacy.hits == hits


def test_a_get_with_a_body_is_refused(env: Env) -> None:
    analyst = env.agent("analyst", CRM_QUERY)
    hits = env.legacy.hits
    response = analyst.call("GET", "/legacy/customers/c-1", content=b'{"customer": "c-2"}')
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_body"
    assert env.legacy.hits == hits


def test_request_bodies_are_bounded(env: Env) -> None:
    helper = env.agent("helper", CRM_UPDATE)
    hits = env.legacy.hits
    big = b'{"discount": 1, "note": "' + b"x" * (1024 * 1024) + b'"}'
    declared = helper.call(
        "PUT", "/legacy/tickets/T-1", content=big, headers={"Content-Type": "application/json"}
    )
    assert declared.status_code == 413 and declared.json()["error"]["code"] == "payload_too_large"

    def chunks():  # type: ignore[no-untyped-def]
        for i in range(0, len(big), 65536):
            yield big[i : i + 65536]

    streamed = helper.call(
        "PUT", "/legacy/tickets/T-1", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
    assert env.legacy.hits == hits


def test_health_needs_no_credentials(env: Env) -> None:
    response = env.client.get("/.tether/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
