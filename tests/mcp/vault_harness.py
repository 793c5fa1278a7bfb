"""A gateway on loopback in front of the careless ``upstream_vault.py`` server, whose credential
comes from tether's secret store (for the redaction and prompt-pin tests)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopback import serve_asgi
from mcp_harness import HERE, AgentKeys, live, open_grant, write_config

from support import copy_policies, make_runtime
from tether.core.secret import Secret
from tether.credentials.secrets import SecretStore
from tether.mcp import Gateway, http_app, load_config, open_gateway
from tether.runtime import Runtime
from tether.service.clock import ManualClock

VAULT = str(HERE / "upstream_vault.py")
VAULT_TOKEN = "vault-tok/3f9+a1c7e2b5d8"  # the upstream's credential, from the secret store
TOOLS = ("echo", "env", "plain", "fail", "announce")
POLICY = """
@id("vault-reads")
permit (principal, action == Action::"read", resource);
"""


def vault_scope(tool: str) -> dict[str, object]:
    return {"tool": f"vault.{tool}", "actions": ["read"], "datasets": ["tickets"]}


def vault_config(
    description_file: Path, *, list_changed: bool = False, **upstream: Any
) -> dict[str, Any]:
    env = {"PROMPT_DESCRIPTION_FILE": str(description_file)}
    if list_changed:
        env["VAULT_LIST_CHANGED"] = "1"
    return {
        "upstreams": {
            "vault": {
                "command": sys.executable,
                "args": [VAULT],
                "env": env,
                "secret_env": {"VAULT_TOKEN": "vault-token"},
                "timeout_seconds": 20,
                **upstream,
            }
        },
        "tools": {f"vault.{t}": {"action": "read", "dataset": "tickets"} for t in TOOLS},
        "prompts": {
            "vault.leak": {"action": "read", "dataset": "tickets"},
            "vault.summarize": {"action": "read", "dataset": "tickets"},
            "vault.secret-prompt": {"action": "read", "dataset": "tickets"},
        },
        "resources": [{"upstream": "vault", "uri": "vault://*", "dataset": "tickets"}],
    }


@dataclass
class Vault:
    runtime: Runtime
    clock: ManualClock
    url: str
    config_path: Path
    description_file: Path
    gateway: Gateway

    def grant(self, agent: str, *tools: str) -> AgentKeys:
        return open_grant(self.runtime, self.clock, agent, *(vault_scope(t) for t in tools))


@contextmanager
def running_vault(
    root: Path, clock: ManualClock, *, list_changed: bool = False, **upstream: Any
) -> Iterator[Vault]:
    data_dir = root / "data"
    policies = copy_policies(root / "policies")
    (policies / "vault.cedar").write_text(POLICY)
    runtime = make_runtime(data_dir, clock, policies)
    SecretStore(data_dir, environ={}).set("vault-token", Secret(VAULT_TOKEN))
    description = root / "summarize.txt"
    try:
        config_path = write_config(
            root / "gateway.yaml", vault_config(description, list_changed=list_changed, **upstream)
        )
        gateway = open_gateway(load_config(config_path), runtime)
        with live(gateway), serve_asgi(http_app(gateway)) as base:
            yield Vault(runtime, clock, f"{base}/mcp", config_path, description, gateway)
    finally:
        runtime.close()
