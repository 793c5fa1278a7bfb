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

from tether.core.anomaly import AnomalyRule, parse_rule
from tether.core.budget import Budgets
from tether.core.errors import ConfigurationError, ErrorCode, TetherError
from tether.core.scope import ActionKind, Scope, is_valid_name


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


def parse_workflows(raw: object, *, source: str) -> dict[str, Workflow]:
    """Parse ``{"workflows": {name: {"start": [...], "steps": {...}}}}``; every problem named."""

    def bad(path: str, why: str) -> ConfigurationError:
        return ConfigurationError(f"{source}: {path} {why}", code=ErrorCode.POLICY_INVALID)

    if not isinstance(raw, dict) or set(raw) - {"workflows"}:
        raise bad("top level", "must be a mapping with one key, 'workflows'")
    entries = raw.get("workflows") or {}
    if not isinstance(entries, dict):
        raise bad("workflows", "must map workflow names to definitions")
    out: dict[str, Workflow] = {}
    for name, body in entries.items():
        where = f"workflows.{name}"
        if not isinstance(name, str) or not is_valid_name(name, 128):
            raise bad(where, "is not a valid workflow name")
        keys = {"start", "steps", "description", "budgets", "anomaly"}
        if not isinstance(body, dict) or set(body) - keys:
            raise bad(
                where,
                "must have 'start' and 'steps' (and optionally 'description', 'budgets', "
                "'anomaly')",
            )
        steps_raw = body.get("steps")
        if not isinstance(steps_raw, dict) or not steps_raw:
            raise bad(f"{where}.steps", "must name at least one step")
        steps: dict[str, Step] = {}
        for step_name, step_raw in steps_raw.items():
            at = f"{where}.steps.{step_name}"
            if not isinstance(step_name, str) or not is_valid_name(step_name, 64):
                raise bad(at, "is not a valid step name")
            allowed = {"uses", "next", "repeatable", "optional", "description", "budgets"}
            if not isinstance(step_raw, dict) or set(step_raw) - allowed:
                raise bad(at, f"may only have: {', '.join(sorted(allowed))}")
            uses: set[tuple[str, ActionKind]] = set()
            for use in step_raw.get("uses") or []:
                if not isinstance(use, dict) or set(use) != {"tool", "actions"}:
                    raise bad(f"{at}.uses", "entries are {tool: NAME, actions: [..]}")
                tool, actions = use["tool"], use["actions"]
                if not isinstance(tool, str) or not is_valid_name(tool, 128):
                    raise bad(f"{at}.uses", f"has an invalid tool {tool!r}")
                if not isinstance(actions, list) or not actions:
                    raise bad(f"{at}.uses", f"needs actions for {tool}")
                for action in actions:
                    if action not in {a.value for a in ActionKind}:
                        raise bad(f"{at}.uses", f"has an unknown action {action!r}")
                    uses.add((tool, ActionKind(action)))
            if not uses:
                raise bad(at, "must use at least one tool")
            following = step_raw.get("next") or []
            if not isinstance(following, list) or not all(isinstance(n, str) for n in following):
                raise bad(f"{at}.next", "must be a list of step names")
            for flag in ("repeatable", "optional"):
                if not isinstance(step_raw.get(flag, False), bool):
                    raise bad(f"{at}.{flag}", "must be true or false")
            try:
                step_budgets = Budgets.from_json(step_raw.get("budgets"))
            except TetherError as error:
                raise bad(f"{at}.budgets", f"is not valid: {error.message}") from None
            steps[step_name] = Step(
                step_name,
                frozenset(uses),
                tuple(following),
                bool(step_raw.get("repeatable", False)),
                bool(step_raw.get("optional", False)),
                step_budgets,
            )
        start = body.get("start")
        if not isinstance(start, list) or not start:
            raise bad(f"{where}.start", "must list at least one step")
        for ref in [*start, *(n for s in steps.values() for n in s.next)]:
            if ref not in steps:
                raise bad(where, f"refers to an unknown step {ref!r}")
        try:
            budgets = Budgets.from_json(body.get("budgets"))
        except TetherError as error:
            raise bad(f"{where}.budgets", f"is not valid: {error.message}") from None
        anomaly = None
        if "anomaly" in body:
            anomaly = parse_rule(body["anomaly"], f"{where}.anomaly", source)
        out[name] = Workflow(name, tuple(start), steps, budgets, anomaly)
    return out
