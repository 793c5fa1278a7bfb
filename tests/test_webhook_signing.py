"""The approval webhook is signed as Standard Webhooks specifies: ``webhook-id``,
``webhook-timestamp`` and ``webhook-signature`` (``v1,`` base64 HMAC-SHA256 of
``id.timestamp.body`` under the ``whsec_`` secret), checked here against the spec's published
example and recomputed independently of the library tether signs with."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from support import Agent, live_server, make_runtime, mint
from tether.core.approval import Approval, ApprovalState
from tether.core.errors import ConfigurationError
from tether.core.ids import ApprovalId, DecisionId, GrantId, TaskId
from tether.core.scope import ActionKind
from tether.notify import WebhookNotifier, webhook_secret
from tether.notify.webhook import signed_headers
from tether.runtime import open_runtime
from tether.service.clock import ManualClock

KEY = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(KEY).decode()
PAY = {"tool": "payments.transfer", "actions": ["spend"], "constraints": {"amount": {"max": 1000}}}
CALL = {"tool": "payments.transfer", "action": "spend", "args": {"amount": 500, "to": "c-1042"}}


def test_the_spec_example_vector() -> None:
    # The example in the Standard Webhooks specification (spec/standard-webhooks.md).
    signer = Webhook(webhook_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"))
    headers = signed_headers(
        signer,
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        datetime.fromtimestamp(1614265330, UTC),
        b'{"test": 2432232314}',
    )
    assert headers["webhook-signature"] == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert headers["webhook-timestamp"] == "1614265330"
    assert headers["webhook-id"] == "msg_p5jXN8AQM9LWM0D4loKWxJek"


@dataclass
class Receiver:
    url: str
    posts: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    posts: list[tuple[dict[str, str], bytes]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield Receiver(f"http://127.0.0.1:{server.server_address[1]}/hook", posts)
    server.shutdown()


def expected_signature(key: bytes, message_id: str, timestamp: str, body: bytes) -> str:
    """The spec's v1 signature, written out here rather than taken from the library."""
    mac = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def test_a_pending_approval_is_posted_signed(
    tmp_path: Path, clock: ManualClock, receiver: Receiver
) -> None:
    base = make_runtime(tmp_path / "data", clock)
    config = replace(base.config, approval_webhook=receiver.url, approval_webhook_secret=SECRET)
    base.close()
    runtime = open_runtime(config, clock=clock)
    try:
        with live_server(runtime) as url, httpx.Client(base_url=url) as client:
            agent = Agent(client, mint(runtime, "analyst", clock))
            grant = agent.open_task([PAY], ttl_seconds=3600).json()["grant"]
            verdict = agent.authorize(grant, **CALL).json()
            assert verdict["decision"] == "approval_required"
            assert isinstance(runtime.notifier, WebhookNotifier)
            assert runtime.notifier.flush()
    finally:
        runtime.close()

    [(headers, body)] = receiver.posts
    assert headers["webhook-id"] == f"approval_pending_{verdict['approval_id']}"
    assert headers["webhook-timestamp"] == str(int(clock.now().timestamp()))
    assert headers["content-type"] == "application/json"
    assert headers["webhook-signature"] == expected_signature(
        KEY, headers["webhook-id"], headers["webhook-timestamp"], body
    )
    assert json.loads(body)["approval_id"] == verdict["approval_id"]
    tampered = body.replace(b"payments.transfer", b"payments.transfeR")
    assert headers["webhook-signature"] != expected_signature(
        KEY, headers["webhook-id"], headers["webhook-timestamp"], tampered
    )
    assert SECRET not in repr(config) and SECRET not in repr(runtime.notifier)


def test_a_receiver_verifies_it_with_a_standard_webhooks_library(receiver: Receiver) -> None:
    now = datetime.now(UTC)  # the library checks the timestamp against the real clock
    approval = Approval(
        approval_id=ApprovalId("apr_x"),
        decision_id=DecisionId("dec_x"),
        task_id=TaskId("tsk_x"),
        grant_id=GrantId("gnt_x"),
        agent="spiffe://tether.local/agent/analyst",
        tool="payments.transfer",
        action=ActionKind.SPEND,
        dataset=None,
        args={},
        args_mac="",
        policy_ids=(),
        why="",
        required=1,
        summary=("Pay the café ☕",),
        created_at=now,
        expires_at=now,
        state=ApprovalState.PENDING,
    )
    notifier = WebhookNotifier(receiver.url, secret=SECRET)
    try:
        notifier.approval_pending(approval)
        assert notifier.flush()
    finally:
        notifier.close()
    [(headers, body)] = receiver.posts
    assert Webhook(SECRET).verify(body, headers)["text"] == "Pay the café ☕"
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + base64.b64encode(b"x" * 32).decode()).verify(body, headers)


@pytest.mark.parametrize(
    "secret",
    [
        "",
        base64.b64encode(KEY).decode(),  # no whsec_ prefix
        "whsec_not*base64*at*all*******",
        "whsec_" + base64.b64encode(b"short").decode(),
        "whsec_" + base64.b64encode(b"x" * 65).decode(),
    ],
)
def test_a_missing_or_malformed_secret_refuses_to_start(
    tmp_path: Path, clock: ManualClock, receiver: Receiver, secret: str
) -> None:
    base = make_runtime(tmp_path / "data", clock)
    config = replace(base.config, approval_webhook=receiver.url, approval_webhook_secret=secret)
    base.close()
    with pytest.raises(ConfigurationError) as caught:
        open_runtime(config, clock=clock)
    assert "whsec_$(openssl rand -base64 32)" in caught.value.message
    if len(secret) > 6:
        assert secret.removeprefix("whsec_") not in caught.value.message


def test_serve_reads_the_secret_from_the_environment_and_refuses_without_it(
    tmp_path: Path, receiver: Receiver
) -> None:
    def serve(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "tether",
                "serve",
                "--port",
                "0",
                "--data-dir",
                str(tmp_path / "data"),
                "--approval-webhook",
                receiver.url,
            ],
            capture_output=True,
            text=True,
            timeout=60,  # a server that starts instead fails the test here
            env={"PATH": "/usr/bin:/bin", "COLUMNS": "300", "HOME": str(tmp_path), **env},
        )

    missing = serve({})
    assert missing.returncode == 2
    assert "TETHER_APPROVAL_WEBHOOK_SECRET" in missing.stdout + missing.stderr
    short = serve({"TETHER_APPROVAL_WEBHOOK_SECRET": "whsec_" + base64.b64encode(b"k").decode()})
    assert short.returncode == 2
    assert "24 to 64 random bytes" in short.stdout + short.stderr
