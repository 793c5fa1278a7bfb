"""A small MCP server over stdio (official SDK), for trying the gateway: a customer database.

    query   read a customer's records        readOnlyHint: true
    update  change a ticket's discount       readOnlyHint: false, destructiveHint: false
    purge   delete a customer's records      destructiveHint: true

The annotations are the server's own word; the gateway never trusts them alone (OWASP ASI04):
its config maps each tool to an action and a dataset. Data lives in memory and is lost on exit.

    python -m tether.examples.mcp.crm_server
"""

from __future__ import annotations

from typing import Any

import anyio
import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server

CUSTOMERS: dict[str, list[dict[str, Any]]] = {
    "c-1042": [
        {"order": "o-1", "item": "router", "total": 129.0},
        {"order": "o-2", "item": "cable", "total": 9.5},
        {"order": "o-3", "item": "switch", "total": 249.0},
    ],
    "c-2001": [{"order": "o-4", "item": "modem", "total": 89.0}],
}
TICKETS: dict[str, int] = {}

TOOLS = [
    types.Tool(
        name="query",
        description="Look up a customer's orders.",
        input_schema={
            "type": "object",
            "properties": {"customer": {"type": "string"}},
            "required": ["customer"],
        },
        annotations=types.ToolAnnotations(read_only_hint=True),
    ),
    types.Tool(
        name="update",
        description="Set the discount (percent) on a support ticket.",
        input_schema={
            "type": "object",
            "properties": {"ticket": {"type": "string"}, "discount": {"type": "number"}},
            "required": ["ticket", "discount"],
        },
        annotations=types.ToolAnnotations(read_only_hint=False, destructive_hint=False),
    ),
    types.Tool(
        name="purge",
        description="Delete every record of a customer.",
        input_schema={
            "type": "object",
            "properties": {"customer": {"type": "string"}},
            "required": ["customer"],
        },
        annotations=types.ToolAnnotations(destructive_hint=True),
    ),
]


def _result(text: str, structured: dict[str, Any] | None = None) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)], structured_content=structured
    )


def call(name: str, args: dict[str, Any]) -> types.CallToolResult:
    customer = str(args.get("customer", ""))
    if name == "query":
        records = CUSTOMERS.get(customer, [])
        return _result(f"{len(records)} records for {customer}", {"records": records})
    if name == "update":
        ticket = str(args.get("ticket", ""))
        TICKETS[ticket] = int(args.get("discount", 0))
        return _result(f"ticket {ticket}: discount {TICKETS[ticket]}%")
    if name == "purge":
        removed = len(CUSTOMERS.pop(customer, []))
        return _result(f"purged {removed} records of {customer}")
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=f"no tool named {name!r}")], is_error=True
    )


def server() -> Server[Any]:
    async def on_list_tools(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=TOOLS)

    async def on_call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        return call(params.name, params.arguments or {})

    return Server("example-crm", on_list_tools=on_list_tools, on_call_tool=on_call_tool)


async def serve() -> None:
    crm = server()
    async with stdio_server() as (read_stream, write_stream):
        await crm.run(read_stream, write_stream, crm.create_initialization_options())


if __name__ == "__main__":
    anyio.run(serve)
