"""Where a human changes a decision: an approval for one exact call, and break-glass.

The authorize pipeline (:mod:`tether.service.authorize`) reaches a :class:`Finding` by its checks;
these steps then decide whether a human's approval turns an ``approval_required`` into an allow
(used once, for exactly this call), or an active break-glass allows what the pipeline would not.
Grant-level failures are never overridden: neither revives a revoked, expired or stolen grant.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from tether.core.approval import Approval, check_use
from tether.core.breakglass import BreakGlass
from tether.core.call import Call
from tether.core.checks import scope_violation
from tether.core.identity import Workload
from tether.core.ids import ApprovalId, DecisionId, IdKind, is_well_formed
from tether.core.risks import Risk
from tether.core.scope import Classification, JSONValue
from tether.core.task import Grant, Task
from tether.core.verdict import Decision, Obligation, Reason, ReasonCode
from tether.service.approvals import ApprovalService
from tether.service.breakglass import BreakGlassService
from tether.service.ports import AuditEntry, Clock, ObservedVerdict, PolicyEngine, Store


@dataclass(frozen=True, slots=True)
class Finding:
    """The outcome of the checks before recording: a decision and why."""

    decision: Decision
    reasons: tuple[Reason, ...]
    risks: frozenset[Risk]
    policy_ids: tuple[str, ...] = ()
    obligations: tuple[Obligation, ...] = ()
    grant: Grant | None = None
    task: Task | None = None
    approvers: int = 1
    #: Set when an active break-glass allowed what the normal pipeline would not.
    breakglass: BreakGlass | None = None
    overridden: tuple[Decision, tuple[Reason, ...]] | None = None
    #: The workflow step the call takes and its dataset's classification (for progress).
    step: str | None = None
    classification: Classification | None = None
    #: Observe-mode policies that would have changed the policy decision: audited, not enforced.
    observed: tuple[ObservedVerdict, ...] = ()
    #: For ``approval_required``: the permits' obligations (row caps, redaction) that the allow
    #: carries once a human approves; a call approved is still capped as policy says.
    approved_obligations: tuple[Obligation, ...] = ()

    def audit_extra(self) -> dict[str, JSONValue]:
        """What this finding adds to its decision's audit body (``observed`` when non-empty)."""
        if not self.observed:
            return {}
        return {"observed": [o.to_json() for o in self.observed]}


NEVER_OVERRIDDEN = frozenset(
    {
        ReasonCode.GRANT_INVALID,
        ReasonCode.GRANT_EXPIRED,
        ReasonCode.GRANT_REVOKED,
        ReasonCode.GRANT_NOT_BOUND,
        ReasonCode.TASK_NOT_OPEN,
        ReasonCode.STORE_UNAVAILABLE,
    }
)


@dataclass(frozen=True, slots=True)
class ApprovalStep:
    """The finding after the approval step, and what it changes in the store."""

    finding: Finding
    new: tuple[Approval, AuditEntry] | None = None
    use: ApprovalId | None = None
    approval_ref: str | None = None


def deny(
    code: ReasonCode,
    message: str,
    risks: frozenset[Risk],
    grant: Grant | None = None,
    task: Task | None = None,
) -> Finding:
    return Finding(Decision.DENY, (Reason(code, message),), risks, grant=grant, task=task)


