"""The scope step of the decision pipeline, pure: does a grant's scope cover this call?

Checked in order, cheapest first: tool, action, dataset, then each constrained argument. The
first failure is returned with a stable reason code and a message the agent can act on.
"""

from __future__ import annotations

from tether.core.call import Call
from tether.core.scope import Scope
from tether.core.task import Grant
from tether.core.verdict import Reason, ReasonCode


def scope_violation(grant: Grant, call: Call) -> Reason | None:
    """The reason ``grant`` does not cover ``call``, or ``None`` when it does."""
    scope = grant.scope_for(call.tool)
    if scope is None:
        return Reason(ReasonCode.TOOL_NOT_IN_SCOPE, f"tool {call.tool!r} is not in this grant")
    if call.action not in scope.actions:
        allowed = ", ".join(sorted(a.value for a in scope.actions))
        return Reason(
            ReasonCode.ACTION_NOT_IN_SCOPE,
            f"action {call.action.value!r} on {call.tool!r} is not granted (granted: {allowed})",
        )
    if call.dataset not in scope.allowed_datasets:
        if scope.datasets:
            named = ", ".join(sorted(scope.datasets))
            message = (
                f"dataset {call.dataset!r} is not granted for {call.tool!r} (granted: {named})"
            )
        else:
            message = f"{call.tool!r} is granted without datasets; name none"
        return Reason(ReasonCode.DATASET_NOT_IN_SCOPE, message)
    for arg, constraint in scope.constraints:
        if arg not in call.args:
            return Reason(
                ReasonCode.ARGUMENT_MISSING,
                f"argument {arg!r} is constrained by the grant and must be given",
            )
        problem = constraint.violation(call.args[arg])
        if problem is not None:
            return Reason(ReasonCode.CONSTRAINT_VIOLATED, f"argument {arg!r} {problem}")
    return None


def widening(child: Scope, parent: Scope | None) -> str | None:
    """Why ``child`` is not within ``parent`` (naming the first dimension), or ``None``.

    # INVARIANT: a delegated scope never exceeds the scope it was delegated from.
    """
    if parent is None:
        return f"tool {child.tool!r} is not in the delegating grant"
    extra_actions = child.actions - parent.actions
    if extra_actions:
        named = ", ".join(sorted(a.value for a in extra_actions))
        return f"actions {named} on {child.tool!r} are not in the delegating grant"
    extra_datasets = child.allowed_datasets - parent.allowed_datasets
    if extra_datasets:
        named = ", ".join(sorted(d or "(no dataset)" for d in extra_datasets))
        return f"datasets {named} for {child.tool!r} are not in the delegating grant"
    mine = child.constraint_map
    for arg, theirs in parent.constraints:
        ours = mine.get(arg)
        if ours is None:
            return (
                f"argument {arg!r} of {child.tool!r} is constrained in the delegating grant; "
                "the delegated scope must constrain it at least as tightly"
            )
        if not ours.is_subset(theirs):
            return (
                f"the constraint on argument {arg!r} of {child.tool!r} is looser than the parent's"
            )
    if not child.is_subset(parent):  # belt and braces: the algebra has the last word
        return f"the scope for {child.tool!r} is not within the delegating grant"
    return None
