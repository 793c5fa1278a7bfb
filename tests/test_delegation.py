"""Delegation over real HTTP: a child grant only narrows, carries the chain, dies with its parent."""

from __future__ import annotations

import itertools

import httpx
import jwt
import pytest

from support import Agent, mint
from tether.runtime import Runtime
from tether.service.clock import ManualClock

TD = "spiffe://tether.local/agent/"
UPDATE = {
    "tool": "crm.update",
    "actions": ["write"],
    "datasets": ["tickets"],
    "constraints": {"discount": {"max": 10}},
}
PAY = {"tool": "payments.transfer", "actions": ["spend"], "constraints": {"amount": {"max": 1000}}}
WRITE = {"tool": "crm.update", "action": "write", "dataset": "tickets", "args": {"discount": 5}}


@pytest.fixture
def agents(client: httpx.Client, runtime: Runtime, clock: ManualClock) -> dict[str, Agent]:
    names = ["support", "helper", "payer", "deep", "deeper"]
    return {n: Agent(client, mint(runtime, n, clock)) for n in names}


def open_root(agent: Agent, *scopes: dict[str, object], ttl: int = 600) -> dict[str, str]:
    response = agent.open_task(list(scopes) or [UPDATE, PAY], ttl_seconds=ttl)
    assert response.status_code == 201, response.text
    return dict(response.json())


def delegate(
    parent: Agent, task: dict[str, str], child: str, scopes: list[dict[str, object]], **kw: object
) -> httpx.Response:
    body = {"grant": task["grant"], "agent": TD + child, "scopes": scopes, **kw}
    return parent.client.post(
        f"/v1/tasks/{task['task_id']}/delegate", json=body, headers=parent.headers
    )


def codes(verdict: dict[str, object]) -> list[str]:
    return [r["code"] for r in verdict["reasons"]]  # type: ignore[index, union-attr]


def test_a_child_acts_within_a_narrower_scope_and_carries_the_chain(
    agents: dict[str, Agent],
) -> None:
    root = open_root(agents["support"])
    narrower = {**UPDATE, "constraints": {"discount": {"max": 5}}}
    response = delegate(agents["support"], root, "helper", [narrower])
    assert response.status_code == 201, response.text
    child = response.json()
    assert child["delegation"] == {"depth": 1, "chain": [TD + "support"]}
    assert child["granted"][0]["constraints"] == {"discount": {"max": 5}}
    claims = jwt.decode(child["grant"], options={"verify_signature": False})
    assert claims["sub"] == TD + "helper" and claims["act"] == {"sub": TD + "support"}

    helper = agents["helper"]
    allowed = helper.authorize(child["grant"], **WRITE).json()
    assert allowed["decision"] == "allow"
    assert allowed["delegation"] == {"depth": 1, "chain": [TD + "support"]}
    over = helper.authorize(child["grant"], **{**WRITE, "args": {"discount": 8}}).json()
    assert over["decision"] == "deny" and codes(over) == ["constraint_violated"]
    # The child grant is bound to the child: the parent cannot use it, nor the child the parent's.
    assert codes(agents["support"].authorize(child["grant"], **WRITE).json()) == ["grant_not_bound"]
    assert codes(helper.authorize(root["grant"], **WRITE).json()) == ["grant_not_bound"]


@pytest.mark.parametrize(
    ("scope", "word"),
    [
        ({"tool": "crm.query", "actions": ["read"], "datasets": ["crm"]}, "not in the delegating"),
        ({**UPDATE, "actions": ["write", "delete"]}, "actions delete"),
        ({**UPDATE, "datasets": ["tickets", "crm"]}, "datasets crm"),
        ({**UPDATE, "datasets": []}, "(no dataset)"),
        ({**UPDATE, "constraints": {"discount": {"max": 20}}}, "looser"),
        ({**UPDATE, "constraints": {}}, "at least as tightly"),
    ],
)
def test_widening_on_any_dimension_is_refused(
    agents: dict[str, Agent], scope: dict[str, object], word: str
) -> None:
    root = open_root(agents["support"])
    response = delegate(agents["support"], root, "helper", [scope])
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == "delegation_widens"
    assert word in error["message"]


