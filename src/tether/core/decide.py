"""The decision of one tool call, pure: facts in, verdict and the writes it implies out.

:func:`decide` is the whole rule book of ``authorize``. It reads no store and no clock: the
service gathers the facts of a call (one ``now``, the grant and its task's delegation chain,
the policy engine's answer, any approval or break-glass) and records what comes out. Checked in
order, cheapest first, the first failure winning::

    grant token valid → bound to the caller → grant active, task open
      → scope: tool → action → dataset → argument constraints
      → declared workflow step → budgeted arguments → data-flow egress
      → argument provenance (a sink argument's value seen only where an attacker may write)
      → Cedar's answer → data-flow or provenance approval, anomaly signal
      → break-glass (widens a live grant's reach) → approval (exactly this call, once)

A delegation chain (the caller's task first, its root last) acts as one task: the workflow
position is the root's, the data-flow label the highest anywhere up the chain, and an allowed
read raises the label of every task of the chain.

The facts a call needs depend on how far it gets: :func:`screen` says whether the policy engine
must be asked, :func:`needs_breakglass` and :func:`needs_approval` whether those must be read.
Failures after the decision (budget over at write time, audit or credential unavailable) are
turned into verdicts here too, by :func:`refuse` and :func:`unrecorded`.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from tether.core.approval import check_use
from tether.core.breakglass import BreakGlass
from tether.core.budget import BudgetKind, Budgets
from tether.core.checks import scope_violation
from tether.core.dataflow import raise_label
from tether.core.facts import (
    CallFacts,
    Decided,
    LateFacts,
    PolicyOutcome,
    TaskProgress,
    TokenStatus,
)
from tether.core.ids import DecisionId, TaskId
from tether.core.lease import Lease, credential_obligation
from tether.core.provenance import Outcome, Trust, Violation, Why
from tether.core.provenance_extract import ValueKind
from tether.core.provenance_rules import ArgumentProvenance
from tether.core.risks import Risk
from tether.core.scope import ActionKind
from tether.core.task import GrantState, Task, TaskState
from tether.core.verdict import (
    Decision,
    IssuedCredential,
    Reason,
    ReasonCode,
    Verdict,
    sorted_risks,
)
from tether.core.workflow import Workflow

__all__ = [
    "NEVER_OVERRIDDEN",
    "PROVENANCE_POLICY",
    "SPEND_ARGUMENT",
    "Screened",
    "decide",
    "needs_approval",
    "needs_breakglass",
    "refuse",
    "screen",
    "step_budgets",
    "unreadable",
    "unrecorded",
    "untrusted_reason",
    "verdict_of",
]

GRANT_RISKS = frozenset({Risk.ASI03, Risk.ASI10})
_SCOPE_RISKS = frozenset({Risk.ASI02, Risk.ASI03})
# What every call that reaches the scope check guards against.
_SCREENED_RISKS = GRANT_RISKS | _SCOPE_RISKS
_ARG_RISKS = frozenset({Risk.ASI01, Risk.ASI02})
# Reading far more than the workflow's past tasks: tool misuse by volume, an agent gone rogue.
_ANOMALY_RISKS = frozenset({Risk.ASI02, Risk.ASI10})
# A sink argument filled from content others can write: the agent's goal was hijacked.
_PROVENANCE_RISKS = frozenset({Risk.ASI01})
PROVENANCE_POLICY = "tether:provenance"

#: The argument a spend budget charges.
SPEND_ARGUMENT = "amount"

#: Failures break-glass never overrides: it widens what a live grant may do; it does not revive
#: a revoked, expired or stolen one, nor answer for a store that could not be read.
NEVER_OVERRIDDEN = frozenset(
    {
        ReasonCode.GRANT_INVALID,
        ReasonCode.GRANT_EXPIRED,
        ReasonCode.GRANT_REVOKED,
        ReasonCode.GRANT_NOT_BOUND,
        ReasonCode.TASK_NOT_OPEN,
        ReasonCode.STORE_UNAVAILABLE,
        # Elevation widens reach; it does not make a value an attacker wrote the user's.
        ReasonCode.UNTRUSTED_ARGUMENT,
    }
)


# --- the rules ---------------------------------------------------------------------------------


def _deny(
    facts: CallFacts,
    code: ReasonCode,
    message: str,
    risks: frozenset[Risk],
    policy_ids: tuple[str, ...] = (),
    *,
    known: bool = True,
) -> Decided:
    return Decided(
        Decision.DENY,
        (Reason(code, message),),
        risks,
        policy_ids,
        grant=facts.grant if known else None,
        chain=facts.chain if known else (),
    )


@dataclass(frozen=True, slots=True)
class Screened:
    """The checks before Cedar: a final deny, or what the policy step needs to go on."""

    denied: Decided | None
    risks: frozenset[Risk] = frozenset()
    step: str | None = None
    egress: Reason | None = None
    #: ``untrusted_argument`` when a sink argument's provenance asks a human.
    untrusted: Reason | None = None


def screen(facts: CallFacts) -> Screened:
    """Grant, scope, workflow step, budgeted arguments and data-flow egress, cheapest first.

    ``denied`` is set when the call stops here; otherwise the policy engine must be asked."""
    grant, task, now, call = facts.grant, facts.task, facts.now, facts.call
    if facts.token is TokenStatus.EXPIRED:
        return Screened(
            _deny(
                facts, ReasonCode.GRANT_EXPIRED, "the grant has expired", GRANT_RISKS, known=False
            )
        )
    if facts.token is TokenStatus.INVALID or facts.token_agent is None:
        return Screened(
            _deny(
                facts,
                ReasonCode.GRANT_INVALID,
                "the grant token is not valid",
                GRANT_RISKS,
                known=False,
            )
        )
    # Bound to the caller: a grant is useless in another workload's hands.
    if not hmac.compare_digest(facts.token_agent, facts.agent):
        return Screened(
            _deny(
                facts,
                ReasonCode.GRANT_NOT_BOUND,
                "the grant was issued to another workload",
                GRANT_RISKS,
                known=False,
            )
        )
    if grant is None or not hmac.compare_digest(grant.agent, facts.agent):
        return Screened(
            _deny(
                facts, ReasonCode.GRANT_INVALID, "the grant is not known", GRANT_RISKS, known=False
            )
        )
    if task is None:
        return Screened(
            _deny(
                facts,
                ReasonCode.GRANT_INVALID,
                "the grant's task is not known",
                GRANT_RISKS,
                known=False,
            )
        )
    if grant.state is GrantState.REVOKED:
        return Screened(
            _deny(facts, ReasonCode.GRANT_REVOKED, "the grant was revoked", GRANT_RISKS)
        )
    if grant.state is GrantState.EXPIRED or now >= grant.expires_at:
        return Screened(
            _deny(facts, ReasonCode.GRANT_EXPIRED, "the grant has expired", GRANT_RISKS)
        )
    if task.state is not TaskState.OPEN or now >= task.expires_at:
        state = "expired" if task.state is TaskState.OPEN else task.state.value
        return Screened(_deny(facts, ReasonCode.TASK_NOT_OPEN, f"the task is {state}", GRANT_RISKS))

    risks = set(_SCREENED_RISKS)
    if call.action is ActionKind.EXECUTE:
        risks.add(Risk.ASI05)
    scope = grant.scope_for(call.tool)
    if scope is not None and scope.constraints:
        risks |= _ARG_RISKS
    violation = scope_violation(grant, call)
    if violation is not None:
        if violation.code in (ReasonCode.ARGUMENT_MISSING, ReasonCode.CONSTRAINT_VIOLATED):
            risks |= _ARG_RISKS
        denied = Decided(
            Decision.DENY, (violation,), frozenset(risks), grant=grant, chain=facts.chain
        )
        return Screened(denied, frozenset(risks))

    step, out_of_order = _workflow_step(facts)
    if out_of_order is not None:
        denied = Decided(
            Decision.DENY,
            (out_of_order,),
            frozenset(risks | {Risk.ASI01}),
            ("tether:workflow",),
            grant=grant,
            chain=facts.chain,
        )
        return Screened(denied, frozenset(risks))
    unchargeable = _budget_argument(facts, step)
    if unchargeable is not None:
        # Whatever policy says: a budget that cannot be charged is not bypassed.
        denied = Decided(
            Decision.DENY,
            (unchargeable,),
            frozenset(risks | {Risk.ASI02, Risk.ASI08}),
            ("tether:budget",),
            grant=grant,
            chain=facts.chain,
        )
        return Screened(denied, frozenset(risks))
    ruling, egress = _egress(facts)
    if ruling == "deny" and egress is not None:
        denied = Decided(
            Decision.DENY,
            (egress,),
            frozenset(risks | {Risk.ASI02}),
            ("tether:egress",),
            grant=grant,
            chain=facts.chain,
        )
        return Screened(denied, frozenset(risks))
    provenance = facts.provenance
    outcome = provenance.outcome
    if outcome is Outcome.DENY:
        denied = Decided(
            Decision.DENY,
            (untrusted_reason(provenance),),
            frozenset(risks | _PROVENANCE_RISKS),
            (PROVENANCE_POLICY,),
            grant=grant,
            chain=facts.chain,
        )
        return Screened(denied, frozenset(risks))
    if provenance.checked:
        risks |= _PROVENANCE_RISKS
    return Screened(
        None,
        frozenset(risks),
        step,
        egress if ruling == "approval" else None,
        untrusted_reason(provenance) if outcome is Outcome.APPROVAL_REQUIRED else None,
    )


_WHY = {
    Why.NOT_TRUSTED: "was not seen in the user's request or a trusted source",
    Why.ONLY_UNTRUSTED: "was seen only in untrusted content",
    Why.ARGUMENT_UNSCANNED: "is too large to check whole",
}


_KIND_NAMES = {
    ValueKind.URL: "a URL",
    ValueKind.DOMAIN: "a domain",
    ValueKind.EMAIL: "an e-mail address",
    ValueKind.IBAN: "an IBAN",
    ValueKind.ACCOUNT: "an account number",
    ValueKind.PHONE: "a phone number",
    ValueKind.DATE: "a date",
    ValueKind.AMOUNT: "an amount",
    ValueKind.TEXT: "a quoted text",
}


def _source_name(violation: Violation) -> str:
    names = [
        f"{s.tool} ({s.dataset})" if s.dataset else s.tool
        for s in violation.sources
        if s.trust is Trust.UNTRUSTED
    ]
    if not names:
        return ""
    more = " and a part of it not scanned" if violation.unscanned else ""
    return f": seen in {', '.join(names[:3])}{' and others' if len(names) > 3 else ''}{more}"


def untrusted_reason(provenance: ArgumentProvenance) -> Reason:
    """``untrusted_argument``, naming each failing argument, the kind of its value and the
    sources it was seen in, never the value itself."""
    parts: list[str] = []
    for argument in provenance.arguments:
        first = next(v for v in provenance.violations if v.argument == argument)
        kind = _KIND_NAMES[first.kind] if first.kind is not None else "its value"
        parts.append(f"{argument!r}: {kind} {_WHY[first.why]}{_source_name(first)}")
    return Reason(
        ReasonCode.UNTRUSTED_ARGUMENT,
        f"argument {'; '.join(parts)}. A sink argument takes values from the user's request "
        "or a trusted source, not from content others can write",
    )


def _workflow_step(facts: CallFacts) -> tuple[str | None, Reason | None]:
    """The workflow step this call takes, or why it is out of order (ASI01).

    # INVARIANT: the step state of a chain is its root's: a delegate cannot take again a step
    # the root (or another delegate) already took.
    """
    root, flow, call = facts.chain[-1], facts.workflow, facts.call
    if flow is None:
        return root.workflow_step, None
    matched = flow.match(root.workflow_step, call.tool, call.action)
    if matched is not None:
        return matched, None
    expected = flow.describe(flow.legal_after(root.workflow_step))
    where = f"after step {root.workflow_step!r}" if root.workflow_step else "as the first step"
    return None, Reason(
        ReasonCode.WORKFLOW_OUT_OF_ORDER,
        f"{call.action.value} {call.tool} is not a legal step {where} of the declared "
        f"workflow {flow.name!r}; expected next: {expected}",
    )


def step_budgets(workflow: Workflow | None, step: str | None) -> Budgets:
    """The limits of ``step`` of ``workflow`` (empty when none)."""
    if workflow is None or step is None or step not in workflow.steps:
        return Budgets()
    return workflow.steps[step].budgets


def _budget_argument(facts: CallFacts, step: str | None) -> Reason | None:
    """Why a budgeted call's argument cannot be charged, or ``None``.

    A spend under a spend budget must name its ``amount`` as a finite number ≥ 0: a negative
    amount would refund the budget, and a missing or ill-typed one would reserve nothing.
    """
    if facts.call.action is not ActionKind.SPEND:
        return None
    limits = (*(t.budgets for t in facts.chain), step_budgets(facts.workflow, step))
    if not any(limit.kind is BudgetKind.SPEND for budgets in limits for limit in budgets.limits):
        return None
    amount = facts.call.args.get(SPEND_ARGUMENT)
    if (
        isinstance(amount, int | float)
        and not isinstance(amount, bool)
        and math.isfinite(amount)
        and amount >= 0
    ):
        return None
    return Reason(
        ReasonCode.INVALID_BUDGET_ARGUMENT,
        f"this task has a spend budget, so a spend must give {SPEND_ARGUMENT!r} as a number "
        "of at least 0",
    )


def _egress(facts: CallFacts) -> tuple[str | None, Reason | None]:
    label, call = facts.label, facts.call
    ruling = facts.egress.verdict(label, call.tool, call.action)
    if ruling is None:
        return None, None
    if ruling == "deny":
        return ruling, Reason(
            ReasonCode.EGRESS_BLOCKED,
            f"this task has read {label} data; {call.tool} sends data out and is denied",
        )
    return ruling, Reason(
        ReasonCode.EGRESS_NEEDS_APPROVAL,
        f"this task has read {label} data; sending it out with {call.tool} needs a human's "
        "approval",
    )


def _with_policy(
    facts: CallFacts, screened: Screened, outcome: PolicyOutcome, anomaly: Reason | None
) -> Decided:
    """Cedar's answer, then the checks that may only raise it to a human: data flow, anomaly."""
    raised: list[tuple[Reason, str, frozenset[Risk]]] = []
    if screened.egress is not None:
        # Data-flow: after confidential reads, sending out needs a human, whatever policy says.
        raised.append((screened.egress, "tether:egress", frozenset({Risk.ASI02})))
    if screened.untrusted is not None:
        # A sink argument whose value came from untrusted content: a human looks at it.
        raised.append((screened.untrusted, PROVENANCE_POLICY, _PROVENANCE_RISKS))
    if not raised and anomaly is not None:
        # Volume far past the workflow's history: a human decides, whatever policy says.
        raised.append((anomaly, "tether:anomaly", _ANOMALY_RISKS))
    allowed = outcome.decision is Decision.ALLOW and not raised
    base = Decided(
        outcome.decision,
        outcome.reasons,
        screened.risks | outcome.risks,
        outcome.policy_ids,
        outcome.obligations if outcome.decision is Decision.ALLOW else (),
        grant=facts.grant,
        chain=facts.chain,
        approvers=outcome.approvers,
        approved_obligations=(
            outcome.obligations if outcome.decision is Decision.APPROVAL_REQUIRED else ()
        ),
        observed=outcome.observed,
        step=screened.step,
        # Built whole here: an allow's progress added later would copy the whole decision.
        progress=_progress(facts, facts.chain, screened.step) if allowed else (),
    )
    if outcome.decision is Decision.DENY or not raised:
        return base
    # Policy's reasons follow the ones that raised it; an allow's reasons no longer apply.
    kept = outcome.reasons if outcome.decision is Decision.APPROVAL_REQUIRED else ()
    return replace(
        base,
        decision=Decision.APPROVAL_REQUIRED,
        reasons=(*(r for r, _s, _k in raised), *kept),
        risks=base.risks.union(*(k for _r, _s, k in raised)),
        policy_ids=(*(s for _r, s, _k in raised), *outcome.policy_ids),
        obligations=(),
        approvers=max(1, outcome.approvers),
        approved_obligations=outcome.obligations,
    )


