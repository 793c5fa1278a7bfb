"""The schema of ``tether.yaml``, the configuration file of ``tether serve``, ``tether
mcp-gateway`` and ``tether proxy``: every key, its environment variable, its help and bounds.

Each option of those three commands has a flag, an environment variable and a key here; the first
one set wins: flag > environment variable > file > the command's default. The identity and store
options, the data directory, the policies and logging are defined once and shared by the three
commands (same flags, same variables, same keys); ``serve:``, ``mcp_gateway:`` and ``proxy:`` hold
each command's own. A command's option is made from its key by :func:`option`, so its variable,
help and bounds are the ones written here; the command's parameter and the key are matched
through the variable (each variable names one key).

Values the commands must not print are marked (:class:`Secrecy`) and :func:`shown` hides them.
Reading the file is :mod:`tether.cli.config_file`; README "Configuration" lists every key.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Final
from urllib.parse import urlsplit, urlunsplit

import typer
from pydantic import BaseModel, Field, JsonValue
from pydantic.fields import FieldInfo

from tether.cli.common import STORE_URL_HELP
from tether.configfile import YamlModel
from tether.identity._jose import MAX_MAX_LIFETIME_SECONDS


class Secrecy(StrEnum):
    """How a value is shown by ``tether config show``."""

    PUBLIC = "public"
    #: A URL whose password and query may be credentials: shown without them.
    URL = "url"
    #: Never shown: only whether it is set.
    SECRET = "secret"


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class LogFormat(StrEnum):
    AUTO = "auto"
    JSON = "json"
    CONSOLE = "console"


class Transport(StrEnum):
    HTTP = "http"
    STDIO = "stdio"


class PathRole(StrEnum):
    """How a relative path in the file is read: relative to the file's directory."""

    PATH = "path"
    #: A file path or a URL: only a value without ``://`` is a path.
    PATH_OR_URL = "path_or_url"


def setting(
    env: str,
    help: str,
    *,
    secrecy: Secrecy = Secrecy.PUBLIC,
    path: PathRole | None = None,
    ge: float | None = None,
    le: float | None = None,
) -> Any:
    """A key of the file: its environment variable, its help (the flag's and the README's),
    how it is shown, and its bounds (also the flag's ``min``/``max``). Unset is ``None``: the
    command's default then applies."""
    extra: dict[str, JsonValue] = {"env": env, "secrecy": secrecy.value}
    if path is not None:
        extra["path"] = path.value
    return Field(None, description=help, ge=ge, le=le, json_schema_extra=extra)


class Section(YamlModel):
    """A mapping of the file (unknown keys refused, as in every file tether reads)."""


class Identity(Section):
    """Who may call: agents' SVIDs (SPIFFE) and OIDC tokens."""

    trust_bundle: Path | None = setting(
        "TETHER_TRUST_BUNDLE",
        "SPIFFE JWT trust bundle (JWKS) to verify agent SVIDs.",
        path=PathRole.PATH,
    )
    trust_domain: str | None = setting(
        "TETHER_TRUST_DOMAIN", "The SPIFFE trust domain agents' SVIDs must belong to."
    )
    audience: str | None = setting(
        "TETHER_AUDIENCE", "The audience agents' SVIDs and OIDC tokens must name."
    )
    oidc_issuer: str | None = setting("TETHER_OIDC_ISSUER", "Accept OIDC tokens from this issuer.")
    oidc_jwks: str | None = setting(
        "TETHER_OIDC_JWKS", "The OIDC issuer's JWKS file or URL.", path=PathRole.PATH_OR_URL
    )
    max_token_lifetime: int | None = setting(
        "TETHER_MAX_TOKEN_LIFETIME",
        "Refuse workload SVIDs and OIDC tokens whose lifetime (exp - iat) is longer than this "
        "many seconds, or that have no iat.",
        ge=60,
        le=MAX_MAX_LIFETIME_SECONDS,
    )


class Store(Section):
    """Where tether keeps its state."""

    url: str | None = setting("TETHER_DATABASE_URL", STORE_URL_HELP, secrecy=Secrecy.URL)
    redis_url: str | None = setting(
        "TETHER_REDIS_URL",
        "Redis for the grant cache's revocation fan-out, e.g. redis://cache:6379/0 (every "
        "replica names the same one). Without it there is no grant cache: every authorize reads "
        "the database. Prefer the env var.",
        secrecy=Secrecy.URL,
    )
    replica_id: str | None = setting(
        "TETHER_REPLICA_ID",
        "This replica's name, which is also its audit partition: the hash chain its records go "
        "to, so replicas never wait on each other's chain head. Give each replica a stable name "
        "of its own (1-64 of A-Z a-z 0-9 . _ -, e.g. the pod name of a StatefulSet). Default: "
        "0 on SQLite; on PostgreSQL the host name and a hash of the data directory's path.",
    )


