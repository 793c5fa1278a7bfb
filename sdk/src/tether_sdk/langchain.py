"""tether for LangChain agents (``pip install 'tether-sdk[langchain]'``).

One line: add the middleware to ``create_agent``.

    agent = create_agent(model, tools=[lookup_order, refund_order], checkpointer=saver,
                         middleware=[TetherMiddleware(task, calls={"refund_order": "spend"})])

``TetherMiddleware`` is a tool-call middleware (``wrap_tool_call``/``awrap_tool_call``): every
tool call the model makes is authorized by tether before it runs. An ``allow`` runs the tool and
reports its effect; a ``deny`` reaches the model as an error ``ToolMessage`` carrying tether's
reason codes; an ``approval_required`` interrupts the agent (LangGraph ``interrupt()``, so give
the agent a checkpointer) until a human decides in tether:

    result = agent.invoke({"messages": [...]}, config)
    while "__interrupt__" in result:
        result = agent.invoke(resume_after_approvals(result, task), config)

The mechanics are those of ``tether_sdk.langgraph.TetherToolCalls``; see that module.
"""

from __future__ import annotations

from typing import Any

from langchain.agents.middleware import AgentMiddleware
from langchain.agents.middleware.types import ToolCallRequest

from tether_sdk._gate import AnySession, CallMap, ToolCall
from tether_sdk.langgraph import (
    AExecute,
    Execute,
    Outcome,
    TetherToolCalls,
    aresume_after_approvals,
    resume_after_approvals,
)

__all__ = [
    "TetherMiddleware",
    "ToolCall",
    "aresume_after_approvals",
    "resume_after_approvals",
]


class TetherMiddleware(AgentMiddleware[Any, Any, Any]):
    """Authorize every tool call of a LangChain agent with tether (module docstring)."""

    def __init__(
        self, task: AnySession, calls: CallMap | None = None, *, interrupt_on_approval: bool = True
    ) -> None:
        super().__init__()
        self.tool_calls = TetherToolCalls(task, calls, interrupt_on_approval=interrupt_on_approval)

    @property
    def name(self) -> str:
        return "TetherMiddleware"

    def wrap_tool_call(self, request: ToolCallRequest, handler: Execute) -> Outcome:
        return self.tool_calls.wrap_tool_call(request, handler)

    async def awrap_tool_call(self, request: ToolCallRequest, handler: AExecute) -> Outcome:
        return await self.tool_calls.awrap_tool_call(request, handler)
