"""The gateway's config file (YAML), validated strictly: an unknown key is an error naming its path.

    upstreams:                         # one or more MCP servers the gateway fronts
      crm:                             # name: letters, digits, '_' or '-' (no dots)
        command: python                # a stdio server: command, args, env, cwd
        args: [crm_server.py]
        env: {LOG_LEVEL: info}         #   plain settings only: never a credential
        secret_env: {CRM_API_KEY: crm-key}  # credentials: env var <- name in tether's secret
                                       #   store, read when the server is started
        timeout_seconds: 30            # per call (default 30)
        pin_check: auto                # when descriptors are re-read (see below)
        share_sessions: false          # one session for every agent (default: one per agent)
      mail:
        url: https://mail.internal/mcp # a streamable HTTP server
        credential:                    # injected by the gateway on every request (optional)
          secret: mail-token           #   name in tether's secret store
          header: Authorization        #   default Authorization
          scheme: Bearer               #   default Bearer; "" sends the bare value
    tools:                             # what each tool does, as tether decides it
      crm.query:
        action: read                   # read | write | delete | send | execute | spend
        dataset: crm                   # the dataset the call touches (optional)
        count_records: structured.items  # how to count records in a result (optional)
      mail.send:
        action: send
        recipients_arg: to             # the argument naming recipients (optional)
    prompts:                           # prompts, decided like tool calls (default: write)
      crm.summarize: {action: read, dataset: crm}
    resources:                         # resource URIs -> the dataset a read of them touches
      - {upstream: crm, uri: "crm://customers/*", dataset: crm}
    limits:                            # optional
      max_result_bytes: 8388608        # a larger tool result is withheld (default 8 MiB)

Tools are exposed as ``<upstream>.<tool>``, so two upstreams cannot shadow each other. A tool with
no entry under ``tools`` is treated as ``write``: the safe default is the sensitive one. An
upstream's own annotations (``readOnlyHint``) never decide the action (ASI04).

``pin_check`` says when the gateway re-reads an upstream's tool descriptors to check them
against their pins (ASI04), so that no call reaches a tool whose descriptor changed: ``each_call``
lists the upstream's tools before every call to it (one more round trip per call);
``on_change`` re-lists at once when the upstream sends ``notifications/tools/list_changed``, and
calls to it wait for that; ``auto`` (the default) is ``on_change`` for an upstream that declares
``tools.listChanged`` at its handshake and ``each_call`` for one that does not.

``share_sessions``: by default each agent gets its own session with each upstream (its own
stdio process, its own HTTP session id; see :mod:`tether.mcp.pool`); ``true`` makes one session
serve every agent, for a server known to keep nothing per session.

``resources``: each entry maps the URIs an upstream serves that match ``uri`` (a glob: ``*``
matches anything, ``?`` one character) to a dataset; the first match wins. ``resources/read``
and ``resources/subscribe`` are decided as a ``read`` of that dataset with the tool
``<upstream>.resources`` (so a grant names them as ``{"tool": "crm.resources", "actions":
["read"], "datasets": ["crm"]}``); a URI no entry maps is never listed or read.

``count_records``: ``content`` (number of content blocks), ``structured`` (length of the
structured result when it is a list), or ``structured.<path>`` (length of the list at that dotted
path; integer segments index lists).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

import yaml

from tether.core.errors import ConfigurationError
from tether.core.scope import MAX_DATASET_NAME, MAX_TOOL_NAME, ActionKind, is_valid_name
from tether.credentials.secrets import is_valid_secret_name

DEFAULT_TIMEOUT_SECONDS: Final = 30.0
#: The largest tool result (its JSON on the wire) the gateway forwards to an agent.
DEFAULT_MAX_RESULT_BYTES: Final = 8 * 1024 * 1024
MAX_RESULT_BYTES_LIMIT: Final = 1024 * 1024 * 1024
MAX_CONFIG_BYTES: Final = 1024 * 1024
PinCheck = Literal["auto", "each_call", "on_change"]
PIN_CHECKS: Final = ("auto", "each_call", "on_change")
_UPSTREAM_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_COUNT = re.compile(r"^(content|structured)(\.[A-Za-z0-9_-]+)*$")


@dataclass(frozen=True, slots=True)
class CredentialRef:
    """Where an upstream's credential comes from, and how it goes on the wire."""

    secret: str
    header: str = "Authorization"
    scheme: str = "Bearer"


