"""An upstream's ``notifications/resources/list_changed`` and ``prompts/list_changed`` reach the
sessions of the agent whose upstream session sent them, and no other agent's."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import anyio
import mcp_types as types
from mcp_harness import CRM_UPDATE, Gw, connect, run, text_of

#: Only turns a hang into a failure; nothing here waits on it when the gateway behaves.
HANG_GUARD_SECONDS = 30
KINDS = {
    types.ResourceListChangedNotification: "resources",
    types.PromptListChangedNotification: "prompts",
}


def test_resource_and_prompt_list_changes_reach_only_the_agent_whose_session_sent_them(
    gw: Gw,
) -> None:
    agents = {name: gw.grant(name, CRM_UPDATE) for name in ("lister-a", "lister-b")}
    heard: dict[str, list[str]] = {name: [] for name in agents}

    async def scenario() -> None:
        with anyio.fail_after(HANG_GUARD_SECONDS):
            async with AsyncExitStack() as stack:
                clients = {}
                for name, keys in agents.items():

                    async def note(message: Any, name: str = name) -> None:
                        kind = KINDS.get(type(message))
                        if kind is not None:
                            heard[name].append(kind)

                    clients[name] = await stack.enter_async_context(
                        connect(gw.url, keys, mode="legacy", message_handler=note)
                    )
                # Each agent's own upstream session sends the changes, in its own order; an
                # agent hearing another's would hear it before its own.
                for name, order in (
                    ("lister-a", ["resources", "prompts"]),
                    ("lister-b", ["prompts", "resources"]),
                ):
                    for count, kind in enumerate(order, start=1):
                        ticket = {"ticket": f"{kind}-changed", "discount": 0}
                        result = await clients[name].call_tool("crm.update", ticket)
                        assert not result.is_error, text_of(result)
                        while len(heard[name]) < count:
                            await anyio.sleep(0.01)

    run(scenario)
    assert heard == {"lister-a": ["resources", "prompts"], "lister-b": ["prompts", "resources"]}
