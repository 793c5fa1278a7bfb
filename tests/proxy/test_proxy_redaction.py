"""An upstream that hands the injected secret back, in any form an echo gives it, has it taken out of
whatever the proxy can rewrite whole (header values, a body that came uncoded, the status line,
which never passes), as the MCP gateway does: ``[redacted:NAME]`` in its place, a correct
``Content-Length``, and a ``secret_redacted`` record naming where, the secret's name, forms and
count, never the value. An answer without the secret passes byte for byte."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from proxy.harness import (
    CLEAN_BODY,
    CLEAN_HEADER,
    CRM_QUERY,
    ECHO_FORM_NAMES,
    ECHO_FORMS,
    MIRROR_SECRET,
    UTF8_HEADER,
    Env,
    serve,
)
from tether.core.audit import AuditKind, verify_chain
from tether.core.ids import IdFactory
from tether.core.redact import Redactor
from tether.proxy import DECISION_HEADER, EgressProxy
from tether.proxy.app import proxy_app

MARKER = "[redacted:mirror-key]"
CREDENTIAL = f"Bearer {MIRROR_SECRET}".encode()  # what /mirror hands back
SCANNER = Redactor([("mirror-key", MIRROR_SECRET.encode())])


def _clean(response: httpx.Response) -> None:
    """Nothing the agent got holds the secret, in any form."""
    assert not SCANNER.holds(response.content)
    for name, value in response.headers.raw:
        assert not SCANNER.holds(name + b": " + value)


def _redactions(env: Env, response: httpx.Response) -> list[dict[str, Any]]:
    """The ``secret_redacted`` records of the call ``response`` answered; none holds a form of
    the secret."""
    decision_id = response.headers[DECISION_HEADER]
    records = [
        r.body
        for r in env.records(AuditKind.SECRET_REDACTED)
        if r.body["decision_id"] == decision_id
    ]
    for record in records:
        assert not SCANNER.holds(json.dumps(record).encode())
        assert record["via"] == "egress_proxy" and record["tool"] == "crm.query"
        assert record["risks"] == ["ASI03"]
    return records


def _effect(env: Env, response: httpx.Response) -> dict[str, Any]:
    decision_id = response.headers[DECISION_HEADER]
    [effect] = [
        r.body for r in env.records(AuditKind.EFFECT) if r.body["decision_id"] == decision_id
    ]
    return effect


@pytest.mark.parametrize("form", sorted(ECHO_FORMS))
def test_each_form_in_the_body_is_redacted(env: Env, form: str) -> None:
    analyst = env.agent("analyst", CRM_QUERY)
    response = analyst.call("GET", f"/mirror/leak/in-body-{form}")
    assert response.status_code == 200, response.text
    _clean(response)
    body = response.content
    assert body.startswith(b'{"echo": "') and body.endswith(b'"}') and MARKER.encode() in body
    # Content-Length is the redacted body's, not the upstream's.
    sent = b'{"echo": "' + ECHO_FORMS[form](CREDENTIAL) + b'"}'
    assert int(response.headers["content-length"]) == len(body) != len(sent)
    [record] = _redactions(env, response)
    assert record["upstream"] == "mirror" and record["where"] == "body"
    [secret] = record["secrets"]
    assert secret["name"] == "mirror-key" and secret["count"] == 1
    assert set(secret["forms"]) <= ECHO_FORM_NAMES[form] and len(secret["forms"]) == 1
    effect = _effect(env, response)
    assert effect["status"] == "ok" and effect["bytes"] == len(body)


@pytest.mark.parametrize("form", sorted(ECHO_FORMS))
def test_each_form_in_a_header_value_is_redacted(env: Env, form: str) -> None:
    analyst = env.agent("analyst", CRM_QUERY)
    response = analyst.call("GET", f"/mirror/leak/in-header-{form}")
    assert response.status_code == 200, response.text
    _clean(response)
    assert MARKER in response.headers["x-echo"]
    assert response.headers["x-plain"] == "kept" and response.json() == {"ok": True}
    [record] = _redactions(env, response)
    assert record["where"] == "header:x-echo"
    [secret] = record["secrets"]
    assert secret["name"] == "mirror-key" and secret["count"] == 1
    assert set(secret["forms"]) <= ECHO_FORM_NAMES[form] and len(secret["forms"]) == 1


@pytest.mark.parametrize(
    ("path", "where", "forms"),
    [
        ("/mirror/leak/json", "body", ["raw+json"]),  # as PHP's json_encode escapes it
        ("/mirror/leak/hex", "body", ["hex"]),
        ("/mirror/leak/header-b64", "header:x-echo", ["base64"]),
        ("/mirror/leak/header-raw", "header:x-debug-auth", ["raw"]),
        ("/mirrorq/leak/url", "body", ["raw+percent"]),
    ],
)
def test_echoes_the_proxy_used_to_withhold_are_redacted(
    env: Env, path: str, where: str, forms: list[str]
) -> None:
    analyst = env.agent("analyst", CRM_QUERY)
    response = analyst.call("GET", path)
    assert response.status_code in {200, 404}, response.text
    _clean(response)
    assert MARKER in response.text or MARKER in str(response.headers.multi_items())
    [record] = _redactions(env, response)
    assert record["where"] == where
    assert record["secrets"] == [{"name": "mirror-key", "forms": forms, "count": 1}]


def test_a_raw_echo_is_replaced_exactly_and_the_rest_kept(env: Env) -> None:
    analyst = env.agent("analyst", CRM_QUERY)
    response = analyst.call("GET", "/mirror/leak/in-body-raw")
    assert response.content == b'{"echo": "Bearer ' + MARKER.encode() + b'"}'
    binary = analyst.call("GET", "/mirror/leak/binary")  # not UTF-8 around it
    assert binary.content == b"\xff\x00Bearer " + MARKER.encode() + b"\xfe\x01"


def test_a_query_secret_echoed_in_an_error_page_is_redacted(env: Env) -> None:
    """The upstream quotes the URL it was asked for, the query secret percent-encoded; the
    404 goes back as it was, less the secret, and is recorded as an error effect."""
    analyst = env.agent("analyst", CRM_QUERY)
    response = analyst.call("GET", "/mirrorq/leak/url")
    assert response.status_code == 404, response.text
    assert quote(MIRROR_SECRET, safe="") in env.legacy.seen[-1].query  # it did get the secret
    _clean(response)
    assert response.json() == {"error": "no such page", "url": f"/mirror/leak/url?api_key={MARKER}"}
    [record] = _redactions(env, response)
    assert record["where"] == "body" and record["secrets"][0]["forms"] == ["raw+percent"]
    assert _effect(env, response)["status"] == "error"


def test_a_redirect_location_carrying_the_secret_is_redacted(env: Env) -> None:
    analyst = env.agent("analyst", CRM_QUERY)
    response = analyst.call("GET", "/mirrorq/leak/redirect")
    assert response.status_code == 302
    assert response.headers["location"] == f"/login?api_key={MARKER}"
    # The whole URL encoded once more as a next= parameter (%252B …) is found as well.
    again = analyst.call("GET", "/mirrorq/leak/redirect-next")
    assert again.status_code == 302
    _clean(again)
    assert again.headers["location"].startswith("/login?next=%2Fmirror%2Fleak%2F")
    assert again.headers["location"].endswith(MARKER)
    for answer in (response, again):
        [record] = _redactions(env, answer)
        assert record["where"] == "header:location"
        assert record["secrets"][0]["forms"] == ["raw+percent"]


def test_several_echoes_in_one_body_are_counted_by_form(env: Env) -> None:
    analyst = env.agent("analyst", CRM_QUERY)
    response = analyst.call("GET", "/mirror/leak/many")
    _clean(response)
    bearer = b"Bearer ".hex()  # the hex of the scheme is no secret
    assert response.content == f"Bearer {MARKER} {bearer}{MARKER} Bearer {MARKER}".encode()
    [record] = _redactions(env, response)
    assert record["secrets"] == [{"name": "mirror-key", "forms": ["hex", "raw"], "count": 3}]


def test_a_large_body_is_redacted_off_the_event_loop_alike(env: Env) -> None:
    analyst = env.agent("analyst", CRM_QUERY)
    response = analyst.call("GET", "/mirrorbig/leak/big")
    assert response.status_code == 200, response.text
    _clean(response)
    assert len(response.content) > 300_000
    assert response.content.startswith(b"Bearer " + MARKER.encode() + b"aaa")
    [record] = _redactions(env, response)
    assert record["secrets"][0]["forms"] == ["raw", "raw+percent"]
    assert record["secrets"][0]["count"] == 2


def test_a_session_cookie_and_a_header_named_with_the_secret_are_dropped_and_recorded(
    env: Env,
) -> None:
    analyst = env.agent("analyst", CRM_QUERY)
    cookie = analyst.call("GET", "/mirror/leak/cookie")
    assert cookie.status_code == 200 and "set-cookie" not in cookie.headers
    [record] = _redactions(env, cookie)
    assert record["where"] == "header:set-cookie"
    assert record["secrets"][0]["forms"][0] in {"base64url", "base64"}
    named = analyst.call("GET", "/mirror/leak/header-name")
    assert named.status_code == 200
    _clean(named)
    assert named.headers["x-plain"] == "kept"
    assert [n for n, _ in named.headers.raw if n.startswith(b"x-") and n != b"x-plain"] == [
        b"x-tether-decision"
    ]
    [record] = _redactions(env, named)
    assert record["where"] == "header_name"  # the name itself is never quoted
    assert record["secrets"][0]["forms"] == ["hex"]


def test_a_reason_phrase_echoing_the_secret_never_reaches_the_agent(env: Env) -> None:
    """A real HTTP/1.1 server writes the credential into its reason phrase; the agent gets the
    status with the proxy's own phrase, and the echo is recorded."""
    analyst = env.agent("analyst", CRM_QUERY)
    response = analyst.call("GET", "/reason/anything")
    assert response.status_code == 401 and response.reason_phrase == "Unauthorized"
    _clean(response)
    [record] = _redactions(env, response)
    assert record["upstream"] == "reason" and record["where"] == "status_line"
    assert record["secrets"] == [{"name": "mirror-key", "forms": ["raw+percent"], "count": 1}]