@dataclass(frozen=True, slots=True)
class StdioUpstream:
    name: str
    command: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    cwd: str | None = None
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    #: Environment variables set from tether's secret store when the server is started: (the
    #: variable, the secret's name). Their values never appear in this file.
    secret_env: tuple[tuple[str, str], ...] = ()
    pin_check: PinCheck = "auto"
    share_sessions: bool = False


@dataclass(frozen=True, slots=True)
class HttpUpstream:
    name: str
    url: str
    credential: CredentialRef | None = None
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    pin_check: PinCheck = "auto"
    share_sessions: bool = False


Upstream = StdioUpstream | HttpUpstream


@dataclass(frozen=True, slots=True)
class RecordCount:
    """How to count records in a tool result: a source and a path into it."""

    source: str  # "content" or "structured"
    path: tuple[str, ...] = ()

    @staticmethod
    def parse(text: str) -> RecordCount:
        source, *path = text.split(".")
        return RecordCount(source, tuple(path))


@dataclass(frozen=True, slots=True)
class ToolMapping:
    action: ActionKind
    dataset: str | None = None
    count_records: RecordCount | None = None
    recipients_arg: str | None = None


#: What an unmapped tool is: a write, the safe default.
DEFAULT_MAPPING: Final = ToolMapping(ActionKind.WRITE)


#: The tool name resources of an upstream are decided under: ``<upstream>.resources``.
RESOURCES_TOOL: Final = "resources"


@dataclass(frozen=True, slots=True)
class ResourceMapping:
    """URIs of ``upstream`` matching the glob ``uri`` are reads of ``dataset``."""

    upstream: str
    uri: str
    dataset: str

    def matches(self, upstream: str, uri: str) -> bool:
        return upstream == self.upstream and fnmatch.fnmatchcase(uri, self.uri)


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    upstreams: tuple[Upstream, ...]
    tools: Mapping[str, ToolMapping] = field(default_factory=dict)
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES
    prompts: Mapping[str, ToolMapping] = field(default_factory=dict)
    resources: tuple[ResourceMapping, ...] = ()

    def mapping(self, tool: str) -> ToolMapping:
        return self.tools.get(tool, DEFAULT_MAPPING)

    def prompt(self, name: str) -> ToolMapping:
        return self.prompts.get(name, DEFAULT_MAPPING)

    def dataset_of(self, upstream: str, uri: str) -> str | None:
        """The dataset a read of ``uri`` on ``upstream`` touches; ``None``: not mapped."""
        for mapping in self.resources:
            if mapping.matches(upstream, uri):
                return mapping.dataset
        return None

    def upstream(self, name: str) -> Upstream | None:
        for upstream in self.upstreams:
            if upstream.name == name:
                return upstream
        return None


def _fail(path: str, why: str) -> ConfigurationError:
    return ConfigurationError(f"gateway config: {path}: {why}")


def _object(value: object, path: str, allowed: frozenset[str]) -> dict[str, object]:
    if not isinstance(value, dict):
        raise _fail(path, "must be a mapping")
    for key in value:
        if not isinstance(key, str) or key not in allowed:
            raise _fail(f"{path}.{key}", f"unknown key; allowed here: {', '.join(sorted(allowed))}")
    return value


def _string(value: object, path: str, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not value and not empty) or len(value) > 4096:
        raise _fail(path, "must be a non-empty string" if not empty else "must be a string")
    return value


def _timeout(raw: dict[str, object], path: str) -> float:
    value = raw.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
        raise _fail(
            f"{path}.timeout_seconds", "must be a number of seconds, above 0 and at most 3600"
        )
    return float(value)


_STDIO_KEYS: Final = frozenset(
    {
        "command",
        "args",
        "env",
        "secret_env",
        "cwd",
        "timeout_seconds",
        "pin_check",
        "share_sessions",
    }
)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_HTTP_KEYS: Final = frozenset(
    {"url", "credential", "timeout_seconds", "pin_check", "share_sessions"}
)
_CREDENTIAL_KEYS: Final = frozenset({"secret", "header", "scheme"})
_TOOL_KEYS: Final = frozenset({"action", "dataset", "count_records", "recipients_arg"})
_LIMIT_KEYS: Final = frozenset({"max_result_bytes"})


