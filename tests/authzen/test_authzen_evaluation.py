"""AuthZEN Access Evaluation (POST /access/v1/evaluation) against a real tether server.

The spec's example shapes are sent as the spec writes them; tether's mapping is: subject = the
bearer agent (+ its grant), action.name = the action kind, resource = the tool (+ dataset,
args), context.approval_id = an approval. ``decision`` is true only for tether's ``allow``.
"""

from __future__ import annotations

from authzen_shapes import ANALYST, Pdp, subject, tool

INTRUDER = "spiffe://tether.local/agent/intruder"

# Access Evaluation API, "The Access Evaluation API Request", Example (non-normative).
SPEC_REQUEST = {
    "subject": {"type": "user", "id": "alice@acmecorp.com"},
    "resource": {"type": "account", "id": "123"},
    "action": {"name": "can_read", "properties": {"method": "GET"}},
    "context": {"time": "1985-10-26T01:22-07:00"},
}
# HTTPS Binding, "HTTPS Access Evaluation Request": the request identifier header.
REQUEST_ID = "bfe9eb29-ab87-4ca3-be83-a1d5d8305716"


def read_crm(grant: str, dataset: str = "crm") -> dict[str, object]:
    """The spec's example request, with tether's subject, action and resource in it."""
    return {
        "subject": subject(grant),
        "resource": tool("crm.query", dataset),
        "action": {"name": "read", "properties": {"method": "GET"}},
        "context": {"time": "1985-10-26T01:22-07:00"},
    }


def codes(answer: dict[str, object]) -> list[str]:
    return [r["code"] for r in answer["context"]["reasons"]]  # type: ignore[index]


def test_the_spec_example_request_is_parsed_and_refused_for_naming_a_user(pdp: Pdp) -> None:
    before = pdp.decisions()
    response = pdp.evaluation(SPEC_REQUEST)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_field"
    assert 'subject.type must be "agent"' in error["message"]
    assert pdp.decisions() == before  # refused before any decision: nothing to audit


def test_spec_shape_allow_is_decision_true_with_the_verdict_as_context(pdp: Pdp) -> None:
    response = pdp.evaluation(read_crm(pdp.grant()), headers={"X-Request-ID": REQUEST_ID})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"] == REQUEST_ID  # Request Identification in a Response
    answer = response.json()
    assert set(answer) == {"decision", "context"}
    assert answer["decision"] is True
    context = answer["context"]
    assert context["decision"] == "allow"
    assert context["decision_id"].startswith("dec_")
    assert context["reasons"] == [
        {
            "id": "0",
            "code": "policy_permits",
            "message": context["reasons"][0]["message"],
            "reason_user": {"en": context["reasons"][0]["message"]},
        }
    ]
    assert context["policy_ids"] == ["analyst-reads-crm"]
    assert {"ASI02", "ASI03"} <= set(context["risks"])
    assert {"kind": "row_cap", "value": "500", "policy_id": "analyst-reads-crm"} in context[
        "obligations"
    ]
    assert context["approval_id"] is None
    assert context["policy_revision"] and context["decided_at"]


def test_deny_is_decision_false_with_reasons(pdp: Pdp) -> None:
    answer = pdp.evaluation(read_crm(pdp.grant(), dataset="payroll")).json()
    assert answer["decision"] is False
    assert answer["context"]["decision"] == "deny"
    assert codes(answer) == ["dataset_not_in_scope"]


def test_argument_constraints_apply_to_resource_args(pdp: Pdp) -> None:
    body = {
        "subject": subject(pdp.grant()),
        "action": {"name": "spend"},
        "resource": tool("payments.transfer", amount=5000, to="c-1042"),
    }
    answer = pdp.evaluation(body).json()
    assert answer["decision"] is False
    assert codes(answer) == ["constraint_violated"]


