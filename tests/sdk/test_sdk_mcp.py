"""An MCP client session (the official SDK's ``Client``, connected in-process to a real
``MCPServer``) wrapped by ``TetherSession``: tether, running for real on loopback, decides each
``tools/call`` before it reaches the server. The scripted "model" is the list of calls."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcp.client.client import Client
from mcp.server.mcpserver import MCPServer
from sdk_support import INTENT, SCOPES, Approver, decisions, effects

from tether.runtime import Runtime
from tether_sdk import ApprovalRequired, AsyncTetherClient, TetherClient
from tether_sdk.mcp import TetherSession, ToolCall

CALLS = {
    "update": ToolCall("write", tool="crm.update", dataset="tickets"),
    "transfer": ToolCall("spend", tool="payments.transfer", records=lambda _: 1),
}


def make_server(ran: list[str]) -> MCPServer:
    server = MCPServer("crm")

    @server.tool()
    def update(ticket: str, discount: int) -> str:
        """Give a discount on a ticket."""
        ran.append(f"update {ticket}")
        return f"updated {ticket}"

    @server.tool()
    def transfer(amount: int) -> str:
        """Send money."""
        ran.append(f"transfer {amount}")
        return f"sent {amount}"

    return server


def text(result: Any) -> str:
    return " ".join(c.text for c in result.content)


def test_calls_are_allowed_denied_or_held_for_a_human(
    base_url: str, svid: str, approver: Approver, runtime: Runtime
) -> None:
    ran: list[str] = []

    async def main() -> None:
        async with (
            AsyncTetherClient(base_url, svid=svid) as client,
            client.task(INTENT, SCOPES) as task,
            Client(make_server(ran)) as mcp,
        ):
            session = TetherSession(mcp, task, CALLS)
            assert {t.name for t in (await session.list_tools()).tools} == {
                "update",
                "transfer",
            }  # passes through

            allowed = await session.call_tool("update", {"ticket": "T-1", "discount": 5})
            assert (allowed.is_error, text(allowed)) == (False, "updated T-1")

            denied = await session.call_tool("update", {"ticket": "T-2", "discount": 50})
            assert denied.is_error and "constraint_violated" in text(denied)
            assert denied.structured_content["tether"]["reasons"] == ["constraint_violated"]

            with pytest.raises(ApprovalRequired) as asked:
                await session.call_tool("transfer", {"amount": 500})
            assert ran == ["update T-1"]
            approver.decide(asked.value.approval_id)
            await asked.value.wait_async(timeout=5, poll_interval=0.01)
            done = await asked.value.retry_async()
            assert text(done) == "sent 500"
            again = await asked.value.retry_async()  # each approval allows one call
            assert again.is_error and "approval_used" in text(again)

    anyio.run(main)
    assert ran == ["update T-1", "transfer 500"]
    assert [d["decision"] for d in decisions(runtime)] == [
        "allow",
        "deny",
        "approval_required",
        "allow",
        "deny",
    ]
    assert [(e["status"], e["records"]) for e in effects(runtime)] == [("ok", None), ("ok", 1)]


def test_an_approval_can_come_back_as_a_tool_error(base_url: str, svid: str) -> None:
    ran: list[str] = []

    async def main() -> Any:
        with TetherClient(base_url, svid=svid) as client, client.task(INTENT, SCOPES) as task:
            async with Client(make_server(ran)) as mcp:
                session = TetherSession(mcp, task, CALLS, approval="result")
                return await session.call_tool("transfer", {"amount": 500})

    held = anyio.run(main)
    assert held.is_error and "needs a human approval" in text(held)
    assert held.structured_content["tether"]["approval_id"].startswith("apr_")
    assert ran == []
