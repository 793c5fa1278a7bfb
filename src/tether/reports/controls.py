"""Evidence for each control from the audit log, and what the log shows is not covered.

For each control of :data:`tether.reports.frameworks.CONTROLS`, over the window:

* **decisions**: decision records the control took part in. Identity, grants and the audit chain
  take part in every decision; per-call policy in those that got past the grant checks;
  argument constraints in calls to a scope with constraints; approvals in calls that needed or
  used one; break-glass in calls it allowed; delegation in calls made on a delegated grant;
  just-in-time credentials in allows carrying a ``credential`` obligation; budgets, egress rules
  and declared workflows in calls whose reasons name them.
* **denials**: deny verdicts whose first reason belongs to the control (delegation: every deny
  of a call made on a delegated grant).
* **approvals**: ``approval_required`` verdicts (the approvals control) or those whose first
  reason belongs to the control.
* **break-glass uses**: calls allowed under break-glass.
* **facts**: the other records that show the control at work (tasks opened, votes, reviews…).

An always-on control with no evidence is **idle** in the window; an optional one (budgets,
egress rules, workflows, credentials, MCP pinning) with none is **not seen**: not configured, or
never triggered. Gaps are facts of the log that show a control not covering something (see
:func:`_gaps`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from tether.core.audit import AuditKind, AuditRecord
from tether.core.scope import ActionKind
from tether.core.verdict import Decision, ReasonCode
from tether.reports.frameworks import CONTROLS, Control, ControlKey
from tether.reports.privileges import privileges
from tether.reports.records import (
    DECISION_KINDS,
    DecisionFacts,
    Window,
    decision_facts,
    grant_facts,
    items,
    opt_text,
    text,
    windowed,
)

_K = ControlKey
_R = ReasonCode
#: Which control a deny's (or approval's) first reason belongs to.
_REASON_CONTROL: dict[str, ControlKey] = {
    _R.GRANT_INVALID: _K.WORKLOAD_IDENTITY,
    _R.GRANT_NOT_BOUND: _K.WORKLOAD_IDENTITY,
    _R.GRANT_EXPIRED: _K.TASK_GRANTS,
    _R.GRANT_REVOKED: _K.TASK_GRANTS,
    _R.TASK_NOT_OPEN: _K.TASK_GRANTS,
    _R.TOOL_NOT_IN_SCOPE: _K.PER_CALL_POLICY,
    _R.ACTION_NOT_IN_SCOPE: _K.PER_CALL_POLICY,
    _R.DATASET_NOT_IN_SCOPE: _K.PER_CALL_POLICY,
    _R.POLICY_FORBIDS: _K.PER_CALL_POLICY,
    _R.NO_POLICY_PERMITS: _K.PER_CALL_POLICY,
    _R.POLICY_ERROR: _K.PER_CALL_POLICY,
    _R.POLICY_UNAVAILABLE: _K.PER_CALL_POLICY,
    _R.ARGUMENT_MISSING: _K.ARGUMENT_CONSTRAINTS,
    _R.CONSTRAINT_VIOLATED: _K.ARGUMENT_CONSTRAINTS,
    _R.APPROVAL_REQUIRED: _K.APPROVALS,
    _R.APPROVAL_GRANTED: _K.APPROVALS,
    _R.APPROVAL_PENDING: _K.APPROVALS,
    _R.APPROVAL_DENIED: _K.APPROVALS,
    _R.APPROVAL_USED: _K.APPROVALS,
    _R.APPROVAL_EXPIRED: _K.APPROVALS,
    _R.APPROVAL_MISMATCH: _K.APPROVALS,
    _R.APPROVAL_UNKNOWN: _K.APPROVALS,
    _R.BREAK_GLASS: _K.BREAK_GLASS,
}
#: Reason codes of checks other parts of tether add: matched by the word they carry.
_WORDS: tuple[tuple[str, ControlKey], ...] = (
    ("budget", _K.BUDGETS),
    ("egress", _K.EGRESS_RULES),
    ("data_flow", _K.EGRESS_RULES),
    ("workflow", _K.DECLARED_WORKFLOWS),
    ("step", _K.DECLARED_WORKFLOWS),
)
_GRANT_CHECK_CODES = frozenset(
    {_R.GRANT_INVALID, _R.GRANT_NOT_BOUND, _R.GRANT_EXPIRED, _R.GRANT_REVOKED, _R.TASK_NOT_OPEN}
)
_APPROVAL_FREE_KINDS = (ActionKind.SPEND, ActionKind.DELETE, ActionKind.EXECUTE)


def control_of_reason(code: str) -> ControlKey | None:
    known = _REASON_CONTROL.get(code)
    if known is not None:
        return known
    for word, key in _WORDS:
        if word in code:
            return key
    return None


class Coverage(StrEnum):
    EVIDENCED = "evidenced"
    IDLE = "idle"
    NOT_SEEN = "not seen"


@dataclass(frozen=True, slots=True)
class Evidence:
    decisions: int = 0
    denials: int = 0
    approvals: int = 0
    breakglass_uses: int = 0
    facts: tuple[tuple[str, int], ...] = ()

    @property
    def any(self) -> bool:
        counts = (self.decisions, self.denials, self.approvals, self.breakglass_uses)
        return any(counts) or any(n for _, n in self.facts)


@dataclass(frozen=True, slots=True)
class ControlRow:
    control: Control
    evidence: Evidence
    coverage: Coverage


@dataclass(frozen=True, slots=True)
class Gap:
    """Something the log shows a control not covering."""

    control: ControlKey | None
    message: str


@dataclass(frozen=True, slots=True)
class ControlsReport:
    window: Window
    records: int
    decisions: int
    rows: tuple[ControlRow, ...]
    gaps: tuple[Gap, ...]


@dataclass
class _Tally:
    decisions: Counter[ControlKey] = field(default_factory=Counter)
    denials: Counter[ControlKey] = field(default_factory=Counter)
    approvals: Counter[ControlKey] = field(default_factory=Counter)
    facts: dict[ControlKey, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    agents: set[str] = field(default_factory=set)
    all_decisions: int = 0
    breakglass_uses: int = 0
    #: Per action kind: normal allows, and calls that needed or used an approval.
    allowed_by_kind: Counter[ActionKind] = field(default_factory=Counter)
    approved_by_kind: Counter[ActionKind] = field(default_factory=Counter)
    tools_by_kind: dict[ActionKind, set[str]] = field(default_factory=lambda: defaultdict(set))
    allowed_ids: set[str] = field(default_factory=set)
    effect_ids: set[str] = field(default_factory=set)
    ran_without_allow: int = 0
    approvals_requested: dict[str, str] = field(default_factory=dict)
    approvals_decided: set[str] = field(default_factory=set)
    breakglass_active: set[str] = field(default_factory=set)
    breakglass_used: Counter[str] = field(default_factory=Counter)
    breakglass_reviewed: set[str] = field(default_factory=set)
    constrained: dict[str, set[str]] = field(default_factory=dict)


def controls(records: Iterable[AuditRecord], window: Window | None = None) -> ControlsReport:
    """Evidence per control and the gaps the log shows, over ``window``."""
    window = window or Window()
    inside = [record for record, _ in windowed(records, window)]
    t = _Tally()
    for record in inside:
        if record.agent is not None:
            t.agents.add(record.agent)
        if record.kind in DECISION_KINDS:
            _decision(t, record, decision_facts(record))
        else:
            _other(t, record)
    rows = tuple(_row(c, t) for c in CONTROLS)
    gaps = _gaps(t, rows, inside)
    return ControlsReport(window, len(inside), t.all_decisions, rows, tuple(gaps))


def _decision(t: _Tally, record: AuditRecord, facts: DecisionFacts) -> None:
    t.all_decisions += 1
    for key in (_K.WORKLOAD_IDENTITY, _K.TASK_GRANTS, _K.AUDIT_CHAIN):
        t.decisions[key] += 1
    codes = facts.reason_codes
    first = control_of_reason(codes[0]) if codes else None
    if facts.decision is Decision.DENY and first is not None:
        t.denials[first] += 1
    if not (facts.decision is Decision.DENY and codes and codes[0] in _GRANT_CHECK_CODES):
        t.decisions[_K.PER_CALL_POLICY] += 1
    constrained = t.constrained.get(record.task_id or "", set())
    if facts.call.tool in constrained:
        t.decisions[_K.ARGUMENT_CONSTRAINTS] += 1
    touched = {k for k in map(control_of_reason, codes) if k is not None}
    for key in touched & {_K.APPROVALS, _K.BUDGETS, _K.EGRESS_RULES, _K.DECLARED_WORKFLOWS}:
        t.decisions[key] += 1
    if facts.decision is Decision.APPROVAL_REQUIRED:
        t.approvals[_K.APPROVALS] += 1
        if first is not None and first is not _K.APPROVALS:
            t.approvals[first] += 1
    if facts.delegation_depth > 0:
        t.decisions[_K.DELEGATION] += 1
        if facts.decision is Decision.DENY:
            t.denials[_K.DELEGATION] += 1
    kind = facts.call.action
    if facts.decision is Decision.APPROVAL_REQUIRED or _R.APPROVAL_GRANTED in codes:
        t.approved_by_kind[kind] += 1
    if facts.decision is Decision.ALLOW:
        decision_id = record.body.get("decision_id")
        if isinstance(decision_id, str):
            t.allowed_ids.add(decision_id)
        if facts.breakglass:
            t.breakglass_uses += 1
            t.decisions[_K.BREAK_GLASS] += 1
            bg = opt_text(record, record.body, "breakglass_id")
            if bg is not None:
                t.breakglass_used[bg] += 1
        else:
            t.allowed_by_kind[kind] += 1
            t.tools_by_kind[kind].add(facts.call.tool)
        if "credential" in facts.obligation_kinds:
            t.decisions[_K.JIT_CREDENTIALS] += 1


def _other(t: _Tally, record: AuditRecord) -> None:
    body = record.body
    facts = t.facts
    match record.kind:
        case AuditKind.TASK_OPENED | AuditKind.TASK_DELEGATED:
            grant = grant_facts(record)
            facts[_K.TASK_GRANTS]["tasks opened"] += 1
            facts[_K.TASK_GRANTS]["scopes refused at open"] += len(items(record, body, "refused"))
            tools = {s.tool for s in grant.granted if s.constraints}
            t.constrained[grant.task_id] = tools
            if tools:
                facts[_K.ARGUMENT_CONSTRAINTS]["grants with constrained scopes"] += 1
            if grant.delegated:
                facts[_K.DELEGATION]["delegations"] += 1
        case AuditKind.TASK_REFUSED:
            facts[_K.TASK_GRANTS]["tasks refused"] += 1
        case AuditKind.TASK_CLOSED:
            facts[_K.TASK_GRANTS]["tasks closed"] += 1
            ended = body.get("leases_revoked")
            if isinstance(ended, list) and ended:
                facts[_K.JIT_CREDENTIALS]["leases ended with their task"] += len(ended)
        case AuditKind.TASK_EXPIRED:
            facts[_K.TASK_GRANTS]["tasks expired"] += 1
        case AuditKind.TASK_REVOKED:
            facts[_K.TASK_GRANTS]["tasks revoked"] += 1
            if "root_task_id" in body:
                facts[_K.DELEGATION]["revoked with their parent"] += 1
        case AuditKind.EFFECT:
            facts[_K.AUDIT_CHAIN]["effects reported"] += 1
            decision_id = body.get("decision_id")
            if isinstance(decision_id, str):
                t.effect_ids.add(decision_id)
            if body.get("ran_without_allow") is True:
                t.ran_without_allow += 1
                facts[_K.AUDIT_CHAIN]["effects without an allow"] += 1
        case AuditKind.APPROVAL_REQUESTED:
            facts[_K.APPROVALS]["approvals requested"] += 1
            t.approvals_requested[text(record, body, "approval_id")] = record.at
        case AuditKind.APPROVAL_VOTED:
            approve = body.get("approve") is True
            facts[_K.APPROVALS]["votes to approve" if approve else "votes to deny"] += 1
            t.approvals_decided.add(text(record, body, "approval_id"))
        case AuditKind.BREAKGLASS_REQUESTED:
            facts[_K.BREAK_GLASS]["requests"] += 1
        case AuditKind.BREAKGLASS_VOTED:
            if body.get("state") == "active":
                facts[_K.BREAK_GLASS]["activations"] += 1
                t.breakglass_active.add(text(record, body, "breakglass_id"))
        case AuditKind.BREAKGLASS_REVIEWED:
            facts[_K.BREAK_GLASS]["reviews written"] += 1
            t.breakglass_reviewed.add(text(record, body, "breakglass_id"))
        case AuditKind.POLICY_LOADED:
            facts[_K.PER_CALL_POLICY]["policy loads"] += 1
        case AuditKind.TOOL_PINNED:
            facts[_K.TOOL_PINNING]["tools pinned"] += 1
        case AuditKind.TOOL_WITHHELD:
            facts[_K.TOOL_PINNING]["tools withheld"] += 1
        case AuditKind.UPSTREAM_FAILED:
            facts[_K.TOOL_PINNING]["upstream failures"] += 1
        case AuditKind.LEASE_ISSUED:
            facts[_K.JIT_CREDENTIALS]["leases issued"] += 1
        case AuditKind.LEASE_REVOKED:
            facts[_K.JIT_CREDENTIALS]["leases revoked"] += 1
        case AuditKind.LEASE_EXPIRED:
            facts[_K.JIT_CREDENTIALS]["leases expired"] += 1
        case AuditKind.LEASE_RELEASED:
            facts[_K.JIT_CREDENTIALS]["credentials removed downstream"] += 1
        case _:
            pass


def _row(c: Control, t: _Tally) -> ControlRow:
    facts = dict(t.facts.get(c.key, Counter()))
    if c.key is _K.WORKLOAD_IDENTITY:
        facts["agents seen"] = len(t.agents)
    evidence = Evidence(
        decisions=t.decisions[c.key],
        denials=t.denials[c.key],
        approvals=t.approvals[c.key],
        breakglass_uses=t.breakglass_uses if c.key is _K.BREAK_GLASS else 0,
        facts=tuple(sorted(facts.items())),
    )
    if evidence.any:
        coverage = Coverage.EVIDENCED
    else:
        coverage = Coverage.NOT_SEEN if c.optional else Coverage.IDLE
    return ControlRow(c, evidence, coverage)


def _gaps(t: _Tally, rows: tuple[ControlRow, ...], inside: list[AuditRecord]) -> list[Gap]:
    """What the log shows is not covered, most telling first."""
    gaps: list[Gap] = []
    if t.all_decisions == 0:
        gaps.append(Gap(None, "no decisions in the window: no control has evidence of a call"))
    for kind in _APPROVAL_FREE_KINDS:
        allowed = t.allowed_by_kind[kind]
        if allowed and not t.approved_by_kind[kind]:
            tools = ", ".join(sorted(t.tools_by_kind[kind]))
            gaps.append(
                Gap(
                    _K.APPROVALS,
                    f"no approval was ever required for any {kind.value} call: {allowed} "
                    f"{kind.value} call(s) allowed without a human ({tools})",
                )
            )
    for bg in sorted(t.breakglass_active | set(t.breakglass_used)):
        if bg not in t.breakglass_reviewed:
            uses = t.breakglass_used[bg]
            gaps.append(
                Gap(
                    _K.BREAK_GLASS,
                    f"break-glass {bg} was activated and used for {uses} call(s) but no review "
                    "was written (tether breakglass review)",
                )
            )
    for approval_id in sorted(set(t.approvals_requested) - t.approvals_decided):
        gaps.append(
            Gap(
                _K.APPROVALS,
                f"approval {approval_id} was requested and never decided by a human "
                "(it expires as a deny)",
            )
        )
    if t.ran_without_allow:
        gaps.append(
            Gap(
                _K.PER_CALL_POLICY,
                f"{t.ran_without_allow} effect(s) report a tool that ran although tether did not "
                "allow the call: enforcement was bypassed there",
            )
        )
    silent = len(t.allowed_ids - t.effect_ids)
    if silent:
        gaps.append(
            Gap(
                _K.AUDIT_CHAIN,
                f"{silent} of {len(t.allowed_ids)} allowed call(s) have no reported effect: "
                "their side effects are not in the log",
            )
        )
    report = privileges(inside)
    unused = report.granted_total - report.used_total
    if unused and report.ratio is not None:
        gaps.append(
            Gap(
                _K.TASK_GRANTS,
                f"{unused} of {report.granted_total} granted (tool, action, dataset) triples were "
                f"never used (least-privilege ratio {float(report.ratio):.2f}): grants are "
                "broader than the work; see tether report privileges",
            )
        )
    for row in rows:
        if row.coverage is Coverage.NOT_SEEN:
            gaps.append(
                Gap(
                    row.control.key,
                    f"{row.control.name}: no evidence in the window (not configured, or it never "
                    "decided a call)",
                )
            )
    return gaps
