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

from tether.core.audit import AuditKind
from tether.core.call import Call
from tether.core.checks import scope_violation
from tether.core.errors import TetherError, Unauthenticated
from tether.core.identity import Workload
from tether.core.ids import DecisionId, GrantId, IdFactory, TaskId
from tether.core.risks import Risk
from tether.core.scope import ActionKind, JSONValue
from tether.core.task import Grant, GrantState, Task, TaskState
from tether.core.verdict import (
    Decision,
    Obligation,
    Reason,
    ReasonCode,
    Verdict,
    sorted_risks,
)
from tether.service.ports import (
    Clock,
    DecisionRecord,
    GrantSigner,
    PolicyEngine,
    PolicyRequest,
    Store,
)
from tether.service.recording import Recorder

_GRANT_RISKS = frozenset({Risk.ASI03, Risk.ASI10})
_SCOPE_RISKS = frozenset({Risk.ASI02, Risk.ASI03})
_ARG_RISKS = frozenset({Risk.ASI01, Risk.ASI02})


@dataclass(frozen=True, slots=True)
class _Finding:
    """The outcome of the checks before recording: a decision and why."""

    decision: Decision
    reasons: tuple[Reason, ...]
    risks: frozenset[Risk]
    policy_ids: tuple[str, ...] = ()
    obligations: tuple[Obligation, ...] = ()
    grant: Grant | None = None
    task: Task | None = None


def _deny(
    code: ReasonCode,
    message: str,
    risks: frozenset[Risk],
    grant: Grant | None = None,
    task: Task | None = None,
) -> _Finding:
    return _Finding(Decision.DENY, (Reason(code, message),), risks, grant=grant, task=task)


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
    ) -> None:
        self._store = store
        self._policy = policy
        self._signer = signer
        self._clock = clock
        self._ids = ids
        self._rec = recorder

    def authorize(self, agent: Workload, grant_token: str, call: Call) -> Verdict:
        """Decide ``call`` for ``agent`` holding ``grant_token``. Never raises for a
        well-formed call: every failure is a ``deny`` carrying its cause."""
        now = self._clock.now()
        try:
            finding = self._check(agent, grant_token, call)
        except TetherError as error:
            # A store that cannot answer must not let anything through.
            finding = _deny(ReasonCode.STORE_UNAVAILABLE, error.message, _GRANT_RISKS)
        decision_id = self._ids.decision()
        verdict = Verdict(
            decision=finding.decision,
            decision_id=decision_id,
            reasons=finding.reasons,
            policy_ids=finding.policy_ids,
            obligations=finding.obligations,
            risks=sorted_risks(finding.risks),
            policy_revision=self._policy.revision,
            decided_at=now,
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
        entry = self._rec.entry(
            AuditKind.DECISION, now, agent=agent.id, task_id=record.task_id, body=body
        )
        try:
            self._store.record_decision(record, entry)
        except TetherError as error:
            # INVARIANT: a decision that cannot be audited is a deny.
            return Verdict(
                decision=Decision.DENY,
                decision_id=DecisionId(decision_id),
                reasons=(
                    Reason(
                        ReasonCode.AUDIT_UNAVAILABLE,
                        f"the decision could not be recorded, so the call is denied: "
                        f"{error.message}",
                    ),
                    # Keep the original cause of a deny; an allow's reasons no longer apply.
                    *(finding.reasons if finding.decision is Decision.DENY else ()),
                ),
                policy_ids=(),
                obligations=(),
                risks=verdict.risks,
                policy_revision=verdict.policy_revision,
                decided_at=now,
            )
        return verdict

    # -- the pipeline ----------------------------------------------------------------------

    def _check(self, agent: Workload, grant_token: str, call: Call) -> _Finding:
        now = self._clock.now()
        try:
            claims = self._signer.verify(grant_token, now)
        except Unauthenticated as error:
            if getattr(error, "expired", False):
                return _deny(ReasonCode.GRANT_EXPIRED, "the grant has expired", _GRANT_RISKS)
            return _deny(ReasonCode.GRANT_INVALID, "the grant token is not valid", _GRANT_RISKS)
        # Bound to the caller: a grant is useless in another workload's hands.
        if not hmac.compare_digest(claims.agent, agent.id):
            return _deny(
                ReasonCode.GRANT_NOT_BOUND,
                "the grant was issued to another workload",
                _GRANT_RISKS,
            )
        grant = self._store.get_grant(claims.grant_id)
        if grant is None or not hmac.compare_digest(grant.agent, agent.id):
            return _deny(ReasonCode.GRANT_INVALID, "the grant is not known", _GRANT_RISKS)
        task = self._store.get_task(grant.task_id)
        if task is None:
            return _deny(ReasonCode.GRANT_INVALID, "the grant's task is not known", _GRANT_RISKS)
        if grant.state is GrantState.REVOKED:
            return _deny(
                ReasonCode.GRANT_REVOKED, "the grant was revoked", _GRANT_RISKS, grant, task
            )
        if grant.state is GrantState.EXPIRED or now >= grant.expires_at:
            return _deny(
                ReasonCode.GRANT_EXPIRED, "the grant has expired", _GRANT_RISKS, grant, task
            )
        if task.state is not TaskState.OPEN or now >= task.expires_at:
            return _deny(
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
            return _Finding(Decision.DENY, (violation,), frozenset(risks), grant=grant, task=task)

        outcome = self._policy.decide(
            PolicyRequest(
                agent=agent,
                call=call,
                classification=(
                    self._policy.classification(call.dataset) if call.dataset else None
                ),
                intent=task.intent,
                task_id=task.task_id,
            )
        )
        return _Finding(
            decision=outcome.decision,
            reasons=outcome.reasons,
            risks=frozenset(risks | outcome.risks),
            policy_ids=outcome.policy_ids,
            obligations=outcome.obligations if outcome.decision is Decision.ALLOW else (),
            grant=grant,
            task=task,
        )