def test_an_answer_without_a_body_has_its_headers_redacted(env: Env) -> None:
    analyst = env.agent("analyst", CRM_QUERY)
    response = analyst.call("GET", "/mirror/leak/no-content")
    assert response.status_code == 204 and response.content == b""
    assert response.headers["x-echo"] == f"Bearer {MARKER}"
    head = analyst.call("HEAD", "/mirror/leak/in-header-hex")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["x-echo"] == b"Bearer ".hex() + MARKER
    for answer in (response, head):
        [record] = _redactions(env, answer)
        assert record["where"] == "header:x-echo"


def test_a_clean_answer_passes_byte_for_byte(env: Env) -> None:
    """Not UTF-8, a near miss of the secret, escapes that are no secret, a Latin-1 header: what
    the upstream sent is what the agent gets, and nothing is recorded as redacted."""
    analyst = env.agent("analyst", CRM_QUERY)
    response = analyst.call("GET", "/mirror/leak/clean")
    assert response.status_code == 200
    assert response.content == CLEAN_BODY
    assert dict(response.headers.raw)[b"content-disposition"] == CLEAN_HEADER
    assert int(response.headers["content-length"]) == len(CLEAN_BODY)
    assert _redactions(env, response) == []
    utf8 = analyst.call("GET", "/mirror/leak/utf8-header")
    assert utf8.status_code == 200, utf8.text
    assert dict(utf8.headers.raw)[b"x-note"] == UTF8_HEADER
    # The same through an upstream with no secret to search for (nothing to redact at all).
    legacy = analyst.call("GET", "/legacy/customers/c-9")
    assert legacy.json() == {"id": "c-9", "items": [{"order": i} for i in range(3)]}
    assert _redactions(env, legacy) == []


