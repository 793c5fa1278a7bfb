"""Authorize one tool call: the decision pipeline, cheapest check first, fail closed.

    grant token verifies → bound to the caller → grant active, task open
      → scope: tool → action → dataset → argument constraints
      → Cedar policies → verdict → recorded with its audit record (or deny)

Every step that fails yields a ``deny`` verdict with a stable reason code and the OWASP Agentic
risk ids the step guards against. Nothing is answered from a cache: sensitive (non-``read``)
calls never may be, and read decisions are cheap enough not to need one yet.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime

from tether.core.audit import AuditKind
from tether.core.call import Call
from tether.core.callcheck import CallLimits, checked_call
from tether.core.checks import scope_violation
from tether.core.dataflow import chain_label
from tether.core.errors import BudgetExceeded, Conflict, TetherError, Unauthenticated
from tether.core.identity import Workload
from tether.core.ids import (
    DecisionId,
    GrantId,
    IdFactory,
    TaskId,
)
from tether.core.lease import Lease, credential_obligation
from tether.core.risks import Risk
from tether.core.scope import ActionKind, Classification, JSONValue
from tether.core.task import GrantState, Task, TaskState
from tether.core.verdict import (
    Decision,
    IssuedCredential,
    Reason,
    ReasonCode,
    Verdict,
    sorted_risks,
)
from tether.service.approvals import ApprovalService
from tether.service.breakglass import BreakGlassService
from tether.service.enforce import CallRequest
from tether.service.flows import Expect, Flows
from tether.service.leases import LeaseService
from tether.service.overrides import ApprovalStep, Finding, HumanOverrides, deny
from tether.service.ports import (
    AuditEntry,
    BudgetCharge,
    Clock,
    DecisionRecord,
    GrantSigner,
    PolicyEngine,
    PolicyRequest,
    Store,
    TaskProgress,
)
from tether.service.recording import Recorder

_GRANT_RISKS = frozenset({Risk.ASI03, Risk.ASI10})
_SCOPE_RISKS = frozenset({Risk.ASI02, Risk.ASI03})
_ARG_RISKS = frozenset({Risk.ASI01, Risk.ASI02})
# Reading far more than the workflow's past tasks: tool misuse by volume, an agent gone rogue.
_ANOMALY_RISKS = frozenset({Risk.ASI02, Risk.ASI10})


@dataclass(frozen=True, slots=True)
class _FlowFacts:
    step: str | None
    classification: Classification | None
    expect: Expect | None


class Authorizer:
    def __init__(
        self,
        *,
        store: Store,
        policy: PolicyEngine,
        signer: GrantSigner,
        clock: Clock,
        ids: IdFactory,
        recorder: Recorder,
        approvals: ApprovalService,
        breakglass: BreakGlassService | None = None,
        flows: Flows | None = None,
        leases: LeaseService | None = None,
        limits: CallLimits | None = None,
    ) -> None:
        self._limits = limits if limits is not None else CallLimits()
        self._store = store
        self._policy = policy
        self._signer = signer
        self._clock = clock
        self._ids = ids
        self._rec = recorder
        self._approvals = approvals
        self._breakglass = breakglass
        self._flows = flows
        self._leases = leases
        self._overrides = HumanOverrides(
            store=store, policy=policy, clock=clock, approvals=approvals, breakglass=breakglass
        )

    def enforce(
        self,
        agent: Workload,
        grant_token: str,
        request: CallRequest,
        *,
        credentials: bool = False,
    ) -> Verdict:
        """The one enforcement entry of every door: check the call's input once, then decide.

        Raises :class:`~tether.core.errors.InvalidRequest` (``invalid_field`` or
        ``payload_too_large``) for input that cannot be decided on; each door maps it to its own
        wire error. Everything else is a verdict, recorded in the audit log."""
        call = checked_call(
            request.tool, request.action, request.dataset, request.args, self._limits
        )
        return self.authorize(
            agent,
            grant_token,
            call,
            request.approval_id,
            expect=request.expect,
            credentials=credentials,
        )

    def authorize(
        self,
        agent: Workload,
        grant_token: str,
        call: Call,
        approval_id: str | None = None,
        *,
        expect: Expect | None = None,
        credentials: bool = False,
    ) -> Verdict:
        """Decide ``call`` for ``agent`` holding ``grant_token``; ``approval_id`` names an
        approval a human gave for exactly this call; ``expect`` declares what a read may take
        (its budget reservation); ``credentials`` asks for the call's just-in-time credential
        on allow (only a caller that hands it to the agent asks: a credential nobody receives
        is never minted). Never raises for a well-formed call: every failure is a ``deny``
        carrying its cause."""
        now = self._clock.now()
        try:
            finding = self._check(agent, grant_token, call, expect)
        except TetherError as error:
            # A store that cannot answer must not let anything through.
            finding = deny(ReasonCode.STORE_UNAVAILABLE, error.message, _GRANT_RISKS)
        flow = _FlowFacts(finding.step, finding.classification, expect)
        try:
            finding = self._overrides.breakglass_step(agent, call, finding)
        except TetherError as error:
            finding = deny(ReasonCode.STORE_UNAVAILABLE, error.message, finding.risks)
        decision_id = self._ids.decision()
        step = ApprovalStep(finding)
        if finding.decision is Decision.APPROVAL_REQUIRED:
            try:
                step = self._overrides.approval_step(agent, call, finding, decision_id, approval_id)
            except TetherError as error:
                step = ApprovalStep(
                    deny(ReasonCode.STORE_UNAVAILABLE, error.message, finding.risks)
                )
        minted = None
        if credentials and step.finding.decision is Decision.ALLOW:
            try:
                minted = self._mint(agent, call, step.finding, decision_id, now)
            except TetherError as error:
                # Fail closed: an allow whose credential cannot be minted is a deny.
                step = ApprovalStep(
                    deny(
                        ReasonCode.CREDENTIAL_UNAVAILABLE,
                        f"the call is allowed but its credential could not be issued, so it is "
                        f"denied: {error.message}",
                        step.finding.risks,
                        step.finding.grant,
                        step.finding.task,
                    )
                )
        try:
            verdict = self._record(agent, call, step, decision_id, now, flow, minted)
        except BudgetExceeded as exceeded:
            over = deny(
                ReasonCode.BUDGET_EXCEEDED,
                exceeded.message,
                step.finding.risks | {Risk.ASI02, Risk.ASI08},
                step.finding.grant,
                step.finding.task,
            )
            try:
                verdict = self._record(agent, call, ApprovalStep(over), decision_id, now)
            except TetherError as error:
                return self._unrecorded(over, decision_id, now, error)
        except Conflict:
            # Another retry used the approval between our check and our write: used once.
            used = deny(
                ReasonCode.APPROVAL_USED,
                "the approval was already used; each approval allows one call",
                step.finding.risks | {Risk.ASI09},
                step.finding.grant,
                step.finding.task,
            )
            try:
                verdict = self._record(agent, call, ApprovalStep(used), decision_id, now)
            except TetherError as error:
                return self._unrecorded(used, decision_id, now, error)
        except TetherError as error:
            verdict = self._unrecorded(step.finding, decision_id, now, error)
        if minted is not None and self._leases is not None and verdict.credential is None:
            # Minted, but the allow was not recorded: the credential must not outlive this call.
            self._leases.discard(minted[0])
        if step.new is not None:
            self._approvals.announce(step.new[0])
        return verdict

    def _mint(
        self, agent: Workload, call: Call, finding: Finding, decision_id: DecisionId, now: datetime
    ) -> tuple[Lease, IssuedCredential, AuditEntry] | None:
        if self._leases is None or finding.grant is None or finding.task is None:
            return None
        return self._leases.mint(agent, finding.task, finding.grant, call, decision_id, now)

    def _record(
        self,
        agent: Workload,
        call: Call,
        step: ApprovalStep,
        decision_id: DecisionId,
        now: datetime,
        flow: _FlowFacts | None = None,
        minted: tuple[Lease, IssuedCredential, AuditEntry] | None = None,
    ) -> Verdict:
        finding = step.finding
        obligations = finding.obligations
        if minted is not None:
            obligations = (
                *obligations,
                credential_obligation(minted[0], f"tether:credentials/{minted[0].issuer_name}"),
            )
        budget: BudgetCharge | None = None
        progress: tuple[TaskProgress, ...] = ()
        if (
            flow is not None
            and self._flows is not None
            and finding.decision is Decision.ALLOW
            and finding.task is not None
        ):
            chain = self._flows.chain(finding.task)
            budget = self._flows.charge(
                chain, call, flow.classification, flow.expect, now, flow.step
            )
            progress = self._flows.progress(chain, call, flow.classification, flow.step)
        verdict = Verdict(
            decision=finding.decision,
            decision_id=decision_id,
            reasons=finding.reasons,
            policy_ids=finding.policy_ids,
            obligations=obligations,
            risks=sorted_risks(finding.risks),
            policy_revision=self._policy.revision,
            decided_at=now,
            approval_id=step.approval_ref,
            delegators=finding.grant.delegators if finding.grant is not None else (),
            credential=minted[1] if minted is not None else None,
        )
        grant, task = finding.grant, finding.task
        record = DecisionRecord(
            decision_id=decision_id,
            task_id=TaskId(task.task_id) if task is not None else None,
            grant_id=GrantId(grant.grant_id) if grant is not None else None,
            agent=agent.id,
            tool=call.tool,
            action=call.action,
            dataset=call.dataset,
            decision=verdict.decision,
            decided_at=now,
        )
        body: dict[str, JSONValue] = {
            "decision_id": decision_id,
            "grant_id": record.grant_id,
            "intent": task.intent.to_json() if task is not None else None,
            "call": self._rec.call(call),
            "verdict": verdict.to_json(),
        }
        kind = AuditKind.DECISION
        if finding.breakglass is not None:
            # Its own audit class: every call break-glass allowed stands out in the log.
            kind = AuditKind.BREAKGLASS_DECISION
            body["breakglass_id"] = finding.breakglass.breakglass_id
            if finding.overridden is not None:
                decision, reasons = finding.overridden
                body["policy_would_have"] = {
                    "decision": decision.value,
                    "reasons": [r.to_json() for r in reasons],
                }
        body.update(finding.audit_extra())
        entry = self._rec.entry(kind, now, agent=agent.id, task_id=record.task_id, body=body)
        if budget is not None:
            body["budget_holds"] = [
                {
                    "task_id": h.task_id,
                    "kind": h.kind.value,
                    "classification": h.classification,
                    "amount": h.amount,
                    **({"step": h.step} if h.step is not None else {}),
                }
                for h in budget.holds
            ]
        self._store.record_decision(
            record,
            entry,
            new_approval=step.new,
            use_approval=step.use,
            budget=budget,
            progress=progress,
            lease=(minted[0], minted[2]) if minted is not None else None,
        )
        return verdict

    def _unrecorded(
        self, finding: Finding, decision_id: DecisionId, now: datetime, error: TetherError
    ) -> Verdict:
        # INVARIANT: a decision that cannot be audited is a deny.
        return Verdict(
            decision=Decision.DENY,
            decision_id=decision_id,
            reasons=(
                Reason(
                    ReasonCode.AUDIT_UNAVAILABLE,
                    f"the decision could not be recorded, so the call is denied: {error.message}",
                ),
                # Keep the original cause of a deny; an allow's reasons no longer apply.
                *(finding.reasons if finding.decision is Decision.DENY else ()),
            ),
            policy_ids=(),
            obligations=(),
            risks=sorted_risks(finding.risks),
            policy_revision=self._policy.revision,
            decided_at=now,
        )

    # -- the pipeline ----------------------------------------------------------------------

    def _check(
        self, agent: Workload, grant_token: str, call: Call, expect: Expect | None = None
    ) -> Finding:
        now = self._clock.now()
        try:
            claims = self._signer.verify(grant_token, now)
        except Unauthenticated as error:
            if getattr(error, "expired", False):
                return deny(ReasonCode.GRANT_EXPIRED, "the grant has expired", _GRANT_RISKS)
            return deny(ReasonCode.GRANT_INVALID, "the grant token is not valid", _GRANT_RISKS)
        # Bound to the caller: a grant is useless in another workload's hands.
        if not hmac.compare_digest(claims.agent, agent.id):
            return deny(
                ReasonCode.GRANT_NOT_BOUND,
                "the grant was issued to another workload",
                _GRANT_RISKS,
            )
        grant, task = self._store.get_grant_with_task(claims.grant_id)
        if grant is None or not hmac.compare_digest(grant.agent, agent.id):
            return deny(ReasonCode.GRANT_INVALID, "the grant is not known", _GRANT_RISKS)
        if task is None:
            return deny(ReasonCode.GRANT_INVALID, "the grant's task is not known", _GRANT_RISKS)
        if grant.state is GrantState.REVOKED:
            return deny(
                ReasonCode.GRANT_REVOKED, "the grant was revoked", _GRANT_RISKS, grant, task
            )
        if grant.state is GrantState.EXPIRED or now >= grant.expires_at:
            return deny(
                ReasonCode.GRANT_EXPIRED, "the grant has expired", _GRANT_RISKS, grant, task
            )
        if task.state is not TaskState.OPEN or now >= task.expires_at:
            return deny(
                ReasonCode.TASK_NOT_OPEN,
                f"the task is {'expired' if task.state is TaskState.OPEN else task.state.value}",
                _GRANT_RISKS,
                grant,
                task,
            )

        risks = set(_GRANT_RISKS | _SCOPE_RISKS)
        if call.action is ActionKind.EXECUTE:
            risks.add(Risk.ASI05)
        scope = grant.scope_for(call.tool)
        if scope is not None and scope.constraints:
            risks |= _ARG_RISKS
        violation = scope_violation(grant, call)
        if violation is not None:
            if violation.code in (ReasonCode.ARGUMENT_MISSING, ReasonCode.CONSTRAINT_VIOLATED):
                risks |= _ARG_RISKS
            return Finding(Decision.DENY, (violation,), frozenset(risks), grant=grant, task=task)

        classification = self._policy.classification(call.dataset) if call.dataset else None
        step_name, egress, egress_reason = task.workflow_step, None, None
        chain: list[Task] = [task]
        if self._flows is not None:
            chain = self._flows.chain(task)
            step_name, out_of_order = self._flows.step(chain, call)
            if out_of_order is not None:
                return Finding(
                    Decision.DENY,
                    (out_of_order,),
                    frozenset(risks | {Risk.ASI01}),
                    ("tether:workflow",),
                    grant=grant,
                    task=task,
                )
            unchargeable = self._flows.budget_argument(chain, call, step_name)
            if unchargeable is not None:
                # Whatever policy says: a budget that cannot be charged is not bypassed.
                return Finding(
                    Decision.DENY,
                    (unchargeable,),
                    frozenset(risks | {Risk.ASI02, Risk.ASI08}),
                    ("tether:budget",),
                    grant=grant,
                    task=task,
                )
            egress, egress_reason = self._flows.egress_check(chain, call)
            if egress == "deny" and egress_reason is not None:
                return Finding(
                    Decision.DENY,
                    (egress_reason,),
                    frozenset(risks | {Risk.ASI02}),
                    ("tether:egress",),
                    grant=grant,
                    task=task,
                )

        outcome = self._policy.decide(
            PolicyRequest(
                agent=agent,
                call=call,
                classification=classification,
                intent=task.intent,
                task_id=task.task_id,
                delegators=grant.delegators,
                dataflow=Classification(label)
                if (label := chain_label(t.label for t in chain))
                else None,
            )
        )
        if (
            egress == "approval"
            and egress_reason is not None
            and outcome.decision is not Decision.DENY
        ):
            # Data-flow: after confidential reads, sending out needs a human, whatever policy says.
            return Finding(
                decision=Decision.APPROVAL_REQUIRED,
                reasons=(
                    egress_reason,
                    *outcome.reasons[: 0 if outcome.decision is Decision.ALLOW else None],
                ),
                risks=frozenset(risks | outcome.risks | {Risk.ASI02}),
                policy_ids=("tether:egress", *outcome.policy_ids),
                grant=grant,
                task=task,
                approvers=max(1, outcome.approvers),
                approved_obligations=outcome.obligations,
                step=step_name,
                classification=classification,
                observed=outcome.observed,
            )
        anomaly = (
            self._flows.anomaly(task, call, expect)
            if self._flows is not None and outcome.decision is not Decision.DENY
            else None
        )
        if anomaly is not None:
            # Volume far past the workflow's history: a human decides, whatever policy says.
            return Finding(
                decision=Decision.APPROVAL_REQUIRED,
                reasons=(
                    anomaly,
                    *outcome.reasons[: 0 if outcome.decision is Decision.ALLOW else None],
                ),
                risks=frozenset(risks | outcome.risks | _ANOMALY_RISKS),
                policy_ids=("tether:anomaly", *outcome.policy_ids),
                grant=grant,
                task=task,
                approvers=max(1, outcome.approvers),
                approved_obligations=outcome.obligations,
                step=step_name,
                classification=classification,
                observed=outcome.observed,
            )
        return Finding(
            decision=outcome.decision,
            reasons=outcome.reasons,
            risks=frozenset(risks | outcome.risks),
            policy_ids=outcome.policy_ids,
            obligations=outcome.obligations if outcome.decision is Decision.ALLOW else (),
            approved_obligations=(
                outcome.obligations if outcome.decision is Decision.APPROVAL_REQUIRED else ()
            ),
            grant=grant,
            task=task,
            approvers=outcome.approvers,
            step=step_name,
            classification=classification,
            observed=outcome.observed,
        )