def needs_breakglass(decided: Decided) -> bool:
    """Could an active break-glass change this decision (so it must be read)?"""
    return (
        decided.decision is not Decision.ALLOW
        and decided.grant is not None
        and decided.task is not None
        and not any(r.code in NEVER_OVERRIDDEN for r in decided.reasons)
    )


def _breakglass(facts: CallFacts, decided: Decided, active: BreakGlass | None) -> Decided:
    """Allow, under an active break-glass of this task, what the pipeline would not."""
    if active is None or not needs_breakglass(decided) or decided.grant is None:
        return decided
    # INVARIANT: break-glass is the task's own agent's, never inherited by a delegate.
    if not hmac.compare_digest(active.agent, facts.agent) or not active.is_active_at(facts.now):
        return decided
    if decided.task is None or active.task_id != decided.task.task_id:
        return decided
    if scope_violation(replace(decided.grant, scopes=active.scopes), facts.call) is not None:
        return decided
    approvers = ", ".join(v.approver for v in active.votes if v.approve)
    until = active.active_until.isoformat() if active.active_until else "?"
    return Decided(
        Decision.ALLOW,
        (
            Reason(
                ReasonCode.BREAK_GLASS,
                f"allowed under break-glass {active.breakglass_id} (approved by {approvers}, "
                f"until {until}); normally: {decided.decision.value}",
            ),
        ),
        decided.risks | {Risk.ASI10},
        decided.policy_ids,
        grant=decided.grant,
        chain=decided.chain,
        breakglass=active,
        overridden=(decided.decision, decided.reasons),
        observed=decided.observed,
        step=decided.step,
    )


