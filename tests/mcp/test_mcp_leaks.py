"""A result that echoes the credential the gateway injects for an upstream never reaches the
agent, in whatever form it comes back (issue: no secret ever returned)."""

from __future__ import annotations

import base64
import urllib.parse

import pytest
from mcp_harness import MAIL, MAIL_TOKEN, Gw, records
from test_mcp_calls import call

from tether.core.audit import AuditKind


@pytest.mark.parametrize("encoding", ["raw", "base64", "hex", "percent"])
def test_a_result_echoing_the_injected_credential_is_withheld(gw: Gw, encoding: str) -> None:
    analyst = gw.grant("analyst", MAIL)
    result = call(
        gw, analyst, "email.send", {"to": "bob@example.com", "subject": f"echo-auth:{encoding}"}
    )
    assert result.is_error
    error = result.meta["tether/error"]
    assert error["code"] == "upstream_leaked_secret"
    dumped = result.model_dump_json(by_alias=True)
    token = MAIL_TOKEN.encode()
    for form in (
        MAIL_TOKEN,
        base64.b64encode(token).decode(),
        token.hex(),
        urllib.parse.quote(MAIL_TOKEN, safe=""),
    ):
        assert form not in dumped
    decision_id = error["decision_id"]
    failed = [
        r
        for r in records(gw.runtime, AuditKind.UPSTREAM_FAILED)
        if r.body.get("decision_id") == decision_id
    ]
    assert failed and "leaked_secret" in str(failed[-1].body)
    assert all(MAIL_TOKEN not in str(r.to_json()) for r in records(gw.runtime))
    effects = [
        r for r in records(gw.runtime, AuditKind.EFFECT) if r.body.get("decision_id") == decision_id
    ]
    assert effects and effects[-1].body["status"] == "error"


def test_an_ordinary_result_of_the_same_upstream_is_forwarded(gw: Gw) -> None:
    analyst = gw.grant("analyst", MAIL)
    result = call(gw, analyst, "email.send", {"to": "bob@example.com", "subject": "hello"})
    assert not result.is_error