def test_approval_required_is_false_with_the_approval_id_then_the_approved_retry_is_true(
    pdp: Pdp,
) -> None:
    body: dict[str, object] = {
        "subject": subject(pdp.grant()),
        "action": {"name": "spend"},
        "resource": tool("payments.transfer", amount=500, to="c-1042"),
    }
    first = pdp.evaluation(body).json()
    assert first["decision"] is False
    assert first["context"]["decision"] == "approval_required"
    approval_id = first["context"]["approval_id"]
    assert approval_id.startswith("apr_")
    assert "transfers-over-100-need-approval" in first["context"]["policy_ids"]

    approver = {"Authorization": f"Bearer {pdp.runtime.approvers.add('az-alice')}"}
    voted = pdp.client.post(f"/v1/approvals/{approval_id}/approve", headers=approver)
    assert voted.status_code == 200, voted.text

    retry = pdp.evaluation({**body, "context": {"approval_id": approval_id}}).json()
    assert retry["decision"] is True
    assert codes(retry) == ["approval_granted"]
    again = pdp.evaluation({**body, "context": {"approval_id": approval_id}}).json()
    assert again["decision"] is False and codes(again)[0] == "approval_used"


def test_args_may_come_from_context_args_but_not_from_both(pdp: Pdp) -> None:
    grant = pdp.grant()
    body = {
        "subject": subject(grant),
        "action": {"name": "spend"},
        "resource": {"type": "tool", "id": "payments.transfer"},
        "context": {"args": {"amount": 50, "to": "c-1042"}},
    }
    assert pdp.evaluation(body).json()["decision"] is True
    both = {**body, "resource": tool("payments.transfer", amount=50)}
    response = pdp.evaluation(both)
    assert response.status_code == 400
    assert "not both" in response.json()["error"]["message"]


def test_subject_naming_another_identity_is_refused(pdp: Pdp) -> None:
    before = pdp.decisions()
    body = {**read_crm(pdp.grant()), "subject": subject(pdp.grant(), agent=INTRUDER)}
    response = pdp.evaluation(body)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "subject_mismatch"
    # The intruder's own SVID claiming to be the analyst is refused the same way.
    claimed = pdp.client.post(
        "/access/v1/evaluation", json=read_crm(pdp.grant()), headers=pdp.intruder.headers
    )
    assert claimed.status_code == 403
    assert claimed.json()["error"]["code"] == "subject_mismatch"
    assert pdp.decisions() == before


def test_a_grant_presented_by_another_agent_as_itself_is_an_audited_deny(pdp: Pdp) -> None:
    before = pdp.decisions()
    body = {**read_crm(pdp.grant()), "subject": subject(pdp.grant(), agent=INTRUDER)}
    response = pdp.client.post("/access/v1/evaluation", json=body, headers=pdp.intruder.headers)
    assert response.status_code == 200
    assert response.json()["decision"] is False
    assert codes(response.json()) == ["grant_not_bound"]
    assert pdp.decisions() == before + 1


def test_unknown_action_is_a_clear_400(pdp: Pdp) -> None:
    body = {**read_crm(pdp.grant()), "action": {"name": "can_read"}}
    response = pdp.evaluation(body)
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "'can_read' is not a tether action" in message
    assert "read, write, delete, send, execute, spend" in message


def test_missing_grant_is_a_400_naming_both_ways_to_send_it(pdp: Pdp) -> None:
    before = pdp.decisions()
    response = pdp.evaluation({**read_crm("x"), "subject": subject()})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_field"
    message = response.json()["error"]["message"]
    assert "subject.properties.grant" in message and "X-Tether-Grant" in message
    assert pdp.decisions() == before


def test_grant_may_come_from_the_x_tether_grant_header(pdp: Pdp) -> None:
    body = {**read_crm("x"), "subject": subject()}
    response = pdp.evaluation(body, headers={"X-Tether-Grant": pdp.grant()})
    assert response.status_code == 200
    assert response.json()["decision"] is True


