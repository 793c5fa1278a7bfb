"""tether for the OpenAI Agents SDK (``pip install 'tether-sdk[openai-agents]'``).

One line: wrap the agent's function tools.

    agent = Agent(name="support", tools=tether_tools(task, [lookup_order, refund_order],
                                                     calls={"refund_order": ToolCall("spend")}))

Each wrapped tool gets a ``needs_approval`` hook and a guarded invoker:

- ``needs_approval`` asks tether when the model issues the call. ``approval_required``
  interrupts the run the SDK's own way (``result.interruptions``); everything else runs on.
- the invoker is the enforcement point: it runs the tool only on an ``allow`` (asking tether
  itself when the hook's verdict is not at hand, e.g. after a restart), returns tether's refusal
  to the model as the tool's output on a ``deny`` (with the reason codes), and reports the effect
  after the tool ran.

An approval is decided in tether, by a human, not by ``RunState.approve`` alone:

    result = await Runner.run(agent, "refund order 42")
    while result.interruptions:
        result = await Runner.run(agent, await resolve_approvals(result, timeout=900))

``resolve_approvals`` waits for tether's decision on each interruption that came from a tether
tool, approves the SDK item when a human approved it in tether, and rejects it (with a message
for the model) when the approval was denied, expired or not decided in time. Interruptions from
other tools are left for the caller. Even an item approved by hand runs only if tether allows it
with the approval id.

Effects: a tool that raises is reported with status ``error``. The SDK's default failure handler
turns a tool's exception into an error text before the invoker sees it; those calls are reported
as ``ok``. Give the tool ``failure_error_function=None`` for an exact status.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from agents import FunctionTool, RunContextWrapper, RunResult, RunResultStreaming, Tool
from agents.items import ToolApprovalItem
from agents.run_state import RunState
from agents.tool_context import ToolContext

from tether_sdk._gate import AnySession, CallMap, Gate, ToolCall, approval_refusal, refusal
from tether_sdk.errors import ApprovalRejected, ApprovalTimeout
from tether_sdk.models import Decision, Verdict

__all__ = ["TetherGuardedInvoker", "ToolCall", "resolve_approvals", "tether_tools"]

Invoker = Callable[[ToolContext[Any], str], Awaitable[Any]]

NOT_JSON = "tether: the call's arguments are not a JSON object; it did not run"


def _parse(arguments: str | None) -> dict[str, Any]:
    if not arguments or not arguments.strip():
        return {}
    parsed = json.loads(arguments)
    if not isinstance(parsed, dict):
        raise ValueError("tool arguments must be a JSON object")
    return parsed


class _AgentsGuard:
    """The verdicts of one set of wrapped tools, by the model's call id."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self._verdicts: dict[str, Verdict] = {}

    def needs_approval(
        self, name: str
    ) -> Callable[[RunContextWrapper[Any], dict[str, Any], str], Awaitable[bool]]:
        async def hook(_: RunContextWrapper[Any], params: dict[str, Any], call_id: str) -> bool:
            verdict = (await self.gate.authorize(name, params))[1]
            self._verdicts[call_id] = verdict
            return verdict.decision is Decision.APPROVAL_REQUIRED

        return hook

    def pending_approval(self, call_id: str) -> str | None:
        verdict = self._verdicts.get(call_id)
        return verdict.approval_id if verdict is not None else None

    async def approval_for(self, name: str, call_id: str, arguments: str | None) -> str | None:
        """The approval a call waits for: the hook's, or tether's answer to the same call
        (a pending approval is returned again for the same call, never duplicated)."""
        known = self.pending_approval(call_id)
        if known is not None:
            return known
        _, verdict = await self.gate.authorize(name, _parse(arguments))
        self._verdicts[call_id] = verdict
        return verdict.approval_id

    async def invoke(self, name: str, inner: Invoker, ctx: ToolContext[Any], arguments: str) -> Any:
        try:
            raw = _parse(arguments)
        except ValueError:
            return NOT_JSON
        verdict = self._verdicts.pop(ctx.tool_call_id, None)
        if verdict is None:
            spec, verdict = await self.gate.authorize(name, raw)
        else:
            spec = self.gate.spec(name)
        if verdict.decision is Decision.APPROVAL_REQUIRED and verdict.approval_id:
            # The SDK let the call through its approval: tether decides with the approval id.
            spec, verdict = await self.gate.authorize(name, raw, verdict.approval_id)
        if verdict.decision is not Decision.ALLOW:
            return refusal(verdict)
        try:
            result = await inner(ctx, arguments)
        except Exception:
            await self.gate.report(spec, verdict, raw, None, failed=True)
            raise
        await self.gate.report(spec, verdict, raw, result, failed=False)
        return result


class TetherGuardedInvoker:
    """A wrapped tool's ``on_invoke_tool``: tether first, then the SDK's own invoker."""

    def __init__(self, guard: _AgentsGuard, name: str, inner: Invoker) -> None:
        self.guard = guard
        self.name = name
        self._inner = inner

    async def __call__(self, ctx: ToolContext[Any], arguments: str) -> Any:
        return await self.guard.invoke(self.name, self._inner, ctx, arguments)


def tether_tools(
    task: AnySession, tools: Sequence[Tool], calls: CallMap | None = None
) -> list[Tool]:
    """Copies of ``tools`` whose every call tether authorizes first (see the module docstring).

    ``calls`` maps a tool's name to its tether call (``ToolCall`` or just the action kind);
    an unmapped tool is the tether tool of the same name with action ``write``. Only function
    tools can be guarded: anything else is refused rather than passed through unchecked.
    """
    guard = _AgentsGuard(Gate(task, calls))
    wrapped: list[Tool] = []
    for tool in tools:
        if not isinstance(tool, FunctionTool):
            raise TypeError(
                f"tether can only guard function tools; {type(tool).__name__} would run unchecked"
            )
        wrapped.append(
            dataclasses.replace(
                tool,
                on_invoke_tool=TetherGuardedInvoker(guard, tool.name, tool.on_invoke_tool),
                needs_approval=guard.needs_approval(tool.name),
            )
        )
    return wrapped


def _guard_of(item: ToolApprovalItem) -> _AgentsGuard | None:
    agent = getattr(item, "agent", None)
    for tool in getattr(agent, "tools", ()):
        if (
            isinstance(tool, FunctionTool)
            and tool.name == item.tool_name
            and isinstance(tool.on_invoke_tool, TetherGuardedInvoker)
        ):
            return tool.on_invoke_tool.guard
    return None


async def resolve_approvals(
    result: RunResult | RunResultStreaming,
    *,
    timeout: float = 900.0,
    poll_interval: float = 2.0,
) -> RunState[Any]:
    """Wait for tether's human decision on each tether interruption of ``result``; return the
    run state to resume with ``Runner.run(agent, state)``."""
    state = result.to_state()
    for item in result.interruptions:
        guard = _guard_of(item)
        if guard is None or item.tool_name is None or item.call_id is None:
            continue
        try:
            approval_id = await guard.approval_for(item.tool_name, item.call_id, item.arguments)
        except ValueError:
            state.reject(item, rejection_message=NOT_JSON)
            continue
        if approval_id is None:
            # tether no longer asks for an approval (e.g. policy changed): run it; the invoker
            # asks tether again before the tool runs.
            state.approve(item)
            continue
        try:
            await guard.gate.wait(approval_id, timeout, poll_interval)
        except (ApprovalRejected, ApprovalTimeout) as error:
            state.reject(item, rejection_message=approval_refusal(error))
        else:
            state.approve(item)
    return state
