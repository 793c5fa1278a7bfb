"""A hand-built LangGraph agent (model node, ``tools_condition``, tool node), run for real and
offline: ``tether_tool_node`` is the graph's tool node, a real tether server decides each call,
and an approval interrupts the graph until a human approves it through tether's API."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import tools_condition
from sdk_support import INTENT, SCOPES, Approver, decisions, effects, tool_call

from tether.runtime import Runtime
from tether_sdk import TetherClient
from tether_sdk.langgraph import ToolCall, resume_after_approvals, tether_tool_node

CALLS = {
    "update_ticket": ToolCall("write", tool="crm.update", dataset="tickets"),
    "transfer": ToolCall("spend", tool="payments.transfer"),
}


def test_the_tool_node_allows_denies_and_waits_for_a_human(
    base_url: str, svid: str, approver: Approver, runtime: Runtime
) -> None:
    ran: list[str] = []

    @tool
    def update_ticket(ticket: str, discount: int) -> str:
        """Give a discount on a ticket."""
        ran.append(f"update {ticket}")
        if ticket == "T-crash":
            raise ValueError("the CRM refused")
        return f"updated {ticket}"

    @tool
    def transfer(amount: int) -> str:
        """Send money."""
        ran.append(f"transfer {amount}")
        return f"sent {amount}"

    replies = iter(
        [
            AIMessage(
                content="",
                tool_calls=[
                    tool_call("update_ticket", {"ticket": "T-1", "discount": 5}, "c1"),
                    tool_call("update_ticket", {"ticket": "T-2", "discount": 50}, "c2"),
                ],
            ),
            AIMessage(content="", tool_calls=[tool_call("transfer", {"amount": 500}, "c3")]),
            AIMessage(
                content="",
                tool_calls=[tool_call("update_ticket", {"ticket": "T-crash", "discount": 1}, "c4")],
            ),
            AIMessage(content="all done"),
        ]
    )

    def model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [next(replies)]}

    config = {"configurable": {"thread_id": "graph"}}
    with TetherClient(base_url, svid=svid) as client, client.task(INTENT, SCOPES) as task:
        builder = StateGraph(MessagesState)
        builder.add_node("model", model)
        builder.add_node(
            "tools",
            tether_tool_node(task, [update_ticket, transfer], CALLS, handle_tool_errors=True),
        )
        builder.add_edge(START, "model")
        builder.add_conditional_edges("model", tools_condition)
        builder.add_edge("tools", "model")
        graph = builder.compile(checkpointer=InMemorySaver())

        result = graph.invoke({"messages": [{"role": "user", "content": "refund"}]}, config)
        assert ran == ["update T-1"]
        snapshot = graph.get_state(config)
        [interrupt] = snapshot.interrupts
        approver.decide(interrupt.value["tether"]["approval_id"])
        while "__interrupt__" in result:
            result = graph.invoke(
                resume_after_approvals(snapshot, task, timeout=5, poll_interval=0.01), config
            )

    assert result["messages"][-1].content == "all done"
    assert ran == ["update T-1", "transfer 500", "update T-crash"]
    answers = {m.tool_call_id: m for m in result["messages"] if isinstance(m, ToolMessage)}
    assert answers["c2"].status == "error" and "constraint_violated" in str(answers["c2"].content)
    assert answers["c3"].content == "sent 500"
    assert answers["c4"].status == "error"
    verdicts = [d["decision"] for d in decisions(runtime)]
    assert sorted(verdicts[:2]) == ["allow", "deny"]  # c1 and c2 run in parallel
    assert verdicts[2:] == ["approval_required", "allow", "allow"]
    assert [e["status"] for e in effects(runtime)] == ["ok", "ok", "error"]
