"""Granted against used privilege, per agent and workflow (DESIGN.md principle 12).

The unit of privilege is the **triple** ``(tool, action, dataset)``. A granted scope stands for
the product of its actions by its datasets; a scope with no datasets stands for calls that name
no dataset (``dataset = None``), exactly as the scope check treats it (``tether.core.scope``).

For one group ``(agent, workflow)`` over a window:

* a **task** belongs to the group when its ``task_opened`` or ``task_delegated`` record is in
  the window, names the agent, and its intent names the workflow (a delegated task carries the
  intent of the task it was delegated from);
* **granted** ``G`` is the union of the triples of every scope granted to the group's tasks;
* **used** ``U`` is the set of triples of the calls allowed, in the window, on the group's tasks
  by a ``decision`` record (including calls a human approved). Calls allowed under break-glass
  (``breakglass_decision``) are reported apart as **used outside the grant**: break-glass
  widens a live grant, so those calls are not granted privilege being used;
* the **least-privilege ratio** is ``|U ∩ G| / |G|``: 1.0 when every granted triple was used,
  0.0 when none was; undefined (``None``) when nothing was granted. Constraints on arguments
  do not enter the ratio; they stay in the proposed grant.

Decisions in the window that no task of the window can account for (no task at all, e.g. a
stolen grant, or a task opened before the window) are counted as ``unattributed``.

Unused privilege, from ``G - U``:

* **unused tools**: tools in ``G`` with no triple in ``U``;
* **unused actions** of a used tool: its actions in ``G`` that no used triple has;
* **unused datasets** of a used tool: its datasets in ``G`` that no used triple names.

The **proposed grant** is, per used tool, one scope with the used actions and datasets and the
argument constraints of the grants it was used under (when those grants differ, the loosest
one that contains all of them; if none does, the constraints are left out and a note says so).
tether allows one scope per tool, so a proposed scope is the product of what was used on that
tool: it may hold a triple that was not used, never one that was not granted. The proposed
Cedar policy (:mod:`tether.reports.cedar`) permits exactly the used triples.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from fractions import Fraction

from tether.core.audit import AuditKind, AuditRecord
from tether.core.scope import ActionKind, ArgConstraint, JSONValue, Scope
from tether.core.verdict import Decision
from tether.reports.records import (
    DECISION_KINDS,
    GRANT_KINDS,
    Window,
    decision_facts,
    grant_facts,
    windowed,
)


@dataclass(frozen=True, slots=True)
class Triple:
    """One unit of privilege: a tool, an action kind and a dataset (``None``: no dataset)."""

    tool: str
    action: ActionKind
    dataset: str | None

    @property
    def sort_key(self) -> tuple[str, str, str]:
        return (self.tool, self.action.value, self.dataset or "")

    def __str__(self) -> str:
        return f"{self.tool} {self.action.value} {self.dataset or '-'}"


def triples_of(scope: Scope) -> frozenset[Triple]:
    """The triples a scope grants: its actions by its allowed datasets."""
    return frozenset(
        Triple(scope.tool, a, d) for a in scope.actions for d in scope.allowed_datasets
    )


def ordered(triples: Iterable[Triple]) -> list[Triple]:
    return sorted(triples, key=lambda t: t.sort_key)


@dataclass(frozen=True, slots=True)
class ProposedScope:
    scope: Scope
    #: Why the constraints are not those of the grants, when they could not be kept.
    note: str | None = None


@dataclass(frozen=True, slots=True)
class PrivilegeGroup:
    """Granted against used privilege for one agent in one workflow."""

    agent: str
    workflow: str
    tasks: int
    delegated_tasks: int
    granted: frozenset[Triple]
    used: frozenset[Triple]
    used_outside_grant: frozenset[Triple]
    allowed_calls: int
    denied_calls: int
    approval_calls: int
    #: Per tool, the granted scopes of the tasks the tool was used in (for constraints).
    scopes_used_under: tuple[tuple[str, tuple[Scope, ...]], ...] = field(default=())

    @property
    def used_granted(self) -> frozenset[Triple]:
        return self.used & self.granted

    @property
    def ratio(self) -> Fraction | None:
        """``|U ∩ G| / |G|``, or ``None`` when nothing was granted (see the module docstring)."""
        if not self.granted:
            return None
        return Fraction(len(self.used_granted), len(self.granted))

    @property
    def unused(self) -> list[Triple]:
        return ordered(self.granted - self.used)

    @property
    def unused_tools(self) -> list[str]:
        used_tools = {t.tool for t in self.used}
        return sorted({t.tool for t in self.granted} - used_tools)

    @property
    def unused_actions(self) -> dict[str, list[ActionKind]]:
        out: dict[str, list[ActionKind]] = {}
        for tool in sorted({t.tool for t in self.used_granted}):
            granted = {t.action for t in self.granted if t.tool == tool}
            used = {t.action for t in self.used if t.tool == tool}
            if granted - used:
                out[tool] = sorted(granted - used, key=lambda a: a.value)
        return out

    @property
    def unused_datasets(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for tool in sorted({t.tool for t in self.used_granted}):
            granted = {t.dataset for t in self.granted if t.tool == tool and t.dataset}
            used = {t.dataset for t in self.used if t.tool == tool and t.dataset}
            if granted - used:
                out[tool] = sorted(d for d in granted - used if d is not None)
        return out

    @property
    def proposed(self) -> list[ProposedScope]:
        """The tighter grant: per used tool, what was used on it (see the module docstring)."""
        under = dict(self.scopes_used_under)
        out: list[ProposedScope] = []
        for tool in sorted({t.tool for t in self.used_granted}):
            mine = [t for t in self.used_granted if t.tool == tool]
            constraints, note = _loosest_constraints(under.get(tool, ()))
            scope = Scope.of(
                tool,
                {t.action for t in mine},
                {t.dataset for t in mine if t.dataset is not None},
                constraints,
            )
            out.append(ProposedScope(scope, note))
        return out

    def proposed_json(self) -> list[JSONValue]:
        """The proposed grant in the form ``POST /v1/tasks`` takes as ``scopes``."""
        return [p.scope.to_json() for p in self.proposed]


def _loosest_constraints(
    scopes: tuple[Scope, ...],
) -> tuple[dict[str, ArgConstraint], str | None]:
    if not scopes:
        return {}, None
    distinct = list(dict.fromkeys(s.constraints for s in scopes))
    if len(distinct) == 1:
        return dict(distinct[0]), None
    # Compare constraints only: same tool, every action, no datasets on either side.
    shapes = [Scope(scopes[0].tool, frozenset(ActionKind), frozenset(), c) for c in distinct]
    for candidate in shapes:
        if all(other.is_subset(candidate) for other in shapes):
            return candidate.constraint_map, None
    return {}, (
        "the grants this tool was used under have different argument constraints and none "
        "contains the others; add the constraints you need before using this scope"
    )


@dataclass(frozen=True, slots=True)
class PrivilegeReport:
    window: Window
    records: int
    groups: tuple[PrivilegeGroup, ...]
    #: Decisions in the window on no task opened in the window.
    unattributed: int

    @property
    def granted_total(self) -> int:
        return sum(len(g.granted) for g in self.groups)

    @property
    def used_total(self) -> int:
        return sum(len(g.used_granted) for g in self.groups)

    @property
    def ratio(self) -> Fraction | None:
        """Over all groups: the sum of ``|U ∩ G|`` over the sum of ``|G|``."""
        granted = self.granted_total
        return Fraction(self.used_total, granted) if granted else None

    def by_agent(self) -> list[tuple[str, int, int]]:
        """``(agent, |G|, |U ∩ G|)`` with ``G`` and ``U`` united over the agent's workflows."""
        granted: dict[str, set[Triple]] = defaultdict(set)
        used: dict[str, set[Triple]] = defaultdict(set)
        for g in self.groups:
            granted[g.agent] |= g.granted
            used[g.agent] |= g.used_granted
        return [(a, len(granted[a]), len(used[a] & granted[a])) for a in sorted(granted)]