def _pin_check(raw: dict[str, object], path: str) -> PinCheck:
    value = raw.get("pin_check", "auto")
    if value not in PIN_CHECKS:
        raise _fail(f"{path}.pin_check", "must be one of: " + ", ".join(PIN_CHECKS))
    return value


def _shared(raw: dict[str, object], path: str) -> bool:
    value = raw.get("share_sessions", False)
    if not isinstance(value, bool):
        raise _fail(f"{path}.share_sessions", "must be true or false")
    return value


def _upstream(name: object, raw: object) -> Upstream:
    path = f"upstreams.{name}"
    if not isinstance(name, str) or not _UPSTREAM_NAME.fullmatch(name):
        raise _fail(
            path,
            "an upstream name is 1-64 letters, digits, '_' or '-' (no dots: tools are exposed "
            "as <upstream>.<tool>)",
        )
    if isinstance(raw, dict) and "url" in raw:
        body = _object(raw, path, _HTTP_KEYS)
        url = _string(body["url"], f"{path}.url")
        if not url.startswith(("http://", "https://")):
            raise _fail(f"{path}.url", "must be an http:// or https:// URL")
        credential = None
        if "credential" in body:
            cred = _object(body["credential"], f"{path}.credential", _CREDENTIAL_KEYS)
            if "secret" not in cred:
                raise _fail(f"{path}.credential.secret", "is required")
            secret = _string(cred["secret"], f"{path}.credential.secret")
            if not is_valid_secret_name(secret):
                raise _fail(f"{path}.credential.secret", "is not a valid secret name")
            header = _string(cred.get("header", "Authorization"), f"{path}.credential.header")
            if not _HEADER_NAME.fullmatch(header):
                raise _fail(f"{path}.credential.header", "is not an HTTP header name")
            scheme = _string(cred.get("scheme", "Bearer"), f"{path}.credential.scheme", empty=True)
            if not re.fullmatch(r"[A-Za-z0-9._-]{0,32}", scheme):
                raise _fail(f"{path}.credential.scheme", "must be a single word such as Bearer")
            credential = CredentialRef(secret, header, scheme)
        return HttpUpstream(
            name,
            url,
            credential,
            _timeout(body, path),
            _pin_check(body, path),
            _shared(body, path),
        )
    if isinstance(raw, dict) and "command" in raw:
        body = _object(raw, path, _STDIO_KEYS)
        args = body.get("args", [])
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise _fail(f"{path}.args", "must be a list of strings")
        env = body.get("env", {})
        if not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env.items()
        ):
            raise _fail(f"{path}.env", "must be a mapping of strings to strings")
        secret_env = body.get("secret_env", {})
        if not isinstance(secret_env, dict):
            raise _fail(f"{path}.secret_env", "must map environment variables to secret names")
        for variable, secret in secret_env.items():
            where = f"{path}.secret_env.{variable}"
            if not isinstance(variable, str) or not _ENV_NAME.fullmatch(variable):
                raise _fail(where, "is not an environment variable name")
            if not isinstance(secret, str) or not is_valid_secret_name(secret):
                raise _fail(where, "must name a secret in tether's secret store")
            if variable in env:
                raise _fail(where, "is set in env too; a credential belongs in secret_env only")
        cwd = body.get("cwd")
        return StdioUpstream(
            name,
            _string(body["command"], f"{path}.command"),
            tuple(args),
            tuple(sorted(env.items())),
            None if cwd is None else _string(cwd, f"{path}.cwd"),
            _timeout(body, path),
            tuple(sorted(secret_env.items())),
            _pin_check(body, path),
            _shared(body, path),
        )
    if isinstance(raw, dict):
        _object(raw, path, _STDIO_KEYS | _HTTP_KEYS)
    raise _fail(path, "needs either 'command' (a stdio server) or 'url' (a streamable HTTP server)")


