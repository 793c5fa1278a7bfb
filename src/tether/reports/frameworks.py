"""Framework alignment as data: which items of which framework each tether control addresses.

The frameworks, with the names they publish:

* OWASP Top 10 for Agentic Applications (2026): ``ASI01`` to ``ASI10``, :mod:`tether.core.risks`.
* OWASP Top 10 Non-Human Identities Risks (2025): ``NHI1`` to ``NHI10`` (:class:`Nhi`).
* NIST AI RMF 1.0 core functions: Govern, Map, Measure, Manage (:class:`AiRmf`).
* NIST CSF 2.0 functions: Govern, Identify, Protect, Detect, Respond, Recover (:class:`Csf`).
* CSA MAESTRO layers L1 to L7 (:class:`Maestro`); L6 Security and Compliance is the vertical one.

This module holds only the mapping; :mod:`tether.reports.controls` counts the evidence for each
control from the audit log. A test holds every ASI id to appearing at least once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from tether.core.risks import Risk


class Nhi(StrEnum):
    """An OWASP Non-Human Identities Top 10 (2025) item; ``label`` gives its name."""

    NHI1 = "NHI1"
    NHI2 = "NHI2"
    NHI3 = "NHI3"
    NHI4 = "NHI4"
    NHI5 = "NHI5"
    NHI6 = "NHI6"
    NHI7 = "NHI7"
    NHI8 = "NHI8"
    NHI9 = "NHI9"
    NHI10 = "NHI10"

    @property
    def label(self) -> str:
        return NHI_TITLES[self]


NHI_TITLES: dict[Nhi, str] = {
    Nhi.NHI1: "Improper Offboarding",
    Nhi.NHI2: "Secret Leakage",
    Nhi.NHI3: "Vulnerable Third-Party NHI",
    Nhi.NHI4: "Insecure Authentication",
    Nhi.NHI5: "Overprivileged NHI",
    Nhi.NHI6: "Insecure Cloud Deployment Configurations",
    Nhi.NHI7: "Long-Lived Secrets",
    Nhi.NHI8: "Environment Isolation",
    Nhi.NHI9: "NHI Reuse",
    Nhi.NHI10: "Human Use of NHI",
}


class AiRmf(StrEnum):
    """A NIST AI RMF 1.0 core function."""

    GOVERN = "Govern"
    MAP = "Map"
    MEASURE = "Measure"
    MANAGE = "Manage"


class Csf(StrEnum):
    """A NIST Cybersecurity Framework 2.0 function."""

    GOVERN = "Govern"
    IDENTIFY = "Identify"
    PROTECT = "Protect"
    DETECT = "Detect"
    RESPOND = "Respond"
    RECOVER = "Recover"


class Maestro(StrEnum):
    """A CSA MAESTRO layer; ``label`` gives its name."""

    L1 = "L1"
    L2 = "L2"
    L3 = "L3"
    L4 = "L4"
    L5 = "L5"
    L6 = "L6"
    L7 = "L7"

    @property
    def label(self) -> str:
        return MAESTRO_TITLES[self]


MAESTRO_TITLES: dict[Maestro, str] = {
    Maestro.L1: "Foundation Models",
    Maestro.L2: "Data Operations",
    Maestro.L3: "Agent Frameworks",
    Maestro.L4: "Deployment and Infrastructure",
    Maestro.L5: "Evaluation and Observability",
    Maestro.L6: "Security and Compliance",
    Maestro.L7: "Agent Ecosystem",
}


class ControlKey(StrEnum):
    WORKLOAD_IDENTITY = "workload_identity"
    TASK_GRANTS = "task_grants"
    PER_CALL_POLICY = "per_call_policy"
    ARGUMENT_CONSTRAINTS = "argument_constraints"
    APPROVALS = "approvals"
    BREAK_GLASS = "break_glass"
    DELEGATION = "delegation"
    AUDIT_CHAIN = "audit_chain"
    JIT_CREDENTIALS = "jit_credentials"
    TOOL_PINNING = "tool_pinning"
    BUDGETS = "budgets"
    EGRESS_RULES = "egress_rules"
    DECLARED_WORKFLOWS = "declared_workflows"


@dataclass(frozen=True, slots=True)
class Control:
    key: ControlKey
    name: str
    summary: str
    asi: tuple[Risk, ...]
    nhi: tuple[Nhi, ...]
    ai_rmf: tuple[AiRmf, ...]
    csf: tuple[Csf, ...]
    maestro: tuple[Maestro, ...]
    #: Always on in tether (``False``), or active only when configured and seen in the log.
    optional: bool = False


CONTROLS: tuple[Control, ...] = (
    Control(
        ControlKey.WORKLOAD_IDENTITY,
        "Workload identity",
        "agents authenticate as workloads (SPIFFE SVID or OIDC); grants are bound to them",
        asi=(Risk.ASI03, Risk.ASI10),
        nhi=(Nhi.NHI4, Nhi.NHI8, Nhi.NHI9),
        ai_rmf=(AiRmf.MANAGE,),
        csf=(Csf.PROTECT,),
        maestro=(Maestro.L4, Maestro.L7),
    ),
    Control(
        ControlKey.TASK_GRANTS,
        "Task grants with short TTLs",
        "no standing privilege: a task yields a grant of minutes, narrowed by policy, revocable",
        asi=(Risk.ASI03, Risk.ASI10),
        nhi=(Nhi.NHI1, Nhi.NHI5, Nhi.NHI7),
        ai_rmf=(AiRmf.MANAGE,),
        csf=(Csf.PROTECT,),
        maestro=(Maestro.L3, Maestro.L6),
    ),
    Control(
        ControlKey.PER_CALL_POLICY,
        "Per-call scope and policy",
        "every tool call is checked against the grant's scope and Cedar policy, fail closed",
        asi=(Risk.ASI02, Risk.ASI03, Risk.ASI05, Risk.ASI06),
        nhi=(Nhi.NHI5,),
        ai_rmf=(AiRmf.MANAGE,),
        csf=(Csf.PROTECT,),
        maestro=(Maestro.L3, Maestro.L6),
    ),
    Control(
        ControlKey.ARGUMENT_CONSTRAINTS,
        "Argument constraints",
        "granted scopes bound call arguments (amount <= 100, recipients @example.com)",
        asi=(Risk.ASI01, Risk.ASI02),
        nhi=(Nhi.NHI5,),
        ai_rmf=(AiRmf.MANAGE,),
        csf=(Csf.PROTECT,),
        maestro=(Maestro.L3,),
    ),
    Control(
        ControlKey.APPROVALS,
        "Human approvals",
        "risky calls wait for named humans; an approval is bound to the exact call, used once",
        asi=(Risk.ASI09, Risk.ASI02),
        nhi=(),
        ai_rmf=(AiRmf.GOVERN, AiRmf.MANAGE),
        csf=(Csf.GOVERN, Csf.PROTECT),
        maestro=(Maestro.L6, Maestro.L7),
    ),
    Control(
        ControlKey.BREAK_GLASS,
        "Break-glass",
        "emergency elevation: N of M humans, scoped, time-boxed, never inherited, reviewed",
        asi=(Risk.ASI10, Risk.ASI03),
        nhi=(Nhi.NHI5,),
        ai_rmf=(AiRmf.GOVERN, AiRmf.MANAGE),
        csf=(Csf.GOVERN, Csf.RESPOND, Csf.RECOVER),
        maestro=(Maestro.L6,),
    ),
    Control(
        ControlKey.DELEGATION,
        "Delegation narrowing",
        "a child grant is a subset of its parent, carries the chain, dies with the parent",
        asi=(Risk.ASI07, Risk.ASI03, Risk.ASI08),
        nhi=(Nhi.NHI5, Nhi.NHI9),
        ai_rmf=(AiRmf.MANAGE,),
        csf=(Csf.PROTECT,),
        maestro=(Maestro.L3, Maestro.L7),
    ),
    Control(
        ControlKey.AUDIT_CHAIN,
        "Audit chain",
        "intent, decision and effect in a hash-chained log; secrets never written, args HMAC'd",
        asi=(Risk.ASI10,),
        nhi=(Nhi.NHI2,),
        ai_rmf=(AiRmf.MEASURE, AiRmf.GOVERN),
        csf=(Csf.DETECT, Csf.RESPOND),
        maestro=(Maestro.L5, Maestro.L6),
    ),
    Control(
        ControlKey.JIT_CREDENTIALS,
        "Just-in-time credentials",
        "allowed calls get a scoped, short-lived downstream credential the agent never keeps",
        asi=(Risk.ASI03, Risk.ASI02),
        nhi=(Nhi.NHI2, Nhi.NHI7),
        ai_rmf=(AiRmf.MANAGE,),
        csf=(Csf.PROTECT,),
        maestro=(Maestro.L4,),
        optional=True,
    ),
    Control(
        ControlKey.TOOL_PINNING,
        "MCP tool pinning",
        "the MCP gateway pins upstream tool descriptors and withholds changed ones",
        asi=(Risk.ASI04,),
        nhi=(Nhi.NHI3,),
        ai_rmf=(AiRmf.MAP, AiRmf.MANAGE),
        csf=(Csf.IDENTIFY, Csf.PROTECT),
        maestro=(Maestro.L3, Maestro.L7),
        optional=True,
    ),
    Control(
        ControlKey.BUDGETS,
        "Budgets",
        "records, bytes, call rate and money per task and classification, enforced atomically",
        asi=(Risk.ASI08, Risk.ASI02),
        nhi=(Nhi.NHI5,),
        ai_rmf=(AiRmf.MEASURE, AiRmf.MANAGE),
        csf=(Csf.PROTECT, Csf.DETECT),
        maestro=(Maestro.L2,),
        optional=True,
    ),
    Control(
        ControlKey.EGRESS_RULES,
        "Data-flow egress rules",
        "after confidential data is read, sending it out needs approval; after restricted, deny",
        asi=(Risk.ASI02, Risk.ASI01),
        nhi=(),
        ai_rmf=(AiRmf.MANAGE,),
        csf=(Csf.PROTECT,),
        maestro=(Maestro.L2,),
        optional=True,
    ),
    Control(
        ControlKey.DECLARED_WORKFLOWS,
        "Declared workflows",
        "a task's calls must follow the steps of the workflow it declared",
        asi=(Risk.ASI01,),
        nhi=(),
        ai_rmf=(AiRmf.MAP, AiRmf.MANAGE),
        csf=(Csf.PROTECT, Csf.DETECT),
        maestro=(Maestro.L3,),
        optional=True,
    ),
)


def control(key: ControlKey) -> Control:
    for c in CONTROLS:
        if c.key is key:
            return c
    raise KeyError(key)


def not_addressed() -> tuple[list[Nhi], list[Maestro]]:
    """NHI items and MAESTRO layers that no tether control addresses (outside its reach)."""
    nhi = {n for c in CONTROLS for n in c.nhi}
    layers = {m for c in CONTROLS for m in c.maestro}
    return [n for n in Nhi if n not in nhi], [m for m in Maestro if m not in layers]
