"""Build the facts of one decision from a YAML case (tests/core/decisions/*.yaml).

A case file has ``defaults`` (the facts every case starts from), optional ``workflows`` (the
``workflows.yaml`` format) and ``sinks`` (egress tools), and ``cases``. Each case's ``given`` is
merged over the defaults, key by key (a list or scalar replaces; a mapping merges), so a case
names only what makes it differ. Times are seconds from a fixed ``now``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from tether.core.approval import Approval, ApprovalState, Vote
from tether.core.breakglass import BreakGlass, BreakGlassId, BreakGlassState
from tether.core.budget import Budgets
from tether.core.call import Call
from tether.core.dataflow import EgressRules
from tether.core.facts import CallFacts, LateFacts, ObservedVerdict, PolicyOutcome, TokenStatus
from tether.core.ids import ApprovalId, DecisionId, GrantId, TaskId
from tether.core.lease import IssuerKind, Lease, LeaseId, open_lease
from tether.core.provenance import (
    Need,
    Observation,
    Outcome,
    ProvenanceIndex,
    SinkRequirement,
    Source,
    Trust,
    fingerprints,
    observe,
)
from tether.core.provenance_extract import ValueKind
from tether.core.provenance_rules import (
    NO_PROVENANCE,
    REQUEST_SOURCE,
    ArgumentProvenance,
    assess,
)
from tether.core.risks import Risk
from tether.core.scope import ActionKind, Classification, Scope
from tether.core.task import Grant, GrantState, Intent, Task, TaskState
from tether.core.verdict import Decision, Obligation, ObligationKind, Reason, ReasonCode
from tether.core.workflow import Workflow
from tether.policy.flows import parse_workflows

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PROVENANCE_KEY = bytes(range(32))
TD = "spiffe://tether.local/agent/"


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def agent_id(name: str) -> str:
    return name if name.startswith("spiffe://") else TD + name


def merge(base: Any, over: Any) -> Any:
    if isinstance(base, Mapping) and isinstance(over, Mapping):
        out = dict(base)
        for key, value in over.items():
            out[key] = merge(base.get(key), value) if key in base else value
        return out
    return over


@dataclass(frozen=True)
class Case:
    name: str
    file: str
    facts: CallFacts
    outcome: PolicyOutcome | None
    late: LateFacts
    after: dict[str, Any]
    expect: dict[str, Any]


def _scopes(raw: list[dict[str, Any]]) -> tuple[Scope, ...]:
    return tuple(Scope.from_json(s) for s in raw)


def _task(raw: dict[str, Any], index: int, agent: str) -> Task:
    return Task(
        task_id=TaskId(f"tsk_{index}"),
        agent=agent_id(raw.get("agent", agent)),
        intent=Intent(raw.get("workflow", "support-triage"), "a purpose", "user:alice"),
        requested=(),
        granted=(),
        state=TaskState(raw.get("state", "open")),
        opened_at=at(-60),
        expires_at=at(raw.get("expires_in", 600)),
        parent_task_id=TaskId(f"tsk_{index + 1}") if raw.get("has_parent") else None,
        budgets=Budgets.from_json(raw.get("budgets", {})),
        label=raw.get("label", ""),
        workflow_step=raw.get("step"),
    )


def _outcome(raw: dict[str, Any] | None) -> PolicyOutcome | None:
    if raw is None:
        return None
    return PolicyOutcome(
        decision=Decision(raw["decision"]),
        reasons=tuple(Reason(ReasonCode(code), f"{code} because") for code in raw["reasons"]),
        policy_ids=tuple(raw.get("policy_ids", ())),
        obligations=tuple(
            Obligation(ObligationKind(o["kind"]), str(o["value"]), o.get("policy_id"))
            for o in raw.get("obligations", ())
        ),
        risks=frozenset(Risk(r) for r in raw.get("risks", ())),
        approvers=raw.get("approvers", 1),
        observed=tuple(
            ObservedVerdict(o["policy_id"], Decision(o["would"])) for o in raw.get("observed", ())
        ),
    )


def _approval(raw: dict[str, Any], facts: CallFacts) -> Approval:
    call, task = facts.call, facts.task
    assert task is not None
    votes = tuple(Vote(v, True, "ok", at(-5)) for v in raw.get("approvers", ["ops-lead"]))
    return Approval(
        approval_id=ApprovalId(raw.get("id", "apr_0000000000000000000000000a")),
        decision_id=DecisionId("dec_0000000000000000000000000a"),
        task_id=TaskId(raw.get("task_id", task.task_id)),
        grant_id=GrantId("grt_1"),
        agent=agent_id(raw.get("agent", facts.agent)),
        tool=raw.get("tool", call.tool),
        action=ActionKind(raw.get("action", call.action.value)),
        dataset=raw.get("dataset", call.dataset),
        args=dict(call.args),
        args_mac=raw.get("args_mac", "mac-of-args"),
        policy_ids=(),
        why="",
        required=1,
        summary=(),
        created_at=at(-30),
        expires_at=at(raw.get("expires_in", 600)),
        state=ApprovalState(raw.get("state", "approved")),
        votes=votes,
    )


def _breakglass(raw: dict[str, Any], facts: CallFacts) -> BreakGlass:
    task = facts.task
    assert task is not None
    return BreakGlass(
        breakglass_id=BreakGlassId("bgl_0000000000000000000000000a"),
        task_id=raw.get("task_id", task.task_id),
        agent=agent_id(raw.get("agent", facts.agent)),
        scopes=_scopes(raw["scopes"]),
        reason="incident",
        requested_by="oncall",
        requested_at=at(-120),
        decide_by=at(600),
        window_seconds=900,
        required=2,
        state=BreakGlassState(raw.get("state", "active")),
        votes=(Vote("security", True, "ok", at(-60)), Vote("ops-lead", True, "ok", at(-60))),
        active_from=at(-60),
        active_until=at(raw.get("active_for", 840)),
    )


def lease_for(facts: CallFacts) -> Lease:
    grant, task = facts.grant, facts.task
    assert grant is not None and task is not None
    return open_lease(
        lease_id=LeaseId("lse_0000000000000000000000000a"),
        task_id=TaskId(task.task_id),
        grant_id=GrantId(grant.grant_id),
        agent=facts.agent,
        issuer=IssuerKind.SCOPED_JWT,
        scope=Scope.of(facts.call.tool, [facts.call.action], []),
        now=NOW,
        ttl=timedelta(seconds=60),
        max_ttl=timedelta(seconds=120),
        grant_expires_at=grant.expires_at,
        issuer_name="payments-api",
    )


def provenance(raw: dict[str, Any] | None, call: Call) -> ArgumentProvenance:
    """The provenance facts of ``call`` from a case's ``provenance``: the user's ``request``,
    the tool results the task ``observed`` ({tool, dataset, trust, result, complete}) and the
    tool's ``sinks`` ({argument, need, outcome, kinds}), checked by the real extractors."""
    if not raw:
        return NO_PROVENANCE
    observations = []
    if raw.get("request"):
        found, _ = fingerprints(PROVENANCE_KEY, raw["request"])
        observations.append(Observation(REQUEST_SOURCE, found))
    for seen in raw.get("observed", ()):
        source = Source(seen["tool"], seen.get("dataset"), Trust(seen.get("trust", "untrusted")))
        observation = observe(PROVENANCE_KEY, source, seen["result"])
        if seen.get("complete") is False:
            observation = Observation(source, observation.fingerprints, complete=False)
        observations.append(observation)
    sinks = tuple(
        SinkRequirement(
            s["argument"],
            Need(s["need"]),
            Outcome(s.get("outcome", "deny")),
            **({"kinds": frozenset(ValueKind(k) for k in s["kinds"])} if "kinds" in s else {}),
        )
        for s in raw.get("sinks", ())
    )
    return assess(call.args, sinks, ProvenanceIndex.of(observations), PROVENANCE_KEY)


