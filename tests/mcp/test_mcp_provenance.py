"""Argument provenance through the gateway: what a tool's result showed the agent is observed
(in the background, before the task's next decision), so a value seen only in an untrusted
result cannot be sent on through a sink argument the catalog guards."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from mcp_harness import CRM_QUERY, MAIL, Gw, connect, run, running_gateway, text_of

from support import copy_policies
from tether.service.clock import ManualClock

SINKS = """
tools:
  email.send:
    sinks:
      to: {needs: not_only_untrusted}
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gw]:
    root = tmp_path_factory.mktemp("provenance")
    policies = copy_policies(root / "policies")
    catalog = policies / "catalog.yaml"
    catalog.write_text(catalog.read_text() + SINKS)
    clock = ManualClock(datetime(2026, 12, 6, 12, 0, tzinfo=UTC))
    with running_gateway(root, clock, policy_dir=policies) as running:
        yield running


def calls(gw: Gw, keys: object, *steps: tuple[str, dict[str, object]]) -> list[Any]:
    """The steps, in order, over one agent session."""

    async def scenario() -> list[Any]:
        async with connect(gw.url, keys) as client:  # type: ignore[arg-type]
            return [await client.call_tool(tool, args) for tool, args in steps]

    return run(scenario)


def test_an_address_seen_only_in_a_tool_result_is_not_sent_to(gw: Gw) -> None:
    analyst = gw.grant("analyst", CRM_QUERY, MAIL)
    sent = len(gw.mail.sent)
    shown, injected = calls(
        gw,
        analyst,
        ("crm.query", {"customer": "carol@example.com"}),
        ("email.send", {"to": "carol@example.com", "subject": "hi"}),
    )
    assert not shown.is_error and "carol@example.com" in text_of(shown)

    assert injected.is_error, text_of(injected)
    error = injected.meta["tether/error"]
    assert [r["code"] for r in error["reasons"]] == ["untrusted_argument"]
    assert "crm.query" in text_of(injected)  # names where the value was seen
    assert "carol@example.com" not in str(error)  # never the value itself
    assert len(gw.mail.sent) == sent

    # The same address from a task whose agent was never shown it in a result goes out.
    (unseen,) = calls(
        gw, gw.grant("analyst", MAIL), ("email.send", {"to": "carol@example.com", "subject": "hi"})
    )
    assert not unseen.is_error, text_of(unseen)
    assert [m["to"] for m in gw.mail.sent[sent:]] == ["carol@example.com"]
