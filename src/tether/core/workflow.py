"""Declared workflows: a small state machine of steps a task must follow (OWASP ASI01).

A workflow names its steps. Each step lists the tool/action pairs it may use, the steps that may
follow it, whether it may repeat, and whether it may be skipped. A task that declares a workflow
may only request scopes inside the workflow, and each call must be a legal next step: a call that
matches no legal next step is denied as not matching the declared intent, with the expected next
steps in the reason, so a "confidently wrong" or hijacked agent is caught at the first step out
of order.

Legal next steps after step S: S itself when repeatable, every step in S.next, and, through any
optional step among those, the steps that may follow it (skipping is transitive). Before the
first call: the workflow's start steps, with the same optional-step expansion.

A workflow may also carry policy for its tasks: ``budgets`` caps what a task may request (and is
the limit of a task that requests none; :meth:`tether.core.budget.Budgets.capped_by`), a step's
``budgets`` limit what each task takes in that step (on top of its own limits), and
``anomaly`` asks for a human when a task reads far more than the workflow's past tasks
(:mod:`tether.core.anomaly`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tether.core.anomaly import AnomalyRule
from tether.core.budget import Budgets
from tether.core.scope import ActionKind, Scope


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    uses: frozenset[tuple[str, ActionKind]]
    next: tuple[str, ...] = ()
    repeatable: bool = False
    optional: bool = False
    #: Limits on what one task takes in this step, on top of the task's own limits (empty:
    #: none). Every call the step covers counts, repeats included.
    budgets: Budgets = field(default_factory=Budgets)

    def covers(self, tool: str, action: ActionKind) -> bool:
        return (tool, action) in self.uses


@dataclass(frozen=True, slots=True)
class Workflow:
    name: str
    start: tuple[str, ...]
    steps: Mapping[str, Step] = field(hash=False)
    #: Policy's budget caps for the workflow's tasks (empty: none).
    budgets: Budgets = field(default_factory=Budgets)
    #: The anomaly signal, when the workflow declares one.
    anomaly: AnomalyRule | None = None

    def legal_after(self, last: str | None) -> tuple[str, ...]:
        """The steps a call may take now, given the last step taken (``None``: none yet)."""
        if last is None:
            seeds = list(self.start)
        else:
            step = self.steps[last]
            seeds = ([last] if step.repeatable else []) + list(step.next)
        seen: list[str] = []
        queue = list(seeds)
        while queue:
            name = queue.pop(0)
            if name in seen:
                continue
            seen.append(name)
            if self.steps[name].optional:
                queue.extend(self.steps[name].next)
        return tuple(seen)

    def match(self, last: str | None, tool: str, action: ActionKind) -> str | None:
        """The legal next step this call takes, or ``None`` when it is out of order."""
        for name in self.legal_after(last):
            if self.steps[name].covers(tool, action):
                return name
        return None

    def describe(self, names: Iterable[str]) -> str:
        parts = []
        for name in names:
            uses = ", ".join(f"{a.value} {t}" for t, a in sorted(self.steps[name].uses))
            parts.append(f"{name} ({uses})")
        return "; ".join(parts) or "none (the workflow is complete)"

    def allows_scope(self, scope: Scope) -> bool:
        """True when every tool/action the scope names is used by some step."""
        uses = {u for step in self.steps.values() for u in step.uses}
        return all((scope.tool, action) in uses for action in scope.actions)
