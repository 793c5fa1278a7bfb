"""tether for LangGraph (``pip install 'tether-sdk[langgraph]'``).

One line: build the graph's tool node with tether in front of every call.

    builder.add_node("tools", tether_tool_node(task, [lookup_order, refund_order],
                                               calls={"refund_order": ToolCall("spend")}))

``tether_tool_node`` is a ``ToolNode`` whose ``wrap_tool_call``/``awrap_tool_call`` is a
``TetherToolCalls``: each call the model makes is authorized before it runs.

- ``allow``: the tool runs; its effect is reported (``error`` when it raised or returned an
  error ``ToolMessage``). Effect counters receive the tool's ``ToolMessage``.
- ``deny``: the tool does not run; the model gets an error ``ToolMessage`` with tether's reason
  codes and decision id.
- ``approval_required``: the graph is interrupted with LangGraph's ``interrupt()`` (the graph
  needs a checkpointer) carrying ``{"tether": {"approval_id", "tool", ...}}``. A human decides in
  tether; ``resume_after_approvals`` waits for that decision and builds the ``Command`` that
  resumes the graph, after which the call is authorized again with the approval id and runs
  only if tether allows it:

      result = graph.invoke(inputs, config)
      while "__interrupt__" in result:
          result = graph.invoke(resume_after_approvals(result, task), config)

On resume LangGraph re-runs the node from its start; the approval id is kept per tool call id so
tether is not asked twice (and, after a restart, the resume value carries it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool
from langgraph.prebuilt import ToolNode
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command, Interrupt, interrupt

from tether_sdk._gate import AnySession, CallMap, Gate, ToolCall, approval_refusal, refusal
from tether_sdk.errors import ApprovalRejected, ApprovalTimeout
from tether_sdk.guard import GuardSpec
from tether_sdk.models import Decision, Verdict

__all__ = [
    "INTERRUPT_KEY",
    "TetherToolCalls",
    "ToolCall",
    "aresume_after_approvals",
    "resume_after_approvals",
    "tether_tool_node",
]

#: The key of tether's interrupt values, and of nothing else.
INTERRUPT_KEY = "tether"

Outcome = ToolMessage | Command[Any]
Execute = Callable[[ToolCallRequest], Outcome]
AExecute = Callable[[ToolCallRequest], Awaitable[Outcome]]


def _error_message(request: ToolCallRequest, text: str) -> ToolMessage:
    call = request.tool_call
    return ToolMessage(
        content=text, tool_call_id=call["id"] or "", name=call["name"], status="error"
    )


def _failed(outcome: Outcome) -> bool:
    return isinstance(outcome, ToolMessage) and outcome.status == "error"


def _interrupt_value(request: ToolCallRequest, spec: GuardSpec, verdict: Verdict) -> dict[str, Any]:
    return {
        INTERRUPT_KEY: {
            "approval_id": verdict.approval_id,
            "decision_id": verdict.decision_id,
            "tool_call_id": request.tool_call["id"],
            "tool": spec.tool,
            "action": spec.action,
            "dataset": spec.dataset,
            "reasons": [str(r) for r in verdict.reasons],
        }
    }


def _approval_id(value: Mapping[str, Any]) -> str:
    return str(value[INTERRUPT_KEY]["approval_id"])


class TetherToolCalls:
    """A tool-call wrapper (``ToolNode(wrap_tool_call=..., awrap_tool_call=...)``, or inside
    LangChain's middleware) that puts tether in front of every tool call."""

    def __init__(
        self, task: AnySession, calls: CallMap | None = None, *, interrupt_on_approval: bool = True
    ) -> None:
        self.gate = Gate(task, calls)
        self.interrupt_on_approval = interrupt_on_approval
        # tool call id -> the interrupt value of the approval it waits for
        self._pending: dict[str, dict[str, Any]] = {}

    def _first(
        self, request: ToolCallRequest, spec: GuardSpec, verdict: Verdict
    ) -> ToolMessage | None:
        """After the first verdict: ``None`` to run the tool (allow, or an approval to wait
        for, then kept by tool call id), or the error message for the model."""
        if verdict.decision is Decision.ALLOW:
            return None
        if (
            verdict.decision is Decision.APPROVAL_REQUIRED
            and self.interrupt_on_approval
            and verdict.approval_id is not None
        ):
            self._pending[request.tool_call["id"] or ""] = _interrupt_value(request, spec, verdict)
            return None
        return _error_message(request, refusal(verdict))

    def _approved(self, request: ToolCallRequest) -> str | ToolMessage | None:
        """For a call waiting on an approval: pause for the human (LangGraph ``interrupt``),
        then the approval id to retry with, or the message for the model when it was not
        given. ``None`` for a call that waits for nothing."""
        call_id = request.tool_call["id"] or ""
        value = self._pending.get(call_id)
        if value is None:
            return None
        decided = interrupt(value)
        self._pending.pop(call_id, None)
        approval_id = _approval_id(value)
        if not isinstance(decided, Mapping) or not decided.get("approved"):
            text = decided.get("message") if isinstance(decided, Mapping) else None
            return _error_message(request, str(text or f"approval {approval_id} was not given"))
        return str(decided.get("approval_id") or approval_id)

    def wrap_tool_call(self, request: ToolCallRequest, execute: Execute) -> Outcome:
        name, raw = request.tool_call["name"], request.tool_call["args"]
        if (request.tool_call["id"] or "") not in self._pending:
            spec, verdict = self.gate.authorize_sync(name, raw)
            refused = self._first(request, spec, verdict)
            if refused is not None:
                return refused
        approved = self._approved(request)
        if isinstance(approved, ToolMessage):
            return approved
        if approved is not None:
            spec, verdict = self.gate.authorize_sync(name, raw, approved)
            if verdict.decision is not Decision.ALLOW:
                return _error_message(request, refusal(verdict))
        try:
            outcome = execute(request)
        except Exception:
            self.gate.report_sync(spec, verdict, raw, None, failed=True)
            raise
        self.gate.report_sync(spec, verdict, raw, outcome, failed=_failed(outcome))
        return outcome

    async def awrap_tool_call(self, request: ToolCallRequest, execute: AExecute) -> Outcome:
        name, raw = request.tool_call["name"], request.tool_call["args"]
        if (request.tool_call["id"] or "") not in self._pending:
            spec, verdict = await self.gate.authorize(name, raw)
            refused = self._first(request, spec, verdict)
            if refused is not None:
                return refused
        approved = self._approved(request)
        if isinstance(approved, ToolMessage):
            return approved
        if approved is not None:
            spec, verdict = await self.gate.authorize(name, raw, approved)
            if verdict.decision is not Decision.ALLOW:
                return _error_message(request, refusal(verdict))
        try:
            outcome = await execute(request)
        except Exception:
            await self.gate.report(spec, verdict, raw, None, failed=True)
            raise
        await self.gate.report(spec, verdict, raw, outcome, failed=_failed(outcome))
        return outcome


def tether_tool_node(
    task: AnySession,
    tools: Sequence[BaseTool | Callable[..., Any]],
    calls: CallMap | None = None,
    **tool_node_options: Any,
) -> ToolNode:
    """A ``ToolNode`` for ``tools`` with tether in front of every call (module docstring)."""
    guard = TetherToolCalls(task, calls)
    return ToolNode(
        tools,
        wrap_tool_call=guard.wrap_tool_call,
        awrap_tool_call=guard.awrap_tool_call,
        **tool_node_options,
    )


# -- the human side ------------------------------------------------------------------------


def _interrupts(source: Any) -> list[Interrupt]:
    """Interrupts from ``graph.invoke``'s answer, a ``StateSnapshot``, or a list of them."""
    if isinstance(source, Mapping):
        found = source.get("__interrupt__", ())
    elif hasattr(source, "interrupts"):
        found = source.interrupts
    else:
        found = source
    return [i for i in found if isinstance(i, Interrupt)]


def _tether_interrupts(source: Any) -> list[tuple[str, str]]:
    out = []
    for item in _interrupts(source):
        value = item.value
        if isinstance(value, Mapping) and isinstance(value.get(INTERRUPT_KEY), Mapping):
            approval_id = value[INTERRUPT_KEY].get("approval_id")
            if isinstance(approval_id, str):
                out.append((item.id, approval_id))
    return out


def _decided(approval_id: str, error: ApprovalRejected | ApprovalTimeout | None) -> dict[str, Any]:
    if error is None:
        return {"approval_id": approval_id, "approved": True}
    return {"approval_id": approval_id, "approved": False, "message": approval_refusal(error)}


def resume_after_approvals(
    source: Any, task: AnySession, *, timeout: float = 900.0, poll_interval: float = 2.0
) -> Command[Any]:
    """Wait for tether's human decision on each tether interrupt in ``source`` (the answer of
    ``graph.invoke``, or ``graph.get_state(config)``); the ``Command`` that resumes the graph.
    Other interrupts are not included: resume those yourself."""
    gate = Gate(task)
    resume: dict[str, Any] = {}
    for interrupt_id, approval_id in _tether_interrupts(source):
        try:
            gate.wait_sync(approval_id, timeout, poll_interval)
        except (ApprovalRejected, ApprovalTimeout) as error:
            resume[interrupt_id] = _decided(approval_id, error)
        else:
            resume[interrupt_id] = _decided(approval_id, None)
    return Command(resume=resume)


async def aresume_after_approvals(
    source: Any, task: AnySession, *, timeout: float = 900.0, poll_interval: float = 2.0
) -> Command[Any]:
    """``resume_after_approvals`` for coroutine code (``graph.ainvoke``)."""
    gate = Gate(task)
    resume: dict[str, Any] = {}
    for interrupt_id, approval_id in _tether_interrupts(source):
        try:
            await gate.wait(approval_id, timeout, poll_interval)
        except (ApprovalRejected, ApprovalTimeout) as error:
            resume[interrupt_id] = _decided(approval_id, error)
        else:
            resume[interrupt_id] = _decided(approval_id, None)
    return Command(resume=resume)
