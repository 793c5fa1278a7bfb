"""A stdio upstream's credentials come from tether's secret store when it is started, never from
gateway.yaml, and a tool that prints them shows them redacted (issue: no secret ever
returned)."""

from __future__ import annotations

import pytest
from mcp_harness import CRM_KEY, CRM_UPDATE, Gw, records
from test_mcp_calls import call

from tether.core.audit import AuditKind
from tether.core.errors import ConfigurationError
from tether.mcp.config import StdioUpstream
from tether.mcp.config_file import parse_config


def update(gw: Gw, ticket: str):  # type: ignore[no-untyped-def]
    keys = gw.grant("analyst", CRM_UPDATE)
    return call(gw, keys, "crm.update", {"ticket": ticket, "discount": 1})


def test_the_credential_reaches_the_server_from_the_secret_store(gw: Gw) -> None:
    result = update(gw, "env-length:CRM_API_KEY")
    assert not result.is_error
    assert result.content[0].text == str(len(CRM_KEY))
    assert CRM_KEY not in gw.config_path.read_text()  # gateway.yaml names the secret only


def test_a_tool_that_prints_the_credential_shows_it_redacted(gw: Gw) -> None:
    result = update(gw, "env:CRM_API_KEY")
    assert not result.is_error
    assert result.content[0].text == "CRM_API_KEY=[redacted:crm-key]"
    assert CRM_KEY not in result.model_dump_json(by_alias=True)
    redacted = records(gw.runtime, AuditKind.SECRET_REDACTED)
    assert redacted and redacted[-1].body["tool"] == "crm.update"
    assert redacted[-1].body["secrets"] == [{"name": "crm-key", "forms": ["raw"], "count": 1}]
    assert all(CRM_KEY not in str(r.to_json()) for r in records(gw.runtime))


def _stdio(**extra: object) -> dict[str, object]:
    return {"upstreams": {"crm": {"command": "python", **extra}}, "tools": {}}


def test_secret_env_is_parsed_apart_from_env() -> None:
    config = parse_config(_stdio(env={"LOG_LEVEL": "info"}, secret_env={"API_KEY": "crm-key"}))
    crm = config.upstreams[0]
    assert isinstance(crm, StdioUpstream)
    assert crm.env == (("LOG_LEVEL", "info"),)
    assert crm.secret_env == (("API_KEY", "crm-key"),)


@pytest.mark.parametrize(
    ("secret_env", "env", "message"),
    [
        ({"BAD-NAME": "crm-key"}, {}, "not an environment variable name"),
        ({"API_KEY": "no spaces allowed"}, {}, "must name a secret"),
        ({"API_KEY": 5}, {}, "must name a secret"),
        ({"API_KEY": "crm-key"}, {"API_KEY": "plain"}, "secret_env only"),
        (["API_KEY"], {}, "must map environment variables"),
    ],
)
def test_a_bad_secret_env_names_its_path(secret_env: object, env: object, message: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        parse_config(_stdio(env=env, secret_env=secret_env))
    assert "upstreams.crm.secret_env" in raised.value.message
    assert message in raised.value.message