@dataclass
class _Task:
    agent: str
    workflow: str
    delegated: bool
    granted: tuple[Scope, ...]


@dataclass
class _Usage:
    used: set[Triple] = field(default_factory=set)
    outside: set[Triple] = field(default_factory=set)
    allowed: int = 0
    denied: int = 0
    approval: int = 0


def privileges(records: Iterable[AuditRecord], window: Window | None = None) -> PrivilegeReport:
    """Compare granted with used privilege for each agent and workflow in ``window``.

    One pass over ``records`` in any order; definitions in the module docstring.
    """
    window = window or Window()
    tasks: dict[str, _Task] = {}
    usage: dict[str, _Usage] = defaultdict(_Usage)
    taskless = 0
    seen = 0
    for record, _at in windowed(records, window):
        seen += 1
        if record.kind in GRANT_KINDS:
            facts = grant_facts(record)
            tasks[facts.task_id] = _Task(
                facts.agent, facts.workflow, facts.delegated, facts.granted
            )
        elif record.kind in DECISION_KINDS:
            decision = decision_facts(record)
            if record.task_id is None:
                taskless += 1
                continue
            u = usage[record.task_id]
            call = decision.call
            triple = Triple(call.tool, call.action, call.dataset)
            match decision.decision:
                case Decision.ALLOW:
                    u.allowed += 1
                    if record.kind is AuditKind.BREAKGLASS_DECISION:
                        u.outside.add(triple)
                    else:
                        u.used.add(triple)
                case Decision.DENY:
                    u.denied += 1
                case Decision.APPROVAL_REQUIRED:
                    u.approval += 1

    unattributed = taskless + sum(
        u.allowed + u.denied + u.approval for t, u in usage.items() if t not in tasks
    )
    grouped: dict[tuple[str, str], list[str]] = defaultdict(list)
    for task_id, task in tasks.items():
        grouped[(task.agent, task.workflow)].append(task_id)
    groups = [
        _group(agent, workflow, ids, tasks, usage) for (agent, workflow), ids in grouped.items()
    ]
    groups.sort(key=lambda g: (g.agent, g.workflow))
    return PrivilegeReport(window, seen, tuple(groups), unattributed)


