"""The OpenAI Agents SDK, run for real and offline: its own ``ScriptedModel`` issues the tool calls,
the tools are wrapped by ``tether_tools``, and a real tether server decides each call."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from agents import Agent, RunConfig, Runner, function_tool
from agents.testing import ScriptedModel, assistant_message, function_call
from sdk_support import INTENT, SCOPES, Approver, decisions, effects

from tether.runtime import Runtime
from tether_sdk import AsyncTetherClient, TetherClient
from tether_sdk.openai_agents import ToolCall, resolve_approvals, tether_tools

CALLS = {
    "update_ticket": ToolCall("write", tool="crm.update", dataset="tickets", records=lambda _: 1),
    "transfer": ToolCall("spend", tool="payments.transfer", recipients="to"),
}
OFFLINE = RunConfig(tracing_disabled=True)


def _tools(ran: list[str]) -> list[Any]:
    @function_tool
    def update_ticket(ticket: str, discount: int) -> str:
        """Give a discount on a ticket."""
        ran.append(f"update {ticket} {discount}")
        return f"updated {ticket}"

    @function_tool
    def transfer(amount: int, to: str) -> str:
        """Send money."""
        ran.append(f"transfer {amount} {to}")
        return f"sent {amount}"

    return [update_ticket, transfer]


def _tool_outputs(model: ScriptedModel, call: int) -> dict[str, str]:
    items = model.calls[call].input
    return {
        i["call_id"]: str(i["output"])
        for i in items
        if isinstance(i, dict) and i.get("type") == "function_call_output"
    }


def test_allowed_runs_denied_reaches_the_model_approval_interrupts_and_resumes(
    base_url: str, svid: str, approver: Approver, runtime: Runtime
) -> None:
    ran: list[str] = []
    model = ScriptedModel(
        [
            [
                function_call("update_ticket", {"ticket": "T-1", "discount": 5}, call_id="c1"),
                function_call("update_ticket", {"ticket": "T-2", "discount": 50}, call_id="c2"),
            ],
            [function_call("transfer", {"amount": 500, "to": "acct-9"}, call_id="c3")],
            [assistant_message("all done")],
        ]
    )

    async def main() -> str:
        async with (
            AsyncTetherClient(base_url, svid=svid) as client,
            client.task(INTENT, SCOPES) as task,
        ):
            agent = Agent(name="support", model=model, tools=tether_tools(task, _tools(ran), CALLS))
            result = await Runner.run(agent, "handle the refund", run_config=OFFLINE)
            assert [i.call_id for i in result.interruptions] == ["c3"]
            assert ran == ["update T-1 5"]  # T-2 was denied, the transfer waits

            [pending] = approver.pending()
            assert (pending["tool"], pending["args"]["amount"]) == ("payments.transfer", 500)
            approver.decide(pending["approval_id"])

            while result.interruptions:
                state = await resolve_approvals(result, timeout=5, poll_interval=0.01)
                result = await Runner.run(agent, state, run_config=OFFLINE)
            return str(result.final_output)

    assert asyncio.run(main()) == "all done"
    assert ran == ["update T-1 5", "transfer 500 acct-9"]

    outputs = _tool_outputs(model, 1)
    assert outputs["c1"] == "updated T-1"
    assert "tether denied this call" in outputs["c2"]
    assert "constraint_violated" in outputs["c2"]
    assert _tool_outputs(model, 2)["c3"] == "sent 500"

    made = [d["decision"] for d in decisions(runtime)]
    # The Agents SDK runs one turn's tool calls concurrently: the first two land in either order.
    assert sorted(made[:2]) == ["allow", "deny"]
    assert made[2:] == ["approval_required", "allow"]
    assert [(e["status"], e["records"], e["recipient_count"]) for e in effects(runtime)] == [
        ("ok", 1, 0),
        ("ok", None, 1),
    ]


def test_a_rejected_approval_reaches_the_model_and_the_tool_never_runs(
    base_url: str, svid: str, approver: Approver
) -> None:
    ran: list[str] = []
    model = ScriptedModel(
        [
            [function_call("transfer", {"amount": 900, "to": "acct-1"}, call_id="c1")],
            [assistant_message("gave up")],
        ]
    )
    with TetherClient(base_url, svid=svid) as client, client.task(INTENT, SCOPES) as task:
        agent = Agent(name="support", model=model, tools=tether_tools(task, _tools(ran), CALLS))

        async def main() -> str:
            result = await Runner.run(agent, "pay", run_config=OFFLINE)
            approver.decide(approver.pending()[0]["approval_id"], approve=False)
            state = await resolve_approvals(result, timeout=5, poll_interval=0.01)
            result = await Runner.run(agent, state, run_config=OFFLINE)
            return str(result.final_output)

        assert asyncio.run(main()) == "gave up"
    assert ran == []
    assert "is denied" in _tool_outputs(model, 1)["c1"]


def test_an_item_approved_by_hand_still_needs_tethers_approval(
    base_url: str, svid: str, runtime: Runtime
) -> None:
    ran: list[str] = []
    model = ScriptedModel(
        [
            [function_call("transfer", {"amount": 900, "to": "acct-1"}, call_id="c1")],
            [assistant_message("ok")],
        ]
    )
    with TetherClient(base_url, svid=svid) as client, client.task(INTENT, SCOPES) as task:
        agent = Agent(name="support", model=model, tools=tether_tools(task, _tools(ran), CALLS))

        async def main() -> None:
            result = await Runner.run(agent, "pay", run_config=OFFLINE)
            state = result.to_state()
            state.approve(result.interruptions[0])  # the SDK's approval, not a human's in tether
            await Runner.run(agent, state, run_config=OFFLINE)

        asyncio.run(main())
    assert ran == []
    assert "approval_pending" in _tool_outputs(model, 1)["c1"]
    assert json.dumps(decisions(runtime)[-1]).count("approval_pending") == 1


def test_only_function_tools_can_be_guarded(sdk: TetherClient) -> None:
    from agents import WebSearchTool

    with sdk.task(INTENT, SCOPES) as task, pytest.raises(TypeError, match="run unchecked"):
        tether_tools(task, [WebSearchTool()])


def test_arguments_that_are_not_json_never_run(base_url: str, svid: str) -> None:
    ran: list[str] = []
    model = ScriptedModel(
        [[function_call("transfer", "{not json", call_id="c1")], [assistant_message("ok")]]
    )
    with TetherClient(base_url, svid=svid) as client, client.task(INTENT, SCOPES) as task:
        agent = Agent(name="support", model=model, tools=tether_tools(task, _tools(ran), CALLS))

        async def main() -> None:
            result = await Runner.run(agent, "pay", run_config=OFFLINE)
            state = await resolve_approvals(result, timeout=1, poll_interval=0.01)
            await Runner.run(agent, state, run_config=OFFLINE)

        asyncio.run(main())
    assert ran == []
    assert "not a JSON object" in _tool_outputs(model, 1)["c1"]
