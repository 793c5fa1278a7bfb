"""The controls report: framework mapping as data, evidence counted from a recorded log, gaps."""

from __future__ import annotations

from pathlib import Path

import httpx

from reports.scenario import Recorded
from support import Agent
from tether.core.risks import Risk
from tether.reports import Coverage, controls
from tether.reports.controls import ControlsReport
from tether.reports.frameworks import (
    CONTROLS,
    MAESTRO_TITLES,
    NHI_TITLES,
    AiRmf,
    ControlKey,
    Csf,
    Maestro,
    Nhi,
    not_addressed,
)
from tether.runtime import Runtime


def evidence(report: ControlsReport) -> dict[str, tuple[str, int, int, int, int, dict[str, int]]]:
    return {
        row.control.key.value: (
            row.coverage.value,
            row.evidence.decisions,
            row.evidence.denials,
            row.evidence.approvals,
            row.evidence.breakglass_uses,
            dict(row.evidence.facts),
        )
        for row in report.rows
    }


def test_every_asi_id_is_addressed_by_some_control() -> None:
    covered = {risk for c in CONTROLS for risk in c.asi}
    assert covered == set(Risk)


def test_the_mapping_uses_the_published_names() -> None:
    assert [f"{n.value} {n.label}" for n in Nhi] == [
        "NHI1 Improper Offboarding",
        "NHI2 Secret Leakage",
        "NHI3 Vulnerable Third-Party NHI",
        "NHI4 Insecure Authentication",
        "NHI5 Overprivileged NHI",
        "NHI6 Insecure Cloud Deployment Configurations",
        "NHI7 Long-Lived Secrets",
        "NHI8 Environment Isolation",
        "NHI9 NHI Reuse",
        "NHI10 Human Use of NHI",
    ]
    assert [f.value for f in AiRmf] == ["Govern", "Map", "Measure", "Manage"]
    assert [f.value for f in Csf] == [
        "Govern",
        "Identify",
        "Protect",
        "Detect",
        "Respond",
        "Recover",
    ]
    assert set(NHI_TITLES) == set(Nhi) and set(MAESTRO_TITLES) == set(Maestro)
    assert len({c.key for c in CONTROLS}) == len(CONTROLS) == len(ControlKey)
    for c in CONTROLS:
        assert c.asi and c.ai_rmf and c.csf and c.maestro, c.key
    assert not_addressed() == ([Nhi.NHI6, Nhi.NHI10], [Maestro.L1])


def test_evidence_and_gaps_from_a_recorded_day(day: Recorded) -> None:
    report = controls(day.records)
    assert (report.records, report.decisions) == (33, 14)
    assert evidence(report) == {
        "workload_identity": ("evidenced", 14, 1, 0, 0, {"agents seen": 4}),
        "task_grants": (
            "evidenced",
            14,
            0,
            0,
            0,
            {
                "tasks opened": 4,
                "scopes refused at open": 3,
                "tasks closed": 3,
                "tasks revoked": 1,
            },
        ),
        "per_call_policy": ("evidenced", 13, 3, 0, 0, {}),
        "argument_constraints": ("evidenced", 5, 1, 0, 0, {"grants with constrained scopes": 3}),
        "approvals": (
            "evidenced",
            2,
            0,
            1,
            0,
            {"approvals requested": 1, "votes to approve": 1},
        ),
        "break_glass": ("evidenced", 1, 0, 0, 1, {"requests": 1, "activations": 1}),
        "delegation": (
            "evidenced",
            2,
            1,
            0,
            0,
            {"delegations": 1, "revoked with their parent": 1},
        ),
        "audit_chain": ("evidenced", 14, 0, 0, 0, {"effects reported": 4}),
        # The two allowed payments got scoped tokens (credentials.yaml); both ended with the
        # task that was closed.
        "jit_credentials": (
            "evidenced",
            2,
            0,
            0,
            0,
            {"leases issued": 2, "leases ended with their task": 2},
        ),
        "tool_pinning": ("not seen", 0, 0, 0, 0, {}),
        "budgets": ("not seen", 0, 0, 0, 0, {}),
        "egress_rules": ("not seen", 0, 0, 0, 0, {}),
        "declared_workflows": ("not seen", 0, 0, 0, 0, {}),
    }
    gaps = [(g.control.value if g.control else None, g.message) for g in report.gaps]
    [breakglass] = [m for k, m in gaps if k == "break_glass"]
    assert "was activated and used for 1 call(s) but no review was written" in breakglass
    assert (
        "audit_chain",
        "4 of 8 allowed call(s) have no reported effect: their side effects are not in the log",
    ) in gaps
    assert any(
        k == "task_grants"
        and m.startswith("10 of 15 granted (tool, action, dataset) triples")
        and "ratio 0.33" in m
        for k, m in gaps
    )
    # A spend call needed a human in this log: no "no approval for spend" gap.
    assert not any("spend" in m for _, m in gaps)
    not_seen = [k for k, m in gaps if "no evidence in the window" in m]
    assert not_seen == [
        "tool_pinning",
        "budgets",
        "egress_rules",
        "declared_workflows",
    ]


def test_a_review_closes_the_breakglass_gap(
    day: Recorded, client: httpx.Client, runtime: Runtime
) -> None:
    [bg] = [r for r in day.records if r.kind.value == "breakglass_requested"]
    reviewer = {"Authorization": f"Bearer {runtime.approvers.add('dave')}"}
    response = client.post(
        f"/v1/breakglass/{bg.body['breakglass_id']}/review",
        json={"note": "record c-9 was poisoned; purge confirmed"},
        headers=reviewer,
    )
    assert response.status_code == 200, response.text
    report = controls(runtime.store.audit_records())
    assert not [g for g in report.gaps if g.control is ControlKey.BREAK_GLASS]
    [row] = [r for r in report.rows if r.control.key is ControlKey.BREAK_GLASS]
    assert dict(row.evidence.facts)["reviews written"] == 1


def test_spend_that_never_needs_a_human_is_a_gap(analyst: Agent, runtime: Runtime) -> None:
    pay: dict[str, object] = {
        "tool": "payments.transfer",
        "actions": ["spend"],
        "constraints": {"amount": {"max": 1000}},
    }
    grant = analyst.open_task([pay]).json()["grant"]
    for amount in (20, 30):
        verdict = analyst.authorize(
            grant, tool="payments.transfer", action="spend", args={"amount": amount}
        ).json()
        assert verdict["decision"] == "allow"
    report = controls(runtime.store.audit_records())
    messages = [g.message for g in report.gaps if g.control is ControlKey.APPROVALS]
    assert messages == [
        "no approval was ever required for any spend call: 2 spend call(s) allowed without a "
        "human (payments.transfer)"
    ]


def test_an_empty_window_says_so(tmp_path: Path) -> None:
    report = controls([])
    assert report.decisions == 0
    assert report.gaps[0].message.startswith("no decisions in the window")
    assert {r.coverage for r in report.rows} == {Coverage.IDLE, Coverage.NOT_SEEN}
