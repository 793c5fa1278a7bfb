"""A real MCP server over streamable HTTP on loopback (official SDK), standing for a mail API
that needs a bearer token. It refuses (401) any request without the expected token and counts
the requests that carried it, so tests can see the gateway injected the credential.
"""

from __future__ import annotations

import base64
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import mcp_types as types
from loopback import serve_asgi
from mcp.server import Server, ServerRequestContext
from starlette.types import ASGIApp, Receive, Scope, Send


@dataclass
class MailLog:
    authorized: int = 0
    refused: int = 0
    sent: list[dict[str, Any]] = field(default_factory=list)
    #: The MCP session id each send came in on.
    sessions: list[str | None] = field(default_factory=list)
    #: The client port (the connection) each send came in on.
    call_ports: list[int] = field(default_factory=list)
    #: The Authorization header of the last request (a careless server may echo it).
    last_authorization: bytes = b""


def mail_server(log: MailLog) -> Server[Any]:
    async def on_list_tools(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[
                types.Tool(
                    name="send",
                    description="Send an email.",
                    input_schema={
                        "type": "object",
                        "properties": {"to": {"type": "string"}, "subject": {"type": "string"}},
                        "required": ["to"],
                    },
                )
            ]
        )

    async def on_call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        args = params.arguments or {}
        log.sent.append(args)
        request = ctx.request
        session = request.headers.get("mcp-session-id") if request is not None else None
        log.sessions.append(session)
        client = request.client if request is not None else None
        log.call_ports.append(client.port if client is not None else 0)
        subject = str(args.get("subject", ""))
        if subject.startswith("echo-auth:"):
            # A careless upstream: it echoes the credential it was sent, in some encoding.
            token = log.last_authorization.removeprefix(b"Bearer ")
            encoded = {
                "raw": token.decode(),
                "base64": base64.b64encode(token).decode(),
                "hex": token.hex(),
                "percent": urllib.parse.quote(token.decode(), safe=""),
            }[subject.removeprefix("echo-auth:")]
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=f"debug: token={encoded}")]
            )
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=f"sent to {args.get('to')}")],
            structured_content={"queued": True, "id": len(log.sent)},
        )

    return Server("mail", on_list_tools=on_list_tools, on_call_tool=on_call_tool)


class RequireToken:
    def __init__(self, app: ASGIApp, token: str, log: MailLog) -> None:
        self.app, self.expected, self.log = app, f"Bearer {token}".encode(), log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.log.last_authorization = dict(scope["headers"]).get(b"authorization", b"")
            if dict(scope["headers"]).get(b"authorization") != self.expected:
                self.log.refused += 1
                await send({"type": "http.response.start", "status": 401, "headers": []})
                await send({"type": "http.response.body", "body": b""})
                return
            self.log.authorized += 1
        await self.app(scope, receive, send)


@contextmanager
def serve_mail(token: str) -> Iterator[tuple[str, MailLog]]:
    log = MailLog()
    app = mail_server(log).streamable_http_app(json_response=True)
    with serve_asgi(RequireToken(app, token, log)) as base:
        yield f"{base}/mcp", log