class Log(Section):
    level: LogLevel | None = setting("TETHER_LOG_LEVEL", "debug, info, warning, error.")
    format: LogFormat | None = setting(
        "TETHER_LOG_FORMAT",
        "json (one object per line), console, or auto: json unless stderr is a terminal.",
    )


class Serve(Section):
    """``tether serve``: the HTTP API."""

    host: str | None = setting("TETHER_SERVE_HOST", "Address to listen on.")
    port: int | None = setting("TETHER_SERVE_PORT", "Port to listen on.", ge=0, le=65535)
    workers: int | None = setting(
        "TETHER_SERVE_WORKERS", "Worker processes serving this replica's port.", ge=1
    )
    metrics: bool | None = setting(
        "TETHER_SERVE_METRICS", "Serve GET /metrics (Prometheus text, no credentials)."
    )
    public_url: str | None = setting(
        "TETHER_PUBLIC_URL", "This server's public URL, for links in notifications."
    )
    housekeeping_interval: float | None = setting(
        "TETHER_HOUSEKEEPING_INTERVAL", "Seconds between sweeps.", ge=0.2
    )
    fix_permissions: bool | None = setting(
        "TETHER_FIX_PERMISSIONS",
        "Tighten a data directory open to other users (to 0700, its files 0600) instead of "
        "refusing to start.",
    )
    approval_webhook: str | None = setting(
        "TETHER_APPROVAL_WEBHOOK",
        "POST pending approvals to this URL (a chat bridge), signed with the webhook secret "
        "(Standard Webhooks).",
        secrecy=Secrecy.SECRET,  # a chat webhook's path is its credential
    )
    approval_webhook_secret: str | None = setting(
        "TETHER_APPROVAL_WEBHOOK_SECRET",
        "The webhook's signing secret (whsec_ + base64 of 24-64 random bytes), shared with its "
        "receiver. Prefer the env var (a command line is visible to other users).",
        secrecy=Secrecy.SECRET,
    )
    approver_oidc_issuer: str | None = setting(
        "TETHER_APPROVER_OIDC_ISSUER",
        "Approvers sign in with this OIDC issuer (aud tether-approver).",
    )
    approver_oidc_jwks: str | None = setting(
        "TETHER_APPROVER_OIDC_JWKS",
        "That issuer's JWKS file or https URL.",
        path=PathRole.PATH_OR_URL,
    )
    otlp_endpoint: str | None = setting(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "Export traces to this OTLP/HTTP collector, e.g. http://localhost:4318 (needs the otel "
        "extra).",
        secrecy=Secrecy.URL,
    )
    audit_witness: str | None = setting(
        "TETHER_AUDIT_WITNESS",
        "Also send each signed audit checkpoint here: a file (one JSON line each) or an http(s) "
        "URL (POSTed as JSON; retried on the next sweep if it fails).",
        secrecy=Secrecy.URL,
        path=PathRole.PATH_OR_URL,
    )
    checkpoint_records: int | None = setting(
        "TETHER_CHECKPOINT_RECORDS",
        "Sign an audit checkpoint once this many records are unsigned.",
        ge=1,
    )
    checkpoint_seconds: float | None = setting(
        "TETHER_CHECKPOINT_SECONDS",
        "...or once the oldest unsigned record is this many seconds past the last checkpoint.",
        ge=1.0,
    )
    gateway_ids: str | None = setting(
        "TETHER_SERVE_GATEWAY_IDS",
        "Comma-separated SPIFFE IDs of the MCP gateways (tether mcp-gateway --pdp-url) whose "
        "own audit records (pins, upstream failures) POST /v1/gateway/events accepts.",
    )


class McpGateway(Section):
    """``tether mcp-gateway``: the MCP gateway."""

    gateway_config: Path | None = setting(
        "TETHER_GATEWAY_CONFIG",
        "The gateway's upstreams and tools (gateway.yaml; see src/tether/mcp/README.md).",
        path=PathRole.PATH,
    )
    transport: Transport | None = setting(
        "TETHER_GATEWAY_TRANSPORT",
        "http: streamable HTTP at /mcp, agents send 'Authorization: Bearer <SVID>' and "
        "'X-Tether-Grant: <grant>'. stdio: one agent, TETHER_SVID and TETHER_GRANT from the "
        "environment.",
    )
    host: str | None = setting("TETHER_GATEWAY_HOST", "Address to listen on (http).")
    port: int | None = setting("TETHER_GATEWAY_PORT", "Port to listen on (http).", ge=0, le=65535)
    pins: Path | None = setting(
        "TETHER_GATEWAY_PINS",
        "The pins file (default: <data-dir>/mcp-pins.json).",
        path=PathRole.PATH,
    )
    metrics: bool | None = setting(
        "TETHER_GATEWAY_METRICS", "Serve GET /metrics (http; Prometheus text, no credentials)."
    )
    pdp_url: str | None = setting(
        "TETHER_GATEWAY_PDP_URL",
        "Decide through this tether serve (http(s) URL) instead of in process: the gateway then "
        "opens no store and holds no keys; its data directory keeps only the upstreams' "
        "secrets and the pins.",
    )
    pdp_timeout: float | None = setting(
        "TETHER_GATEWAY_PDP_TIMEOUT",
        "With --pdp-url: seconds to wait for tether serve before refusing (pdp_unavailable).",
        ge=0.1,
        le=120,
    )
    gateway_svid_file: Path | None = setting(
        "TETHER_GATEWAY_SVID_FILE",
        "With --pdp-url: a file holding the gateway's own JWT-SVID (re-read at each use), which "
        "tether serve must list in --gateway-ids to take the gateway's audit records.",
        path=PathRole.PATH,
    )


