"""The gateway's config (``gateway.yaml``) as frozen values: upstreams, tools, prompts, resources.

:mod:`tether.mcp.config_file` reads the file into these values, every problem at its
``file:line:col`` (an unknown key with "did you mean", all problems at once). The format:

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
        idle_timeout_seconds: 900      # an agent's session unused this long is closed (default)
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
serve every agent, for a server known to keep nothing per session. ``idle_timeout_seconds``: an
agent's session with the upstream that has had no request for this long (and holds no resource
subscription) is closed, its stdio process stopped or its HTTP session ended; its next request
opens a new one.

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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from tether.core.scope import ActionKind

DEFAULT_TIMEOUT_SECONDS: Final = 30.0
#: How long an agent's upstream session may go unused before it is closed.
DEFAULT_IDLE_TIMEOUT_SECONDS: Final = 15 * 60.0
MAX_IDLE_TIMEOUT_SECONDS: Final = 7 * 24 * 3600.0
#: The largest tool result (its JSON on the wire) the gateway forwards to an agent.
DEFAULT_MAX_RESULT_BYTES: Final = 8 * 1024 * 1024
MAX_RESULT_BYTES_LIMIT: Final = 1024 * 1024 * 1024
MAX_CONFIG_BYTES: Final = 1024 * 1024
PinCheck = Literal["auto", "each_call", "on_change"]


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
    idle_timeout_seconds: float = DEFAULT_IDLE_TIMEOUT_SECONDS


@dataclass(frozen=True, slots=True)
class HttpUpstream:
    name: str
    url: str
    credential: CredentialRef | None = None
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    pin_check: PinCheck = "auto"
    share_sessions: bool = False
    idle_timeout_seconds: float = DEFAULT_IDLE_TIMEOUT_SECONDS


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