def _group(
    agent: str,
    workflow: str,
    task_ids: list[str],
    tasks: dict[str, _Task],
    usage: dict[str, _Usage],
) -> PrivilegeGroup:
    granted: set[Triple] = set()
    used: set[Triple] = set()
    outside: set[Triple] = set()
    under: dict[str, list[Scope]] = defaultdict(list)
    allowed = denied = approval = 0
    for task_id in task_ids:
        task = tasks[task_id]
        for scope in task.granted:
            granted |= triples_of(scope)
        u = usage.get(task_id, _Usage())
        used |= u.used
        outside |= u.outside
        allowed, denied, approval = allowed + u.allowed, denied + u.denied, approval + u.approval
        for tool in {t.tool for t in u.used}:
            under[tool].extend(s for s in task.granted if s.tool == tool)
    return PrivilegeGroup(
        agent=agent,
        workflow=workflow,
        tasks=len(task_ids),
        delegated_tasks=sum(1 for t in task_ids if tasks[t].delegated),
        granted=frozenset(granted),
        used=frozenset(used),
        used_outside_grant=frozenset(outside),
        allowed_calls=allowed,
        denied_calls=denied,
        approval_calls=approval,
        scopes_used_under=tuple(sorted((k, tuple(v)) for k, v in under.items())),
    )
