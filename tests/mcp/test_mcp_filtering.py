"""tools/list is filtered to the caller's grant; an agent never learns the other tools' names."""

from __future__ import annotations

from mcp_harness import CRM_QUERY, CRM_UPDATE, MAIL, PAY, Gw, connect, run, text_of


def names(gw: Gw, keys: object, **kw: str) -> list[str]:
    async def scenario() -> list[str]:
        async with connect(gw.url, keys, **kw) as client:  # type: ignore[arg-type]
            return [t.name for t in (await client.list_tools()).tools]

    return run(scenario)


def test_list_shows_only_granted_tools_namespaced(gw: Gw) -> None:
    analyst = gw.grant("analyst", CRM_QUERY, PAY)
    assert names(gw, analyst) == ["crm.query", "payments.transfer"]
    helper = gw.grant("helper", CRM_UPDATE, MAIL)
    assert names(gw, helper) == ["crm.update", "email.send"]


def test_listed_tools_carry_the_upstream_descriptor_only(gw: Gw) -> None:
    analyst = gw.grant("analyst", CRM_QUERY)

    async def scenario() -> None:
        async with connect(gw.url, analyst) as client:
            (tool,) = (await client.list_tools()).tools
            assert tool.description == "Look up a customer's records."
            assert tool.input_schema["required"] == ["customer"]
            assert tool.annotations is None and tool.meta is None

    run(scenario)


def test_no_grant_or_a_grant_of_another_agent_lists_nothing(gw: Gw) -> None:
    analyst = gw.grant("analyst", CRM_QUERY, PAY)
    intruder = gw.grant("intruder", CRM_UPDATE)
    assert names(gw, None, svid=intruder.svid) == []
    assert names(gw, None, svid=intruder.svid, grant=analyst.grant) == []
    assert names(gw, None, svid=intruder.svid, grant="not-a-grant") == []


def test_a_grant_named_in_meta_is_used(gw: Gw) -> None:
    analyst = gw.grant("analyst", CRM_QUERY)

    async def scenario() -> None:
        async with connect(gw.url, None, svid=analyst.svid) as client:
            listed = await client.list_tools(meta={"tether/grant": analyst.grant})
            assert [t.name for t in listed.tools] == ["crm.query"]
            missing = await client.call_tool("crm.query", {"customer": "c-1"})
            assert missing.is_error and text_of(missing).startswith("grant_missing")
            ok = await client.call_tool(
                "crm.query", {"customer": "c-1"}, meta={"tether/grant": analyst.grant}
            )
            assert not ok.is_error, text_of(ok)

    run(scenario)


def test_a_grant_of_another_agent_is_refused_on_call(gw: Gw) -> None:
    analyst = gw.grant("analyst", CRM_QUERY)
    intruder = gw.grant("intruder", CRM_UPDATE)

    async def scenario() -> None:
        async with connect(gw.url, None, svid=intruder.svid, grant=analyst.grant) as client:
            result = await client.call_tool("crm.query", {"customer": "c-1"})
            assert result.is_error
            assert "grant_not_bound" in text_of(result)
            assert result.meta is not None
            assert result.meta["tether/error"]["reasons"][0]["code"] == "grant_not_bound"

    run(scenario)
