"""A read reserves at least its floor against a records budget, whatever it declares.

Regression test of a hole an adversarial review found: with a records budget of 10, a task got
30 of 30 reads allowed by declaring ``expect: {records: 0}`` and reporting no effects.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from support import Agent, copy_policies
from tether.core.budget import ReadFloors
from tether.core.errors import ConfigurationError
from tether.policy.flows import load_read_floors

CRM = {"tool": "crm.query", "actions": ["read"], "datasets": ["crm"]}
DOCS = {"tool": "docs.search", "actions": ["read"], "datasets": ["docs"]}
READ = {"tool": "crm.query", "action": "read", "dataset": "crm"}


def codes(verdict: dict[str, object]) -> list[str]:
    return [r["code"] for r in verdict["reasons"]]  # type: ignore[index, union-attr]


def test_declaring_nothing_taken_does_not_read_past_the_budget(analyst: Agent) -> None:
    response = analyst.open_task([CRM], ttl_seconds=3600, budgets={"records": 250})
    assert response.status_code == 201, response.text
    grant = response.json()["grant"]
    decisions = [analyst.authorize(grant, expect={"records": 0}, **READ).json() for _ in range(30)]
    allowed = [d for d in decisions if d["decision"] == "allow"]
    assert len(allowed) == 2  # 100 records each until settled: two fit in 250
    assert codes(decisions[2]) == ["budget_exceeded"]


def test_a_read_whose_effect_never_arrives_keeps_its_whole_reservation(analyst: Agent) -> None:
    grant = analyst.open_task([CRM], ttl_seconds=3600, budgets={"records": 150}).json()["grant"]
    first = analyst.authorize(grant, expect={"records": 0}, **READ).json()
    assert first["decision"] == "allow"
    # No effect reported: the 100 stay held, so 50 records do not cover another read's floor.
    assert analyst.authorize(grant, expect={"records": 0}, **READ).json()["decision"] == "deny"
    analyst.effect(first["decision_id"], status="ok", records=3)  # now it is settled at 3
    assert analyst.authorize(grant, expect={"records": 0}, **READ).json()["decision"] == "allow"


def test_a_declaration_above_the_floor_reserves_what_it_declares(analyst: Agent) -> None:
    grant = analyst.open_task([CRM], ttl_seconds=3600, budgets={"records": 950}).json()["grant"]
    assert analyst.authorize(grant, expect={"records": 900}, **READ).json()["decision"] == "allow"
    assert analyst.authorize(grant, expect={"records": 0}, **READ).json()["decision"] == "deny"


def test_a_tools_own_floor_replaces_the_default(analyst: Agent) -> None:
    # The example dataflow.yaml gives docs.search a floor of 10.
    grant = analyst.open_task([DOCS], ttl_seconds=3600, budgets={"records": 35}).json()["grant"]
    search = {"tool": "docs.search", "action": "read", "dataset": "docs"}
    decisions = [analyst.authorize(grant, **search).json()["decision"] for _ in range(5)]
    assert decisions == ["allow", "allow", "allow", "deny", "deny"]


def test_floors_resolve_dataset_and_tool_over_the_default() -> None:
    floors = ReadFloors(default=100, tools={"crm.query": 20}, datasets={"payroll": 500})
    assert floors.records_for("crm.query", "crm") == 20
    assert floors.records_for("crm.query", "payroll") == 500  # the higher of the two named
    assert floors.records_for("other.tool", None) == 100


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("read_floors: {default: -1}", "1:24: read_floors.default: must be at least 0"),
        ("read_floors: {default: 1.5}", "1:24: read_floors.default: must be a whole number"),
        (
            "read_floors: {tools: {crm.query: many}}",
            "1:34: read_floors.tools.crm.query: must be a whole number",
        ),
        ("read_floors: {tools: [crm.query]}", "1:22: read_floors.tools: must be a mapping"),
        (
            "read_floors: {ceiling: 5}",
            "1:15: read_floors.ceiling: unknown key; allowed here: datasets, default, tools",
        ),
        ("read_floor: {default: 5}", "1:1: read_floor: unknown key; did you mean 'read_floors'?"),
    ],
)
def test_a_bad_read_floors_entry_stops_tether_naming_it(
    tmp_path: Path, text: str, message: str
) -> None:
    policies = copy_policies(tmp_path / "policies")
    (policies / "dataflow.yaml").write_text(text + "\n", encoding="utf-8")
    with pytest.raises(ConfigurationError) as caught:
        load_read_floors(policies)
    assert caught.value.code.value == "policy_invalid"
    assert caught.value.message == f"dataflow.yaml:{message}"
