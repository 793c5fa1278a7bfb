"""Folding Cedar's answer into tether's three decisions. Fail closed: deny when unsure.

In order:

1. Cedar reports any evaluation error (or cannot build the request) → ``deny``,
   ``policy_error``, naming the policies that errored. A forbid that errors must never silently
   stop applying, so a permit that errors denies too.
2. Cedar denies with determining (hard) forbids → ``deny``, ``policy_forbids``, their ids and
   ``@reason`` texts.
3. Cedar denies with none → ``deny``, ``no_policy_permits``.
4. Cedar allows. Approval forbids are evaluated as permits (see
   :meth:`~tether.policy.meta.PolicyMeta.est_for_evaluation`), so split the determining ids:
   real permits only → ``allow``, ``policy_permits``, with the permits' obligations; approval
   forbids and real permits → ``approval_required`` naming the approval forbids and their
   "why"; approval forbids alone (nothing would permit the call even if approved) → ``deny``,
   ``no_policy_permits``.

Risks are those of the determining policies, plus ASI02 (Tool Misuse) for every policy decision.

Observe-mode policies are evaluated apart, every one as a permit, so Cedar lists each that is
satisfied; :func:`observe` then says, per policy, what the enforcing policies *plus that one*
would have decided, and keeps only the ones that differ from the enforced outcome:

    satisfied hard forbid, or any policy that errors   would deny (unless already denied)
    satisfied approval forbid                          would ask for approval (if allowed)
    satisfied permit, when nothing permitted the call  would allow (or ask for approval, when
                                                       an enforcing approval forbid also held)

An observed policy never changes the outcome itself: a forbid never denies, a permit never allows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from tether.core.risks import Risk
from tether.core.scope import ActionKind
from tether.core.verdict import Decision, Obligation, ObligationKind, Reason, ReasonCode
from tether.policy.answer import CedarAnswer
from tether.policy.index import CompiledSubset
from tether.policy.meta import Effect, PolicyMeta
from tether.service.ports import ObservedVerdict, PolicyOutcome

BASE_RISKS: Final = frozenset({Risk.ASI02})
MAX_ERROR_TEXT: Final = 240

_ERROR_POLICY: Final = re.compile(r"^error while evaluating policy `([^`]*)`:\s*")


def _risks(policies: Iterable[PolicyMeta]) -> frozenset[Risk]:
    out: set[Risk] = set(BASE_RISKS)
    for p in policies:
        out |= p.risks
    return frozenset(out)


def _ordered(subset: CompiledSubset, ids: Iterable[str]) -> list[PolicyMeta]:
    found = [subset.by_id[i] for i in ids if i in subset.by_id]
    return sorted(found, key=lambda p: p.order)


def no_policy_permits(action: ActionKind, tool: str) -> PolicyOutcome:
    return PolicyOutcome(
        decision=Decision.DENY,
        reasons=(
            Reason(ReasonCode.NO_POLICY_PERMITS, f"no policy permits {action.value} on {tool}"),
        ),
        policy_ids=(),
        risks=BASE_RISKS,
    )


def policy_error(message: str, policies: Iterable[PolicyMeta] = ()) -> PolicyOutcome:
    listed = list(policies)
    return PolicyOutcome(
        decision=Decision.DENY,
        reasons=(Reason(ReasonCode.POLICY_ERROR, message),),
        policy_ids=tuple(p.policy_id for p in listed),
        risks=_risks(listed),
    )


def _errored(subset: CompiledSubset, errors: Iterable[str]) -> PolicyOutcome:
    ids: list[str] = []
    details: list[str] = []
    for error in errors:
        match = _ERROR_POLICY.match(error)
        if match is not None:
            ids.append(match.group(1))
            details.append(f"{match.group(1)}: {error[match.end() :][:MAX_ERROR_TEXT]}")
        else:
            details.append(error[:MAX_ERROR_TEXT])
    policies = _ordered(subset, dict.fromkeys(ids))
    message = "policy could not be evaluated for this call, so it is denied: " + "; ".join(details)
    return policy_error(message, policies)


def _obligations(permits: Iterable[PolicyMeta]) -> tuple[Obligation, ...]:
    out: list[Obligation] = []
    for p in permits:
        if p.row_cap is not None:
            out.append(Obligation(ObligationKind.ROW_CAP, str(p.row_cap), p.policy_id))
        if p.redact:
            out.append(Obligation(ObligationKind.REDACT, ",".join(p.redact), p.policy_id))
    return tuple(out)


def fold(
    answer: CedarAnswer, subset: CompiledSubset, action: ActionKind, tool: str
) -> PolicyOutcome:
    """Fold Cedar's answer for ``subset`` into a :class:`PolicyOutcome`."""
    if answer.errors:
        return _errored(subset, answer.errors)
    decision = answer.decision
    determining = _ordered(subset, answer.reasons)
    if decision == "Deny":
        if not determining:
            return no_policy_permits(action, tool)
        return PolicyOutcome(
            decision=Decision.DENY,
            reasons=tuple(
                Reason(
                    ReasonCode.POLICY_FORBIDS,
                    f"policy {p.policy_id} forbids {action.value} on {tool}"
                    + (f": {p.reason}" if p.reason else ""),
                )
                for p in determining
            ),
            policy_ids=tuple(p.policy_id for p in determining),
            risks=_risks(determining),
        )
    if decision != "Allow":
        return policy_error("policy could not reach a decision for this call, so it is denied")
    approvals = [p for p in determining if p.is_approval_forbid]
    permits = [p for p in determining if not p.is_approval_forbid]
    if not permits:
        return no_policy_permits(action, tool)
    if approvals:
        return PolicyOutcome(
            decision=Decision.APPROVAL_REQUIRED,
            reasons=tuple(
                Reason(
                    ReasonCode.APPROVAL_REQUIRED,
                    f"{p.approval_required} (policy {p.policy_id})",
                )
                for p in approvals
            ),
            policy_ids=tuple(p.policy_id for p in approvals),
            # What the allow carries once a human approves the call.
            obligations=_obligations(permits),
            risks=_risks(approvals),
            approvers=max(p.approvers for p in approvals),
        )
    return PolicyOutcome(
        decision=Decision.ALLOW,
        reasons=(
            Reason(
                ReasonCode.POLICY_PERMITS,
                f"{action.value} on {tool} permitted by policy "
                + ", ".join(p.policy_id for p in permits),
            ),
        ),
        policy_ids=tuple(p.policy_id for p in permits),
        obligations=_obligations(permits),
        risks=_risks(permits),
    )


