"""The egress proxy's config file (YAML), validated strictly: an unknown key is an error naming its
path, and every default is the restrictive one.

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
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import yaml

from tether.core.errors import ConfigurationError
from tether.core.scope import MAX_DATASET_NAME, MAX_TOOL_NAME, ActionKind, is_valid_name
from tether.credentials.secrets import is_valid_secret_name

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

_UPSTREAM_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_QUERY_NAME = re.compile(r"^[A-Za-z0-9._~-]{1,64}$")
_LITERAL_SEGMENT = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=:@-]{1,128}$")
_FIELD = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


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


# -- validation ---------------------------------------------------------------------------------


def _fail(path: str, why: str) -> ConfigurationError:
    return ConfigurationError(f"proxy config: {path}: {why}")


def _object(value: object, path: str, allowed: frozenset[str]) -> dict[str, object]:
    if not isinstance(value, dict):
        raise _fail(path, "must be a mapping")
    for key in value:
        if not isinstance(key, str) or key not in allowed:
            raise _fail(f"{path}.{key}", f"unknown key; allowed here: {', '.join(sorted(allowed))}")
    return value


def _required(body: dict[str, object], key: str, path: str) -> object:
    if key not in body:
        raise _fail(f"{path}.{key}", "is required")
    return body[key]


def _string(value: object, path: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 4096:
        raise _fail(path, "must be a non-empty string")
    return value


def _number(raw: dict[str, object], key: str, path: str, default: float, top: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= top:
        raise _fail(f"{path}.{key}", f"must be a number above 0 and at most {top:g}")
    return float(value)


def _count(raw: dict[str, object], key: str, path: str, default: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_BYTES_LIMIT:
        raise _fail(f"{path}.{key}", f"must be a whole number of bytes, 1 to {MAX_BYTES_LIMIT}")
    return value


def _names(value: object, path: str, pattern: re.Pattern[str]) -> list[str]:
    if not isinstance(value, list) or not all(
        isinstance(v, str) and pattern.fullmatch(v) for v in value
    ):
        raise _fail(path, "must be a list of names")
    return list(value)


_UPSTREAM_KEYS: Final = frozenset(
    {
        "url",
        "secret",
        "timeout_seconds",
        "max_request_bytes",
        "max_response_bytes",
        "forward_headers",
    }
)
_SECRET_KEYS: Final = frozenset({"name", "header", "scheme", "query_param"})
_ROUTE_KEYS: Final = frozenset(
    {
        "upstream",
        "method",
        "path",
        "tool",
        "action",
        "dataset",
        "args",
        "allow_query",
        "count_records",
        "recipients_arg",
    }
)
_ARG_KEYS: Final = frozenset({"from", "type"})
#: Headers that carry framing or routing, which a secret may not be put into.
_UNSETTABLE: Final = NEVER_FORWARDED - {"authorization", "proxy-authorization", "cookie"}


def _url(value: object, path: str) -> str:
    url = _string(value, path)
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise _fail(path, "must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise _fail(path, "must not carry credentials; put them in the secret store (secret:)")
    if parts.query or parts.fragment:
        raise _fail(path, "must not have a query or fragment")
    return url.rstrip("/")


def _secret(raw: object, path: str) -> SecretRef:
    body = _object(raw, path, _SECRET_KEYS)
    name = _string(_required(body, "name", path), f"{path}.name")
    if not is_valid_secret_name(name):
        raise _fail(f"{path}.name", "is not a valid secret name")
    if "query_param" in body:
        if "header" in body or "scheme" in body:
            raise _fail(path, "use either query_param or header/scheme, not both")
        param = _string(body["query_param"], f"{path}.query_param")
        if not _QUERY_NAME.fullmatch(param):
            raise _fail(f"{path}.query_param", "is not a query parameter name")
        return SecretRef(name, header=None, scheme=None, query_param=param)
    header = _string(body.get("header", "Authorization"), f"{path}.header")
    if not _HEADER_NAME.fullmatch(header) or header.lower() in _UNSETTABLE:
        raise _fail(f"{path}.header", "is not an HTTP header name the proxy can set")
    scheme = _string(body.get("scheme", "Bearer"), f"{path}.scheme")
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,32}", scheme):
        raise _fail(f"{path}.scheme", "must be a single word such as Bearer, or none")
    return SecretRef(name, header=header, scheme=None if scheme == "none" else scheme)


def _upstream(name: object, raw: object) -> Upstream:
    path = f"upstreams.{name}"
    if not isinstance(name, str) or not _UPSTREAM_NAME.fullmatch(name):
        raise _fail(path, "an upstream name is 1-64 letters, digits, '_' or '-'")
    body = _object(raw, path, _UPSTREAM_KEYS)
    url = _url(_required(body, "url", path), f"{path}.url")
    secret = _secret(body["secret"], f"{path}.secret") if "secret" in body else None
    extra = {h.lower() for h in _names(body.get("forward_headers", []), path, _HEADER_NAME)}
    refused = extra & (NEVER_FORWARDED | {"x-tether-grant", "x-tether-approval"})
    if secret is not None and secret.header is not None:
        refused |= extra & {secret.header.lower()}
    if refused or any(h.startswith("x-tether-") for h in extra):
        raise _fail(
            f"{path}.forward_headers",
            "may not name hop-by-hop headers, the agent's credentials, X-Tether-* or the "
            f"secret's header (refused: {', '.join(sorted(refused)) or 'x-tether-*'})",
        )
    return Upstream(
        name=name,
        url=url,
        secret=secret,
        timeout_seconds=_number(body, "timeout_seconds", path, DEFAULT_TIMEOUT_SECONDS, 3600),
        max_request_bytes=_count(body, "max_request_bytes", path, DEFAULT_MAX_REQUEST_BYTES),
        max_response_bytes=_count(body, "max_response_bytes", path, DEFAULT_MAX_RESPONSE_BYTES),
        forward_headers=STANDARD_FORWARD_HEADERS | extra,
    )


def _template(value: object, path: str) -> RouteTemplate:
    text = _string(value, path)
    if not text.startswith("/") or len(text) > 1024:
        raise _fail(path, "must start with '/' (e.g. /customers/{id})")
    segments = tuple(text[1:].split("/")) if text != "/" else ()
    params: list[int] = []
    seen: set[str] = set()
    for i, segment in enumerate(segments):
        last = i == len(segments) - 1
        if segment.startswith("{") and segment.endswith("}"):
            name = segment[1:-1]
            if not _PARAM_NAME.fullmatch(name) or name in seen:
                raise _fail(path, f"{segment!r} is not a new parameter name")
            seen.add(name)
            params.append(i)
        elif segment == "" and last:
            pass  # a trailing slash is part of the route, matched exactly
        elif segment in {".", ".."} or not _LITERAL_SEGMENT.fullmatch(segment):
            raise _fail(
                path, f"segment {segment!r} must be a plain literal or a whole-segment {{param}}"
            )
    return RouteTemplate(text, segments, tuple(params))


def _arg(name: object, raw: object, route: RouteTemplate, path: str) -> tuple[str, ArgSource]:
    where = f"{path}.{name}"
    if not isinstance(name, str) or not is_valid_name(name, 64):
        raise _fail(where, "an argument name is 1-64 letters, digits, '.', '_', '-'")
    kind_type: ArgType | None = None
    if isinstance(raw, dict):
        body = _object(raw, where, _ARG_KEYS)
        spec = _string(_required(body, "from", where), f"{where}.from")
        if "type" in body:
            declared = body["type"]
            if not isinstance(declared, str) or declared not in {t.value for t in ArgType}:
                raise _fail(f"{where}.type", "must be one of: string, integer, number, boolean")
            kind_type = ArgType(declared)
    else:
        spec = _string(raw, where)
    source, _, rest = spec.partition(".")
    if source not in {k.value for k in ArgSourceKind} or not rest:
        raise _fail(where, "must be path.<param>, query.<name> or body.<field>[.<field>…]")
    kind = ArgSourceKind(source)
    if kind is ArgSourceKind.BODY:
        fields = tuple(rest.split("."))
        if not all(_FIELD.fullmatch(f) for f in fields) or len(fields) > 8:
            raise _fail(where, "a body field path is up to 8 names joined by '.'")
        return name, ArgSource(kind, fields, kind_type)
    if kind is ArgSourceKind.PATH and rest not in {route.param_name(i) for i in route.params}:
        raise _fail(where, f"the route path {route.text!r} has no parameter {{{rest}}}")
    if kind is ArgSourceKind.QUERY and not _QUERY_NAME.fullmatch(rest):
        raise _fail(where, "is not a query parameter name")
    return name, ArgSource(kind, (rest,), kind_type)


def _route(index: int, raw: object, upstreams: Mapping[str, Upstream]) -> Route:
    path = f"routes[{index}]"
    body = _object(raw, path, _ROUTE_KEYS)
    upstream = _string(_required(body, "upstream", path), f"{path}.upstream")
    if upstream not in upstreams:
        raise _fail(
            f"{path}.upstream", f"no upstream named {upstream!r} (known: {', '.join(upstreams)})"
        )
    method = _string(_required(body, "method", path), f"{path}.method").upper()
    if method not in METHODS:
        raise _fail(f"{path}.method", "must be one of: " + ", ".join(sorted(METHODS)))
    template = _template(_required(body, "path", path), f"{path}.path")
    tool = _string(_required(body, "tool", path), f"{path}.tool")
    if not is_valid_name(tool, MAX_TOOL_NAME):
        raise _fail(f"{path}.tool", "is not a valid tool name")
    action = _required(body, "action", path)
    if not isinstance(action, str) or action not in {a.value for a in ActionKind}:
        raise _fail(f"{path}.action", "must be one of: " + ", ".join(a.value for a in ActionKind))
    dataset = body.get("dataset")
    if dataset is not None and (
        not isinstance(dataset, str) or not is_valid_name(dataset, MAX_DATASET_NAME)
    ):
        raise _fail(f"{path}.dataset", "must be a dataset name")
    raw_args = body.get("args", {}) or {}
    if not isinstance(raw_args, dict):
        raise _fail(f"{path}.args", "must be a mapping of argument name to its source")
    args = tuple(_arg(n, v, template, f"{path}.args") for n, v in raw_args.items())
    allow_query = frozenset(_names(body.get("allow_query", []), f"{path}.allow_query", _QUERY_NAME))
    secret = upstreams[upstream].secret
    if secret is not None and secret.query_param is not None:
        named = allow_query | {s.path[0] for _, s in args if s.kind is ArgSourceKind.QUERY}
        if secret.query_param in named:
            raise _fail(path, f"the query parameter {secret.query_param!r} carries the secret")
    count = body.get("count_records")
    count_path: tuple[str, ...] | None = None
    if count is not None:
        if not isinstance(count, str) or not re.fullmatch(
            r"body(\.[A-Za-z0-9_-]{1,64}){0,8}", count
        ):
            raise _fail(
                f"{path}.count_records", "must be 'body' or 'body.<path>' (e.g. body.items)"
            )
        count_path = tuple(count.split(".")[1:])
    recipients = body.get("recipients_arg")
    if recipients is not None and recipients not in dict(args):
        raise _fail(f"{path}.recipients_arg", "must name one of this route's args")
    return Route(
        upstream=upstream,
        method=method,
        path=template,
        tool=tool,
        action=ActionKind(action),
        dataset=dataset,
        args=args,
        allow_query=allow_query,
        count_records=count_path,
        recipients_arg=recipients if isinstance(recipients, str) else None,
        index=index,
    )


def parse_config(raw: object) -> ProxyConfig:
    """Validate a parsed YAML document into a :class:`ProxyConfig`."""
    body = _object(
        raw if raw is not None else {}, "(top level)", frozenset({"upstreams", "routes"})
    )
    raw_upstreams = body.get("upstreams")
    if not isinstance(raw_upstreams, dict) or not raw_upstreams:
        raise _fail("upstreams", "name at least one upstream HTTP service")
    upstreams = {str(n): _upstream(n, v) for n, v in raw_upstreams.items()}
    raw_routes = body.get("routes")
    if not isinstance(raw_routes, list) or not raw_routes or len(raw_routes) > MAX_ROUTES:
        raise _fail("routes", f"list 1 to {MAX_ROUTES} routes; a request matching none is refused")
    routes = tuple(_route(i, r, upstreams) for i, r in enumerate(raw_routes))
    shapes: dict[tuple[str, str, tuple[str | None, ...]], int] = {}
    for route in routes:
        key = (route.upstream, route.method, route.path.shape)
        if key in shapes:
            raise _fail(
                f"routes[{route.index}]",
                f"{route.method} {route.path.text} is ambiguous with routes[{shapes[key]}]",
            )
        shapes[key] = route.index
    return ProxyConfig(upstreams, routes)


def load_config(path: Path) -> ProxyConfig:
    """Read and validate the config file; every problem is a ``ConfigurationError``."""
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigurationError(f"{path} is larger than {MAX_CONFIG_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigurationError(f"cannot read the proxy config {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"{path} is not UTF-8 text") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigurationError(f"{path} is not valid YAML{where}") from None
    return parse_config(raw)