class HumanOverrides:
    """The approval and break-glass steps of the pipeline."""

    def __init__(
        self,
        *,
        store: Store,
        policy: PolicyEngine,
        clock: Clock,
        approvals: ApprovalService,
        breakglass: BreakGlassService | None,
    ) -> None:
        self._store = store
        self._policy = policy
        self._clock = clock
        self._approvals = approvals
        self._breakglass = breakglass

    def breakglass_step(self, agent: Workload, call: Call, finding: Finding) -> Finding:
        """Allow, under an active break-glass of this task, what the pipeline would not.

        Grant-level failures are never overridden: break-glass widens what a live grant may do,
        it does not revive a revoked, expired or stolen one.
        """
        if (
            self._breakglass is None
            or finding.decision is Decision.ALLOW
            or finding.grant is None
            or finding.task is None
            or any(r.code in NEVER_OVERRIDDEN for r in finding.reasons)
        ):
            return finding
        active = self._breakglass.active_for(finding.task.task_id, agent.id)
        if active is None:
            return finding
        pseudo = replace(finding.grant, scopes=active.scopes)
        if scope_violation(pseudo, call) is not None:
            return finding
        approvers = ", ".join(v.approver for v in active.votes if v.approve)
        until = active.active_until.isoformat() if active.active_until else "?"
        return Finding(
            Decision.ALLOW,
            (
                Reason(
                    ReasonCode.BREAK_GLASS,
                    f"allowed under break-glass {active.breakglass_id} (approved by {approvers}, "
                    f"until {until}); normally: {finding.decision.value}",
                ),
            ),
            finding.risks | {Risk.ASI10},
            finding.policy_ids,
            grant=finding.grant,
            task=finding.task,
            breakglass=active,
            overridden=(finding.decision, finding.reasons),
            observed=finding.observed,
        )

    def approval_step(
        self,
        agent: Workload,
        call: Call,
        finding: Finding,
        decision_id: DecisionId,
        approval_id: str | None,
    ) -> ApprovalStep:
        grant, task = finding.grant, finding.task
        if grant is None or task is None:  # cannot happen: policy ran, so both were found
            return ApprovalStep(deny(ReasonCode.GRANT_INVALID, "no grant", finding.risks))
        risks = finding.risks | {Risk.ASI09}
        if approval_id is not None:
            approval = (
                self._store.get_approval(ApprovalId(approval_id))
                if is_well_formed(approval_id, IdKind.APPROVAL)
                else None
            )
            if approval is None:
                return ApprovalStep(
                    deny(
                        ReasonCode.APPROVAL_UNKNOWN,
                        "no such approval; retry without approval_id to request one",
                        risks,
                        grant,
                        task,
                    )
                )
            problem = check_use(
                approval,
                agent=agent.id,
                task_id=task.task_id,
                tool=call.tool,
                action=call.action,
                dataset=call.dataset,
                args_mac=self._approvals.args_mac(call),
                now=self._clock.now(),
            )
            if problem is not None:
                return ApprovalStep(
                    Finding(
                        Decision.DENY,
                        (problem, *finding.reasons),
                        risks,
                        finding.policy_ids,
                        grant=grant,
                        task=task,
                        observed=finding.observed,
                    )
                )
            approvers = ", ".join(v.approver for v in approval.votes if v.approve)
            granted = Finding(
                Decision.ALLOW,
                (
                    Reason(
                        ReasonCode.APPROVAL_GRANTED,
                        f"approved by {approvers} (approval {approval.approval_id}); "
                        "this approval is now used",
                    ),
                ),
                risks,
                finding.policy_ids,
                finding.approved_obligations,
                grant=grant,
                task=task,
                observed=finding.observed,
            )
            return ApprovalStep(granted, use=approval.approval_id, approval_ref=approval_id)
        existing = self._approvals.pending_for(agent, task, call)
        if existing is not None:
            return ApprovalStep(
                Finding(
                    finding.decision,
                    finding.reasons,
                    risks,
                    finding.policy_ids,
                    grant=grant,
                    task=task,
                    observed=finding.observed,
                ),
                approval_ref=existing.approval_id,
            )
        new = self._approvals.draft(
            agent=agent,
            task=task,
            grant=grant,
            call=call,
            decision_id=decision_id,
            classification=self._policy.classification(call.dataset) if call.dataset else None,
            why=[r.message for r in finding.reasons],
            policy_ids=finding.policy_ids,
            required=finding.approvers,
        )
        return ApprovalStep(
            Finding(
                finding.decision,
                finding.reasons,
                risks,
                finding.policy_ids,
                grant=grant,
                task=task,
                observed=finding.observed,
            ),
            new=new,
            approval_ref=new[0].approval_id,
        )