class Proxy(Section):
    """``tether proxy``: the egress proxy."""

    proxy_config: Path | None = setting(
        "TETHER_PROXY_CONFIG",
        "The proxy's upstreams and routes (proxy.yaml; see src/tether/proxy/README.md).",
        path=PathRole.PATH,
    )
    host: str | None = setting("TETHER_PROXY_HOST", "Address to listen on.")
    port: int | None = setting("TETHER_PROXY_PORT", "Port to listen on.", ge=0, le=65535)
    metrics: bool | None = setting(
        "TETHER_PROXY_METRICS",
        "Serve GET /metrics (Prometheus text, no credentials); an upstream may then not be "
        "named 'metrics'.",
    )


class TetherFile(Section):
    """The whole file. Every key is optional."""

    elsewhere: ClassVar[Mapping[str, str]] = {
        key: f"this looks like another file: pass it with {option}"
        for key, option in (
            ("upstreams", "--gateway-config (mcp-gateway) or --proxy-config (proxy)"),
            ("tools", "--gateway-config"),
            ("routes", "--proxy-config"),
        )
    }

    data_dir: Path | None = setting(
        "TETHER_DATA_DIR", "tether's data directory (store, keys).", path=PathRole.PATH
    )
    policies: Path | None = setting(
        "TETHER_POLICIES",
        "Policy directory (*.cedar, schema.cedarschema, catalog.yaml). Default: the bundled "
        "example policies (refused when TETHER_ENV=production).",
        path=PathRole.PATH,
    )
    identity: Identity = Field(default_factory=Identity)
    store: Store = Field(default_factory=Store)
    log: Log = Field(default_factory=Log)
    serve: Serve = Field(default_factory=Serve)
    mcp_gateway: McpGateway = Field(default_factory=McpGateway)
    proxy: Proxy = Field(default_factory=Proxy)


# -- the keys ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Key:
    """One key of the file (``identity.oidc_issuer``) and what its field declares."""

    name: str
    env: str
    help: str
    secrecy: Secrecy
    path: PathRole | None
    field: FieldInfo


def _keys(model: type[BaseModel], prefix: str = "") -> Iterator[Key]:
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, Section):
            yield from _keys(annotation, f"{prefix}{name}.")
            continue
        extra = field.json_schema_extra
        assert isinstance(extra, dict), name  # every leaf is made by setting()
        path = extra.get("path")
        yield Key(
            name=f"{prefix}{name}",
            env=str(extra["env"]),
            help=field.description or "",
            secrecy=Secrecy(str(extra["secrecy"])),
            path=PathRole(str(path)) if path else None,
            field=field,
        )


#: Every key of the file, by its dotted name.
KEYS: Final[dict[str, Key]] = {key.name: key for key in _keys(TetherFile)}
#: The same keys by their environment variable (each variable names one key).
BY_ENV: Final[dict[str, Key]] = {key.env: key for key in KEYS.values()}


def option(key: str, *flags: str, **kwargs: Any) -> Any:
    """The ``typer.Option`` of the key ``key``: its environment variable, its help, and its
    bounds as ``min``/``max``. A command's parameter maps to its key through the variable."""
    spec = KEYS[key]
    for meta in spec.field.metadata:  # pydantic keeps Field(ge=, le=) as annotated_types.Ge, Le
        if (ge := getattr(meta, "ge", None)) is not None:
            kwargs.setdefault("min", ge)
        if (le := getattr(meta, "le", None)) is not None:
            kwargs.setdefault("max", le)
    return typer.Option(*flags, envvar=spec.env, help=spec.help, **kwargs)


# -- showing values ------------------------------------------------------------------------------

HIDDEN: Final = "********"


def shown(key: str, value: object) -> object:
    """``value`` of ``key`` as it may be printed: secrets hidden, URLs without credentials."""
    if value is None:
        return None
    secrecy = KEYS[key].secrecy
    if secrecy is Secrecy.SECRET:
        return HIDDEN
    if secrecy is Secrecy.URL:
        return redact_url(str(value))
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    return value


def redact_url(url: str) -> str:
    """``url`` without the password of its user part and without its query (either may be a
    credential): ``postgresql://tether:********@db/tether``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            user, _, host = netloc.rpartition("@")
            name, colon, _ = user.partition(":")
            netloc = f"{name}{':' + HIDDEN if colon else ''}@{host}"
        query = HIDDEN if parts.query else ""
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:
        return HIDDEN
