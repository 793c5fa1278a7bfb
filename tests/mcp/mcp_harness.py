"""Test support for the MCP gateway: real servers on loopback, real upstreams, real clients.

Nothing here mocks MCP: the gateway is the ASGI app `tether mcp-gateway` serves, run by uvicorn
on 127.0.0.1; its upstreams are SDK servers (a stdio subprocess and an HTTP server); agents are
the SDK's ``Client``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx2
import yaml
from loopback import serve_asgi
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from upstream_http import MailLog, serve_mail

from support import INTENT, make_runtime, mint
from tether.core.audit import AuditKind, AuditRecord
from tether.core.scope import Scope
from tether.core.secret import Secret
from tether.core.task import Intent
from tether.credentials.secrets import SecretStore
from tether.mcp import Gateway, http_app, load_config, open_gateway
from tether.runtime import Runtime
from tether.service.clock import ManualClock

HERE = Path(__file__).resolve().parent
UPSTREAM = str(HERE / "upstream_stdio.py")
MAIL_TOKEN = "mail-secret-7f3c9a1e0b5d"  # the standing upstream credential the agent never sees
CRM_KEY = "crm-api-key-5b2e8d7c1a94"  # the stdio CRM's credential, from the secret store

CRM_QUERY = {"tool": "crm.query", "actions": ["read"], "datasets": ["crm"]}
CRM_UPDATE = {
    "tool": "crm.update",
    "actions": ["write"],
    "datasets": ["tickets"],
    "constraints": {"discount": {"max": 10}},
}
PAY = {"tool": "payments.transfer", "actions": ["spend"], "constraints": {"amount": {"max": 1000}}}
MAIL = {"tool": "email.send", "actions": ["send"]}

T = TypeVar("T")


def run(fn: Callable[[], Awaitable[T]]) -> T:
    return anyio.run(fn)


def gateway_config(mail_url: str, *, crm_env: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "upstreams": {
            "crm": {
                "command": sys.executable,
                "args": [UPSTREAM, "crm"],
                "env": crm_env or {},
                "secret_env": {"CRM_API_KEY": "crm-key"},
                "timeout_seconds": 20,
            },
            "payments": {"command": sys.executable, "args": [UPSTREAM, "payments"]},
            "email": {
                "url": mail_url,
                "credential": {"secret": "mail-token", "header": "Authorization"},
            },
        },
        "tools": {
            "crm.query": {"action": "read", "dataset": "crm", "count_records": "structured.items"},
            "crm.update": {"action": "write", "dataset": "tickets"},
            "payments.transfer": {"action": "spend"},
            "email.send": {"action": "send", "recipients_arg": "to"},
        },
        "prompts": {"crm.summarize": {"action": "read", "dataset": "crm"}},
        "resources": [{"upstream": "crm", "uri": "crm://customers/*", "dataset": "crm"}],
    }


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class AgentKeys:
    """What an agent holds: its SVID and one task's grant."""

    svid: str
    grant: str


def open_grant(
    runtime: Runtime, clock: ManualClock, agent: str, *scopes: dict[str, object]
) -> AgentKeys:
    svid = mint(runtime, agent, clock)
    workload = runtime.verifier.verify(svid, clock.now())
    opened = runtime.tasks.open_task(
        workload, Intent(**INTENT), [Scope.from_json(s) for s in scopes], 600
    )
    return AgentKeys(svid, opened.token)


@asynccontextmanager
async def connect(
    url: str,
    keys: AgentKeys | None,
    *,
    svid: str | None = None,
    grant: str | None = None,
    mode: str = "auto",
    logging_callback: Any = None,
    message_handler: Any = None,
) -> AsyncIterator[Client]:
    """The SDK client, speaking streamable HTTP to the gateway as an agent."""
    headers = {}
    token = svid if svid is not None else keys.svid if keys else None
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    grant = grant if grant is not None else keys.grant if keys else None
    if grant is not None:
        headers["X-Tether-Grant"] = grant
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(
            streamable_http_client(url, http_client=http),
            cache=None,
            mode=mode,  # type: ignore[arg-type]
            logging_callback=logging_callback,
            message_handler=message_handler,
        ) as client,
    ):
        yield client


def text_of(result: Any) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


def cli(args: list[str], **kw: Any) -> Any:
    """Run a ``tether`` command in process."""
    from typer.testing import CliRunner

    from tether.cli.main import app

    return CliRunner().invoke(app, args, **kw)


#: Gateways serving in this process; their effects are written after each answer.
_LIVE: list[Gateway] = []


def settle(deadline_seconds: float = 20.0) -> None:
    """Wait until every gateway in this process has written the effects it queued (effects
    are written after the answer, see tether.mcp.effectqueue)."""
    deadline = time.monotonic() + deadline_seconds
    while any(g.effects.pending for g in _LIVE):
        if time.monotonic() > deadline:
            raise AssertionError("the gateway's effects were not written")
        time.sleep(0.005)  # waiting on a condition: a worker thread finishing its write


@contextmanager
def live(gateway: Gateway) -> Iterator[Gateway]:
    _LIVE.append(gateway)
    try:
        yield gateway
    finally:
        _LIVE.remove(gateway)


def records(runtime: Runtime, kind: AuditKind | None = None) -> list[AuditRecord]:
    settle()
    return [r for r in runtime.store.audit_records() if kind is None or r.kind is kind]


@dataclass
class Gw:
    """A running gateway on loopback, fronting a stdio CRM, a stdio payments server and an HTTP
    mail server that needs a credential."""

    runtime: Runtime
    clock: ManualClock
    root: Path
    data_dir: Path
    url: str
    mail: MailLog
    config_path: Path
    description_file: Path
    gateway: Gateway

    def grant(self, agent: str, *scopes: dict[str, object]) -> AgentKeys:
        return open_grant(self.runtime, self.clock, agent, *scopes)


@contextmanager
def running_gateway(
    root: Path,
    clock: ManualClock,
    *,
    crm_env: dict[str, str] | None = None,
    policy_dir: Path | None = None,
) -> Iterator[Gw]:
    data_dir = root / "data"
    runtime = make_runtime(data_dir, clock, policy_dir)
    SecretStore(data_dir, environ={}).set("mail-token", Secret(MAIL_TOKEN))
    SecretStore(data_dir, environ={}).set("crm-key", Secret(CRM_KEY))
    description = root / "description.txt"
    try:
        with serve_mail(MAIL_TOKEN) as (mail_url, mail_log):
            env = {"CRM_DESCRIPTION_FILE": str(description), **(crm_env or {})}
            config = gateway_config(mail_url, crm_env=env)
            config_path = write_config(root / "gateway.yaml", config)
            gateway = open_gateway(load_config(config_path), runtime)
            with live(gateway), serve_asgi(http_app(gateway)) as base:
                yield Gw(
                    runtime,
                    clock,
                    root,
                    data_dir,
                    f"{base}/mcp",
                    mail_log,
                    config_path,
                    description,
                    gateway,
                )
    finally:
        runtime.close()
