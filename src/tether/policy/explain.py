"""Explain one decision: the verdict, the policies that matched, and the context Cedar saw.

``tether policy explain`` (like ``cedar authorize --verbose`` or ``opa eval --explain``) asks the
engine for its verdict through :meth:`CedarPolicyEngine.decide`, the very call every door makes,
so the verdict shown is the verdict served. It then repeats the evaluation with the same
snapshot, the same policy subset and the same context builder to show what ``decide`` does not
return: each policy whose head applies, whether its conditions held (every policy is evaluated as
a permit for this, so a satisfied permit shows even when a forbid decided), the error it raised,
and the exact context record Cedar was given (only the attributes those policies read).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import cedarpy

from tether.policy.context import CedarJSON, Unrepresentable, build_context
from tether.policy.engine import CedarPolicyEngine, PolicySnapshot
from tether.policy.engine import _cedar_request as cedar_request  # the request decide() sends
from tether.policy.engine import _facts as call_facts  # the facts decide() reads
from tether.policy.index import CompiledSubset
from tether.policy.index import _policy_set as policy_set
from tether.policy.meta import PolicyMeta
from tether.service.ports import PolicyOutcome, PolicyRequest

_ERROR_POLICY: Final = re.compile(r"^error while evaluating policy `([^`]*)`:\s*")


@dataclass(frozen=True, slots=True)
class PolicyTrace:
    """One policy whose head applies to the call: did its conditions hold, or did it error?"""

    policy: PolicyMeta
    satisfied: bool
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        meta = self.policy
        return {
            "policy_id": meta.policy_id,
            "effect": meta.effect.value,
            "approval_required": meta.is_approval_forbid,
            "mode": meta.mode.value,
            "file": meta.file,
            "line": meta.line,
            "satisfied": self.satisfied,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class Explanation:
    request: PolicyRequest
    outcome: PolicyOutcome
    revision: str
    #: The enforcing policies whose head applies, in load order.
    evaluated: tuple[PolicyTrace, ...]
    #: The observe-mode policies whose head applies (audited, never enforced).
    observing: tuple[PolicyTrace, ...]
    #: The context record Cedar was given for the enforcing policies (``None`` if none applied
    #: or the call could not be represented).
    context: Mapping[str, CedarJSON] | None
    #: Why no context was sent, when one was not.
    note: str | None = None

    @property
    def matched(self) -> tuple[PolicyTrace, ...]:
        return tuple(t for t in self.evaluated if t.satisfied)

    def to_json(self) -> dict[str, Any]:
        outcome, call = self.outcome, self.request.call
        classification = self.request.classification
        return {
            "decision": outcome.decision.value,
            "reasons": [r.to_json() for r in outcome.reasons],
            "policy_ids": list(outcome.policy_ids),
            "obligations": [{"kind": o.kind.value, "value": o.value} for o in outcome.obligations],
            "risks": sorted(r.value for r in outcome.risks),
            "approvers": outcome.approvers,
            "observed": [
                {"policy_id": o.policy_id, "would": o.would.value} for o in outcome.observed
            ],
            "request": {
                "agent": self.request.agent.id,
                "call": call.to_json(),
                "classification": classification.value if classification is not None else None,
                "intent": self.request.intent.to_json(),
                "task_id": self.request.task_id,
                "delegated_by": list(self.request.delegators),
                "dataflow": (
                    self.request.dataflow.value if self.request.dataflow is not None else None
                ),
            },
            "policies": [t.to_json() for t in self.evaluated],
            "observe_policies": [t.to_json() for t in self.observing],
            "context": self.context,
            "note": self.note,
            "revision": self.revision,
        }


def explain(engine: CedarPolicyEngine, request: PolicyRequest) -> Explanation:
    """Decide ``request`` and say why (see the module docstring)."""
    snapshot = engine.snapshot
    outcome = engine.decide(request)
    call = request.call
    facts = call_facts(request)
    enforcing = snapshot.index.subset(call.action, call.tool)
    context: dict[str, CedarJSON] | None = None
    note: str | None = None
    evaluated: tuple[PolicyTrace, ...] = ()
    if enforcing.evaluation is None:
        note = f"no policy's head applies to {call.action.value} on {call.tool}"
    else:
        try:
            context = build_context(facts, call.args, enforcing.refs)
        except Unrepresentable as exc:
            note = f"{exc}; the call is denied"
        else:
            evaluated = _trace(snapshot, enforcing, request, context)
    observing: tuple[PolicyTrace, ...] = ()
    observe_subset = snapshot.observe_index.subset(call.action, call.tool)
    if observe_subset.evaluation is not None:
        try:
            observe_context = build_context(facts, call.args, observe_subset.refs)
        except Unrepresentable:
            pass
        else:
            observing = _trace(snapshot, observe_subset, request, observe_context)
    return Explanation(request, outcome, snapshot.revision, evaluated, observing, context, note)


def _trace(
    snapshot: PolicySnapshot,
    subset: CompiledSubset,
    request: PolicyRequest,
    context: Mapping[str, CedarJSON],
) -> tuple[PolicyTrace, ...]:
    """Evaluate every policy of ``subset`` as a permit: Cedar then lists each satisfied one."""
    policies: Sequence[PolicyMeta] = sorted(subset.policies, key=lambda p: p.order)
    every = policy_set((p.policy_id, p.est_for_observation()) for p in policies)
    result = cedarpy.is_authorized(cedar_request(request, context), every, snapshot.entities)
    satisfied = set(result.diagnostics.reasons)
    errors: dict[str, str] = {}
    for error in result.diagnostics.errors:
        match = _ERROR_POLICY.match(error)
        if match is not None:
            errors[match.group(1)] = error[match.end() :]
    return tuple(
        PolicyTrace(p, p.policy_id in satisfied, errors.get(p.policy_id)) for p in policies
    )