def needs_approval(decided: Decided) -> bool:
    """Does this decision wait on a human (so the named or pending approval must be read)?"""
    return decided.decision is Decision.APPROVAL_REQUIRED


def _approval(facts: CallFacts, decided: Decided, late: LateFacts) -> Decided:
    """Settle ``approval_required``: an approved retry of exactly this call is allowed once;
    otherwise the call waits on the approval already pending for it, or on a new one."""
    if not needs_approval(decided):
        return decided
    risks = decided.risks | {Risk.ASI09}
    waiting = replace(
        decided,
        risks=risks,
        obligations=(),
        approved_obligations=(),
    )
    if late.approval_id is not None:
        approval, task = late.approval, decided.task
        if approval is None or task is None:
            return replace(
                waiting,
                decision=Decision.DENY,
                reasons=(
                    Reason(
                        ReasonCode.APPROVAL_UNKNOWN,
                        "no such approval; retry without approval_id to request one",
                    ),
                ),
                policy_ids=(),
                observed=(),
            )
        problem = check_use(
            approval,
            agent=facts.agent,
            task_id=task.task_id,
            tool=facts.call.tool,
            action=facts.call.action,
            dataset=facts.call.dataset,
            args_mac=late.args_mac,
            now=facts.now,
        )
        if problem is not None:
            return replace(waiting, decision=Decision.DENY, reasons=(problem, *decided.reasons))
        approvers = ", ".join(v.approver for v in approval.votes if v.approve)
        return replace(
            waiting,
            decision=Decision.ALLOW,
            reasons=(
                Reason(
                    ReasonCode.APPROVAL_GRANTED,
                    f"approved by {approvers} (approval {approval.approval_id}); this approval "
                    "is now used",
                ),
            ),
            obligations=decided.approved_obligations,
            use_approval=approval.approval_id,
            approval_ref=late.approval_id,
        )
    if late.pending is not None:
        return replace(waiting, approval_ref=late.pending.approval_id)
    return replace(waiting, draft_approval=True, approvers=decided.approvers)