def build(raw: dict[str, Any], workflows: dict[str, Workflow], sinks: list[str]) -> CallFacts:
    agent = agent_id(raw.get("agent", "analyst"))
    call_raw = raw["call"]
    call = Call(
        call_raw["tool"],
        ActionKind(call_raw["action"]),
        call_raw.get("dataset"),
        dict(call_raw.get("args", {})),
    )
    token = TokenStatus(raw.get("token", "valid"))
    if token is not TokenStatus.VALID:
        return CallFacts(agent, call, NOW, token)
    token_agent = agent_id(raw.get("token_agent", raw.get("agent", "analyst")))
    facts = CallFacts(agent, call, NOW, token, token_agent=token_agent)
    grant_raw = raw.get("grant")
    if grant_raw is None:
        return facts
    chain = tuple(
        _task(t, i, raw.get("agent", "analyst")) for i, t in enumerate(raw.get("chain", []))
    )
    grant = Grant(
        grant_id=GrantId("grt_1"),
        task_id=chain[0].task_id if chain else TaskId("tsk_0"),
        agent=agent_id(grant_raw.get("agent", raw.get("agent", "analyst"))),
        scopes=_scopes(grant_raw["scopes"]),
        issued_at=at(-60),
        expires_at=at(grant_raw.get("expires_in", 600)),
        state=GrantState(grant_raw.get("state", "active")),
        policy_revision="r1",
        delegators=tuple(agent_id(d) for d in grant_raw.get("delegators", ())),
    )
    classification = raw.get("classification")
    root_workflow = chain[-1].intent.workflow if chain else None
    return CallFacts(
        agent,
        call,
        NOW,
        token,
        token_agent=token_agent,
        grant=grant,
        chain=chain,
        classification=Classification(classification) if classification else None,
        workflow=workflows.get(root_workflow) if root_workflow else None,
        egress=EgressRules(frozenset(sinks)),
        provenance=provenance(raw.get("provenance"), call),
    )


def load(path: Path) -> list[Case]:
    doc = yaml.safe_load(path.read_text())
    workflows = parse_workflows({"workflows": doc.get("workflows", {})}, source=str(path))
    sinks = list(doc.get("sinks", []))
    cases = []
    for raw_case in doc["cases"]:
        given = merge(doc.get("defaults", {}), raw_case.get("given", {}))
        facts = build(given, workflows, sinks)
        late_raw = raw_case.get("late", {})
        late = LateFacts(
            anomaly=(
                Reason(ReasonCode.ANOMALOUS_VOLUME, "far past the workflow's history")
                if late_raw.get("anomaly")
                else None
            ),
            breakglass=(
                _breakglass(late_raw["breakglass"], facts) if "breakglass" in late_raw else None
            ),
            approval_id=late_raw.get("approval_id"),
            approval=_approval(late_raw["approval"], facts) if "approval" in late_raw else None,
            pending=_approval(late_raw["pending"], facts) if "pending" in late_raw else None,
            args_mac=late_raw.get("args_mac", "mac-of-args"),
        )
        cases.append(
            Case(
                name=raw_case["name"],
                file=path.name,
                facts=facts,
                outcome=_outcome(given.get("policy")),
                late=late,
                after=dict(raw_case.get("after", {})),
                expect=dict(raw_case["expect"]),
            )
        )
    return cases
