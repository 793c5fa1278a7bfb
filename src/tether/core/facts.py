"""The facts one decision is made from, and the decision with what recording it implies.

Values only: :mod:`tether.core.decide` holds the rules. The service gathers a
:class:`CallFacts` (and, when the decision needs them, :class:`LateFacts`), asks the policy
engine for its :class:`PolicyOutcome`, and records the :class:`Decided` that comes back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from tether.core.approval import Approval
from tether.core.breakglass import BreakGlass
from tether.core.call import Call
from tether.core.dataflow import EgressRules, chain_label
from tether.core.ids import ApprovalId, TaskId
from tether.core.provenance_rules import NO_PROVENANCE, ArgumentProvenance
from tether.core.risks import Risk
from tether.core.scope import Classification, JSONValue
from tether.core.task import Grant, Task
from tether.core.verdict import Decision, Obligation, Reason
from tether.core.workflow import Workflow

__all__ = [
    "CallFacts",
    "Decided",
    "LateFacts",
    "ObservedVerdict",
    "PolicyOutcome",
    "TaskProgress",
    "TokenStatus",
]


# --- the policy engine's answer ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ObservedVerdict:
    """What one observe-mode policy would have changed had it been enforced.

    ``would`` is the decision the enforcing policies *plus this one* would have reached; it
    differs from the outcome's own decision (an entry is made only for a change). It never
    changes the verdict: observe mode is for trying a policy on real traffic first.
    """

    policy_id: str
    would: Decision

    def to_json(self) -> dict[str, JSONValue]:
        return {"policy_id": self.policy_id, "would": self.would.value}


@dataclass(frozen=True, slots=True)
class PolicyOutcome:
    """Cedar's answer, already folded into tether's three decisions (deny on any error)."""

    decision: Decision
    reasons: tuple[Reason, ...]
    policy_ids: tuple[str, ...]
    obligations: tuple[Obligation, ...] = ()
    risks: frozenset[Risk] = field(default_factory=frozenset)
    #: For ``approval_required``: how many distinct humans must approve.
    approvers: int = 1
    #: Observe-mode policies that would have changed the decision (audited, never enforced).
    observed: tuple[ObservedVerdict, ...] = ()


# --- the facts ---------------------------------------------------------------------------------


class TokenStatus(StrEnum):
    """What verifying the grant token's signature and expiry found."""

    VALID = "valid"
    EXPIRED = "expired"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What is known of one call before it is decided, read at one ``now``."""

    agent: str
    call: Call
    now: datetime
    token: TokenStatus
    #: The workload the token was issued to (``None`` unless the token verified).
    token_agent: str | None = None
    #: The grant the token names, as the store holds it (``None``: unknown).
    grant: Grant | None = None
    #: The grant's task first, then every task it was delegated from, the root last (empty:
    #: the task is unknown).
    chain: tuple[Task, ...] = ()
    #: The classification of the call's dataset (``None``: no dataset, or unclassified).
    classification: Classification | None = None
    #: The workflow the chain's root declared, when tether knows it.
    workflow: Workflow | None = None
    egress: EgressRules = field(default_factory=EgressRules)
    #: The provenance check of the call's sink arguments (see :mod:`tether.core.provenance`).
    provenance: ArgumentProvenance = NO_PROVENANCE

    @property
    def task(self) -> Task | None:
        return self.chain[0] if self.chain else None

    @property
    def label(self) -> str:
        """The data-flow label that binds the caller: the highest up its chain."""
        return chain_label(t.label for t in self.chain)


@dataclass(frozen=True, slots=True)
class LateFacts:
    """Facts read only when the decision gets far enough to need them."""

    #: ``anomalous_volume`` when this read takes the task far past its workflow's history.
    anomaly: Reason | None = None
    #: The active break-glass of the task for its own agent (see :func:`needs_breakglass`).
    breakglass: BreakGlass | None = None
    #: The approval id the caller named, and the approval it names (``None``: unknown).
    approval_id: str | None = None
    approval: Approval | None = None
    #: An approval already pending for exactly this call (see :func:`needs_approval`).
    pending: Approval | None = None
    #: The keyed digest of the call's arguments an approval is bound to.
    args_mac: str = ""


@dataclass(frozen=True, slots=True)
class TaskProgress:
    """What an allowed call changes on one task of its delegation chain: the data-flow label
    (raised on the caller's task and every ancestor) and, on the chain's root only, the
    workflow step."""

    task_id: TaskId
    label: str
    workflow_step: str | None
    #: False: leave the task's workflow step as it is (an ancestor's label rose, nothing more).
    moves_step: bool = True


@dataclass(frozen=True, slots=True)
class Decided:
    """A decision and everything recording it implies."""

    decision: Decision
    reasons: tuple[Reason, ...]
    risks: frozenset[Risk]
    policy_ids: tuple[str, ...] = ()
    obligations: tuple[Obligation, ...] = ()
    grant: Grant | None = None
    chain: tuple[Task, ...] = ()
    #: For ``approval_required``: how many humans must approve, and the obligations the allow
    #: carries once they have (a call approved is still capped as policy says).
    approvers: int = 1
    approved_obligations: tuple[Obligation, ...] = ()
    #: Set when an active break-glass allowed what the normal pipeline would not.
    breakglass: BreakGlass | None = None
    overridden: tuple[Decision, tuple[Reason, ...]] | None = None
    #: Observe-mode policies that would have changed the policy decision: audited only.
    observed: tuple[ObservedVerdict, ...] = ()
    #: The workflow step the call takes.
    step: str | None = None
    #: The approval this call uses up (an approved retry), or the pending one it names.
    use_approval: ApprovalId | None = None
    approval_ref: str | None = None
    #: True when a new approval must be drafted and recorded with this decision.
    draft_approval: bool = False
    #: The tasks whose data-flow label or workflow step this allow moves.
    progress: tuple[TaskProgress, ...] = ()

    @property
    def task(self) -> Task | None:
        return self.chain[0] if self.chain else None

    def audit_extra(self) -> dict[str, JSONValue]:
        """What this decision adds to its audit body (``observed`` when non-empty)."""
        if not self.observed:
            return {}
        return {"observed": [o.to_json() for o in self.observed]}
