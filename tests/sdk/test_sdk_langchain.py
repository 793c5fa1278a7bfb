"""LangChain's ``create_agent``, run for real and offline: a scripted chat model issues the tool
calls, ``TetherMiddleware`` puts a real tether server in front of each, and an approval
interrupts the agent until a human approves it through tether's API."""

from __future__ import annotations

import asyncio
from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool, tool
from langgraph.checkpoint.memory import InMemorySaver
from sdk_support import INTENT, SCOPES, Approver, decisions, effects, tool_call

from tether.runtime import Runtime
from tether_sdk import AsyncTetherClient, TetherClient
from tether_sdk.langchain import (
    TetherMiddleware,
    ToolCall,
    aresume_after_approvals,
    resume_after_approvals,
)

CALLS = {
    "update_ticket": ToolCall("write", tool="crm.update", dataset="tickets"),
    "transfer": ToolCall("spend", tool="payments.transfer"),
}


class ScriptedChatModel(GenericFakeChatModel):
    """LangChain's fake chat model, answering with the scripted messages; tools are bound by
    name only (the script already knows which to call)."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self


def script() -> ScriptedChatModel:
    return ScriptedChatModel(
        messages=iter(
            [
                AIMessage(
                    content="",
                    tool_calls=[
                        tool_call("update_ticket", {"ticket": "T-1", "discount": 5}, "c1"),
                        tool_call("update_ticket", {"ticket": "T-2", "discount": 50}, "c2"),
                    ],
                ),
                AIMessage(content="", tool_calls=[tool_call("transfer", {"amount": 500}, "c3")]),
                AIMessage(content="all done"),
            ]
        )
    )


def make_tools(ran: list[str]) -> list[BaseTool]:
    @tool
    def update_ticket(ticket: str, discount: int) -> str:
        """Give a discount on a ticket."""
        ran.append(f"update {ticket}")
        return f"updated {ticket}"

    @tool
    def transfer(amount: int) -> str:
        """Send money."""
        ran.append(f"transfer {amount}")
        return f"sent {amount}"

    return [update_ticket, transfer]


def tool_messages(result: dict[str, Any]) -> dict[str, ToolMessage]:
    return {m.tool_call_id: m for m in result["messages"] if isinstance(m, ToolMessage)}


def check(result: dict[str, Any], ran: list[str], runtime: Runtime) -> None:
    assert result["messages"][-1].content == "all done"
    assert ran == ["update T-1", "transfer 500"]
    answers = tool_messages(result)
    assert (answers["c1"].status, answers["c1"].content) == ("success", "updated T-1")
    assert answers["c2"].status == "error"
    assert "constraint_violated" in str(answers["c2"].content)
    assert answers["c3"].content == "sent 500"
    verdicts = [d["decision"] for d in decisions(runtime)]
    assert sorted(verdicts[:2]) == ["allow", "deny"]  # c1 and c2 may run in parallel
    assert verdicts[2:] == ["approval_required", "allow"]
    assert [e["status"] for e in effects(runtime)] == ["ok", "ok"]


def test_the_middleware_allows_denies_and_waits_for_a_human(
    base_url: str, svid: str, approver: Approver, runtime: Runtime
) -> None:
    ran: list[str] = []
    config = {"configurable": {"thread_id": "sync"}}
    with TetherClient(base_url, svid=svid) as client, client.task(INTENT, SCOPES) as task:
        agent = create_agent(
            script(),
            tools=make_tools(ran),
            checkpointer=InMemorySaver(),
            middleware=[TetherMiddleware(task, CALLS)],
        )
        result = agent.invoke({"messages": [{"role": "user", "content": "refund"}]}, config)
        [interrupt] = result["__interrupt__"]
        assert interrupt.value["tether"]["tool"] == "payments.transfer"
        assert ran == ["update T-1"]

        approver.decide(interrupt.value["tether"]["approval_id"])
        while "__interrupt__" in result:
            resume = resume_after_approvals(result, task, timeout=5, poll_interval=0.01)
            result = agent.invoke(resume, config)
    check(result, ran, runtime)


def test_the_middleware_under_ainvoke_and_a_denied_approval(
    base_url: str, svid: str, approver: Approver, runtime: Runtime
) -> None:
    ran: list[str] = []
    config = {"configurable": {"thread_id": "async"}}

    async def main() -> dict[str, Any]:
        async with (
            AsyncTetherClient(base_url, svid=svid) as client,
            client.task(INTENT, SCOPES) as task,
        ):
            agent = create_agent(
                script(),
                tools=make_tools(ran),
                checkpointer=InMemorySaver(),
                middleware=[TetherMiddleware(task, CALLS)],
            )
            result = await agent.ainvoke(
                {"messages": [{"role": "user", "content": "refund"}]}, config
            )
            [interrupt] = result["__interrupt__"]
            approver.decide(interrupt.value["tether"]["approval_id"], approve=False)
            resume = await aresume_after_approvals(result, task, poll_interval=0.01)
            return dict(await agent.ainvoke(resume, config))

    result = asyncio.run(main())
    assert ran == ["update T-1"]
    denied = tool_messages(result)["c3"]
    assert denied.status == "error" and "is denied" in str(denied.content)