def test_a_bad_grant_is_an_audited_deny(pdp: Pdp) -> None:
    before = pdp.decisions()
    answer = pdp.evaluation(read_crm("not-a-grant")).json()
    assert answer["decision"] is False
    assert codes(answer) == ["grant_invalid"]
    assert pdp.decisions() == before + 1


def test_subject_properties_other_than_the_grant_are_ignored(pdp: Pdp) -> None:
    # Subject Properties: the spec's ip_address and device_id examples decide nothing here.
    body = read_crm(pdp.grant())
    body["subject"]["properties"].update(  # type: ignore[index]
        {"department": "Sales", "ip_address": "172.217.22.14", "device_id": "8:65:ee:17:7e:0b"}
    )
    assert pdp.evaluation(body).json()["decision"] is True


def test_resource_must_be_a_tool_with_only_dataset_and_args(pdp: Pdp) -> None:
    grant = pdp.grant()
    # Resource, "Example Resource with Additional Property".
    library = {
        "type": "book",
        "id": "123",
        "properties": {"library_record": {"title": "AuthZEN in Action", "isbn": "978-0593383322"}},
    }
    wrong_type = pdp.evaluation({**read_crm(grant), "resource": library})
    assert wrong_type.status_code == 400
    assert 'resource.type must be "tool"' in wrong_type.json()["error"]["message"]
    extra = {**library, "type": "tool", "id": "crm.query"}
    unknown = pdp.evaluation({**read_crm(grant), "resource": extra})
    assert unknown.status_code == 400
    assert "library_record is not understood" in unknown.json()["error"]["message"]
    bad_name = pdp.evaluation({**read_crm(grant), "resource": {"type": "tool", "id": "a b"}})
    assert bad_name.status_code == 400


def test_malformed_requests_are_400(pdp: Pdp) -> None:
    body = read_crm(pdp.grant())
    missing = pdp.evaluation({k: v for k, v in body.items() if k != "action"})
    assert missing.status_code == 400
    assert "'action' is required" in missing.json()["error"]["message"]
    extra = pdp.evaluation({**body, "evaluations": []})
    assert extra.status_code == 400
    assert "unknown field 'evaluations'" in extra.json()["error"]["message"]
    not_json = pdp.client.post(
        "/access/v1/evaluation",
        content=b"{",
        headers={**pdp.analyst.headers, "content-type": "application/json"},
    )
    assert not_json.status_code == 400
    assert not_json.json()["error"]["code"] == "malformed_json"


def test_bad_tokens_are_401_never_500(pdp: Pdp) -> None:
    body = read_crm("x")
    none = pdp.client.post("/access/v1/evaluation", json=body)
    assert none.status_code == 401
    assert none.json()["error"]["code"] == "missing_token"
    assert none.headers["www-authenticate"] == "Bearer"
    for token in ("garbage", "a.b.c", "x" * 9000):
        bad = pdp.client.post(
            "/access/v1/evaluation", json=body, headers={"Authorization": f"Bearer {token}"}
        )
        assert bad.status_code == 401, token
        assert bad.json()["error"]["code"] == "invalid_token"


def test_every_evaluation_is_audited_like_v1_authorize(pdp: Pdp) -> None:
    grant = pdp.grant()
    before = list(pdp.runtime.store.audit_records())
    pdp.evaluation(read_crm(grant))
    pdp.evaluation(read_crm(grant, dataset="payroll"))
    added = list(pdp.runtime.store.audit_records())[len(before) :]
    assert [r.kind.value for r in added] == ["decision", "decision"]
    assert all(r.agent == ANALYST for r in added)
    verdicts = [r.body["verdict"]["decision"] for r in added]  # type: ignore[index, call-overload]
    assert verdicts == ["allow", "deny"]
    assert added[0].body["call"]["tool"] == "crm.query"  # type: ignore[index, call-overload]
    raw = "".join(str(r.body) for r in added)
    assert grant not in raw and pdp.analyst.svid not in raw  # tokens never reach the log
