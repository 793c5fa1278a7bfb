"""A result that echoes the credential the gateway injects for an HTTP upstream reaches the agent
with the credential redacted, in whatever form it came back, and the audit chain says so (issue
12: no secret ever returned)."""

from __future__ import annotations

import base64
import urllib.parse

import pytest
from mcp_harness import MAIL, MAIL_TOKEN, Gw, records
from test_mcp_calls import call

from tether.core.audit import AuditKind


@pytest.mark.parametrize("encoding", ["raw", "base64", "hex", "percent"])
def test_a_result_echoing_the_injected_credential_is_redacted(gw: Gw, encoding: str) -> None:
    analyst = gw.grant("analyst", MAIL)
    result = call(
        gw, analyst, "email.send", {"to": "bob@example.com", "subject": f"echo-auth:{encoding}"}
    )
    assert not result.is_error
    text = result.content[0].text
    assert text.startswith("debug: token=") and "[redacted:mail-token]" in text
    dumped = result.model_dump_json(by_alias=True)
    token = MAIL_TOKEN.encode()
    for form in (
        MAIL_TOKEN,
        base64.b64encode(token).decode()[1:-2],
        token.hex(),
        urllib.parse.quote(MAIL_TOKEN, safe=""),
    ):
        assert form not in dumped
    redacted = records(gw.runtime, AuditKind.SECRET_REDACTED)
    assert redacted and redacted[-1].body["tool"] == "email.send"
    assert redacted[-1].body["upstream"] == "email"
    assert [s["name"] for s in redacted[-1].body["secrets"]] == ["mail-token"]
    assert all(MAIL_TOKEN not in str(r.to_json()) for r in records(gw.runtime))
    decision_id = redacted[-1].body["decision_id"]
    effects = [
        r for r in records(gw.runtime, AuditKind.EFFECT) if r.body.get("decision_id") == decision_id
    ]
    assert effects and effects[-1].body["status"] == "ok"


def test_an_ordinary_result_of_the_same_upstream_is_forwarded(gw: Gw) -> None:
    analyst = gw.grant("analyst", MAIL)
    result = call(gw, analyst, "email.send", {"to": "bob@example.com", "subject": "hello"})
    assert not result.is_error