def test_the_child_never_outlives_the_parent(agents: dict[str, Agent]) -> None:
    root = open_root(agents["support"], UPDATE, ttl=120)
    child = delegate(agents["support"], root, "helper", [UPDATE], ttl_seconds=3600).json()
    assert child["expires_at"] == root["expires_at"]


def test_depth_is_limited(agents: dict[str, Agent]) -> None:
    chain = ["support", "helper", "payer", "deep", "deeper"]
    task = open_root(agents["support"], UPDATE)
    for parent, child in itertools.pairwise(chain[:4]):
        response = delegate(agents[parent], task, child, [UPDATE])
        assert response.status_code == 201, response.text
        task = response.json()
    assert task["delegation"]["depth"] == 3
    too_deep = delegate(agents["deep"], task, "deeper", [UPDATE])
    assert too_deep.status_code == 403
    assert too_deep.json()["error"]["code"] == "delegation_too_deep"


def test_policy_sees_the_chain(agents: dict[str, Agent]) -> None:
    root = open_root(agents["support"], PAY)
    one_hop = delegate(agents["support"], root, "helper", [PAY]).json()
    call = {"tool": "payments.transfer", "action": "spend", "args": {"amount": 50}}
    assert agents["helper"].authorize(one_hop["grant"], **call).json()["decision"] == "allow"
    # Two hops from the root: the grant preview already sees the chain, so nothing is granted.
    two_hops = delegate(agents["helper"], one_hop, "payer", [PAY])
    assert two_hops.status_code == 403
    error = two_hops.json()["error"]
    assert error["code"] == "nothing_granted"
    assert "payments" in error["message"]


def test_closing_the_parent_revokes_every_descendant(
    agents: dict[str, Agent], runtime: Runtime
) -> None:
    root = open_root(agents["support"], UPDATE)
    child = delegate(agents["support"], root, "helper", [UPDATE]).json()
    grandchild = delegate(agents["helper"], child, "payer", [UPDATE]).json()
    assert agents["support"].close(root["task_id"]).status_code == 200
    for name, task in (("helper", child), ("payer", grandchild)):
        verdict = agents[name].authorize(task["grant"], **WRITE).json()
        assert verdict["decision"] == "deny"
        assert codes(verdict) == ["grant_revoked"], name
    records = list(runtime.store.audit_records())
    revoked = [r for r in records if r.kind.value == "task_revoked"]
    assert {r.task_id for r in revoked} == {child["task_id"], grandchild["task_id"]}
    delegated = [r for r in records if r.kind.value == "task_delegated"]
    assert delegated[1].body["delegation"] == {  # type: ignore[comparison-overlap]
        "depth": 2,
        "chain": [TD + "support", TD + "helper"],
    }


def test_a_child_cannot_use_the_parents_approval(
    agents: dict[str, Agent], client: httpx.Client, runtime: Runtime
) -> None:
    root = open_root(agents["support"], PAY)
    call = {"tool": "payments.transfer", "action": "spend", "args": {"amount": 500}}
    asked = agents["support"].authorize(root["grant"], **call).json()
    approver = {"Authorization": f"Bearer {runtime.approvers.add('alice')}"}
    client.post(f"/v1/approvals/{asked['approval_id']}/approve", headers=approver)
    child = delegate(agents["support"], root, "helper", [PAY]).json()
    stolen = (
        agents["helper"].authorize(child["grant"], approval_id=asked["approval_id"], **call).json()
    )
    assert stolen["decision"] == "deny" and codes(stolen)[0] == "approval_mismatch"


def test_bad_delegations(agents: dict[str, Agent]) -> None:
    root = open_root(agents["support"], UPDATE)
    to_self = delegate(agents["support"], root, "support", [UPDATE])
    assert to_self.status_code == 400
    not_spiffe = agents["support"].client.post(
        f"/v1/tasks/{root['task_id']}/delegate",
        json={"grant": root["grant"], "agent": "helper", "scopes": [UPDATE]},
        headers=agents["support"].headers,
    )
    assert not_spiffe.status_code == 400
    # Someone else's task, or with someone else's grant, is not found for this caller.
    stranger = delegate(agents["helper"], root, "payer", [UPDATE])
    assert stranger.status_code in (403, 404)
    agents["support"].close(root["task_id"])
    closed = delegate(agents["support"], root, "helper", [UPDATE])
    assert closed.status_code == 409
    assert closed.json()["error"]["code"] == "task_not_open"
