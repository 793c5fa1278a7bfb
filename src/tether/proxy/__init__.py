"""The egress proxy for legacy HTTP systems that only know a standing secret (DESIGN principle 6).

The agent sends its request to the proxy with its SVID and grant; the proxy maps method, path,
query and body to a tether call by the operator's routes, authorizes it in process, adds the
secret, forwards it, records the effect and returns the answer. The agent never holds the
secret and the upstream never sees the agent's SVID or grant. See ``README.md`` beside this file.

    config    the routes file (YAML), validated strictly
    routes    path normalization, route matching, argument mapping (no I/O)
    forward   the upstream client: secret injection, bounded answers
    answer    what of an answer the agent may see: headers dropped, the secret redacted
    decoding  compressed answers decoded within the size bound, before they are checked
    app       the request pipeline and the ASGI app
    errors    the proxy's codes and their HTTP statuses
    server    wiring to a runtime
"""

from __future__ import annotations

from tether.proxy.app import APPROVAL_HEADER, DECISION_HEADER, GRANT_HEADER, EgressProxy, ProxyDeps
from tether.proxy.config import ProxyConfig
from tether.proxy.config_file import load_config, parse_config
from tether.proxy.errors import PROXY_STATUS, ProxyCode
from tether.proxy.server import check_secrets, deps_from_runtime, open_proxy

__all__ = [
    "APPROVAL_HEADER",
    "DECISION_HEADER",
    "GRANT_HEADER",
    "PROXY_STATUS",
    "EgressProxy",
    "ProxyCode",
    "ProxyConfig",
    "ProxyDeps",
    "check_secrets",
    "deps_from_runtime",
    "load_config",
    "open_proxy",
    "parse_config",
]
