"""The MCP gateway (Model Context Protocol, official SDK 2.x on both sides).

Fronts upstream MCP servers, filters ``tools/list`` to what the caller's grant allows, decides
every ``tools/call`` with tether before it reaches an upstream, injects upstream credentials,
pins tool descriptors (OWASP ASI04) and records effects. See ``README.md`` beside this file.
"""

from __future__ import annotations

from tether.mcp.callers import GRANT_HEADER, GRANT_META_KEY, Caller
from tether.mcp.config import GatewayConfig
from tether.mcp.config_file import load_config, parse_config
from tether.mcp.gateway import Gateway, GatewayDeps
from tether.mcp.pins import PinStore
from tether.mcp.server import build_server, http_app, open_gateway, serve_stdio

__all__ = [
    "GRANT_HEADER",
    "GRANT_META_KEY",
    "Caller",
    "Gateway",
    "GatewayConfig",
    "GatewayDeps",
    "PinStore",
    "build_server",
    "http_app",
    "load_config",
    "open_gateway",
    "parse_config",
    "serve_stdio",
]
