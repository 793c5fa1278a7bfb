"""tools/call is decided by tether before it reaches an upstream; effects are recorded; the
upstream credential is injected by the gateway and never seen by the agent."""

from __future__ import annotations

import httpx
from mcp_harness import (
    CRM_QUERY,
    CRM_UPDATE,
    MAIL,
    MAIL_TOKEN,
    PAY,
    Gw,
    connect,
    records,
    run,
    text_of,
)

from tether.core.audit import AuditKind
from tether.core.ids import ApprovalId
from tether.mcp.results import META_APPROVAL


def call(gw: Gw, keys: object, tool: str, args: dict[str, object], **meta: object):  # type: ignore[no-untyped-def]
    async def scenario():  # type: ignore[no-untyped-def]
        async with connect(gw.url, keys) as client:  # type: ignore[arg-type]
            return await client.call_tool(tool, args, meta=meta or None)  # type: ignore[arg-type]

    return run(scenario)


def reason_codes(result: object) -> list[str]:
    meta = result.meta  # type: ignore[attr-defined]
    return [r["code"] for r in meta["tether/error"]["reasons"]]


def test_an_allowed_call_reaches_the_upstream_and_its_effect_is_recorded(gw: Gw) -> None:
    analyst = gw.grant("analyst", CRM_QUERY)
    result = call(gw, analyst, "crm.query", {"customer": "c-1042"})
    assert not result.is_error, text_of(result)
    assert text_of(result) == "3 records for c-1042"
    assert [i["order"] for i in result.structured_content["items"]] == [0, 1, 2]

    decision = [r for r in records(gw.runtime, AuditKind.DECISION)][-1]
    assert decision.body["call"]["tool"] == "crm.query"  # type: ignore[index]
    assert decision.body["verdict"]["decision"] == "allow"  # type: ignore[index]
    effect = [r for r in records(gw.runtime, AuditKind.EFFECT)][-1]
    assert effect.body["decision_id"] == decision.body["decision_id"]
    assert effect.body["status"] == "ok"
    assert effect.body["records"] == 3  # counted at structured.items, as configured
    assert isinstance(effect.body["bytes"], int) and effect.body["bytes"] > 100


def test_denied_by_scope_never_reaches_the_upstream(gw: Gw) -> None:
    analyst = gw.grant("analyst", CRM_QUERY)
    sent = len(gw.mail.sent)
    result = call(gw, analyst, "email.send", {"to": "bob@example.com"})
    assert result.is_error
    assert text_of(result).startswith("denied by tether (decision dec_")
    assert "tool_not_in_scope" in text_of(result)
    assert len(gw.mail.sent) == sent
    # a tool that exists upstream but is in no grant, and one that exists nowhere, look alike
    for tool in ("crm.admin", "crm.nothing"):
        hidden = call(gw, analyst, tool, {})
        assert reason_codes(hidden) == ["tool_not_in_scope"], tool


def test_denied_by_an_argument_constraint(gw: Gw) -> None:
    helper = gw.grant("helper", CRM_UPDATE)
    result = call(gw, helper, "crm.update", {"ticket": "T-1", "discount": 50})
    assert result.is_error and reason_codes(result) == ["constraint_violated"]
    assert "above the maximum 10" in text_of(result)
    ok = call(gw, helper, "crm.update", {"ticket": "T-1", "discount": 5})
    assert not ok.is_error and text_of(ok) == "updated T-1"


def test_denied_by_cedar_policy(gw: Gw) -> None:
    analyst = gw.grant("analyst", PAY, MAIL)
    negative = call(gw, analyst, "payments.transfer", {"amount": -5})
    assert reason_codes(negative) == ["policy_forbids"]
    assert negative.meta["tether/verdict"]["policy_ids"] == ["transfers-are-positive"]
    sent = len(gw.mail.sent)
    outside = call(gw, analyst, "email.send", {"to": "mallory@attacker.test"})
    assert reason_codes(outside) == ["no_policy_permits"]
    assert len(gw.mail.sent) == sent


def test_approval_required_carries_the_approval_id_and_an_approved_retry_runs(gw: Gw) -> None:
    analyst = gw.grant("analyst", PAY)
    asked = call(gw, analyst, "payments.transfer", {"amount": 500})
    assert asked.is_error and text_of(asked).startswith("approval_required")
    approval_id = asked.meta["tether/error"]["approval_id"]
    assert approval_id.startswith("apr_") and approval_id in text_of(asked)

    token = gw.runtime.approvers.add("alice")
    approver = gw.runtime.approvers.verify(token)
    gw.runtime.approvals.vote(approver, ApprovalId(approval_id), True, "refund agreed")
    retried = call(
        gw, analyst, "payments.transfer", {"amount": 500}, **{META_APPROVAL: approval_id}
    )
    assert not retried.is_error, text_of(retried)
    assert text_of(retried) == "transferred 500"


def test_the_upstream_credential_is_injected_and_never_seen(gw: Gw) -> None:
    analyst = gw.grant("analyst", MAIL)
    before = gw.mail.authorized
    result = call(gw, analyst, "email.send", {"to": "bob@example.com", "subject": "hi"})
    assert not result.is_error, text_of(result)
    assert gw.mail.sent[-1] == {"to": "bob@example.com", "subject": "hi"}
    assert gw.mail.authorized > before and gw.mail.refused == 0
    assert MAIL_TOKEN not in result.model_dump_json(by_alias=True)

    effect = [r for r in records(gw.runtime, AuditKind.EFFECT)][-1]
    assert effect.body["recipient_count"] == 1
    assert "bob@example.com" not in str(effect.body)  # recipients are MACs
    for path in gw.data_dir.iterdir():
        if path.is_file():
            assert MAIL_TOKEN.encode() not in path.read_bytes(), path
    assert all(MAIL_TOKEN not in str(r.to_json()) for r in records(gw.runtime))


def test_a_bad_or_missing_bearer_token_is_401_before_any_mcp(gw: Gw) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream"}
    with httpx.Client(timeout=10) as http:
        missing = http.post(gw.url, json=body, headers=headers)
        assert missing.status_code == 401
        assert missing.json()["error"]["code"] == "missing_token"
        assert missing.headers["www-authenticate"].startswith("Bearer")
        bad = http.post(gw.url, json=body, headers={**headers, "Authorization": "Bearer x.y.z"})
        assert bad.status_code == 401
        assert bad.json()["error"]["code"] == "invalid_token"
    forged = gw.grant("analyst", CRM_QUERY)
    forged.svid = forged.svid[:-4] + ("AAAA" if not forged.svid.endswith("AAAA") else "BBBB")

    async def scenario() -> None:
        async with connect(gw.url, forged) as client:
            await client.list_tools()

    try:
        run(scenario)
    except BaseException as error:  # the SDK client reports the 401 as an error group
        assert "401" in repr(error) or "error" in repr(error).lower()
    else:
        raise AssertionError("a forged SVID was accepted")
