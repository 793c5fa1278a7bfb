"""Reading the egress proxy's config file: typed models, checks across fields, frozen values.

The format is in :mod:`tether.proxy.config`. :func:`load_config` reads the file with
:func:`tether.configfile.read_yaml_file` (bounded, safe, duplicate keys refused), checks it against
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

from pydantic import (
    AfterValidator,
    Field,
    Strict,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tether.configfile import (
    Below,
    Text,
    YamlDocument,
    YamlModel,
    did_you_mean,
    read_yaml_file,
    share,
    shared,
    validate,
)
from tether.configfile.models import matching, named
from tether.core.scope import MAX_DATASET_NAME, MAX_TOOL_NAME, ActionKind
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


UpstreamName = Annotated[
    str,
    Strict(),
    matching(r"[A-Za-z0-9_-]{1,64}", "an upstream name is 1-64 letters, digits, '_' or '-'"),
]
HeaderName = Annotated[str, Strict(), matching(r"[A-Za-z0-9-]{1,64}", "is not a header name")]
QueryName = Annotated[str, Strict(), matching(_QUERY_NAME, "is not a query parameter name")]
ArgName = Annotated[
    str, Strict(), named(64, "an argument name is 1-64 letters, digits, '.', '_', '-'")
]
Scheme = Annotated[
    str,
    Strict(),
    matching(r"[A-Za-z0-9._-]{1,32}", "must be a single word such as Bearer, or none"),
]
CountPath = Annotated[
    Text,
    matching(
        r"body(\.[A-Za-z0-9_-]{1,64}){0,8}", "must be 'body' or 'body.<path>' (e.g. body.items)"
    ),
]
ToolName = Annotated[Text, named(MAX_TOOL_NAME, "is not a valid tool name")]
DatasetName = Annotated[Text, named(MAX_DATASET_NAME, "must be a dataset name")]
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

    @model_validator(mode="after")
    def _one_way(self) -> SecretModel:
        if self.query_param is not None and (self.header is not None or self.scheme is not None):
            raise ValueError("use either query_param or header/scheme, not both")
        if self.header is not None and self.header.lower() in _UNSETTABLE:
            raise Below((("header",), "is not a header the proxy can set"))
        return self

    def to_ref(self) -> SecretRef:
        if self.query_param is not None:
            return SecretRef(self.name, header=None, scheme=None, query_param=self.query_param)
        scheme = self.scheme or "Bearer"
        return SecretRef(
            self.name,
            header=self.header or "Authorization",
            scheme=None if scheme == "none" else scheme,
        )


class UpstreamModel(YamlModel):
    url: Annotated[Text, AfterValidator(_url)]
    secret: SecretModel | None = None
    timeout_seconds: Seconds = DEFAULT_TIMEOUT_SECONDS
    max_request_bytes: Bytes = DEFAULT_MAX_REQUEST_BYTES
    max_response_bytes: Bytes = DEFAULT_MAX_RESPONSE_BYTES
    forward_headers: list[HeaderName] | None = None

    @field_validator("forward_headers")
    @classmethod
    def _forwardable(cls, headers: list[str] | None, info: ValidationInfo) -> list[str] | None:
        refused = set(NEVER_FORWARDED)
        secret = info.data.get("secret")
        if isinstance(secret, SecretModel) and secret.query_param is None:
            refused.add((secret.header or "Authorization").lower())
        bad = [
            (
                (index,),
                f"{header} may not be forwarded (hop-by-hop headers, the agent's "
                "credentials, X-Tether-* and the secret's header never are)",
            )
            for index, header in enumerate(headers or ())
            if header.lower() in refused or header.lower().startswith("x-tether-")
        ]
        if bad:
            raise Below(*bad)
        return headers

    def to_upstream(self, name: str) -> Upstream:
        return Upstream(
            name=name,
            url=self.url,
            secret=self.secret.to_ref() if self.secret is not None else None,
            timeout_seconds=self.timeout_seconds,
            max_request_bytes=self.max_request_bytes,
            max_response_bytes=self.max_response_bytes,
            forward_headers=STANDARD_FORWARD_HEADERS
            | {h.lower() for h in self.forward_headers or ()},
        )


def _in_path(spec: str, info: ValidationInfo) -> str:
    source, _, name = spec.partition(".")
    found = shared(info, "route path")
    path, params = found if isinstance(found, tuple) else (None, None)
    if source == ArgSourceKind.PATH and isinstance(params, list) and name not in params:
        raise ValueError(f"the route path {path!r} has no parameter {{{name}}}")
    return spec


class ArgModel(YamlModel):
    """``{from: query.limit, type: integer}`` (a plain ``query.limit`` is ``{from: …}``)."""

    source: Annotated[Text, AfterValidator(_source), AfterValidator(_in_path), Field(alias="from")]
    type: ArgType | None = None

    def to_source(self) -> ArgSource:
        source, _, rest = self.source.partition(".")
        kind = ArgSourceKind(source)
        where = tuple(rest.split(".")) if kind is ArgSourceKind.BODY else (rest,)
        return ArgSource(kind, where, self.type)


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

    @field_validator("upstream")
    @classmethod
    def _declared(cls, upstream: str, info: ValidationInfo) -> str:
        known = shared(info, "upstream names")
        if isinstance(known, list) and upstream not in known:
            close = did_you_mean(upstream, known)
            hint = f"; did you mean {close!r}?" if close else f" (known: {', '.join(known)})"
            raise ValueError(f"no upstream named {upstream!r}{hint}")
        return upstream

    @field_validator("args", mode="before")
    @classmethod
    def _plain_sources(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: {"from": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @model_validator(mode="before")
    @classmethod
    def _share_names(cls, data: Any, info: ValidationInfo) -> Any:
        # An argument from `path.<param>` names a parameter of the route's path, and
        # `recipients_arg` one of its arguments: checked even when another field is wrong.
        params: list[str] | None = None
        args: list[str] | None = None
        if isinstance(data, dict):
            try:
                route = template(data["path"]) if isinstance(data.get("path"), str) else None
            except ValueError:
                route = None
            if route is not None:
                params = [route.param_name(i) for i in route.params]
            if isinstance(data.get("args"), dict):
                args = [str(name) for name in data["args"]]
        share(info, "route path", (data.get("path") if isinstance(data, dict) else None, params))
        share(info, "route args", args)
        return data

    @field_validator("recipients_arg")
    @classmethod
    def _an_arg(cls, name: str | None, info: ValidationInfo) -> str | None:
        args = shared(info, "route args")
        if name is not None and name not in (args if isinstance(args, list) else ()):
            raise ValueError("must name one of this route's args")
        return name

    def query_names(self) -> frozenset[str]:
        """The query parameters the agent may send on this route."""
        named = {
            source.path[0]
            for arg in (self.args or {}).values()
            if (source := arg.to_source()).kind is ArgSourceKind.QUERY
        }
        return frozenset(self.allow_query or ()) | named

    def to_route(self, index: int) -> Route:
        count = self.count_records
        return Route(
            upstream=self.upstream,
            method=self.method,
            path=template(self.path),
            tool=self.tool,
            action=self.action,
            dataset=self.dataset,
            args=tuple((name, arg.to_source()) for name, arg in (self.args or {}).items()),
            allow_query=frozenset(self.allow_query or ()),
            count_records=tuple(count.split(".")[1:]) if count is not None else None,
            recipients_arg=self.recipients_arg,
            index=index,
        )


class ProxyFile(YamlModel):
    """The whole config file."""

    upstreams: Annotated[dict[UpstreamName, UpstreamModel], Field(min_length=1)]
    routes: Annotated[list[RouteModel], Field(min_length=1, max_length=MAX_ROUTES)]

    @model_validator(mode="before")
    @classmethod
    def _names(cls, data: Any, info: ValidationInfo) -> Any:
        # The routes name upstreams: checked against the names even when an upstream is wrong.
        if isinstance(data, dict) and isinstance(data.get("upstreams"), dict):
            share(info, "upstream names", [str(n) for n in data["upstreams"]])
        return data

    @field_validator("upstreams")
    @classmethod
    def _share(
        cls, upstreams: dict[str, UpstreamModel], info: ValidationInfo
    ) -> dict[str, UpstreamModel]:
        share(info, "upstreams", upstreams)
        return upstreams

    @field_validator("routes")
    @classmethod
    def _unambiguous(cls, routes: list[RouteModel], info: ValidationInfo) -> list[RouteModel]:
        upstreams = shared(info, "upstreams")
        found: list[tuple[tuple[object, ...], str]] = []
        shapes: dict[tuple[str, str, tuple[str | None, ...]], int] = {}
        for index, route in enumerate(routes):
            upstream = upstreams.get(route.upstream) if isinstance(upstreams, dict) else None
            secret = upstream.secret if isinstance(upstream, UpstreamModel) else None
            if secret is not None and secret.query_param in route.query_names():
                found.append(
                    ((index,), f"the query parameter {secret.query_param!r} carries the secret")
                )
            key = (route.upstream, route.method, template(route.path).shape)
            first = shapes.setdefault(key, index)
            if first != index:
                found.append(
                    (
                        (index, "path"),
                        f"{route.method} {route.path} is ambiguous with routes[{first}]",
                    )
                )
        if found:
            raise Below(*found)
        return routes


def _config(doc: YamlDocument) -> ProxyConfig:
    model = validate(doc, ProxyFile, if_empty={})
    return ProxyConfig(
        {name: raw.to_upstream(name) for name, raw in model.upstreams.items()},
        tuple(route.to_route(index) for index, route in enumerate(model.routes)),
    )


def parse_config(raw: object) -> ProxyConfig:
    """Validate a parsed YAML document into a :class:`ProxyConfig` (problems name paths)."""
    return _config(YamlDocument.of(raw, file="proxy config"))


def load_config(path: Path) -> ProxyConfig:
    """Read and validate the config file; every problem is in one ``ConfigurationError``."""
    return _config(read_yaml_file(path, max_bytes=MAX_CONFIG_BYTES))