def _progress(
    facts: CallFacts, chain: tuple[Task, ...], step: str | None
) -> tuple[TaskProgress, ...]:
    """What an allowed call moves: every task of the chain whose label the read raises, and
    the root's workflow step.

    # INVARIANT: a delegate's read raises the label of its whole ancestor chain, in the
    # transaction that records the decision.
    """
    if not chain:
        return ()
    root = chain[-1]
    moved: list[TaskProgress] = []
    for task in chain:
        label = raise_label(task.label, facts.classification, facts.call.action)
        # A call outside any declared step (break-glass) leaves the root's step where it is.
        moves_step = task is root and step is not None
        if label != task.label or (moves_step and step != task.workflow_step):
            moved.append(TaskProgress(TaskId(task.task_id), label, step, moves_step=moves_step))
    return tuple(moved)


def decide(
    facts: CallFacts,
    outcome: PolicyOutcome | None,
    late: LateFacts | None = None,
    *,
    screened: Screened | None = None,
) -> Decided:
    """The decision on ``facts``, given the policy engine's ``outcome`` (``None`` when
    :func:`screen` stopped the call before Cedar) and the ``late`` facts it needed.

    ``screened`` is :func:`screen` of these same ``facts`` when the caller already has it (it
    screened them to know whether to ask the policy engine); otherwise they are screened here.
    """
    late = late if late is not None else LateFacts()
    if screened is None:
        screened = screen(facts)
    if screened.denied is not None:
        decided = screened.denied
    elif outcome is None:
        # Fail closed: a call that reached the policy step is never decided without it.
        decided = _deny(
            facts,
            ReasonCode.POLICY_UNAVAILABLE,
            "no policy answer was available for this call, so it is denied",
            screened.risks,
        )
    else:
        decided = _with_policy(facts, screened, outcome, late.anomaly)
    if decided.decision is Decision.ALLOW:
        return decided  # an allow from policy carries its progress already
    decided = _breakglass(facts, decided, late.breakglass)
    decided = _approval(facts, decided, late)
    if decided.decision is Decision.ALLOW:
        progress = _progress(facts, decided.chain, decided.step)
        if progress:
            decided = replace(decided, progress=progress)
    return decided


