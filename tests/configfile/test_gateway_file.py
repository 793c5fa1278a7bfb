"""The MCP gateway's gateway.yaml reports every problem at its file:line:col, never a secret.

One file with several mistakes: each is reported at the line and column of the key or value it
is about, with "did you mean" for misspelt keys, values and upstream names, in one
ConfigurationError that ``tether mcp-gateway`` prints whole before it exits 2. Values that could
be credentials (an env value, a URL's password, a mistyped secret name) are never repeated.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tether.cli.main import app
from tether.configfile import ProblemsError
from tether.core.errors import ConfigurationError, ErrorCode
from tether.mcp import load_config, parse_config

GATEWAY = """\
upstreams:
  crm:
    comand: python
    env: {LOG_LEVEL: info, API_KEY: sk-live-in-env}
    secret_env: {API_KEY: crm-key, 'BAD-NAME': crm-key}
    pin_check: on_chnage
  mail:
    url: https://bob:hunter2-pass@mail.test/mcp
    credential: {secret: tok sk-live-0123, header: Authorization}
    share_sessions: sometimes
  web:
    url: https://web.test/mcp
    cwd: /srv
  'a.b': {command: x}
tools:
  crm.query: {action: raed, datset: crm}
  cmr.update: {action: write}
  mail.send: {action: send, count_records: rows}
prompts:
  crm.summarize: {dataset: crm}
resources:
  - {upstream: mial, uri: "mail://*", dataset: mail}
limits: {max_result_bytes: 8MiB, max_bytes: 10}
"""

EXPECTED = [
    "gateway.yaml:3:5: upstreams.crm.comand: unknown key; did you mean 'command'?",
    "gateway.yaml:5:18: upstreams.crm.secret_env.API_KEY: is set in env too; a credential "
    "belongs in secret_env only",
    "gateway.yaml:5:36: upstreams.crm.secret_env.BAD-NAME: is not an environment variable name",
    "gateway.yaml:6:16: upstreams.crm.pin_check: must be one of 'auto', 'each_call' or "
    "'on_change'; did you mean 'on_change'?",
    "gateway.yaml:8:10: upstreams.mail.url: must not carry credentials; use credential: "
    "{secret: <name>}",
    "gateway.yaml:9:26: upstreams.mail.credential.secret: must name a secret in tether's secret "
    "store",
    "gateway.yaml:10:21: upstreams.mail.share_sessions: must be true or false",
    "gateway.yaml:13:10: upstreams.web.cwd: is not for an upstream with 'url'",
    "gateway.yaml:14:3: upstreams.a.b: an upstream name is 1-64 letters, digits, '_' or '-' (no "
    "dots: tools are exposed as <upstream>.<tool>)",
    "gateway.yaml:16:23: tools.crm.query.action: must be one of 'read', 'write', 'delete', "
    "'send', 'execute' or 'spend'; did you mean 'read'?",
    "gateway.yaml:16:29: tools.crm.query.datset: unknown key; did you mean 'dataset'?",
    "gateway.yaml:17:3: tools.cmr.update: no upstream named 'cmr'; did you mean 'crm'?",
    "gateway.yaml:18:44: tools.mail.send.count_records: must be 'content', 'structured' or "
    "'structured.<path>' (e.g. structured.items)",
    "gateway.yaml:20:3: prompts.crm.summarize: required key 'action' is missing",
    "gateway.yaml:22:16: resources[0].upstream: no upstream named 'mial'; did you mean 'mail'?",
    "gateway.yaml:23:28: limits.max_result_bytes: must be a whole number of bytes",
    "gateway.yaml:23:34: limits.max_bytes: unknown key; did you mean 'max_result_bytes'?",
]
#: Parts of the file that could be credentials: no problem may repeat them.
SECRETS = ("hunter2", "sk-live", "bob:")


def test_a_gateway_file_reports_each_mistake_at_its_place(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(GATEWAY, encoding="utf-8")
    with pytest.raises(ConfigurationError) as caught:
        load_config(path)
    assert isinstance(caught.value, ProblemsError)
    assert caught.value.code is ErrorCode.CONFIGURATION
    assert [str(p).replace(f"{tmp_path}/", "") for p in caught.value.problems] == EXPECTED
    assert caught.value.message.startswith(f"{path} has {len(EXPECTED)} problems:\n")
    assert not any(secret in caught.value.message for secret in SECRETS)


def test_the_gateway_command_lists_every_problem_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(GATEWAY, encoding="utf-8")
    result = CliRunner().invoke(
        app, ["mcp-gateway", "--gateway-config", str(path), "-d", str(tmp_path / "d")]
    )
    assert result.exit_code == 2
    for line in EXPECTED:
        assert f"{tmp_path}/{line}" in result.output
    assert not any(secret in result.output for secret in SECRETS)


@pytest.mark.parametrize(
    ("upstream", "secret"),
    [
        ({"command": "x", "env": {"API_KEY": 1234567890}}, "1234567890"),
        ({"command": "x", "env": {"API_KEY": ["sk-live-0123"]}}, "sk-live"),
        ({"command": "x", "secret_env": {"API_KEY": "sk-live 0123"}}, "sk-live"),
        ({"url": "https://x.test", "credential": "Bearer sk-live-0123"}, "sk-live"),
        ({"url": "https://x.test", "credential": {"secret": "s", "scheme": "sk live"}}, "sk live"),
        ({"url": "https://x.test", "credential": {"secret": "s", "header": "a:b"}}, "a:b"),
        ({"url": "https://u:sk-live-0123@x.test"}, "sk-live"),
        ({"url": "https://x.test", "pin_check": "sk-live-0123"}, "sk-live"),
        ({"url": "https://x.test", "share_sessions": "sk-live-0123"}, "sk-live"),
    ],
)
def test_a_value_that_could_be_a_credential_is_never_repeated(
    upstream: dict[str, object], secret: str
) -> None:
    with pytest.raises(ProblemsError) as caught:
        parse_config({"upstreams": {"crm": upstream}})
    assert caught.value.problems  # the value is refused …
    assert all(p.message.startswith("upstreams.crm.") for p in caught.value.problems)
    assert secret not in caught.value.message  # … without being repeated


def test_data_given_in_memory_names_the_path_without_a_line() -> None:
    with pytest.raises(ProblemsError) as caught:
        parse_config(
            {
                "upstreams": {"crm": {"urll": "https://x"}, "mail": "https://mail.test"},
                "tool": {},
                "prompts": {"summarize": {"action": "read"}},
            }
        )
    assert [str(p) for p in caught.value.problems] == [
        "gateway config: upstreams.crm.urll: unknown key; did you mean 'url'?",
        "gateway config: upstreams.mail: must be a mapping (keys: command, args, env, secret_env, "
        "cwd, url, credential, timeout_seconds, pin_check, share_sessions, "
        "idle_timeout_seconds)",
        "gateway config: prompts.summarize: a tool or prompt is named <upstream>.<name>",
        "gateway config: tool: unknown key; did you mean 'tools'?",
    ]