def test_redactions_are_logged_by_name_never_by_value(
    env: Env, debug_logs: None, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    analyst = env.agent("analyst", CRM_QUERY)
    answers = [analyst.call("GET", f"/mirror/leak/in-body-{form}") for form in sorted(ECHO_FORMS)]
    answers.append(analyst.call("GET", "/mirror/leak/in-header-base64-1"))
    answers.append(analyst.call("GET", "/mirror/leak/header-name"))
    assert {a.status_code for a in answers} == {200}
    out, err = capfd.readouterr()
    logged = out + err + caplog.text
    assert "secret_redacted" in logged and "mirror-key" in logged
    assert not SCANNER.holds(logged.encode())
    report = verify_chain(env.runtime.store.audit_records(), env.runtime.store.chain_head())
    assert report.ok, report.problem


def test_an_answer_whose_redaction_cannot_be_audited_is_withheld(env: Env) -> None:
    """A proxy whose audit ids repeat: its second redaction record is refused by the store (a
    real one, the same id twice), so that answer is withheld, 503, never passed unrecorded."""
    stuck = replace(env.proxy.deps, ids=IdFactory(lambda n: b"\x07" * n))
    proxy = EgressProxy(env.proxy.config, stuck)
    with serve(proxy_app(proxy)) as url, httpx.Client(base_url=url, timeout=15) as client:
        analyst = env.agent("analyst", CRM_QUERY)
        first = client.get("/mirror/leak/in-body-hex", headers=analyst.headers())
        assert first.status_code == 200 and MARKER in first.text
        second = client.get("/mirror/leak/in-body-hex", headers=analyst.headers())
    assert second.status_code == 503, second.text
    error = second.json()["error"]
    assert error["code"] == "effect_not_recorded"
    assert not SCANNER.holds(second.content) and MARKER not in second.text
    [effect] = [
        r.body
        for r in env.records(AuditKind.EFFECT)
        if r.body["decision_id"] == error["decision_id"]
    ]
    assert effect["status"] == "error" and effect["bytes"] == 0