# --- the answer --------------------------------------------------------------------------------


def verdict_of(
    decided: Decided,
    decision_id: DecisionId,
    policy_revision: str,
    now: datetime,
    *,
    lease: Lease | None = None,
    credential: IssuedCredential | None = None,
) -> Verdict:
    """The verdict answered for ``decided``; an allow that minted ``lease`` carries the
    obligation to use its credential."""
    obligations = decided.obligations
    if lease is not None:
        obligations = (
            *obligations,
            credential_obligation(lease, f"tether:credentials/{lease.issuer_name}"),
        )
    return Verdict(
        decision=decided.decision,
        decision_id=decision_id,
        reasons=decided.reasons,
        policy_ids=decided.policy_ids,
        obligations=obligations,
        risks=sorted_risks(decided.risks),
        policy_revision=policy_revision,
        decided_at=now,
        approval_id=decided.approval_ref,
        delegators=decided.grant.delegators if decided.grant is not None else (),
        credential=credential,
    )


# --- after the decision ------------------------------------------------------------------------


def refuse(decided: Decided, code: ReasonCode, message: str, risks: Sequence[Risk] = ()) -> Decided:
    """``decided`` turned into a deny for ``code`` (budget over at write time, approval used
    by a concurrent retry, credential not issued), keeping what it knew of grant and task."""
    return Decided(
        Decision.DENY,
        (Reason(code, message),),
        decided.risks | frozenset(risks),
        grant=decided.grant,
        chain=decided.chain,
        observed=decided.observed,
    )


def unrecorded(decided: Decided, message: str) -> Decided:
    """The deny answered when ``decided`` could not be recorded.

    # INVARIANT: a decision that cannot be audited is a deny.
    """
    return Decided(
        Decision.DENY,
        (
            Reason(
                ReasonCode.AUDIT_UNAVAILABLE,
                f"the decision could not be recorded, so the call is denied: {message}",
            ),
            # Keep the original cause of a deny; an allow's reasons no longer apply.
            *(decided.reasons if decided.decision is Decision.DENY else ()),
        ),
        decided.risks,
    )


def unreadable(message: str, risks: frozenset[Risk] = GRANT_RISKS) -> Decided:
    """The deny answered when the facts of a call could not be read.

    # INVARIANT: a store that cannot answer lets nothing through.
    """
    return Decided(Decision.DENY, (Reason(ReasonCode.STORE_UNAVAILABLE, message),), risks)
