"""The egress proxy's config file (YAML), validated strictly: an unknown key is an error, every
default is the restrictive one, and every problem is reported at once at its ``file:line:col``.

    upstreams:                           # the legacy HTTP services the proxy fronts
      legacy:                            # name: letters, digits, '_' or '-'; agents call /legacy/…
        url: https://legacy.internal/api # base URL; the route path is appended to it
        secret:                          # the standing secret, injected on every forwarded call
          name: legacy-key               #   in tether's secret store (`tether secrets put`)
          header: Authorization          #   default Authorization
          scheme: Bearer                 #   default Bearer; `none` sends the bare value
          # query_param: api_key         #   instead of a header (then no header/scheme)
        timeout_seconds: 10              # default 30
        max_request_bytes: 1048576       # default 1 MiB
        max_response_bytes: 8388608      # default 8 MiB
        forward_headers: [X-Request-Id]  # agent headers passed on besides the standard few
    routes:                              # everything else is refused (404 route_not_found)
      - upstream: legacy
        method: GET                      # GET | HEAD | POST | PUT | PATCH | DELETE
        path: /customers/{id}            # literal segments and whole-segment {params}
        tool: crm.query                  # what tether authorizes
        action: read                     # read | write | delete | send | execute | spend
        dataset: crm                     # optional
        args:                            # the call's arguments, by name
          id: path.id                    #   path.<param> | query.<name> | body.<field>[.<field>…]
          limit: {from: query.limit, type: integer}   # string | integer | number | boolean
        allow_query: [fields]            # query parameters allowed without being arguments
        count_records: body.items        # records in the response: body | body.<path> (optional)
        recipients_arg: to               # the argument naming recipients (optional)

Arguments from ``path`` and ``query`` are strings unless a ``type`` converts them; ``body`` values
keep their JSON type (a ``type`` there is a check). A query parameter that is neither an argument
nor in ``allow_query`` is refused: what reaches the upstream is what was authorized.

The file is read by :func:`tether.configfile.read_yaml` and checked by the typed models of
:mod:`tether.proxy.config_file` (one per YAML mapping), then by the checks across fields there
(a route's upstream is declared, its ``path.<param>`` arguments are in its path…); this module
holds the frozen values the proxy runs on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from tether.core.scope import ActionKind

DEFAULT_TIMEOUT_SECONDS: Final = 30.0
DEFAULT_MAX_REQUEST_BYTES: Final = 1024 * 1024
DEFAULT_MAX_RESPONSE_BYTES: Final = 8 * 1024 * 1024
MAX_BYTES_LIMIT: Final = 256 * 1024 * 1024
MAX_CONFIG_BYTES: Final = 1024 * 1024
MAX_ROUTES: Final = 1000
#: Methods a route may name. CONNECT, TRACE, OPTIONS and anything else are refused at the edge.
METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"})
#: Agent headers forwarded to every upstream; anything else only when ``forward_headers`` names
#: it. The agent's Authorization and X-Tether-* headers are never among them.
STANDARD_FORWARD_HEADERS: Final = frozenset(
    {
        "accept",
        "accept-language",
        "content-type",
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
        "user-agent",
    }
)
#: Headers that may never be forwarded from the agent, whatever the config says (RFC 9110 §7.6.1
#: hop-by-hop fields, the agent's credentials, framing the proxy sets itself).
NEVER_FORWARDED: Final = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "proxy-authenticate",
        "cookie",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "content-encoding",
        "accept-encoding",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
    }
)


class ArgSourceKind(StrEnum):
    PATH = "path"
    QUERY = "query"
    BODY = "body"


class ArgType(StrEnum):
    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"


@dataclass(frozen=True, slots=True)
class ArgSource:
    """Where one argument of the call comes from: a path param, a query param, a body field."""

    kind: ArgSourceKind
    path: tuple[str, ...]  # one name for path/query; a dotted field path into the JSON body
    type: ArgType | None = None


@dataclass(frozen=True, slots=True)
class SecretRef:
    """The standing secret an upstream needs, and how it goes on the wire (never its value)."""

    name: str
    header: str | None = "Authorization"
    scheme: str | None = "Bearer"  # None: the bare value
    query_param: str | None = None

    def header_value(self, value: str) -> str:
        return f"{self.scheme} {value}" if self.scheme else value


@dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    url: str
    secret: SecretRef | None = None
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    forward_headers: frozenset[str] = STANDARD_FORWARD_HEADERS


@dataclass(frozen=True, slots=True)
class RouteTemplate:
    """``/customers/{id}`` as segments: a literal string or a ``{param}`` name each."""

    text: str
    segments: tuple[str, ...]
    params: tuple[int, ...]  # indexes of the {param} segments

    def param_name(self, index: int) -> str:
        return self.segments[index][1:-1]

    @property
    def shape(self) -> tuple[str | None, ...]:
        """Literals kept, params blanked: two routes of one method and shape are ambiguous."""
        return tuple(None if i in self.params else s for i, s in enumerate(self.segments))


@dataclass(frozen=True, slots=True)
class Route:
    upstream: str
    method: str
    path: RouteTemplate
    tool: str
    action: ActionKind
    dataset: str | None = None
    args: tuple[tuple[str, ArgSource], ...] = ()
    allow_query: frozenset[str] = frozenset()
    count_records: tuple[str, ...] | None = None  # a path into the response JSON; () = the body
    recipients_arg: str | None = None
    index: int = 0  # position in the config, for messages

    @property
    def query_names(self) -> frozenset[str]:
        """Every query parameter this route lets through."""
        named = {s.path[0] for _, s in self.args if s.kind is ArgSourceKind.QUERY}
        return self.allow_query | named

    @property
    def reads_body(self) -> bool:
        return any(s.kind is ArgSourceKind.BODY for _, s in self.args)


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    upstreams: Mapping[str, Upstream]
    routes: tuple[Route, ...]
