"""tether for MCP clients (``pip install 'tether-sdk[mcp]'``), with the official ``mcp`` SDK.

One line: wrap the client (an ``mcp.Client`` or a ``ClientSession``).

    async with Client(server) as mcp_client:
        session = TetherSession(mcp_client, task, calls={"refund": ToolCall("spend")})

``session.call_tool(name, arguments)`` asks tether first, then calls the server:

- ``allow``: the tool is called and its effect reported (``error`` when the result has
  ``is_error``). Effect counters receive the ``CallToolResult``.
- ``deny``: the server is not called; the answer is a ``CallToolResult`` with ``is_error`` and
  tether's refusal (reason codes, decision id) as its text, which is what a model should see.
- ``approval_required``: ``ApprovalRequired`` is raised; ``await error.wait_async()`` waits for
  the human's decision in tether and ``await error.retry_async()`` makes the call with the
  approval id. With ``approval="result"`` the refusal comes back as an error result instead.

Everything else (``list_tools``, resources, prompts) passes through to the wrapped client.
This is the in-process guard; ``tether mcp-gateway`` is the out-of-process one, which also
keeps upstream credentials from the agent.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from mcp_types import CallToolResult, TextContent

from tether_sdk._gate import AnySession, CallMap, Gate, ToolCall, refusal
from tether_sdk.errors import AsyncResume
from tether_sdk.guard import raise_unless_allowed
from tether_sdk.models import Decision, Verdict

__all__ = ["TetherSession", "ToolCall"]


class CallsTools(Protocol):
    async def call_tool(
        self, name: str, arguments: dict[str, Any] | None = None, *args: Any, **kwargs: Any
    ) -> Any: ...


def _refused(verdict: Verdict) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=refusal(verdict))],
        structured_content={
            "tether": {
                "decision": verdict.decision.value,
                "decision_id": verdict.decision_id,
                "reasons": [r.code for r in verdict.reasons],
                "approval_id": verdict.approval_id,
            }
        },
        is_error=True,
    )


class TetherSession:
    """An MCP client whose ``call_tool`` tether authorizes first (module docstring)."""

    def __init__(
        self,
        session: CallsTools,
        task: AnySession,
        calls: CallMap | None = None,
        *,
        approval: Literal["raise", "result"] = "raise",
    ) -> None:
        self.session = session
        self.gate = Gate(task, calls)
        self.approval = approval

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any] | None = None,
        *args: Any,
        approval_id: str | None = None,
        **kwargs: Any,
    ) -> CallToolResult:
        raw = dict(arguments or {})
        spec, verdict = await self.gate.authorize(name, raw, approval_id)
        if verdict.decision is Decision.DENY or (
            verdict.decision is Decision.APPROVAL_REQUIRED and self.approval == "result"
        ):
            return _refused(verdict)

        async def again(approved: str) -> CallToolResult:
            return await self.call_tool(name, arguments, *args, approval_id=approved, **kwargs)

        base: AsyncResume = self.gate.approval_resume()
        raise_unless_allowed(
            verdict, aresume=AsyncResume(status=base.status, retry=again, sleep=base.sleep)
        )
        try:
            result = await self.session.call_tool(name, arguments, *args, **kwargs)
        except Exception:
            await self.gate.report(spec, verdict, raw, None, failed=True)
            raise
        failed = isinstance(result, CallToolResult) and bool(result.is_error)
        await self.gate.report(spec, verdict, raw, result, failed=failed)
        return result  # type: ignore[no-any-return]
