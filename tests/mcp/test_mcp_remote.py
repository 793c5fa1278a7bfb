"""The gateway deciding through ``tether serve`` (``tether mcp-gateway --pdp-url``): real
processes on loopback, a real serve, a real gateway, real SDK upstreams and an SDK client.

The gateway host holds no database and no keys but its own secret store's: serve verifies every
SVID and grant, decides every call, and takes every effect and the gateway's own audit records.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from mcp.shared.exceptions import MCPError
from mcp_harness import (
    CRM_KEY,
    CRM_QUERY,
    MAIL,
    MAIL_TOKEN,
    PAY,
    UPSTREAM,
    AgentKeys,
    connect,
    open_grant,
    run,
    text_of,
    write_config,
)
from upstream_http import MailLog, serve_mail

from metrics_support import door_process
from ops.ops_support import ServeProcess, serve_process
from support import make_runtime, mint
from tether.core.audit import AuditKind, AuditRecord
from tether.core.ids import ApprovalId
from tether.core.secret import Secret
from tether.credentials.secrets import SecretStore
from tether.runtime import open_store
from tether.service.clock import ManualClock

GATEWAY = "mcp-gateway"


@dataclass
class Remote:
    serve: ServeProcess
    serve_data: Path
    gateway_data: Path
    url: str
    stderr: Path
    mail: MailLog
    gateway_id: str
    analyst: AgentKeys
    mailer: AgentKeys
    payer: AgentKeys


def _config(root: Path, mail_url: str) -> Path:
    return write_config(
        root / "gateway.yaml",
        {
            "upstreams": {
                "crm": {
                    "command": sys.executable,
                    "args": [UPSTREAM, "crm"],
                    "secret_env": {"CRM_API_KEY": "crm-key"},
                    "timeout_seconds": 30,
                },
                "payments": {"command": sys.executable, "args": [UPSTREAM, "payments"]},
                "email": {"url": mail_url, "credential": {"secret": "mail-token"}},
            },
            "tools": {
                "crm.query": {"action": "read", "dataset": "crm"},
                "crm.update": {"action": "write", "dataset": "tickets"},
                "email.send": {"action": "send", "recipients_arg": "to"},
                "payments.transfer": {"action": "spend"},
            },
        },
    )


def _decisions(data: Path, tool: str) -> list[AuditRecord]:
    return [
        r
        for r in _serve_records(data, AuditKind.DECISION)
        if r.body["call"]["tool"] == tool  # type: ignore[call-overload,index]
    ]


def _verdict(record: AuditRecord) -> str:
    return str(record.body["verdict"]["decision"])  # type: ignore[call-overload,index]


def _serve_records(data: Path, kind: AuditKind | None = None) -> list[AuditRecord]:
    store = open_store(data)
    try:
        return [r for r in store.audit_records() if kind is None or r.kind is kind]
    finally:
        store.close()


def _wait_for(what: str, found: object) -> None:
    """Wait on a condition another process makes true (serve writing a queued record)."""
    deadline = time.monotonic() + 30
    while not found():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what} never happened"
        time.sleep(0.05)  # another process's write, not tether's clock


def _remote(root: Path, stack: ExitStack, *, listed: bool = True) -> Remote:
    clock = ManualClock(datetime.now(UTC))  # the processes run on the system clock
    serve_data = root / "serve" / "data"
    runtime = make_runtime(serve_data, clock)
    try:
        gateway_svid = mint(runtime, GATEWAY, clock)
        gateway_id = runtime.verifier.verify(gateway_svid, clock.now()).id
        analyst = open_grant(runtime, clock, "analyst", CRM_QUERY)
        mailer = open_grant(runtime, clock, "courier", MAIL)
        payer = open_grant(runtime, clock, "analyst", PAY)
    finally:
        runtime.close()
    # The gateway host: its own small directory, with the upstreams' secrets only.
    gateway_data = root / "gateway" / "data"
    SecretStore(gateway_data, environ={}).set("mail-token", Secret(MAIL_TOKEN))
    SecretStore(gateway_data, environ={}).set("crm-key", Secret(CRM_KEY))
    svid_file = root / "gateway" / "svid.jwt"
    svid_file.write_text(gateway_svid)
    ids = ("--gateway-ids", gateway_id) if listed else ()
    serve = stack.enter_context(serve_process(serve_data, *ids))
    mail_url, mail = stack.enter_context(serve_mail(MAIL_TOKEN))
    stderr = root / "gateway.stderr"
    command = [
        "mcp-gateway",
        "--gateway-config",
        str(_config(root, mail_url)),
        "-d",
        str(gateway_data),
        "--pdp-url",
        serve.base_url,
        "--gateway-svid-file",
        str(svid_file),
        "--pdp-timeout",
        "5",
    ]
    base = stack.enter_context(door_process(command, stderr))
    url = f"{base}/mcp"
    return Remote(
        serve, serve_data, gateway_data, url, stderr, mail, gateway_id, analyst, mailer, payer
    )


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    with ExitStack() as stack:
        yield _remote(tmp_path_factory.mktemp("remote"), stack)


def test_an_allowed_call_goes_through_and_its_effect_lands_in_serves_audit_chain(
    remote: Remote,
) -> None:
    async def scenario() -> tuple[str, bool]:
        async with connect(remote.url, remote.mailer) as client:
            sent = await client.call_tool("email.send", {"to": "bob@example.com"})
            return text_of(sent), bool(sent.is_error)

    before = len(remote.mail.sent)
    text, is_error = run(scenario)
    assert not is_error, text
    assert remote.mail.sent[before:] == [{"to": "bob@example.com"}]
    assert remote.mail.authorized >= 1  # the credential came from the gateway's own store
    decisions = _decisions(remote.serve_data, "email.send")
    assert [_verdict(d) for d in decisions] == ["allow"]
    decision_id = decisions[0].body["decision_id"]

    def effect_written() -> bool:
        effects = _serve_records(remote.serve_data, AuditKind.EFFECT)
        return any(e.body.get("decision_id") == decision_id for e in effects)

    _wait_for("the effect reaching serve", effect_written)
    # The gateway's own records (first pins) are in serve's chain, naming the gateway.
    pinned = _serve_records(remote.serve_data, AuditKind.TOOL_PINNED)
    assert {r.body["tool"] for r in pinned} >= {"email.send"}
    assert {r.body["reported_by"] for r in pinned} == {remote.gateway_id}


def test_a_denied_call_never_reaches_the_upstream(remote: Remote) -> None:
    before = list(remote.mail.sent)

    async def scenario() -> tuple[str, bool, object]:
        async with connect(remote.url, remote.analyst) as client:
            refused = await client.call_tool("email.send", {"to": "mallory@attacker.test"})
            return text_of(refused), bool(refused.is_error), refused.meta

    text, is_error, meta = run(scenario)
    assert is_error
    assert text.startswith("denied by tether"), text
    assert meta["tether/error"]["reasons"][0]["code"] == "tool_not_in_scope"  # type: ignore[index]
    assert remote.mail.sent == before
    denied = [
        r
        for r in _decisions(remote.serve_data, "email.send")
        if r.agent and r.agent.endswith("/analyst")
    ]
    assert [_verdict(d) for d in denied] == ["deny"]


def test_an_approval_id_is_forwarded_and_an_approved_retry_runs(remote: Remote) -> None:
    async def transfer(meta: dict[str, str] | None) -> tuple[str, bool, object]:
        async with connect(remote.url, remote.payer) as client:
            result = await client.call_tool("payments.transfer", {"amount": 500}, meta=meta)
            return text_of(result), bool(result.is_error), result.meta

    text, is_error, meta = run(lambda: transfer(None))
    assert is_error and text.startswith("approval_required"), text
    approval_id = meta["tether/error"]["approval_id"]  # type: ignore[index]
    clock = ManualClock(datetime.now(UTC))
    runtime = make_runtime(remote.serve_data, clock)  # a human approving, on serve's store
    try:
        approver = runtime.approvers.verify(runtime.approvers.add("alice"))
        runtime.approvals.vote(approver, ApprovalId(approval_id), True, "refund agreed")
    finally:
        runtime.close()
    text, is_error, _ = run(lambda: transfer({"tether/approval": approval_id}))
    assert not is_error, text
    assert text == "transferred 500"


def test_tools_list_shows_only_what_the_grant_covers(remote: Remote) -> None:
    async def names(keys: AgentKeys) -> list[str]:
        async with connect(remote.url, keys) as client:
            return sorted(t.name for t in (await client.list_tools()).tools)

    assert run(lambda: names(remote.analyst)) == ["crm.query"]
    assert run(lambda: names(remote.mailer)) == ["email.send"]
    # A grant that is not the caller's shows nothing.
    stolen = AgentKeys(remote.analyst.svid, remote.mailer.grant)
    assert run(lambda: names(stolen)) == []


def test_a_stdio_upstream_gets_its_secret_from_the_gateways_own_store(remote: Remote) -> None:
    async def scenario() -> str:
        async with connect(remote.url, remote.analyst) as client:
            result = await client.call_tool("crm.query", {"customer": "c-1"})
            assert not result.is_error, text_of(result)
            return text_of(result)

    assert run(scenario)


def test_the_gateway_host_holds_no_database_and_no_key_but_its_secret_stores(
    remote: Remote,
) -> None:
    files = sorted(str(p.relative_to(remote.gateway_data)) for p in remote.gateway_data.rglob("*"))
    assert "tether.db" not in files
    keys = [f for f in files if f.startswith("keys/")]
    assert keys == ["keys/secrets.key"], files  # no signing, grant, audit or dev CA key
    assert not any(f.endswith((".db", ".db-wal", ".pem")) for f in files), files
    assert "mcp-pins.json" in files  # pins: the gateway's own small state
    log = remote.stderr.read_text()
    assert remote.analyst.svid not in log and remote.analyst.grant not in log


def test_serve_stopped_refuses_with_pdp_unavailable_and_forwards_nothing(
    tmp_path: Path,
) -> None:
    with ExitStack() as stack:
        env = _remote(tmp_path, stack)

        async def scenario() -> None:
            async with connect(env.url, env.mailer) as client:
                first = await client.call_tool("email.send", {"to": "bob@example.com"})
                assert not first.is_error, text_of(first)
                sent = len(env.mail.sent)
                env.serve.stop()
                with pytest.raises(MCPError) as refused:
                    await client.call_tool("email.send", {"to": "bob@example.com"})
                assert refused.value.error.data["code"] == "pdp_unavailable"
                assert len(env.mail.sent) == sent  # nothing forwarded upstream

        run(scenario)
        # An agent the gateway has not verified yet is refused before any MCP is read.
        answer = httpx.post(
            env.url,
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={"Authorization": f"Bearer {env.analyst.svid}"},
            timeout=30,
        )
        assert answer.status_code == 503
        assert answer.json()["error"]["code"] == "pdp_unavailable"


def test_records_from_a_gateway_serve_does_not_list_are_kept_not_dropped(tmp_path: Path) -> None:
    with ExitStack() as stack:
        env = _remote(tmp_path, stack, listed=False)

        async def scenario() -> None:
            async with connect(env.url, env.mailer) as client:
                sent = await client.call_tool("email.send", {"to": "bob@example.com"})
                assert not sent.is_error, text_of(sent)

        run(scenario)
        assert _serve_records(env.serve_data, AuditKind.TOOL_PINNED) == []
        lines = [json.loads(x) for x in env.stderr.read_text().splitlines() if x.startswith("{")]
        deferred = [x for x in lines if x.get("event") == "gateway_event_deferred"]
        assert deferred and deferred[0]["code"] == "not_a_gateway"
