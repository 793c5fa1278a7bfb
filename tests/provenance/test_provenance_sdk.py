"""Argument provenance through the SDK against a real server: the user's request in the
intent, the guard observing each guarded tool's result by itself, ``observe(tool, result)``
for custom loops, and LangChain's middleware (through the shared gate) doing the same."""

from __future__ import annotations

from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool, tool
from langgraph.checkpoint.memory import InMemorySaver

from support import INTENT, mint
from tether.runtime import Runtime
from tether.service.clock import ManualClock
from tether_sdk import AsyncTetherClient, Denied, Intent, TetherClient
from tether_sdk.langchain import TetherMiddleware, ToolCall

from .conftest import ALL, BROWSE, EVIL_URL, INJECTED, READ

NO_LINK = Intent(INTENT["workflow"], INTENT["purpose"], INTENT["on_behalf_of"], "Catch me up.")
WITH_LINK = Intent(
    INTENT["workflow"], INTENT["purpose"], INTENT["on_behalf_of"], f"Open {EVIL_URL} for me."
)


@pytest.fixture
def svid(runtime: Runtime, clock: ManualClock) -> str:
    return mint(runtime, "assistant", clock)


def test_the_guard_observes_a_result_and_its_link_cannot_be_browsed(
    base_url: str, svid: str
) -> None:
    browsed: list[str] = []
    with TetherClient(base_url, svid=svid) as client, client.task(NO_LINK, ALL) as task:

        @task.guard(tool="chat.read", action="read")
        def read_channel() -> dict[str, Any]:
            return {"messages": [{"from": "eve", "text": INJECTED}]}

        @task.guard(tool="web.browse", action="read")
        def browse(url: str) -> str:
            browsed.append(url)
            return "a page"

        assert "true-informations" in str(read_channel())
        with pytest.raises(Denied) as denied:
            browse(EVIL_URL)
        assert [str(r.code) for r in denied.value.verdict.reasons] == ["untrusted_argument"]
        assert "seen in chat.read" in denied.value.verdict.reasons[0].message
        assert browsed == []


def test_the_guard_observes_a_structured_result_so_a_members_link_is_browsed(
    base_url: str, svid: str
) -> None:
    colleague = "https://www.informations.example/article"
    with TetherClient(base_url, svid=svid) as client, client.task(NO_LINK, ALL) as task:

        @task.guard(tool="chat.read", action="read")
        def read_channel() -> dict[str, Any]:
            return {
                "messages": [
                    {"from": "alice", "text": f"worth a read: {colleague}"},
                    {"from": "eve", "text": INJECTED},
                ]
            }

        @task.guard(tool="web.browse", action="read")
        def browse(url: str) -> str:
            return f"page at {url}"

        read_channel()
        assert browse(colleague) == f"page at {colleague}"
        with pytest.raises(Denied):
            browse(EVIL_URL)
        seen = task.observe("chat.read", {"messages": [{"from": "bob", "text": "hi"}]})
        assert (seen.trusted, seen.trusted_parts) == (False, 0)  # no allow named: untrusted


def test_the_same_link_in_the_users_request_is_browsed(base_url: str, svid: str) -> None:
    with TetherClient(base_url, svid=svid) as client, client.task(WITH_LINK, ALL) as task:

        @task.guard(tool="chat.read", action="read")
        def read_channel() -> str:
            return INJECTED

        @task.guard(tool="web.browse", action="read")
        def browse(url: str) -> str:
            return f"page at {url}"

        read_channel()
        assert browse(EVIL_URL) == f"page at {EVIL_URL}"


def test_observe_serves_a_custom_agent_loop(base_url: str, svid: str) -> None:
    with TetherClient(base_url, svid=svid) as client, client.task(NO_LINK, [READ, BROWSE]) as task:
        before = task.authorize("web.browse", "read", args={"url": "https://fresh.example.net/"})
        assert before.decision.value == "deny"  # a trusted sink: seen nowhere is not enough
        seen = task.observe("web.search", f"results: {EVIL_URL}")
        assert (seen.tool, seen.trusted, seen.complete) == ("web.search", False, True)
        assert seen.values >= 2
        verdict = task.authorize("web.browse", "read", args={"url": EVIL_URL})
        assert verdict.decision.value == "deny"
        assert "seen in web.search" in verdict.reasons[0].message


def test_the_async_guard_observes_too(base_url: str, svid: str) -> None:
    import asyncio

    async def main() -> list[str]:
        async with (
            AsyncTetherClient(base_url, svid=svid) as client,
            client.task(NO_LINK, ALL) as task,
        ):

            @task.guard(tool="chat.read", action="read")
            async def read_channel() -> str:
                return INJECTED

            await read_channel()
            verdict = await task.authorize("web.browse", "read", args={"url": EVIL_URL})
            return [str(r.code) for r in verdict.reasons]

    assert asyncio.run(main()) == ["untrusted_argument"]


class ScriptedChatModel(GenericFakeChatModel):
    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self


def call(name: str, args: dict[str, Any], call_id: str) -> dict[str, Any]:
    return {"name": name, "args": args, "id": call_id, "type": "tool_call"}


def tools(browsed: list[str]) -> list[BaseTool]:
    @tool
    def read_channel() -> str:
        """Read the team channel."""
        return INJECTED

    @tool
    def browse(url: str) -> str:
        """Open a web page."""
        browsed.append(url)
        return "a page"

    return [read_channel, browse]


def test_langchain_middleware_observes_results_and_refuses_an_injected_link(
    base_url: str, svid: str
) -> None:
    model = ScriptedChatModel(
        messages=iter(
            [
                AIMessage(content="", tool_calls=[call("read_channel", {}, "c1")]),
                AIMessage(content="", tool_calls=[call("browse", {"url": EVIL_URL}, "c2")]),
                AIMessage(content="done"),
            ]
        )
    )
    browsed: list[str] = []
    calls = {
        "read_channel": ToolCall("read", tool="chat.read"),
        "browse": ToolCall("read", tool="web.browse"),
    }
    with TetherClient(base_url, svid=svid) as client, client.task(NO_LINK, ALL) as task:
        agent = create_agent(
            model,
            tools=tools(browsed),
            checkpointer=InMemorySaver(),
            middleware=[TetherMiddleware(task, calls)],
        )
        result = agent.invoke(
            {"messages": [{"role": "user", "content": "catch me up"}]},
            {"configurable": {"thread_id": "p"}},
        )
    answers = {m.tool_call_id: m for m in result["messages"] if isinstance(m, ToolMessage)}
    assert answers["c1"].status == "success"
    assert answers["c2"].status == "error" and "untrusted_argument" in str(answers["c2"].content)
    assert browsed == []
