"""Test support: a real tether server on loopback, driven by a clock the test moves."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn
from starlette.types import ASGIApp

from tether.api.app import create_app
from tether.runtime import Runtime, RuntimeConfig, dev_issuer, open_runtime, packaged_policies
from tether.service.clock import ManualClock
from tether.service.settings import ServiceSettings

INTENT = {
    "workflow": "support-triage",
    "purpose": "answer a refund question",
    "on_behalf_of": "user:alice@example.com",
}


def copy_policies(target: Path) -> Path:
    shutil.copytree(packaged_policies(), target)
    return target


def make_runtime(
    data_dir: Path,
    clock: ManualClock,
    policy_dir: Path | None = None,
    settings: ServiceSettings | None = None,
) -> Runtime:
    config = RuntimeConfig(
        data_dir=data_dir,
        policy_dir=policy_dir or packaged_policies(),
        environ={},
        settings=settings or ServiceSettings(plain_audit_args=frozenset({"amount"})),
    )
    return open_runtime(config, clock=clock)


def mint(runtime: Runtime, agent: str, clock: ManualClock, **kw: object) -> str:
    issuer = dev_issuer(runtime.config)
    return issuer.mint_svid(agent, audience="tether", now=clock.now(), **kw)  # type: ignore[arg-type]


@contextmanager
def live_server(runtime: Runtime, app: ASGIApp | None = None) -> Iterator[str]:
    """Serve ``runtime`` (or ``app``, an app built on it) with uvicorn on 127.0.0.1, on an
    OS-chosen port; yield its base URL."""
    config = uvicorn.Config(
        app or create_app(runtime.api_deps), host="127.0.0.1", port=0, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.01)  # waiting for a real socket to bind, not for tether's clock
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class Agent:
    """A scripted agent speaking tether's HTTP API with its SVID."""

    def __init__(self, client: httpx.Client, svid: str) -> None:
        self.client = client
        self.svid = svid

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.svid}"}

    def open_task(self, scopes: list[dict[str, object]], **extra: object) -> httpx.Response:
        body = {"intent": INTENT, "scopes": scopes, **extra}
        return self.client.post("/v1/tasks", json=body, headers=self.headers)

    def authorize(self, grant: str, **call: object) -> httpx.Response:
        return self.client.post(
            "/v1/authorize", json={"grant": grant, **call}, headers=self.headers
        )

    def effect(self, decision_id: str, **fields: object) -> httpx.Response:
        return self.client.post(
            "/v1/effects", json={"decision_id": decision_id, **fields}, headers=self.headers
        )

    def close(self, task_id: str) -> httpx.Response:
        return self.client.post(f"/v1/tasks/{task_id}/close", headers=self.headers)
