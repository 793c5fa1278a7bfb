"""A secret the gateway gives an upstream never reaches the agent: every result, error and
notification has it replaced by ``[redacted:NAME]`` in whatever form it came back, and the audit
chain says which secret, where and in which forms (issue 12, item 5: secrets)."""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
from mcp.shared.exceptions import MCPError
from mcp_harness import connect, run, settle, text_of, write_config
from vault_harness import VAULT_TOKEN, Vault, running_vault, vault_config

from support import make_runtime
from tether.core.audit import AuditKind, AuditRecord
from tether.core.errors import ConfigurationError, NotFound
from tether.core.secret import Secret
from tether.credentials.secrets import SecretStore
from tether.mcp import load_config, open_gateway
from tether.service.clock import ManualClock

MARKER = "[redacted:vault-token]"


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vault]:
    clock = ManualClock(datetime(2026, 11, 28, 12, 0, tzinfo=UTC))
    with running_vault(tmp_path_factory.mktemp("vault"), clock) as env:
        yield env


def forms_of(value: str) -> list[str]:
    """Every form of the token an agent could decode (what must not reach it)."""
    raw = value.encode()
    fragments: list[str] = []
    for k in range(3):  # the part of each alignment's base64 that is the token's alone
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(b"\0" * k + raw).decode()
            fragments.append(text[-(-8 * k // 6) : (8 * (k + len(raw))) // 6])
    return [
        value,
        raw.hex(),
        raw.hex().upper(),
        urllib.parse.quote(value, safe=""),
        json.dumps(value).replace("/", "\\/").strip('"'),
        *fragments,
    ]


def assert_clean(text: str) -> None:
    for form in forms_of(VAULT_TOKEN):
        assert form not in text, form


def redactions(env: Vault) -> list[AuditRecord]:
    settle()  # effects and observations are written after the answer
    return [r for r in env.runtime.store.audit_records() if r.kind is AuditKind.SECRET_REDACTED]


def assert_chain_clean(env: Vault) -> None:
    for record in env.runtime.store.audit_records():
        assert_clean(json.dumps(record.to_json()))


def test_the_upstream_gets_its_credential_from_the_secret_store(vault: Vault) -> None:
    """It prints its environment: the token is there (redacted on the way back), and
    gateway.yaml names only the secret."""
    keys = vault.grant("reader", "env")

    async def scenario() -> Any:
        async with connect(vault.url, keys) as client:
            return await client.call_tool("vault.env", {})

    result = run(scenario)
    assert not result.is_error, text_of(result)
    assert f"VAULT_TOKEN={MARKER}" in text_of(result).splitlines()
    assert_clean(result.model_dump_json(by_alias=True))
    assert VAULT_TOKEN not in vault.config_path.read_text()
    assert "vault-token" in vault.config_path.read_text()


def test_every_encoding_in_a_result_is_redacted_and_audited(vault: Vault) -> None:
    keys = vault.grant("echoer", "echo")
    progress: list[str | None] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append(message)

    async def scenario() -> Any:
        async with connect(vault.url, keys) as client:
            return await client.call_tool("vault.echo", {}, progress_callback=on_progress)

    result = run(scenario)
    assert not result.is_error, text_of(result)
    lines = dict(line.split(": ", 1) for line in text_of(result).splitlines())
    for name in ("raw", "base64@0", "base64@1", "base64@2", "base64url", "hex", "HEX"):
        assert MARKER in lines[name], (name, lines[name])
    assert MARKER in urllib.parse.unquote(lines["percent"])
    assert json.loads(lines["json"]) == {"auth": MARKER}
    structured = result.structured_content
    assert structured is not None and structured["forms"]["raw"] == MARKER
    assert structured[MARKER] == "as a key"
    assert_clean(result.model_dump_json(by_alias=True))
    assert progress == [f"using token {MARKER}"]

    by_where = {r.body["where"]: r for r in redactions(vault) if r.body["tool"] == "vault.echo"}
    record = by_where["result"]
    assert record.agent is not None and record.agent.endswith("/echoer")
    assert record.body["upstream"] == "vault"
    (secret,) = record.body["secrets"]
    assert secret["name"] == "vault-token"
    # (base64url text with neither - nor _ in it reads as base64)
    assert {"raw", "base64", "hex", "raw+percent", "raw+json"} <= set(secret["forms"])
    assert isinstance(record.body["decision_id"], str)
    assert by_where["progress"].body["secrets"] == [
        {"name": "vault-token", "forms": ["raw"], "count": 1}
    ]
    assert_chain_clean(vault)


def test_a_redacted_result_is_an_ok_effect(vault: Vault) -> None:
    """The call ran and the agent got its (redacted) result: the effect says so."""
    keys = vault.grant("measured", "env")

    async def scenario() -> Any:
        async with connect(vault.url, keys) as client:
            return await client.call_tool("vault.env", {})

    result = run(scenario)
    assert not result.is_error
    (redacted,) = [
        r
        for r in redactions(vault)
        if r.agent and r.agent.endswith("/measured") and r.body["where"] == "result"
    ]
    effects = [
        r
        for r in vault.runtime.store.audit_records()
        if r.kind is AuditKind.EFFECT and r.body["decision_id"] == redacted.body["decision_id"]
    ]
    assert [e.body["status"] for e in effects] == ["ok"]
    assert_chain_clean(vault)


def test_a_log_message_with_the_secret_reaches_the_agent_redacted(vault: Vault) -> None:
    keys = vault.grant("listener", "echo")
    heard: list[tuple[Any, str | None]] = []

    async def hear(params: Any) -> None:
        heard.append((params.data, params.logger))

    async def scenario() -> None:
        async with connect(vault.url, keys, mode="legacy", logging_callback=hear) as client:
            result = await client.call_tool("vault.echo", {})
            assert not result.is_error, text_of(result)
            with anyio.fail_after(10):
                while not heard:
                    await anyio.sleep(0.01)

    run(scenario)
    assert heard == [({"msg": "starting", "token": MARKER}, f"vault {MARKER}")]
    logged = [r for r in redactions(vault) if r.body["where"] == "log_message"]
    assert logged and logged[-1].body["secrets"][0]["name"] == "vault-token"
    assert logged[-1].agent is not None and logged[-1].agent.endswith("/listener")


def test_a_tool_description_carrying_the_secret_is_listed_redacted(vault: Vault) -> None:
    keys = vault.grant("lister", "env", "plain")

    async def scenario() -> Any:
        async with connect(vault.url, keys) as client:
            return await client.list_tools()

    listed = run(scenario)
    described = {t.name: t.description for t in listed.tools}
    assert described == {
        "vault.env": f"Prints its environment (token {MARKER}, hex {MARKER}).",
        "vault.plain": "The plain tool.",
    }
    assert_clean(listed.model_dump_json())
    (record,) = [r for r in redactions(vault) if r.agent and r.agent.endswith("/lister")]
    assert (record.body["tool"], record.body["where"]) == ("tools/list", "listing")
    assert record.body["secrets"] == [{"name": "vault-token", "forms": ["hex", "raw"], "count": 2}]
    assert_chain_clean(vault)
    # The listing kept for a warm start is on disk: the tool whose descriptor holds the secret
    # is not written there (it waits for its upstream at the next start).
    kept = vault.gateway.warm.path.read_text()
    assert_clean(kept)
    assert '"name": "plain"' in kept and '"name": "env"' not in kept


def test_a_resource_and_a_prompt_are_redacted(vault: Vault) -> None:
    keys = vault.grant("surface", "resources", "leak")

    async def scenario() -> tuple[Any, Any]:
        async with connect(vault.url, keys) as client:
            read = await client.read_resource("vault://env")
            prompt = await client.get_prompt("vault.leak", {})
            return read, prompt

    read, prompt = run(scenario)
    assert read.contents[0].text == f"VAULT_TOKEN={MARKER}"
    assert prompt.messages[0].content.text == f"Use the token {MARKER} (hex {MARKER})."
    assert_clean(read.model_dump_json() + prompt.model_dump_json())
    where = {(r.body["tool"], r.body["where"]) for r in redactions(vault)}
    assert {("vault.resources", "result"), ("vault.leak", "result")} <= where


def test_an_upstream_error_carrying_the_secret_does_not_reach_the_agent(vault: Vault) -> None:
    keys = vault.grant("failing", "fail")

    async def scenario() -> Any:
        async with connect(vault.url, keys) as client:
            return await client.call_tool("vault.fail", {})

    result = run(scenario)
    assert result.is_error
    assert result.meta["tether/error"]["code"] == "upstream_failed"
    assert_clean(result.model_dump_json(by_alias=True))
    assert_chain_clean(vault)


def test_a_result_without_the_secret_is_forwarded_as_it_came(vault: Vault) -> None:
    keys = vault.grant("plain", "plain")
    before = len(redactions(vault))

    async def scenario() -> Any:
        async with connect(vault.url, keys) as client:
            return await client.call_tool("vault.plain", {})

    result = run(scenario)
    assert text_of(result) == "plain answer"
    assert len(redactions(vault)) == before


def _gateway_with(tmp_path: Any, value: str | None) -> None:
    clock = ManualClock(datetime(2026, 11, 28, 12, 0, tzinfo=UTC))
    runtime = make_runtime(tmp_path / "data", clock)
    try:
        if value is not None:
            SecretStore(tmp_path / "data", environ={}).set("vault-token", Secret(value))
        path = write_config(tmp_path / "gateway.yaml", vault_config(tmp_path / "d.txt"))
        open_gateway(load_config(path), runtime)
    finally:
        runtime.close()


def test_a_secret_too_short_to_redact_stops_the_gateway(tmp_path: Any) -> None:
    with pytest.raises(ConfigurationError) as caught:
        _gateway_with(tmp_path, "short7!")
    message = caught.value.message
    assert "secret 'vault-token' is 7 bytes" in message and "at least 8 bytes" in message
    assert "short7!" not in message


def test_a_missing_secret_stops_the_gateway_by_name(tmp_path: Any) -> None:
    with pytest.raises(NotFound) as caught:
        _gateway_with(tmp_path, None)
    assert "vault-token" in caught.value.message
    assert "tether secrets set vault-token" in caught.value.message


def test_a_json_rpc_refusal_is_not_a_leak(vault: Vault) -> None:
    """A refused prompt comes back as a JSON-RPC error built by the gateway, with no secret."""
    keys = vault.grant("nobody", "plain")

    async def scenario() -> BaseException:
        async with connect(vault.url, keys) as client:
            try:
                await client.get_prompt("vault.leak", {})
            except MCPError as error:
                return error
        raise AssertionError("the prompt was not refused")

    error = run(scenario)
    assert_clean(repr(error))