def _tool(
    name: object, raw: object, upstreams: set[str], section: str = "tools"
) -> tuple[str, ToolMapping]:
    path = f"{section}.{name}"
    if not isinstance(name, str) or not is_valid_name(name, MAX_TOOL_NAME) or "." not in name:
        raise _fail(path, "a tool is named <upstream>.<tool>")
    upstream = name.split(".", 1)[0]
    if upstream not in upstreams:
        raise _fail(path, f"no upstream named {upstream!r} (known: {', '.join(sorted(upstreams))})")
    body = _object(raw, path, _TOOL_KEYS)
    if "action" not in body:
        raise _fail(f"{path}.action", "is required")
    action = body["action"]
    if not isinstance(action, str) or action not in {a.value for a in ActionKind}:
        raise _fail(f"{path}.action", "must be one of: " + ", ".join(a.value for a in ActionKind))
    dataset = body.get("dataset")
    if dataset is not None and (
        not isinstance(dataset, str) or not is_valid_name(dataset, MAX_DATASET_NAME)
    ):
        raise _fail(f"{path}.dataset", "must be a dataset name")
    count = body.get("count_records")
    if count is not None and (not isinstance(count, str) or not _COUNT.fullmatch(count)):
        raise _fail(
            f"{path}.count_records",
            "must be 'content', 'structured' or 'structured.<path>' (e.g. structured.items)",
        )
    recipients = body.get("recipients_arg")
    if recipients is not None and (
        not isinstance(recipients, str) or not is_valid_name(recipients, 64)
    ):
        raise _fail(f"{path}.recipients_arg", "must be an argument name")
    return name, ToolMapping(
        ActionKind(action),
        dataset,
        None if count is None else RecordCount.parse(count),
        recipients,
    )


def _max_result_bytes(raw: object) -> int:
    limits = _object(raw if raw is not None else {}, "limits", _LIMIT_KEYS)
    value = limits.get("max_result_bytes", DEFAULT_MAX_RESULT_BYTES)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _fail("limits.max_result_bytes", "must be a whole number of bytes above 0")
    if value > MAX_RESULT_BYTES_LIMIT:
        raise _fail("limits.max_result_bytes", f"must be at most {MAX_RESULT_BYTES_LIMIT} (1 GiB)")
    return value


_RESOURCE_KEYS: Final = frozenset({"upstream", "uri", "dataset"})


def _resources(raw: object, upstreams: set[str]) -> tuple[ResourceMapping, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _fail("resources", "must be a list of {upstream, uri, dataset}")
    out = []
    for n, item in enumerate(raw):
        path = f"resources.{n}"
        body = _object(item, path, _RESOURCE_KEYS)
        for key in sorted(_RESOURCE_KEYS):
            if key not in body:
                raise _fail(f"{path}.{key}", "is required")
        upstream = _string(body["upstream"], f"{path}.upstream")
        if upstream not in upstreams:
            raise _fail(f"{path}.upstream", f"no upstream named {upstream!r}")
        dataset = body["dataset"]
        if not isinstance(dataset, str) or not is_valid_name(dataset, MAX_DATASET_NAME):
            raise _fail(f"{path}.dataset", "must be a dataset name")
        out.append(ResourceMapping(upstream, _string(body["uri"], f"{path}.uri"), dataset))
    return tuple(out)


def parse_config(raw: object) -> GatewayConfig:
    """Validate a parsed YAML document into a :class:`GatewayConfig`."""
    body = _object(
        raw if raw is not None else {},
        "(top level)",
        frozenset({"upstreams", "tools", "limits", "prompts", "resources"}),
    )
    raw_upstreams = body.get("upstreams")
    if not isinstance(raw_upstreams, dict) or not raw_upstreams:
        raise _fail("upstreams", "name at least one upstream MCP server")
    upstreams = tuple(_upstream(name, value) for name, value in raw_upstreams.items())
    raw_tools = body.get("tools", {}) or {}
    if not isinstance(raw_tools, dict):
        raise _fail("tools", "must be a mapping of <upstream>.<tool> to its action")
    names = {u.name for u in upstreams}
    tools = dict(_tool(name, value, names) for name, value in raw_tools.items())
    raw_prompts = body.get("prompts", {}) or {}
    if not isinstance(raw_prompts, dict):
        raise _fail("prompts", "must be a mapping of <upstream>.<prompt> to its action")
    prompts = {
        name: mapping
        for name, mapping in (
            _tool(name, value, names, "prompts") for name, value in raw_prompts.items()
        )
    }
    return GatewayConfig(
        upstreams,
        tools,
        _max_result_bytes(body.get("limits")),
        prompts,
        _resources(body.get("resources"), names),
    )


def load_config(path: Path) -> GatewayConfig:
    """Read and validate the config file; every problem is a ``ConfigurationError``."""
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigurationError(f"{path} is larger than {MAX_CONFIG_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigurationError(
            f"cannot read the gateway config {path}: {error.strerror}"
        ) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigurationError(f"{path} is not valid YAML{where}") from None
    return parse_config(raw)
