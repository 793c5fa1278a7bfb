"""The HTTP edge's body rules, over real HTTP on every door that takes a body.

A lone UTF-16 surrogate anywhere in a JSON body is ``400 invalid_field`` (it used to reach the
store and answer an unaudited 500); a repeated key at any depth is ``400 malformed_json`` (it
used to be decided on the last value); a chunked body over the limit is ``413`` (it used to be
400); a ``405`` names the allowed methods in ``Allow``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from support import INTENT, Agent
from tether.runtime import Runtime

SCOPE = {"tool": "crm.query", "actions": ["read"], "datasets": ["crm"]}
LONE = "\\ud800"  # a JSON escape: the body's bytes are plain ASCII


def _post(client: httpx.Client, path: str, raw: str, headers: dict[str, str]) -> httpx.Response:
    return client.post(
        path,
        content=raw.encode("ascii"),
        headers={**headers, "Content-Type": "application/json"},
    )


def _refused(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["message"]
    return str(error["message"])


@pytest.fixture
def grant(analyst: Agent) -> str:
    return str(analyst.open_task([SCOPE]).json()["grant"])


@pytest.fixture
def approver(runtime: Runtime) -> dict[str, str]:
    return {"Authorization": f"Bearer {runtime.approvers.add('alice')}"}


def _authorize(grant: str, args: str) -> str:
    return (
        f'{{"grant": "{grant}", "tool": "crm.query", "action": "read", "dataset": "crm", '
        f'"args": {args}}}'
    )


def _evaluation(analyst_id: str, grant: str, args: str) -> str:
    return (
        f'{{"subject": {{"type": "agent", "id": "{analyst_id}", '
        f'"properties": {{"grant": "{grant}"}}}}, "action": {{"name": "read"}}, '
        f'"resource": {{"type": "tool", "id": "crm.query", '
        f'"properties": {{"dataset": "crm", "args": {args}}}}}}}'
    )


ANALYST = "spiffe://tether.local/agent/analyst"


def _audit_count(runtime: Runtime) -> int:
    return len(list(runtime.store.audit_records()))


# -- lone surrogates (issue 14, item 7) ---------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        f'{{"q": "{LONE}"}}',
        f'{{"{LONE}": 1}}',
        f'{{"q": ["ok", {{"deep": "a{LONE}b"}}]}}',
        '{"q": "\\udfff\\ud800"}',  # a low surrogate before a high one is no pair either
    ],
)
def test_a_lone_surrogate_in_authorize_args_is_400(
    analyst: Agent, grant: str, runtime: Runtime, args: str
) -> None:
    before = _audit_count(runtime)
    response = _post(analyst.client, "/v1/authorize", _authorize(grant, args), analyst.headers)
    message = _refused(response, 400, "invalid_field")
    assert "surrogate" in message
    # Refused at the edge, before a decision: nothing half-written to the audit chain.
    assert _audit_count(runtime) == before


def test_the_message_names_the_field(analyst: Agent, grant: str) -> None:
    response = _post(
        analyst.client, "/v1/authorize", _authorize(grant, f'{{"to": "{LONE}"}}'), analyst.headers
    )
    assert "'args.to'" in _refused(response, 400, "invalid_field")
    key = _post(
        analyst.client, "/v1/authorize", _authorize(grant, f'{{"{LONE}": 1}}'), analyst.headers
    )
    assert "a key of field 'args'" in _refused(key, 400, "invalid_field")


def test_a_surrogate_pair_is_text_and_still_decided(analyst: Agent, grant: str) -> None:
    response = _post(
        analyst.client,
        "/v1/authorize",
        _authorize(grant, '{"q": "\\ud83d\\ude00"}'),  # U+1F600 as a pair: valid
        analyst.headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["decision"] == "allow"


def test_a_lone_surrogate_in_a_constraint_or_the_intent_is_400(analyst: Agent) -> None:
    scopes = (
        '[{"tool": "crm.query", "actions": ["read"], "datasets": ["crm"], '
        f'"constraints": {{"q": {{"one_of": ["a", "{LONE}"]}}}}}}]'
    )
    body = f'{{"intent": {json.dumps(INTENT)}, "scopes": {scopes}}}'
    message = _refused(
        _post(analyst.client, "/v1/tasks", body, analyst.headers), 400, "invalid_field"
    )
    assert "scopes[0].constraints.q.one_of[1]" in message
    intent = dict(INTENT, purpose="PLACEHOLDER")
    body = json.dumps({"intent": intent, "scopes": [SCOPE]}).replace("PLACEHOLDER", LONE)
    _refused(_post(analyst.client, "/v1/tasks", body, analyst.headers), 400, "invalid_field")


def test_a_lone_surrogate_on_the_authzen_door_is_400(analyst: Agent, grant: str) -> None:
    body = _evaluation(ANALYST, grant, f'{{"q": "{LONE}"}}')
    _refused(
        _post(analyst.client, "/access/v1/evaluation", body, analyst.headers), 400, "invalid_field"
    )
    batch = f'{{"evaluations": [{body}]}}'
    _refused(
        _post(analyst.client, "/access/v1/evaluations", batch, analyst.headers),
        400,
        "invalid_field",
    )
    context = body[:-1] + f', "context": {{"time": "{LONE}"}}}}'
    _refused(
        _post(analyst.client, "/access/v1/evaluation", context, analyst.headers),
        400,
        "invalid_field",
    )


def test_a_lone_surrogate_on_approver_routes_is_400(
    analyst: Agent, approver: dict[str, str]
) -> None:
    task_id = analyst.open_task([SCOPE]).json()["task_id"]
    scope = (
        '{"tool": "crm.query", "actions": ["read"], "datasets": ["crm"], '
        f'"constraints": {{"q": {{"one_of": ["{LONE}"]}}}}}}'
    )
    breakglass = f'{{"scopes": [{scope}], "reason": "the CRM is down"}}'
    _refused(
        _post(analyst.client, f"/v1/tasks/{task_id}/breakglass", breakglass, approver),
        400,
        "invalid_field",
    )
    # Typed text fields say the same, from the same check.
    revoke = f'{{"agent": "{ANALYST}", "reason": "x{LONE}"}}'
    message = _refused(
        _post(analyst.client, "/v1/agents/revoke", revoke, approver), 400, "invalid_field"
    )
    assert "'reason'" in message and "surrogate" in message


def test_a_surrogate_in_an_approval_form_is_refused_not_500(
    client: httpx.Client, approver: dict[str, str]
) -> None:
    # Forms are strict UTF-8: the UTF-8 bytes of a surrogate (ED A0 80) never decode.
    response = client.post(
        "/ui/login",
        content=b"csrf=x&token=%ED%A0%80",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert 400 <= response.status_code < 500, response.text


def test_raw_surrogate_bytes_are_not_utf8_and_are_400(analyst: Agent, grant: str) -> None:
    raw = (
        _authorize(grant, '{"q": "SURROGATE"}')
        .encode("ascii")
        .replace(b"SURROGATE", b"\xed\xa0\x80")
    )
    response = analyst.client.post(
        "/v1/authorize",
        content=raw,
        headers={**analyst.headers, "Content-Type": "application/json"},
    )
    _refused(response, 400, "malformed_json")


# -- duplicate keys (issue 14, item 11) ---------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        '{"amount": 1, "amount": 5000}',
        '{"to": {"addr": "a@example.com", "addr": "evil@attacker.test"}}',
        '{"items": [{"id": 1, "id": 2}]}',
    ],
)
def test_a_repeated_argument_key_is_refused_at_any_depth(
    analyst: Agent, grant: str, runtime: Runtime, args: str
) -> None:
    before = _audit_count(runtime)
    response = _post(analyst.client, "/v1/authorize", _authorize(grant, args), analyst.headers)
    message = _refused(response, 400, "malformed_json")
    assert "twice" in message
    assert _audit_count(runtime) == before


def test_a_repeated_top_level_field_is_refused(analyst: Agent, grant: str) -> None:
    body = _authorize(grant, "{}")[:-1] + ', "tool": "payments.transfer"}'
    _refused(_post(analyst.client, "/v1/authorize", body, analyst.headers), 400, "malformed_json")
    intent = json.dumps(INTENT)
    task = f'{{"intent": {intent}, "scopes": [{json.dumps(SCOPE)}], "intent": {intent}}}'
    _refused(_post(analyst.client, "/v1/tasks", task, analyst.headers), 400, "malformed_json")


def test_repeated_keys_on_the_authzen_and_approver_doors(
    analyst: Agent, grant: str, approver: dict[str, str]
) -> None:
    body = _evaluation(ANALYST, grant, '{"q": 1, "q": 2}')
    _refused(
        _post(analyst.client, "/access/v1/evaluation", body, analyst.headers), 400, "malformed_json"
    )
    twice = '{"reason": "a", "reason": "b"}'
    _refused(
        _post(analyst.client, f"/v1/approvals/apr_{'0' * 26}/deny", twice, approver),
        400,
        "malformed_json",
    )


def test_the_same_key_in_two_objects_is_fine(analyst: Agent, grant: str) -> None:
    response = _post(
        analyst.client,
        "/v1/authorize",
        _authorize(grant, '{"a": {"k": 1}, "b": {"k": 2}}'),
        analyst.headers,
    )
    assert response.status_code == 200, response.text


# -- sizes and methods (issue 14, item 12) ------------------------------------------------------


def _chunks(total: int) -> Iterator[bytes]:
    yield b'{"grant": "'
    sent = 0
    while sent < total:
        yield b"x" * 16384
        sent += 16384
    yield b'"}'


def test_a_chunked_body_over_the_limit_is_413(analyst: Agent) -> None:
    response = analyst.client.post(
        "/v1/authorize",
        content=_chunks(300 * 1024),  # an iterator: sent chunked, with no Content-Length
        headers={**analyst.headers, "Content-Type": "application/json"},
    )
    assert "content-length" not in response.request.headers
    _refused(response, 413, "payload_too_large")


def test_a_chunked_body_under_the_limit_is_read(analyst: Agent, grant: str) -> None:
    body = _authorize(grant, "{}").encode("ascii")
    response = analyst.client.post(
        "/v1/authorize",
        content=iter([body[:10], body[10:]]),
        headers={**analyst.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text


def test_a_405_names_the_allowed_methods(client: httpx.Client) -> None:
    response = client.delete("/v1/tasks")
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert response.json()["error"]["code"]
    # Two routes share /ui/login (GET shows the form, POST signs in): Allow names both.
    shared = client.put("/ui/login")
    assert shared.status_code == 405
    assert {m.strip() for m in shared.headers["Allow"].split(",")} == {"GET", "POST"}
