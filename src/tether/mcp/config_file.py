"""Reading the MCP gateway's config file: typed models, checks across fields, frozen values.

The format is in :mod:`tether.mcp.config`. :func:`load_config` reads ``gateway.yaml`` with
:func:`tether.configfile.read_yaml` (bounded, safe, duplicate keys refused), checks it against
:class:`GatewayFile` (one model per YAML mapping), then checks what spans fields: a tool, prompt
or resource names a declared upstream, an upstream is either a stdio server (``command``) or an
HTTP one (``url``) with only the keys of its kind, no variable is in both ``env`` and
``secret_env``. Every problem is reported at once, each at its ``file:line:col``, in one
``ConfigurationError``. A problem names its path and repeats no value that could be a
credential (an ``env`` value, a URL's password, a mistyped secret name): only names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Final
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    Strict,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tether.configfile import (
    Below,
    Flag,
    Text,
    YamlDocument,
    YamlModel,
    did_you_mean,
    read_yaml,
    share,
    shared,
    validate,
)
from tether.configfile.models import matching, named
from tether.core.errors import ConfigurationError
from tether.core.scope import MAX_DATASET_NAME, MAX_TOOL_NAME, ActionKind, is_valid_name
from tether.credentials.secrets import is_valid_secret_name
from tether.mcp.config import (
    DEFAULT_IDLE_TIMEOUT_SECONDS,
    DEFAULT_MAX_RESULT_BYTES,
    DEFAULT_TIMEOUT_SECONDS,
    MAX_CONFIG_BYTES,
    MAX_IDLE_TIMEOUT_SECONDS,
    MAX_RESULT_BYTES_LIMIT,
    CredentialRef,
    GatewayConfig,
    HttpUpstream,
    PinCheck,
    RecordCount,
    ResourceMapping,
    StdioUpstream,
    ToolMapping,
    Upstream,
)

_STDIO_ONLY: Final = ("command", "args", "env", "secret_env", "cwd")
_HTTP_ONLY: Final = ("url", "credential")


def _secret_name(value: object) -> str:
    if not isinstance(value, str) or not is_valid_secret_name(value):
        raise ValueError("must name a secret in tether's secret store")
    return value


def _whole_bytes(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be a whole number of bytes")
    return value


def _url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials; use credential: {secret: <name>}")
    return url


UpstreamName = Annotated[
    str,
    Strict(),
    matching(
        r"[A-Za-z0-9_-]{1,64}",
        "an upstream name is 1-64 letters, digits, '_' or '-' (no dots: tools are exposed as "
        "<upstream>.<tool>)",
    ),
]
EnvName = Annotated[
    str, Strict(), matching(r"[A-Za-z_][A-Za-z0-9_]{0,127}", "is not an environment variable name")
]
SecretName = Annotated[str, BeforeValidator(_secret_name)]


def _not_in_env(variable: str, info: ValidationInfo) -> str:
    """A variable of ``secret_env`` is not in ``env`` (checked whatever else is wrong there)."""
    env = info.data.get("env")
    if isinstance(env, dict) and variable in env:
        raise ValueError("is set in env too; a credential belongs in secret_env only")
    return variable


SecretVariable = Annotated[EnvName, AfterValidator(_not_in_env)]
HeaderName = Annotated[str, Strict(), matching(r"[A-Za-z0-9-]{1,64}", "is not an HTTP header name")]
Scheme = Annotated[
    str,
    Strict(),
    matching(r"[A-Za-z0-9._-]{0,32}", 'must be a single word such as Bearer, or "" for none'),
]
Arg = Annotated[str, Strict(), Field(max_length=4096)]
Seconds = Annotated[float, Strict(), Field(gt=0, le=3600)]
IdleSeconds = Annotated[float, Strict(), Field(gt=0, le=MAX_IDLE_TIMEOUT_SECONDS)]
Bytes = Annotated[int, BeforeValidator(_whole_bytes), Field(gt=0, le=MAX_RESULT_BYTES_LIMIT)]
DatasetName = Annotated[Text, named(MAX_DATASET_NAME, "must be a dataset name")]
ArgName = Annotated[Text, named(64, "must be an argument name")]
CountRecords = Annotated[
    Text,
    matching(
        r"(content|structured)(\.[A-Za-z0-9_-]+)*",
        "must be 'content', 'structured' or 'structured.<path>' (e.g. structured.items)",
    ),
]


def _declared(upstream: str, info: ValidationInfo) -> str:
    """``upstream`` is one of the file's upstreams (checked even when one of them is wrong)."""
    known = shared(info, "upstream names")
    if isinstance(known, list) and upstream not in known:
        close = did_you_mean(upstream, known)
        hint = f"; did you mean {close!r}?" if close else f" (known: {', '.join(sorted(known))})"
        raise ValueError(f"no upstream named {upstream!r}{hint}")
    return upstream


def _tool_name(name: str, info: ValidationInfo) -> str:
    if not is_valid_name(name, MAX_TOOL_NAME) or "." not in name:
        raise ValueError("a tool or prompt is named <upstream>.<name>")
    _declared(name.split(".", 1)[0], info)
    return name


ToolName = Annotated[str, Strict(), AfterValidator(_tool_name)]


class GatewayCredential(YamlModel):
    """``credential: {secret, header, scheme}``: what the gateway injects on every request."""

    secret: SecretName
    header: HeaderName = "Authorization"
    scheme: Scheme = "Bearer"

    def to_ref(self) -> CredentialRef:
        return CredentialRef(self.secret, self.header, self.scheme)