# -- observe mode ----------------------------------------------------------------------------


def approval_only(answer: CedarAnswer | None, subset: CompiledSubset) -> bool:
    """Did the enforcing answer hold approval forbids but no permit (folded to a deny)?

    Then a permit added in observe mode would have made the call ``approval_required``.
    """
    if answer is None or answer.errors or answer.decision != "Allow":
        return False
    determining = _ordered(subset, answer.reasons)
    return bool(determining) and all(p.is_approval_forbid for p in determining)


def errored_policies(subset: CompiledSubset, errors: Iterable[str]) -> list[PolicyMeta]:
    """The policies Cedar's errors name; every policy of the subset when one names none."""
    ids: list[str] = []
    for error in errors:
        match = _ERROR_POLICY.match(error)
        if match is None:
            return list(subset.policies)
        ids.append(match.group(1))
    return _ordered(subset, dict.fromkeys(ids))


def observe(
    satisfied: Iterable[PolicyMeta],
    errored: Iterable[PolicyMeta],
    enforced: PolicyOutcome,
    *,
    pending_approval: bool = False,
) -> tuple[ObservedVerdict, ...]:
    """What each observe-mode policy would have changed about ``enforced`` (see above).

    ``satisfied`` and ``errored`` come from evaluating the observe subset every policy as a
    permit; ``pending_approval`` is :func:`approval_only` of the enforcing answer.
    """
    decision = enforced.decision
    nothing_permitted = decision is Decision.DENY and all(
        r.code is ReasonCode.NO_POLICY_PERMITS for r in enforced.reasons
    )
    would: dict[str, Decision] = {}
    failed = list(errored)
    for p in failed:
        if decision is not Decision.DENY:
            would[p.policy_id] = Decision.DENY
    failed_ids = {p.policy_id for p in failed}
    for p in satisfied:
        if p.policy_id in failed_ids:
            continue
        if p.effect is Effect.FORBID and not p.is_approval_forbid:
            if decision is not Decision.DENY:
                would[p.policy_id] = Decision.DENY
        elif p.is_approval_forbid:
            if decision is Decision.ALLOW:
                would[p.policy_id] = Decision.APPROVAL_REQUIRED
        elif nothing_permitted:
            would[p.policy_id] = Decision.APPROVAL_REQUIRED if pending_approval else Decision.ALLOW
    by_order = sorted(
        (p for p in [*failed, *satisfied] if p.policy_id in would),
        key=lambda p: p.order,
    )
    seen: dict[str, ObservedVerdict] = {}
    for p in by_order:
        seen.setdefault(p.policy_id, ObservedVerdict(p.policy_id, would[p.policy_id]))
    return tuple(seen.values())
