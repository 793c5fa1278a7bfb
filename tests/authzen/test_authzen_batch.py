"""AuthZEN Access Evaluations (POST /access/v1/evaluations): defaults, semantics, errors.

The spec's "Evaluate read action for three documents using all three semantics" example is
replayed with tether's resources: document 1 and 3 are readable, document 2 is not.
"""

from __future__ import annotations

import pytest
from authzen_shapes import ANALYST, Pdp, subject, tool

from tether.api.authzen import MAX_EVALUATIONS

INTRUDER = "spiffe://tether.local/agent/intruder"


def three_documents(grant: str, semantic: str | None) -> dict[str, object]:
    """Access Evaluations API, Evaluations semantics example: subject and action as defaults."""
    body: dict[str, object] = {
        "subject": subject(grant),
        "action": {"name": "read"},
        "evaluations": [
            {"resource": tool("crm.query", "crm")},  # "document 1": permitted
            {"resource": tool("crm.query", "payroll")},  # "document 2": not in scope
            {"resource": tool("crm.query", "crm")},  # "document 3": permitted
        ],
    }
    if semantic is not None:
        body["options"] = {"evaluations_semantic": semantic}
    return body


def decisions(response: object) -> list[bool]:
    return [e["decision"] for e in response.json()["evaluations"]]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("semantic", "expected"),
    [
        # The spec's three example responses, in length and value.
        ("execute_all", [True, False, True]),
        ("deny_on_first_deny", [True, False]),
        ("permit_on_first_permit", [True]),
        (None, [True, False, True]),  # execute_all is the default
    ],
)
def test_evaluations_semantics_short_circuit_and_audit_only_what_ran(
    pdp: Pdp, semantic: str | None, expected: list[bool]
) -> None:
    grant = pdp.grant()
    before = pdp.decisions()
    response = pdp.evaluations(three_documents(grant, semantic))
    assert response.status_code == 200
    assert set(response.json()) == {"evaluations"}  # top-level decision omitted (RECOMMENDED)
    assert decisions(response) == expected
    assert pdp.decisions() == before + len(expected)  # skipped items were never decided


def test_each_item_carries_its_own_verdict(pdp: Pdp) -> None:
    results = pdp.evaluations(three_documents(pdp.grant(), None)).json()["evaluations"]
    ids = {r["context"]["decision_id"] for r in results}
    assert len(ids) == 3
    assert [r["context"]["decision"] for r in results] == ["allow", "deny", "allow"]
    assert results[1]["context"]["reasons"][0]["code"] == "dataset_not_in_scope"


def test_the_spec_example_without_defaults(pdp: Pdp) -> None:
    grant = pdp.grant()
    item = {
        "subject": subject(grant),
        "action": {"name": "read"},
        "resource": tool("crm.query", "crm"),
        "context": {"time": "2024-05-31T15:22-07:00"},
    }
    response = pdp.evaluations({"evaluations": [item, item, item]})
    assert decisions(response) == [True, True, True]


def test_an_item_key_replaces_the_default(pdp: Pdp) -> None:
    # Default values example: subject, context and action are defaults; the third overrides
    # the action (the spec's can_edit; here a spend that needs a human).
    body = {
        "subject": subject(pdp.grant()),
        "context": {"time": "2024-05-31T15:22-07:00"},
        "action": {"name": "read"},
        "evaluations": [
            {"resource": tool("crm.query", "crm")},
            {"resource": tool("crm.query", "crm")},
            {"action": {"name": "spend"}, "resource": tool("payments.transfer", amount=500)},
        ],
    }
    results = pdp.evaluations(body).json()["evaluations"]
    assert [r["decision"] for r in results] == [True, True, False]
    assert results[2]["context"]["decision"] == "approval_required"
    assert results[2]["context"]["approval_id"].startswith("apr_")


def test_an_item_that_cannot_be_mapped_is_a_false_decision_with_an_error(pdp: Pdp) -> None:
    grant = pdp.grant()
    before = pdp.decisions()
    body = {
        "subject": subject(grant),
        "evaluations": [
            {"action": {"name": "read"}, "resource": tool("crm.query", "crm")},
            {"action": {"name": "can_edit"}, "resource": tool("crm.query", "crm")},
            {
                "subject": subject(grant, agent=INTRUDER),
                "action": {"name": "read"},
                "resource": tool("crm.query", "crm"),
            },
            {"resource": tool("crm.query", "crm")},  # no action anywhere
        ],
    }
    response = pdp.evaluations(body)
    assert response.status_code == 200
    results = response.json()["evaluations"]
    assert [r["decision"] for r in results] == [True, False, False, False]
    unknown, mismatch, missing = (r["context"]["error"] for r in results[1:])
    assert unknown["status"] == 400 and unknown["code"] == "invalid_field"
    assert "'can_edit' is not a tether action" in unknown["message"]
    assert mismatch["status"] == 403 and mismatch["code"] == "subject_mismatch"
    assert missing["status"] == 400 and "action is required" in missing["message"]
    assert pdp.decisions() == before + 1  # only the one that was decided


