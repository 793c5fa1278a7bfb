"""The gateway as an MCP server (official SDK, low-level ``Server``): streamable HTTP and stdio.

Streamable HTTP (``/mcp``): :class:`~tether.mcp.callers.BearerAuth` wraps the SDK's app, so a
request without a valid SVID gets ``401`` before any MCP message is parsed, and each handler
reads the verified caller from its own HTTP request. A call's answer is an SSE stream when the
upstream sends notifications for it (progress, logging) so they reach the agent on the request
they belong to; on a 2026-era session a call that sends none is answered as plain JSON. When
bound to loopback the SDK's DNS-rebinding protection is on.
``GET /metrics`` (Prometheus text, the metric names of ``tether serve``: decisions, decision
writes, the store's gauges) needs no credentials, as on ``tether serve``; it shows counts, tool
names and reason codes, never a token or an argument.

stdio: one agent per process (see :func:`~tether.mcp.callers.stdio_caller`).

``tools/list`` results carry ``ttlMs: 0`` and ``cacheScope: private`` (MCP 2026-07-28 caching
hints): what one caller sees is never reused for another.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.server.context import CallNext, ServerMiddleware
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, METHOD_NOT_FOUND, SERVER_INFO_META_KEY, methods
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from starlette.types import ASGIApp

from tether import __version__
from tether.core.ids import IdFactory
from tether.credentials.secrets import SecretStore
from tether.heap import HeapFreezer
from tether.mcp.callers import BearerAuth, Caller, caller_from_scope
from tether.mcp.config import GatewayConfig
from tether.mcp.gateway import LEGACY_VERSION, Gateway, GatewayDeps
from tether.mcp.lean import LeanFront, LeanSessions, LeanStats
from tether.mcp.listeners import Listener
from tether.mcp.pdp import LocalDecisionPoint
from tether.mcp.pins import PinStore
from tether.mcp.recording import GatewayAudit
from tether.mcp.surface import SURFACE_METHODS
from tether.observability.http import ServeMetrics
from tether.runtime import Runtime
from tether.service.grant_reads import GrantReader

SERVER_NAME: Final = "tether-mcp-gateway"
MCP_PATH: Final = "/mcp"
INSTRUCTIONS: Final = (
    "Tools here are decided per call by tether for your task's grant. A refused call returns "
    "isError with a reason code (e.g. tool_not_in_scope, constraint_violated, policy_forbids)."
)

Resolve = Callable[[ServerRequestContext[Any, Any]], Caller | None]
Middleware = ServerMiddleware[Gateway]


def deps_from_runtime(
    runtime: Runtime, *, random_bytes: Callable[[int], bytes] = os.urandom
) -> GatewayDeps:
    secrets = SecretStore(runtime.config.data_dir, runtime.config.environ)
    metrics = runtime.observability.metrics if runtime.config.metrics else None
    if metrics is not None:
        metrics.watch_store(runtime.store, runtime.clock)
    pdp = LocalDecisionPoint(
        runtime.verifier,
        runtime.authorizer,
        runtime.effects,
        GrantReader(runtime.signer, runtime.store, runtime.clock),
        runtime.clock,
        GatewayAudit(runtime.store, runtime.clock, IdFactory(random_bytes)),
        runtime.provenance,
    )
    return GatewayDeps(
        pdp=pdp,
        clock=runtime.clock,
        secrets=secrets.get,
        metrics=metrics,
        forget_idle=runtime.forget_idle,
        record_call=pdp.record_call,
    )


def default_pins_path(data_dir: Path) -> Path:
    return data_dir / "mcp-pins.json"


def open_gateway(
    config: GatewayConfig,
    runtime: Runtime,
    *,
    pins: Path | None = None,
    lean: bool = True,
    heap: HeapFreezer | None = None,
) -> Gateway:
    """The gateway for ``config``; ``lean=False`` sends every upstream request through the
    SDK's client (see :mod:`tether.mcp.lean_upstream`); ``heap``: the process's, kept out of
    full collections while the gateway runs (see :class:`Gateway`)."""
    pins_path = pins or default_pins_path(runtime.config.data_dir)
    return Gateway(config, deps_from_runtime(runtime), PinStore(pins_path), lean=lean, heap=heap)


def _no_schema(_name: str) -> None:
    """Mcp-Param header validation is not used: the gateway never routes on those headers, and
    answering from the catalog would tell a caller about tools it may not see."""
    return None


async def answer_call(
    gateway: Gateway,
    server: Server[Gateway],
    caller: Caller | None,
    params: Mapping[str, Any] | None,
    version: str,
    progress: ProgressFnT | None = None,
) -> dict[str, Any]:
    """One ``tools/call``, whichever path it came by (the SDK's, :mod:`tether.mcp.lean`): its
    params checked against the agent's protocol revision (``mcp_types.methods``, the SDK's own
    check; ``pydantic.ValidationError`` for params it refuses), decided and forwarded by
    :meth:`Gateway.forward_call`, and its result object answered as the gateway returns it,
    with no typed handler or second serialization between."""
    methods.validate_client_request("tools/call", version, params)
    result = await gateway.forward_call(caller, params or {}, version, progress)
    return _stamped(result, version, server)


def _forward_calls(
    gateway: Gateway, resolve: Resolve, server: Server[Gateway], sessions: LeanSessions | None
) -> Middleware:
    """``tools/call`` and the authorized surface (resources, prompts) as JSON-RPC messages:
    :func:`answer_call` for a call, :class:`~tether.mcp.surface.Surface` for the rest. Every
    other method goes on through the SDK's chain. Each message of a handshake-era session is
    also shown to ``sessions``, so the lean path learns the sessions whose handshake is done."""

    async def forward(ctx: ServerRequestContext[Gateway, Any], call_next: CallNext) -> Any:
        method = ctx.method
        if sessions is not None and ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            sessions.note(ctx.session)
        if method != "tools/call" and method not in SURFACE_METHODS:
            return await call_next(ctx)
        session, version = ctx.session, ctx.protocol_version
        if session.client_params is None and session.client_capabilities is None:
            # Before the handshake: the SDK's own answer for a gated method.
            raise MCPError(code=INVALID_PARAMS, message="Invalid request parameters", data="")
        params = ctx.params or {}
        if method != "tools/call":
            methods.validate_client_request(method, version, ctx.params)
            remember(gateway, ctx, resolve(ctx))
            answer = await gateway.surface.handle(method, resolve(ctx), params, version)
            return _stamped(answer, version, server)
        meta = params.get("_meta")
        wants_progress = isinstance(meta, Mapping) and meta.get("progressToken") is not None
        caller = resolve(ctx)
        remember(gateway, ctx, caller)
        return await answer_call(
            gateway,
            server,
            caller,
            ctx.params,
            version,
            session.report_progress if wants_progress else None,
        )

    return forward


def _stamped(result: dict[str, Any], version: str, server: Server[Gateway]) -> dict[str, Any]:
    if version in MODERN_PROTOCOL_VERSIONS:
        # What the SDK stamps on every 2026-era result it serializes itself.
        result.setdefault("resultType", "complete")
        stamped = dict(result.get("_meta") or {})
        stamped.setdefault(SERVER_INFO_META_KEY, server.server_info_stamp)
        result["_meta"] = stamped
    return result


def _session_id(ctx: ServerRequestContext[Any, Any]) -> str | None:
    headers = getattr(ctx.request, "headers", None)
    value = headers.get(MCP_SESSION_ID_HEADER) if headers is not None else None
    return value if isinstance(value, str) else None


def session_key(ctx: ServerRequestContext[Any, Any]) -> str | None:
    """The agent session a request belongs to: its MCP session id over streamable HTTP, the
    one session over stdio; ``None`` for a 2026-era request (no session)."""
    if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
        return None
    if ctx.request is None:
        return "stdio"
    return _session_id(ctx)


def remember(gateway: Gateway, ctx: ServerRequestContext[Any, Any], caller: Caller | None) -> None:
    """Remember the agent session a request came on, for notifications (tether.mcp.listeners)."""
    key = session_key(ctx)
    if caller is not None and key is not None:
        gateway.listeners.remember(key, caller.workload.id, ctx.session)


def build_server(
    gateway: Gateway, resolve: Resolve, sessions: LeanSessions | None = None
) -> Server[Gateway]:
    async def on_list_tools(
        ctx: ServerRequestContext[Gateway, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        caller = resolve(ctx)
        tools = [] if caller is None else await gateway.list_tools(caller.with_meta(ctx.meta))
        remember(gateway, ctx, caller)
        return types.ListToolsResult(tools=tools, ttl_ms=0, cache_scope="private")

    async def on_call_tool(
        ctx: ServerRequestContext[Gateway, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        # Registered so the SDK declares the tools capability; calls never get here (see
        # _forward_calls), but if one did it would be decided all the same.
        result = await gateway.forward_call(
            resolve(ctx), params.model_dump(by_alias=True, exclude_none=True), LEGACY_VERSION
        )
        return types.CallToolResult.model_validate(result, by_name=False)

    # Registered so the SDK declares the resources and prompts capabilities; requests never get
    # here (see _forward_calls and tether.mcp.surface).
    async def no_list(ctx: Any, params: Any) -> Any:
        raise MCPError(code=METHOD_NOT_FOUND, message="Method not found")

    server: Server[Gateway] = Server(
        SERVER_NAME,
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lambda _server: gateway.running(),
        get_tool_input_schema=_no_schema,
        on_list_tools=on_list_tools,
        on_call_tool=on_call_tool,
        on_list_resources=no_list,
        on_list_resource_templates=no_list,
        on_read_resource=no_list,
        on_subscribe_resource=no_list,
        on_unsubscribe_resource=no_list,
        on_list_prompts=no_list,
        on_get_prompt=no_list,
    )
    server.middleware.append(_forward_calls(gateway, resolve, server, sessions))
    return server


def _http_caller(ctx: ServerRequestContext[Any, Any]) -> Caller | None:
    request = ctx.request
    return caller_from_scope(getattr(request, "scope", None))


def http_app(
    gateway: Gateway,
    *,
    host: str = "127.0.0.1",
    lean: bool = True,
    stats: LeanStats | None = None,
) -> ASGIApp:
    """The ASGI app serving the gateway at ``/mcp`` (bearer-authenticated), and ``/metrics``
    when the gateway has metrics. ``lean``: single ``tools/call`` requests are answered by
    :class:`~tether.mcp.lean.LeanFront` (counted in ``stats``), everything else by the SDK;
    ``False`` sends every request through the SDK's transport."""
    sessions = LeanSessions() if lean else None
    server = build_server(gateway, _http_caller, sessions)
    app: ASGIApp = server.streamable_http_app(
        streamable_http_path=MCP_PATH, json_response=False, host=host
    )
    if sessions is not None:

        async def answer(caller: Caller | None, params: dict[str, Any] | None, version: str) -> Any:
            return await answer_call(gateway, server, caller, params, version)

        def listen(session_id: str, caller: Caller, session: Listener) -> None:
            gateway.listeners.remember(session_id, caller.workload.id, session)

        app = LeanFront(app, server, answer, sessions, path=MCP_PATH, listen=listen, stats=stats)
    authenticated = BearerAuth(app, gateway.deps.pdp.verify)
    metrics = gateway.deps.metrics
    return authenticated if metrics is None else ServeMetrics(authenticated, metrics)


async def serve_stdio(gateway: Gateway, caller: Caller) -> None:
    """Serve one agent over this process's stdin/stdout until the client closes them."""
    server = build_server(gateway, lambda _ctx: caller)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())
