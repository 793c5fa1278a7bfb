"""Reading the egress proxy's config file: typed models, checks across fields, frozen values.

The format is in :mod:`tether.proxy.config`. :func:`load_config` reads the file with
:func:`tether.configfile.read_yaml` (bounded, safe, duplicate keys refused), checks it against
:class:`ProxyFile` (one model per YAML mapping), then checks what spans fields: a route's
upstream is declared, its ``path.<param>`` arguments name parameters of its path, its
``recipients_arg`` is one of its arguments, no query parameter the agent sends is the one that
carries the secret, no two routes are ambiguous. Every problem is reported at once, each at its
``file:line:col``, in one ``ConfigurationError``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Final
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, Strict, field_validator

from tether.configfile import (
    Problem,
    Text,
    YamlDocument,
    YamlModel,
    did_you_mean,
    read_yaml,
    validate,
)
from tether.core.errors import ConfigurationError
from tether.core.scope import MAX_DATASET_NAME, MAX_TOOL_NAME, ActionKind, is_valid_name
from tether.credentials.secrets import is_valid_secret_name
from tether.proxy.config import (
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_TIMEOUT_SECONDS,
    MAX_BYTES_LIMIT,
    MAX_CONFIG_BYTES,
    MAX_ROUTES,
    METHODS,
    NEVER_FORWARDED,
    STANDARD_FORWARD_HEADERS,
    ArgSource,
    ArgSourceKind,
    ArgType,
    ProxyConfig,
    Route,
    RouteTemplate,
    SecretRef,
    Upstream,
)

_PARAM_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_LITERAL_SEGMENT: Final = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@-]{1,128}")
_FIELD: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_QUERY_NAME: Final = r"[A-Za-z0-9._~-]{1,64}"
#: Headers that carry framing or routing, which a secret may not be put into.
_UNSETTABLE: Final = NEVER_FORWARDED - {"authorization", "proxy-authorization", "cookie"}


def _matching(pattern: str, what: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(what)
        return value

    return AfterValidator(check)


def _named(longest: int, what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not is_valid_name(value, longest):
            raise ValueError(what)
        return value

    return AfterValidator(check)


UpstreamName = Annotated[
    str,
    Strict(),
    _matching(r"[A-Za-z0-9_-]{1,64}", "an upstream name is 1-64 letters, digits, '_' or '-'"),
]
HeaderName = Annotated[str, Strict(), _matching(r"[A-Za-z0-9-]{1,64}", "is not a header name")]
QueryName = Annotated[str, Strict(), _matching(_QUERY_NAME, "is not a query parameter name")]
ArgName = Annotated[
    str, Strict(), _named(64, "an argument name is 1-64 letters, digits, '.', '_', '-'")
]
Scheme = Annotated[
    str,
    Strict(),
    _matching(r"[A-Za-z0-9._-]{1,32}", "must be a single word such as Bearer, or none"),
]
CountPath = Annotated[
    Text,
    _matching(
        r"body(\.[A-Za-z0-9_-]{1,64}){0,8}", "must be 'body' or 'body.<path>' (e.g. body.items)"
    ),
]
ToolName = Annotated[Text, _named(MAX_TOOL_NAME, "is not a valid tool name")]
DatasetName = Annotated[Text, _named(MAX_DATASET_NAME, "must be a dataset name")]
Seconds = Annotated[float, Strict(), Field(gt=0, le=3600)]
Bytes = Annotated[int, Strict(), Field(gt=0, le=MAX_BYTES_LIMIT)]


def _url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials; put them in the secret store (secret:)")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment")
    return url.rstrip("/")


def _method(method: str) -> str:
    if method.upper() not in METHODS:
        raise ValueError("must be one of: " + ", ".join(sorted(METHODS)))
    return method.upper()


def _secret_name(name: str) -> str:
    if not is_valid_secret_name(name):
        raise ValueError("is not a valid secret name")
    return name


def template(text: str) -> RouteTemplate:
    """``/customers/{id}`` as a :class:`RouteTemplate`; raises ``ValueError`` saying why not."""
    if not text.startswith("/") or len(text) > 1024:
        raise ValueError("must start with '/' (e.g. /customers/{id})")
    segments = tuple(text[1:].split("/")) if text != "/" else ()
    params: list[int] = []
    seen: set[str] = set()
    for i, segment in enumerate(segments):
        if segment.startswith("{") and segment.endswith("}"):
            name = segment[1:-1]
            if not _PARAM_NAME.fullmatch(name) or name in seen:
                raise ValueError(f"{segment!r} is not a new parameter name")
            seen.add(name)
            params.append(i)
        elif segment == "" and i == len(segments) - 1:
            pass  # a trailing slash is part of the route, matched exactly
        elif segment in {".", ".."} or not _LITERAL_SEGMENT.fullmatch(segment):
            raise ValueError(
                f"segment {segment!r} must be a plain literal or a whole-segment {{param}}"
            )
    return RouteTemplate(text, segments, tuple(params))


def _template_text(text: str) -> str:
    return template(text).text


def _source(spec: str) -> str:
    source, _, rest = spec.partition(".")
    if source not in {k.value for k in ArgSourceKind} or not rest:
        raise ValueError("must be path.<param>, query.<name> or body.<field>[.<field>…]")
    if source == ArgSourceKind.BODY:
        fields = rest.split(".")
        if not all(_FIELD.fullmatch(f) for f in fields) or len(fields) > 8:
            raise ValueError("a body field path is up to 8 names joined by '.'")
    elif source == ArgSourceKind.QUERY and not re.fullmatch(_QUERY_NAME, rest):
        raise ValueError("is not a query parameter name")
    return spec


class SecretModel(YamlModel):
    """``secret: {name, header, scheme}`` or ``{name, query_param}``."""

    name: Annotated[Text, AfterValidator(_secret_name)]
    header: HeaderName | None = None
    scheme: Scheme | None = None
    query_param: QueryName | None = None


class UpstreamModel(YamlModel):
    url: Annotated[Text, AfterValidator(_url)]
    secret: SecretModel | None = None
    timeout_seconds: Seconds = DEFAULT_TIMEOUT_SECONDS
    max_request_bytes: Bytes = DEFAULT_MAX_REQUEST_BYTES
    max_response_bytes: Bytes = DEFAULT_MAX_RESPONSE_BYTES
    forward_headers: list[HeaderName] | None = None


class ArgModel(YamlModel):
    """``{from: query.limit, type: integer}`` (a plain ``query.limit`` is ``{from: …}``)."""

    source: Annotated[Text, AfterValidator(_source), Field(alias="from")]
    type: ArgType | None = None


class RouteModel(YamlModel):
    upstream: Text
    method: Annotated[Text, AfterValidator(_method)]
    path: Annotated[Text, AfterValidator(_template_text)]
    tool: ToolName
    action: ActionKind
    dataset: DatasetName | None = None
    args: dict[ArgName, ArgModel] | None = None
    allow_query: list[QueryName] | None = None
    count_records: CountPath | None = None
    recipients_arg: str | None = None

    @field_validator("args", mode="before")
    @classmethod
    def _plain_sources(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: {"from": v} if isinstance(v, str) else v for k, v in value.items()}
        return value


class ProxyFile(YamlModel):
    """The whole config file."""

    upstreams: Annotated[dict[UpstreamName, UpstreamModel], Field(min_length=1)]
    routes: Annotated[list[RouteModel], Field(min_length=1, max_length=MAX_ROUTES)]


# -- from the models to the frozen config -------------------------------------------------------


def _secret(
    doc: YamlDocument, at: tuple[object, ...], raw: SecretModel, problems: list[Problem]
) -> SecretRef:
    if raw.query_param is not None:
        if raw.header is not None or raw.scheme is not None:
            problems.append(doc.problem(at, "use either query_param or header/scheme, not both"))
        return SecretRef(raw.name, header=None, scheme=None, query_param=raw.query_param)
    header = raw.header or "Authorization"
    if header.lower() in _UNSETTABLE:
        problems.append(doc.problem((*at, "header"), "is not a header the proxy can set"))
    scheme = raw.scheme or "Bearer"
    return SecretRef(raw.name, header=header, scheme=None if scheme == "none" else scheme)


def _upstream(
    doc: YamlDocument, name: str, raw: UpstreamModel, problems: list[Problem]
) -> Upstream:
    at = ("upstreams", name)
    secret = None
    if raw.secret is not None:
        secret = _secret(doc, (*at, "secret"), raw.secret, problems)
    refused = set(NEVER_FORWARDED)
    if secret is not None and secret.header is not None:
        refused.add(secret.header.lower())
    extra: set[str] = set()
    for index, header in enumerate(raw.forward_headers or ()):
        lower = header.lower()
        if lower in refused or lower.startswith("x-tether-"):
            problems.append(
                doc.problem(
                    (*at, "forward_headers", index),
                    f"{header} may not be forwarded (hop-by-hop headers, the agent's "
                    "credentials, X-Tether-* and the secret's header never are)",
                )
            )
        extra.add(lower)
    return Upstream(
        name=name,
        url=raw.url,
        secret=secret,
        timeout_seconds=raw.timeout_seconds,
        max_request_bytes=raw.max_request_bytes,
        max_response_bytes=raw.max_response_bytes,
        forward_headers=STANDARD_FORWARD_HEADERS | extra,
    )


def _route(
    doc: YamlDocument, index: int, raw: RouteModel, upstreams: dict[str, Upstream]
) -> tuple[Route | None, list[Problem]]:
    at = ("routes", index)
    problems: list[Problem] = []
    if raw.upstream not in upstreams:
        close = did_you_mean(raw.upstream, upstreams)
        hint = f"; did you mean {close!r}?" if close else f" (known: {', '.join(upstreams)})"
        problems.append(doc.problem((*at, "upstream"), f"no upstream named {raw.upstream!r}{hint}"))
    path = template(raw.path)
    params = {path.param_name(i) for i in path.params}
    args: list[tuple[str, ArgSource]] = []
    for name, arg in (raw.args or {}).items():
        source, _, rest = arg.source.partition(".")
        kind = ArgSourceKind(source)
        if kind is ArgSourceKind.PATH and rest not in params:
            problems.append(
                doc.problem(
                    (*at, "args", name),
                    f"the route path {path.text!r} has no parameter {{{rest}}}",
                )
            )
        where = tuple(rest.split(".")) if kind is ArgSourceKind.BODY else (rest,)
        args.append((name, ArgSource(kind, where, arg.type)))
    allow_query = frozenset(raw.allow_query or ())
    upstream = upstreams.get(raw.upstream)
    secret = upstream.secret if upstream is not None else None
    if secret is not None and secret.query_param is not None:
        named = allow_query | {s.path[0] for _, s in args if s.kind is ArgSourceKind.QUERY}
        if secret.query_param in named:
            problems.append(
                doc.problem(at, f"the query parameter {secret.query_param!r} carries the secret")
            )
    if raw.recipients_arg is not None and raw.recipients_arg not in dict(args):
        problems.append(doc.problem((*at, "recipients_arg"), "must name one of this route's args"))
    if problems:
        return None, problems
    count = raw.count_records
    route = Route(
        upstream=raw.upstream,
        method=raw.method,
        path=path,
        tool=raw.tool,
        action=raw.action,
        dataset=raw.dataset,
        args=tuple(args),
        allow_query=allow_query,
        count_records=tuple(count.split(".")[1:]) if count is not None else None,
        recipients_arg=raw.recipients_arg,
        index=index,
    )
    return route, []


def _config(doc: YamlDocument) -> ProxyConfig:
    model = validate(doc, ProxyFile, if_empty={})
    problems: list[Problem] = []
    upstreams = {name: _upstream(doc, name, raw, problems) for name, raw in model.upstreams.items()}
    routes: list[Route] = []
    shapes: dict[tuple[str, str, tuple[str | None, ...]], int] = {}
    for index, raw_route in enumerate(model.routes):
        route, found = _route(doc, index, raw_route, upstreams)
        problems.extend(found)
        if route is None:
            continue
        key = (route.upstream, route.method, route.path.shape)
        if key in shapes:
            problems.append(
                doc.problem(
                    ("routes", index, "path"),
                    f"{route.method} {route.path.text} is ambiguous with routes[{shapes[key]}]",
                )
            )
        shapes.setdefault(key, index)
        routes.append(route)
    if problems:
        raise doc.fail(problems)
    return ProxyConfig(upstreams, tuple(routes))


def parse_config(raw: object) -> ProxyConfig:
    """Validate a parsed YAML document into a :class:`ProxyConfig` (problems name paths)."""
    return _config(YamlDocument.of(raw, file="proxy config"))


def load_config(path: Path) -> ProxyConfig:
    """Read and validate the config file; every problem is in one ``ConfigurationError``."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigurationError(f"cannot read the proxy config {path}: {error.strerror}") from None
    return _config(read_yaml(data, file=str(path), max_bytes=MAX_CONFIG_BYTES))
