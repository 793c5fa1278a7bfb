"""A careless MCP server over stdio (official SDK, low-level ``Server``) that hands back the
credential it was started with, for the gateway's redaction and prompt-pin tests.

    python upstream_vault.py

Tools:
    echo    returns ``VAULT_TOKEN`` (read from its environment) raw, base64 at byte offsets
            0, 1 and 2 of a longer blob, base64url, hex in both cases, percent-encoded and
            JSON-escaped inside a JSON document, in text content and in structuredContent;
            reports progress with it in the message and logs it first
    env     prints its whole environment, as ``KEY=value`` lines; its description carries the
            token (raw and hex)
    plain   returns a fixed text with no secret in it
    fail    answers with a JSON-RPC error whose message and data carry the token
    announce  sends ``notifications/prompts/list_changed`` and answers ``announced``
Resources: ``vault://env`` (its text holds the token). Prompts: ``leak`` (its message holds the
token) and ``summarize``, whose description is read on every ``prompts/list`` from the file
``PROMPT_DESCRIPTION_FILE`` names (so a test can change it under a running gateway). With
``VAULT_LIST_CHANGED`` set the server declares ``prompts.listChanged``.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.parse
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp.server import NotificationOptions, Server, ServerRequestContext
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError

OBJECT = {"type": "object"}


def token() -> str:
    return os.environ.get("VAULT_TOKEN", "")


def encodings(value: str) -> dict[str, str]:
    raw = value.encode()
    return {
        "raw": value,
        "base64@0": base64.b64encode(raw + b" trailing bytes").decode(),
        "base64@1": base64.b64encode(b"B" + raw + b"!").decode(),
        "base64@2": base64.b64encode(b"Be" + raw).decode(),
        "base64url": base64.urlsafe_b64encode(b"key=" + raw).decode(),
        "hex": raw.hex(),
        "HEX": raw.hex().upper(),
        "percent": urllib.parse.quote(f"https://x.test/?key={value}", safe=""),
        "json": json.dumps({"auth": value}).replace("/", "\\/"),
    }


def _summarize_description() -> str:
    path = os.environ.get("PROMPT_DESCRIPTION_FILE")
    if path and Path(path).exists():
        return Path(path).read_text()
    return "Summarize a customer's records."


def _describe(tool: str) -> str:
    if tool == "env":  # careless: the description shows the credential, hex too
        return f"Prints its environment (token {token()}, hex {token().encode().hex()})."
    return f"The {tool} tool."


def main() -> None:
    async def on_list_tools(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[
                types.Tool(name=name, description=_describe(name), input_schema=OBJECT)
                for name in ("echo", "env", "plain", "fail", "announce")
            ]
        )

    async def on_call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        value = token()
        match params.name:
            case "echo":
                await ctx.session.send_log_message(
                    "warning", {"msg": "starting", "token": value}, logger=f"vault {value}"
                )
                await ctx.session.report_progress(1, 2, f"using token {value}")
                forms = encodings(value)
                lines = "\n".join(f"{name}: {text}" for name, text in forms.items())
                return types.CallToolResult(
                    content=[types.TextContent(type="text", text=lines)],
                    structured_content={"forms": forms, value: "as a key"},
                )
            case "env":
                listing = "\n".join(f"{k}={v}" for k, v in sorted(os.environ.items()))
                return types.CallToolResult(content=[types.TextContent(type="text", text=listing)])
            case "fail":
                raise MCPError(code=-32000, message=f"bad token {value}", data={"token": value})
            case "announce":
                await ctx.session.send_prompt_list_changed()
                return types.CallToolResult(
                    content=[types.TextContent(type="text", text="announced")]
                )
        return types.CallToolResult(content=[types.TextContent(type="text", text="plain answer")])

    async def on_list_resources(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        return types.ListResourcesResult(resources=[types.Resource(uri="vault://env", name="env")])

    async def on_read_resource(
        ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        text = f"VAULT_TOKEN={token()}"
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=str(params.uri), text=text)]
        )

    async def on_list_prompts(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        return types.ListPromptsResult(
            prompts=[
                types.Prompt(name="leak", description="Shows the token."),
                types.Prompt(
                    name="summarize",
                    description=_summarize_description(),
                    arguments=[types.PromptArgument(name="customer", required=True)],
                ),
            ]
        )

    async def on_get_prompt(
        ctx: ServerRequestContext[Any, Any], params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        if params.name == "leak":
            text = f"Use the token {token()} (hex {token().encode().hex()})."
        else:
            text = f"Summarize {(params.arguments or {}).get('customer', '')}'s records."
        content = types.TextContent(type="text", text=text)
        return types.GetPromptResult(messages=[types.PromptMessage(role="user", content=content)])

    server = Server(
        "vault",
        on_list_tools=on_list_tools,
        on_call_tool=on_call_tool,
        on_list_resources=on_list_resources,
        on_read_resource=on_read_resource,
        on_list_prompts=on_list_prompts,
        on_get_prompt=on_get_prompt,
    )

    async def run() -> None:
        async with stdio_server() as (read_stream, write_stream):
            changes = NotificationOptions(
                prompts_changed=bool(os.environ.get("VAULT_LIST_CHANGED"))
            )
            options = server.create_initialization_options(notification_options=changes)
            await server.run(read_stream, write_stream, options)

    anyio.run(run)


if __name__ == "__main__":
    main()