class GatewayUpstream(YamlModel):
    """One upstream: a stdio server (``command`` …) or a streamable HTTP one (``url`` …)."""

    command: Text | None = None
    args: list[Arg] = Field(default_factory=list)
    env: dict[EnvName, Annotated[str, Strict()]] = Field(default_factory=dict)
    secret_env: dict[SecretVariable, SecretName] = Field(default_factory=dict)
    cwd: Text | None = None
    url: Annotated[Text, AfterValidator(_url)] | None = None
    credential: GatewayCredential | None = None
    timeout_seconds: Seconds = DEFAULT_TIMEOUT_SECONDS
    pin_check: PinCheck = "auto"
    share_sessions: Flag = False
    idle_timeout_seconds: IdleSeconds = DEFAULT_IDLE_TIMEOUT_SECONDS

    @field_validator("secret_env", mode="before")
    @classmethod
    def _a_mapping(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise ValueError("must map environment variables to secret names")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> GatewayUpstream:
        if (self.command is None) == (self.url is None):
            raise ValueError(
                "needs either 'command' (a stdio server) or 'url' (a streamable HTTP server)"
                if self.command is None
                else "has both 'command' and 'url'; an upstream is one server"
            )
        kind, other = ("url", _STDIO_ONLY) if self.url is not None else ("command", _HTTP_ONLY)
        misplaced = [
            ((key,), f"is not for an upstream with {kind!r}")
            for key in other
            if key != kind and key in self.model_fields_set
        ]
        if misplaced:
            raise Below(*misplaced)
        return self

    def to_upstream(self, name: str) -> Upstream:
        if self.url is not None:
            return HttpUpstream(
                name,
                self.url,
                self.credential.to_ref() if self.credential is not None else None,
                self.timeout_seconds,
                self.pin_check,
                self.share_sessions,
                self.idle_timeout_seconds,
            )
        assert self.command is not None  # _one_kind
        return StdioUpstream(
            name,
            self.command,
            tuple(self.args),
            tuple(sorted(self.env.items())),
            self.cwd,
            self.timeout_seconds,
            tuple(sorted(self.secret_env.items())),
            self.pin_check,
            self.share_sessions,
            self.idle_timeout_seconds,
        )


class GatewayMapping(YamlModel):
    """What a tool (or a prompt) does, as tether decides it."""

    action: ActionKind
    dataset: DatasetName | None = None
    count_records: CountRecords | None = None
    recipients_arg: ArgName | None = None

    def to_mapping(self) -> ToolMapping:
        count = self.count_records
        return ToolMapping(
            self.action,
            self.dataset,
            None if count is None else RecordCount.parse(count),
            self.recipients_arg,
        )


class GatewayResource(YamlModel):
    """``{upstream, uri, dataset}``: the URIs of ``upstream`` matching ``uri`` read ``dataset``."""

    upstream: Annotated[Text, AfterValidator(_declared)]
    uri: Text
    dataset: DatasetName

    def to_resource(self) -> ResourceMapping:
        return ResourceMapping(self.upstream, self.uri, self.dataset)


class GatewayLimits(YamlModel):
    max_result_bytes: Bytes = DEFAULT_MAX_RESULT_BYTES


def _some(upstreams: dict[str, GatewayUpstream]) -> dict[str, GatewayUpstream]:
    if not upstreams:
        raise ValueError("name at least one upstream MCP server")
    return upstreams


class GatewayFile(YamlModel):
    """The whole ``gateway.yaml``."""

    upstreams: Annotated[dict[UpstreamName, GatewayUpstream], AfterValidator(_some)]
    tools: dict[ToolName, GatewayMapping] | None = None
    prompts: dict[ToolName, GatewayMapping] | None = None
    resources: list[GatewayResource] | None = None
    limits: GatewayLimits | None = None

    @model_validator(mode="before")
    @classmethod
    def _names(cls, data: Any, info: ValidationInfo) -> Any:
        # Tools, prompts and resources name upstreams: checked even when an upstream is wrong.
        if isinstance(data, dict) and isinstance(data.get("upstreams"), dict):
            share(info, "upstream names", [str(n) for n in data["upstreams"]])
        return data

    def to_config(self) -> GatewayConfig:
        limits = self.limits or GatewayLimits()
        return GatewayConfig(
            tuple(raw.to_upstream(name) for name, raw in self.upstreams.items()),
            {name: raw.to_mapping() for name, raw in (self.tools or {}).items()},
            limits.max_result_bytes,
            {name: raw.to_mapping() for name, raw in (self.prompts or {}).items()},
            tuple(raw.to_resource() for raw in self.resources or ()),
        )


def parse_config(raw: object) -> GatewayConfig:
    """Validate a parsed YAML document into a :class:`GatewayConfig` (problems name paths)."""
    doc = YamlDocument.of(raw, file="gateway config")
    return validate(doc, GatewayFile, if_empty={}).to_config()


def load_config(path: Path) -> GatewayConfig:
    """Read and validate ``gateway.yaml``; every problem is in one ``ConfigurationError``."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigurationError(
            f"cannot read the gateway config {path}: {error.strerror}"
        ) from None
    doc = read_yaml(data, file=str(path), max_bytes=MAX_CONFIG_BYTES)
    return validate(doc, GatewayFile, if_empty={}).to_config()
