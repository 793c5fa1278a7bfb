"""Limits: a tool result over ``limits.max_result_bytes`` never reaches the agent. The call was
allowed and ran, so it is an error effect, with an ``upstream_failed`` record saying how large."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from mcp_harness import UPSTREAM, open_grant, records, run, text_of

from support import make_runtime
from tether.core.audit import AuditKind, verify_chain
from tether.core.errors import ConfigurationError
from tether.mcp import Caller, open_gateway, parse_config
from tether.runtime import Runtime
from tether.service.clock import ManualClock

QUERY = {"tool": "crm.query", "actions": ["read"], "datasets": ["crm"]}
UPSTREAMS = {"crm": {"command": sys.executable, "args": [UPSTREAM, "crm"]}}
TOOLS = {"crm.query": {"action": "read", "dataset": "crm", "count_records": "structured.items"}}


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    rt = make_runtime(tmp_path / "data", ManualClock(datetime(2026, 11, 28, 12, 0, tzinfo=UTC)))
    yield rt
    rt.close()


def test_a_result_over_the_cap_is_withheld_and_recorded_as_an_error_effect(
    runtime: Runtime,
) -> None:
    config = parse_config(
        {"upstreams": UPSTREAMS, "tools": TOOLS, "limits": {"max_result_bytes": 4096}}
    )
    gateway = open_gateway(config, runtime)
    clock = runtime.clock
    assert isinstance(clock, ManualClock)
    keys = open_grant(runtime, clock, "analyst", QUERY)
    caller = Caller(runtime.verifier.verify(keys.svid, clock.now()), keys.grant)

    async def scenario() -> list[object]:
        async with gateway.running():
            small = await gateway.call_tool(caller, "crm.query", {"customer": "c-1", "rows": 10})
            # about 40 bytes a row on the wire: 1,000 rows are ten times the cap
            large = await gateway.call_tool(caller, "crm.query", {"customer": "c-1", "rows": 1000})
            return [small, large]

    small, large = run(scenario)
    assert not small.is_error and text_of(small) == "10 records for c-1"  # type: ignore[attr-defined]

    assert large.is_error  # type: ignore[attr-defined]
    error = large.meta["tether/error"]  # type: ignore[attr-defined]
    assert error["code"] == "upstream_result_too_large"
    assert error["limit_bytes"] == 4096 and error["result_bytes"] > 25_000
    shown = text_of(large)
    assert shown.startswith("upstream_result_too_large: ")
    assert "limits.max_result_bytes" in shown
    assert "records for" not in shown and large.structured_content is None  # type: ignore[attr-defined]

    decisions = [r.body["verdict"]["decision"] for r in records(runtime, AuditKind.DECISION)]  # type: ignore[index]
    assert decisions == ["allow", "allow"]  # both calls were allowed and ran
    effects = records(runtime, AuditKind.EFFECT)
    assert [e.body["status"] for e in effects] == ["ok", "error"]
    assert effects[0].body["records"] == 10
    assert effects[1].body["decision_id"] == error["decision_id"]
    assert effects[1].body["bytes"] == 0  # the agent read none of it
    (failed,) = records(runtime, AuditKind.UPSTREAM_FAILED)
    assert failed.body["failure"] == "too_large" and failed.body["tool"] == "crm.query"
    assert str(error["result_bytes"]) in str(failed.body["message"])
    assert verify_chain(runtime.store.audit_records(), runtime.store.chain_head()).ok


def test_the_result_cap_defaults_to_8_mib_and_is_validated() -> None:
    from tether.mcp.config import DEFAULT_MAX_RESULT_BYTES

    assert parse_config({"upstreams": UPSTREAMS}).max_result_bytes == DEFAULT_MAX_RESULT_BYTES
    assert DEFAULT_MAX_RESULT_BYTES == 8 * 1024 * 1024
    limited = parse_config({"upstreams": UPSTREAMS, "limits": {"max_result_bytes": 1000}})
    assert limited.max_result_bytes == 1000
    for bad, message in [
        ({"max_result_bytes": 0}, "above 0"),
        ({"max_result_bytes": "8MiB"}, "whole number of bytes"),
        ({"max_result_bytes": 2**31}, "at most"),
        ({"max_bytes": 10}, "limits.max_bytes: unknown key"),
    ]:
        with pytest.raises(ConfigurationError, match=message):
            parse_config({"upstreams": UPSTREAMS, "limits": bad})
