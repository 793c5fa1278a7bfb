"""A real MCP server over stdio (official SDK, low-level ``Server``), run by the gateway as a
subprocess in the tests.

    python upstream_stdio.py crm        query (structured items; 3 unless ``rows`` says),
                                        update, admin; resources crm://customers/c-1 and
                                        crm://internal/salaries (and their templates);
                                        prompts summarize and wipe
    python upstream_stdio.py payments   transfer

    python upstream_stdio.py hang       never answers, not even ``initialize``

With ``START_BARRIER_DIR`` and ``START_BARRIER_COUNT`` set, the server first writes a marker file
in that directory, then waits until ``START_BARRIER_COUNT`` markers are there before it serves
(giving up after a minute): servers started one after another never get past it, servers
started together all do.

With ``START_GATE_FILE`` set, the server waits until that file exists before it serves (giving up
after a minute): a test holds an upstream "still starting" for as long as it needs to.

With ``CRM_LIST_CHANGED`` set, the server declares ``tools.listChanged``; ``crm.update`` with
``ticket: "announce"`` sends ``notifications/tools/list_changed`` before it answers.
``crm.query`` reports progress once per record when the caller asks for progress.
``crm.update`` with ``ticket: "log"`` sends a log message naming its process id first;
``crm.update`` with ``ticket: "resources-changed"`` (``"prompts-changed"``) sends
``notifications/resources/list_changed`` (``prompts/list_changed``) before it answers;
``crm.update`` with ``ticket: "pid"`` answers with the server's process id;
``crm.update`` with ``ticket: "crash"`` exits the process mid-call, as a crashing server would;
with ``ticket: "hang"`` it does not answer for two minutes.
When ``CRM_DESCRIPTION_FILE`` names a file, ``query``'s description is read from it on every
``tools/list``, so a test can change the descriptor under a running gateway (a rug pull).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp.server import NotificationOptions, Server, ServerRequestContext
from mcp.server.stdio import stdio_server

OBJECT = {"type": "object"}


def _query_description() -> str:
    path = os.environ.get("CRM_DESCRIPTION_FILE")
    if path and Path(path).exists():
        return Path(path).read_text()
    return "Look up a customer's records."


def crm_tools() -> list[types.Tool]:
    return [
        types.Tool(
            name="query",
            description=_query_description(),
            input_schema={
                **OBJECT,
                "properties": {"customer": {"type": "string"}, "rows": {"type": "integer"}},
                "required": ["customer"],
            },
        ),
        types.Tool(
            name="update",
            description="Update a ticket.",
            input_schema={
                **OBJECT,
                "properties": {"ticket": {"type": "string"}, "discount": {"type": "number"}},
            },
        ),
        types.Tool(name="admin", description="Administer the CRM.", input_schema=OBJECT),
    ]


def payments_tools() -> list[types.Tool]:
    return [
        types.Tool(
            name="transfer",
            description="Transfer money.",
            input_schema={**OBJECT, "properties": {"amount": {"type": "number"}}},
        )
    ]


def text(value: str, structured: Any = None) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=value)], structured_content=structured
    )


async def call(name: str, args: dict[str, Any]) -> types.CallToolResult:
    if name == "query":
        customer = str(args.get("customer"))
        rows = int(args.get("rows", 3))
        items = [{"customer": customer, "order": n} for n in range(rows)]
        return text(f"{rows} records for {customer}", {"items": items})
    if name == "update":
        if args.get("ticket") == "crash":
            os._exit(17)  # die mid-call, without answering
        if args.get("ticket") == "hang":
            await anyio.sleep(120)  # never answer in time
        ticket = str(args.get("ticket", ""))
        if ticket == "pid":  # which process (which session) served the call
            return text(str(os.getpid()))
        if ticket.startswith("env:"):  # a careless tool that prints its environment
            return text(f"{ticket[4:]}={os.environ.get(ticket[4:], '')}")
        if ticket.startswith("env-length:"):
            return text(str(len(os.environ.get(ticket[11:], ""))))
        return text(f"updated {args.get('ticket')}")
    if name == "admin":
        return text("admin done")
    if name == "transfer":
        return text(f"transferred {args.get('amount')}")
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=f"unknown tool {name}")], is_error=True
    )


def start_barrier(role: str) -> None:
    where, count = os.environ.get("START_BARRIER_DIR"), os.environ.get("START_BARRIER_COUNT")
    if not where or not count:
        return
    directory = Path(where)
    (directory / f"{role}-{os.getpid()}.started").write_text("started")
    deadline = time.monotonic() + 60
    while len(list(directory.glob("*.started"))) < int(count):
        if time.monotonic() > deadline:
            sys.exit(3)  # the others were never started while this one waited
        time.sleep(0.01)


def start_gate() -> None:
    gate = os.environ.get("START_GATE_FILE")
    deadline = time.monotonic() + 60
    while gate and not Path(gate).exists():
        if time.monotonic() > deadline:
            sys.exit(4)  # the test never let it start
        time.sleep(0.01)


def main(role: str) -> None:
    start_barrier(role)
    start_gate()
    if role == "hang":
        # Started, but never answers initialize: read what the gateway sends until it closes
        # the pipe (it gives up on this server), then exit.
        while sys.stdin.buffer.read(65536):
            pass
        return
    tools = crm_tools if role == "crm" else payments_tools

    async def on_list_tools(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools())

    async def on_call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        if params.name == "update" and (params.arguments or {}).get("ticket") == "announce":
            # Tell the client the tools changed (a well-behaved server after a change).
            await ctx.session.send_tool_list_changed()
        if (
            params.name == "update"
            and (params.arguments or {}).get("ticket") == "resources-changed"
        ):
            await ctx.session.send_resource_list_changed()
        if params.name == "update" and (params.arguments or {}).get("ticket") == "prompts-changed":
            await ctx.session.send_prompt_list_changed()
        if params.name == "update" and (params.arguments or {}).get("ticket") == "log":
            await ctx.session.send_log_message("warning", f"crm pid {os.getpid()}", logger="crm")
        if params.name == "query":
            # One progress notification per record (a no-op unless the caller asked for them).
            rows = int((params.arguments or {}).get("rows", 3))
            for done in range(1, rows + 1):
                await ctx.session.report_progress(done, rows, f"record {done} of {rows}")
        return await call(params.name, params.arguments or {})

    async def on_list_resources(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        return types.ListResourcesResult(
            resources=[
                types.Resource(uri="crm://customers/c-1", name="c-1"),
                types.Resource(uri="crm://internal/salaries", name="salaries"),
            ]
        )

    async def on_list_resource_templates(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(
            resource_templates=[
                types.ResourceTemplate(uri_template="crm://customers/{id}", name="customer"),
                types.ResourceTemplate(uri_template="crm://internal/{doc}", name="internal"),
            ]
        )

    async def on_read_resource(
        ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        uri = str(params.uri)
        return types.ReadResourceResult(
            contents=[
                types.TextResourceContents(uri=uri, text=f"record {n} of {uri}") for n in range(2)
            ]
        )

    async def on_subscribe_resource(
        ctx: ServerRequestContext[Any, Any], params: types.SubscribeRequestParams
    ) -> types.EmptyResult:
        await ctx.session.send_resource_updated(params.uri)  # as if it changed at once
        return types.EmptyResult()

    async def on_list_prompts(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        return types.ListPromptsResult(
            prompts=[types.Prompt(name="summarize"), types.Prompt(name="wipe")]
        )

    async def on_get_prompt(
        ctx: ServerRequestContext[Any, Any], params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        who = (params.arguments or {}).get("customer", "")
        text = types.TextContent(type="text", text=f"Summarize {who}'s records.")
        return types.GetPromptResult(messages=[types.PromptMessage(role="user", content=text)])

    extra: dict[str, Any] = {}
    if role == "crm":
        extra = {
            "on_list_resources": on_list_resources,
            "on_list_resource_templates": on_list_resource_templates,
            "on_read_resource": on_read_resource,
            "on_subscribe_resource": on_subscribe_resource,
            "on_list_prompts": on_list_prompts,
            "on_get_prompt": on_get_prompt,
        }
    server = Server(role, on_list_tools=on_list_tools, on_call_tool=on_call_tool, **extra)

    async def run() -> None:
        async with stdio_server() as (read_stream, write_stream):
            changes = NotificationOptions(tools_changed=bool(os.environ.get("CRM_LIST_CHANGED")))
            options = server.create_initialization_options(notification_options=changes)
            await server.run(read_stream, write_stream, options)

    anyio.run(run)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "crm")