def test_an_item_error_counts_as_a_deny_for_deny_on_first_deny(pdp: Pdp) -> None:
    body = three_documents(pdp.grant(), "deny_on_first_deny")
    body["evaluations"].insert(0, {"action": {"name": "peek"}})  # type: ignore[attr-defined]
    assert decisions(pdp.evaluations(body)) == [False]


def test_permit_on_first_permit_skips_errors_and_denials(pdp: Pdp) -> None:
    body = three_documents(pdp.grant(), "permit_on_first_permit")
    body["evaluations"] = [  # type: ignore[index]
        {"action": {"name": "peek"}},
        {"resource": tool("crm.query", "payroll")},
        {"resource": tool("crm.query", "crm")},
        {"resource": tool("crm.query", "crm")},
    ]
    assert decisions(pdp.evaluations(body)) == [False, False, True]


def test_the_grant_header_serves_the_whole_batch(pdp: Pdp) -> None:
    body = three_documents("unused", None)
    body["subject"] = subject()
    response = pdp.evaluations(body, headers={"X-Tether-Grant": pdp.grant()})
    assert decisions(response) == [True, False, True]


def test_a_batch_over_the_limit_is_413_and_decides_nothing(pdp: Pdp) -> None:
    before = pdp.decisions()
    body = three_documents(pdp.grant(), None)
    body["evaluations"] = [{"resource": tool("crm.query", "crm")}] * (MAX_EVALUATIONS + 1)
    response = pdp.evaluations(body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert f"at most {MAX_EVALUATIONS}" in response.json()["error"]["message"]
    assert pdp.decisions() == before


def test_a_batch_at_the_limit_is_decided(pdp: Pdp) -> None:
    body = three_documents(pdp.grant(), None)
    body["evaluations"] = [{"resource": tool("crm.query", "crm")}] * MAX_EVALUATIONS
    assert decisions(pdp.evaluations(body)) == [True] * MAX_EVALUATIONS


def test_without_evaluations_the_request_is_one_evaluation(pdp: Pdp) -> None:
    body = {
        "subject": subject(pdp.grant()),
        "action": {"name": "read"},
        "resource": tool("crm.query", "crm"),
    }
    answer = pdp.evaluations(body).json()
    assert set(answer) == {"decision", "context"}
    assert answer["decision"] is True
    refused = pdp.evaluations({**body, "subject": subject(pdp.grant(), agent=INTRUDER)})
    assert refused.status_code == 403


def test_an_empty_evaluations_array_is_400(pdp: Pdp) -> None:
    response = pdp.evaluations({"subject": subject(pdp.grant()), "evaluations": []})
    assert response.status_code == 400
    assert "at least one evaluation" in response.json()["error"]["message"]


def test_options_are_checked_never_ignored(pdp: Pdp) -> None:
    # Evaluations options example, as the spec prints it (note its key differs from the
    # evaluations_semantic the text defines): an unknown option is named, not ignored.
    body = {
        "evaluations": [
            {"resource": {"type": "doc", "id": "1"}, "subject": {"type": "doc", "id": "2"}}
        ],
        "options": {"evaluation_semantics": "execute_all", "another_option": "value"},
    }
    response = pdp.evaluations(body)
    assert response.status_code == 400
    assert "unknown field 'options.evaluation_semantics'" in response.json()["error"]["message"]
    wrong = three_documents(pdp.grant(), "first_wins")
    response = pdp.evaluations(wrong)
    assert response.status_code == 400
    assert "evaluations_semantic" in response.json()["error"]["message"]


def test_batch_needs_the_callers_svid(pdp: Pdp) -> None:
    response = pdp.client.post("/access/v1/evaluations", json=three_documents("x", None))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_token"


def test_the_audit_records_name_the_caller_for_each_batch_item(pdp: Pdp) -> None:
    before = len(list(pdp.runtime.store.audit_records()))
    pdp.evaluations(three_documents(pdp.grant(), None))
    added = list(pdp.runtime.store.audit_records())[before:]
    decided = [r for r in added if r.kind.value == "decision"]
    assert len(decided) == 3
    assert all(r.agent == ANALYST for r in decided)
