"""Each request through the egress proxy is decided by tether before it leaves; an allowed one
reaches the legacy service with the standing secret, which the agent never sees."""

from __future__ import annotations

from proxy.harness import CRM_QUERY, CRM_UPDATE, LEGACY_SECRET, MAIL, PAY, VAULT_SECRET, Env
from tether.core.audit import AuditKind, verify_chain
from tether.core.ids import ApprovalId, TaskId
from tether.proxy import DECISION_HEADER


def reason_codes(body: dict[str, object]) -> list[str]:
    return [r["code"] for r in body["error"]["reasons"]]  # type: ignore[index]


def test_an_allowed_call_reaches_the_upstream_with_the_secret_and_its_effect_is_recorded(
    env: Env,
) -> None:
    analyst = env.agent("analyst", CRM_QUERY)
    response = analyst.call(
        "GET",
        "/legacy/customers/c-1042?limit=5",
        headers={"X-Request-Id": "req-7", "X-Internal-Override": "admin", "Cookie": "a=b"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["id"] == "c-1042"
    assert response.headers[DECISION_HEADER].startswith("dec_")

    seen = env.legacy.seen[-1]
    assert seen.authorized and seen.header("authorization") == f"Bearer {LEGACY_SECRET}"
    assert (seen.method, seen.raw_path, seen.query) == ("GET", "/api/customers/c-1042", "limit=5")
    assert seen.header("x-request-id") == "req-7"  # named in forward_headers
    # Neither the agent's credentials nor headers outside the allow-list are passed on.
    for name in ("x-tether-grant", "x-internal-override", "cookie"):
        assert seen.header(name) is None, name
    assert analyst.svid not in seen.dump() and analyst.grant not in seen.dump()
    assert LEGACY_SECRET not in response.text and LEGACY_SECRET not in str(response.headers)

    decision = env.records(AuditKind.DECISION)[-1].body
    call, verdict = decision["call"], decision["verdict"]
    assert (call["tool"], call["action"], call["dataset"]) == ("crm.query", "read", "crm")  # type: ignore[index,call-overload]
    assert sorted(call["args"]) == ["customer", "limit"]  # type: ignore[index,call-overload,arg-type]
    assert verdict["decision"] == "allow"  # type: ignore[index,call-overload]
    effect = env.records(AuditKind.EFFECT)[-1]
    assert effect.body["decision_id"] == response.headers[DECISION_HEADER]
    assert effect.body["status"] == "ok"
    assert effect.body["records"] == 3  # counted at body.items, as configured
    assert effect.body["bytes"] == len(response.content)


def test_a_secret_sent_as_a_query_parameter_is_added_and_never_returned(env: Env) -> None:
    analyst = env.agent("analyst", CRM_QUERY)
    response = analyst.call("GET", "/vault/customers/c-7")
    assert response.status_code == 200, response.text
    seen = env.legacy.seen[-1]
    assert seen.authorized and seen.query == f"api_key={VAULT_SECRET}"
    assert VAULT_SECRET not in response.text
    # The agent cannot name the secret's parameter itself.
    forged = analyst.call("GET", "/vault/customers/c-7?api_key=mine")
    assert forged.status_code == 400 and forged.json()["error"]["code"] == "query_not_allowed"


def test_the_most_specific_route_wins(env: Env) -> None:
    analyst = env.agent("analyst", CRM_QUERY)
    response = analyst.call("GET", "/legacy/customers/search?q=ada")
    assert response.status_code == 200 and response.json()["search"] is True
    assert env.legacy.seen[-1].query == "q=ada"


def test_denied_by_scope_never_reaches_the_upstream(env: Env) -> None:
    analyst = env.agent("analyst", CRM_QUERY)
    hits = env.legacy.hits
    response = analyst.call("POST", "/legacy/mail", json={"to": "bob@example.com"})
    assert response.status_code == 403
    body = response.json()
    assert body["error"]["code"] == "denied"
    assert reason_codes(body) == ["tool_not_in_scope"]
    assert body["verdict"]["decision"] == "deny"
    assert body["verdict"]["decision_id"] == body["error"]["decision_id"]
    assert env.legacy.hits == hits


def test_denied_by_an_argument_constraint_mapped_from_the_body(env: Env) -> None:
    helper = env.agent("helper", CRM_UPDATE)
    hits = env.legacy.hits
    denied = helper.call("PUT", "/legacy/tickets/T-1", json={"discount": 50, "note": "vip"})
    assert denied.status_code == 403
    assert reason_codes(denied.json()) == ["constraint_violated"]
    assert "above the maximum 10" in denied.json()["error"]["message"]
    missing = helper.call("PUT", "/legacy/tickets/T-1", json={"note": "no discount"})
    assert reason_codes(missing.json()) == ["argument_missing"]
    assert env.legacy.hits == hits

    ok = helper.call("PUT", "/legacy/tickets/T-1", json={"discount": 5, "note": "vip"})
    assert ok.status_code == 200 and ok.json() == {"updated": "T-1"}
    assert env.legacy.seen[-1].body == b'{"discount":5,"note":"vip"}'  # the bytes decided on


def test_denied_by_cedar_policy_never_reaches_the_upstream(env: Env) -> None:
    analyst = env.agent("analyst", PAY, MAIL)
    hits = env.legacy.hits
    negative = analyst.call("POST", "/legacy/payments", json={"amount": -5})
    assert negative.status_code == 403 and reason_codes(negative.json()) == ["policy_forbids"]
    assert negative.json()["verdict"]["policy_ids"] == ["transfers-are-positive"]
    outside = analyst.call("POST", "/legacy/mail", json={"to": "mallory@attacker.test"})
    assert outside.status_code == 403 and reason_codes(outside.json()) == ["no_policy_permits"]
    assert env.legacy.hits == hits

    inside = analyst.call("POST", "/legacy/mail", json={"to": "bob@example.com"})
    assert inside.status_code == 202, inside.text
    effect = env.records(AuditKind.EFFECT)[-1]
    assert effect.body["recipient_count"] == 1 and "bob@example.com" not in str(effect.body)


def test_approval_required_then_an_approved_retry_runs_once(env: Env) -> None:
    analyst = env.agent("analyst", PAY)
    hits = env.legacy.hits
    asked = analyst.call("POST", "/legacy/payments", json={"amount": 500})
    assert asked.status_code == 403
    error = asked.json()["error"]
    assert error["code"] == "approval_required"
    approval_id = error["approval_id"]
    assert approval_id.startswith("apr_") and "X-Tether-Approval" in error["message"]
    pending = analyst.call("POST", "/legacy/payments", json={"amount": 500}, approval=approval_id)
    assert pending.status_code == 403
    assert env.legacy.hits == hits

    token = env.runtime.approvers.add("alice")
    approver = env.runtime.approvers.verify(token)
    env.runtime.approvals.vote(approver, ApprovalId(approval_id), True, "refund agreed")
    # The approval is bound to the exact call: another amount does not use it.
    other = analyst.call("POST", "/legacy/payments", json={"amount": 501}, approval=approval_id)
    assert other.status_code == 403 and "approval_mismatch" in reason_codes(other.json())
    retried = analyst.call("POST", "/legacy/payments", json={"amount": 500}, approval=approval_id)
    assert retried.status_code == 201, retried.text
    assert retried.json() == {"transferred": 500}
    assert env.legacy.hits == hits + 1
    again = analyst.call("POST", "/legacy/payments", json={"amount": 500}, approval=approval_id)
    assert again.status_code == 403 and "approval_used" in reason_codes(again.json())
    assert env.legacy.hits == hits + 1


def test_a_route_no_config_names_is_refused_and_never_forwarded(env: Env) -> None:
    analyst = env.agent("analyst", CRM_QUERY)
    hits = env.legacy.hits
    for method, path in [
        ("GET", "/legacy/admin/users"),
        ("DELETE", "/legacy/customers/c-1"),  # a known path, but not with this method
        ("GET", "/nowhere/customers/c-1"),
        ("GET", "/legacy"),
        ("GET", "/legacy/customers/c-1/"),  # a trailing slash is another route
    ]:
        response = analyst.call(method, path)
        assert response.status_code == 404, (method, path)
        assert response.json()["error"]["code"] == "route_not_found"
    assert env.legacy.hits == hits


def test_a_missing_or_invalid_svid_is_401_and_never_forwarded(env: Env) -> None:
    analyst = env.agent("analyst", CRM_QUERY)
    hits = env.legacy.hits
    none = env.client.get("/legacy/customers/c-1", headers={"X-Tether-Grant": analyst.grant})
    assert none.status_code == 401 and none.json()["error"]["code"] == "missing_token"
    assert none.headers["www-authenticate"].startswith("Bearer")
    bad = env.client.get(
        "/legacy/customers/c-1",
        headers={"Authorization": "Bearer not-a-jwt", "X-Tether-Grant": analyst.grant},
    )
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_token"
    # The grant token is not an SVID.
    swapped = env.client.get(
        "/legacy/customers/c-1",
        headers={"Authorization": f"Bearer {analyst.grant}", "X-Tether-Grant": analyst.grant},
    )
    assert swapped.status_code == 401
    no_grant = env.client.get(
        "/legacy/customers/c-1", headers={"Authorization": f"Bearer {analyst.svid}"}
    )
    assert no_grant.status_code == 401 and no_grant.json()["error"]["code"] == "grant_missing"
    assert env.legacy.hits == hits


def test_a_grant_of_another_agent_is_403_and_never_forwarded(env: Env) -> None:
    analyst = env.agent("analyst", CRM_QUERY)
    intruder = env.agent("intruder", MAIL)
    hits = env.legacy.hits
    response = env.client.get(
        "/legacy/customers/c-1",
        headers={"Authorization": f"Bearer {intruder.svid}", "X-Tether-Grant": analyst.grant},
    )
    assert response.status_code == 403
    assert reason_codes(response.json()) == ["grant_not_bound"]
    garbage = env.client.get(
        "/legacy/customers/c-1",
        headers={"Authorization": f"Bearer {analyst.svid}", "X-Tether-Grant": "garbage"},
    )
    assert garbage.status_code == 403 and reason_codes(garbage.json()) == ["grant_invalid"]
    assert env.legacy.hits == hits


def test_a_closed_task_stops_the_proxy(env: Env) -> None:
    analyst = env.agent("analyst", CRM_QUERY)
    assert analyst.call("GET", "/legacy/customers/c-1").status_code == 200
    workload = env.runtime.verifier.verify(analyst.svid, env.clock.now())
    env.runtime.tasks.close_task(workload, TaskId(analyst.task_id))
    hits = env.legacy.hits
    closed = analyst.call("GET", "/legacy/customers/c-1")
    assert closed.status_code == 403 and closed.json()["error"]["code"] == "denied"
    assert env.legacy.hits == hits


def test_the_upstream_never_saw_an_svid_or_grant_and_the_chain_verifies(env: Env) -> None:
    # Runs last in this module: everything the legacy service ever received, checked at once.
    assert env.legacy.hits > 0
    for seen in env.legacy.seen:
        assert seen.authorized, seen.raw_path
        assert seen.header("x-tether-grant") is None and seen.header("x-tether-approval") is None
        assert "eyJ" not in seen.dump()  # no JWT (SVID or grant) in any header, query or body
    report = verify_chain(env.runtime.store.audit_records(), env.runtime.store.chain_head())
    assert report.ok, report.problem
