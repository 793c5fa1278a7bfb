"""The gateway config is validated strictly; pins and secrets behave as their modules say."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tether.cli.main import app
from tether.core.errors import ConfigurationError, NotFound
from tether.core.scope import ActionKind
from tether.core.secret import Secret
from tether.credentials.secrets import KEY_ENV, SecretStore
from tether.mcp.config import HttpUpstream, StdioUpstream
from tether.mcp.config_file import load_config, parse_config
from tether.mcp.pins import PinStatus, PinStore, descriptor

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
GOOD = {
    "upstreams": {
        "crm": {"command": "python", "args": ["crm.py"], "env": {"A": "b"}},
        "mail": {"url": "https://mail.test/mcp", "credential": {"secret": "mail-token"}},
    },
    "tools": {
        "crm.query": {"action": "read", "dataset": "crm", "count_records": "structured.items"}
    },
}


def test_a_good_config_parses_with_safe_defaults() -> None:
    config = parse_config(GOOD)
    crm, mail = config.upstreams
    assert isinstance(crm, StdioUpstream) and crm.args == ("crm.py",) and crm.env == (("A", "b"),)
    assert isinstance(mail, HttpUpstream) and mail.credential is not None
    assert (mail.credential.header, mail.credential.scheme) == ("Authorization", "Bearer")
    assert config.mapping("crm.query").action is ActionKind.READ
    assert config.mapping("crm.anything_else").action is ActionKind.WRITE  # unmapped is a write
    assert crm.pin_check == mail.pin_check == "auto"
    assert not crm.share_sessions and not mail.share_sessions  # one session per agent
    each = parse_config({"upstreams": {"m": {"url": "http://x", "pin_check": "each_call"}}})
    assert each.upstreams[0].pin_check == "each_call"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"upstreams": {"crm": {"comand": "python"}}}, "upstreams.crm.comand: unknown key"),
        ({"upstreams": {"a.b": {"command": "x"}}}, "upstreams.a.b: an upstream name"),
        ({"upstreams": {"crm": {"args": []}}}, "needs either 'command'"),
        ({"upstreams": {"m": {"url": "ftp://x"}}}, "upstreams.m.url: must be an http"),
        (
            {"upstreams": {"m": {"url": "http://x", "credential": {"secret": "s", "value": "v"}}}},
            "upstreams.m.credential.value: unknown key",
        ),
        ({"tools": {"crm.query": {"action": "launch"}}}, "tools.crm.query.action: must be one of"),
        ({"tools": {"crm.query": {"action": "read", "datset": "x"}}}, "tools.crm.query.datset"),
        ({"tools": {"nope.query": {"action": "read"}}}, "no upstream named 'nope'"),
        ({"tools": {"crm.q": {"action": "read", "count_records": "rows"}}}, "count_records"),
        ({"upstreams": {"m": {"url": "http://x", "pin_check": "never"}}}, "m.pin_check: must be"),
        ({"upstreams": {"m": {"url": "http://x", "share_sessions": "yes"}}}, "share_sessions"),
        ({"extra": 1}, "extra: unknown key; allowed here: limits, prompts, resources, tools"),
        ({"upstreams": {}}, "name at least one upstream"),
        ({"upstreams": {"m": {"url": "http://x", "command": "y"}}}, "has both 'command' and 'url'"),
        ({"upstreams": {"m": {"url": "http://x", "args": []}}}, "m.args: is not for an upstream"),
        ({"upstreams": {"m": {"command": "x", "credential": {"secret": "s"}}}}, "m.credential"),
        ({"resources": [{"upstream": "crm", "uri": "x"}]}, "resources[0]: required key 'dataset'"),
    ],
)
def test_config_errors_name_the_key_path(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        parse_config({**GOOD, **change})
    assert message in raised.value.message


def test_load_config_reports_bad_yaml_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("upstreams:\n  crm: [\n")
    with pytest.raises(ConfigurationError) as raised:
        load_config(path)
    assert raised.value.message.startswith(f"{path}:3:1: not valid YAML: ")


def test_pins_pin_on_first_sight_hold_a_change_pending_and_approve_it(tmp_path: Path) -> None:
    pins = PinStore(tmp_path / "pins.json")
    first = descriptor("query", "Look up records.", {"type": "object"})
    assert pins.check("crm.query", first, NOW).status is PinStatus.PINNED
    assert pins.check("crm.query", first, NOW).status is PinStatus.MATCH
    changed = descriptor("query", "Look up records, then email them out.", {"type": "object"})
    seen = pins.check("crm.query", changed, NOW)
    assert seen.status is PinStatus.CHANGED and seen.new_change
    assert not pins.check("crm.query", changed, NOW).new_change  # audited once per change
    other = PinStore(tmp_path / "pins.json")  # the CLI, in another process
    (entry,) = other.entries()
    assert entry.pending_description == "Look up records, then email them out."
    old, new = other.approve("crm.query", NOW)
    assert (old, new) == (seen.pinned, seen.seen)
    assert pins.status("crm.query", seen.seen) is PinStatus.MATCH  # re-read from disk
    with pytest.raises(NotFound):
        other.approve("crm.query", NOW)
    assert (tmp_path / "pins.json").stat().st_mode & 0o077 == 0


def test_secrets_are_encrypted_at_rest_and_redacted(tmp_path: Path) -> None:
    store = SecretStore(tmp_path, environ={})
    store.set("mail-token", Secret("s3cr3t-value"))
    assert store.get("mail-token").reveal() == "s3cr3t-value"
    assert b"s3cr3t-value" not in store.path.read_bytes()
    assert store.path.stat().st_mode & 0o077 == 0
    assert (tmp_path / "keys" / "secrets.key").stat().st_mode & 0o077 == 0
    secret = store.get("mail-token")
    assert (
        "s3cr3t" not in repr(secret)
        and "s3cr3t" not in f"{secret}"
        and "s3cr3t" not in str([secret])
    )
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    with pytest.raises(NotFound):
        store.get("missing")


def test_a_secret_needs_its_key_and_its_own_name(tmp_path: Path) -> None:
    store = SecretStore(tmp_path, environ={})
    store.set("a", Secret("value-a"))
    store.set("b", Secret("value-b"))
    other_key = SecretStore(tmp_path, environ={KEY_ENV: "x" * 43 + "="})
    with pytest.raises(ConfigurationError) as raised:
        other_key.get("a")
    assert "value-a" not in raised.value.message
    body = json.loads(store.path.read_text())  # swap the tokens: neither decrypts as the other
    body["secrets"]["a"], body["secrets"]["b"] = body["secrets"]["b"], body["secrets"]["a"]
    store.path.write_text(json.dumps(body))
    with pytest.raises(ConfigurationError, match="another name"):
        store.get("a")


def test_cli_sets_secrets_from_stdin_and_lists_names_only(tmp_path: Path) -> None:
    """The gateway's upstream secrets are ``tether secrets``, the store the proxy reads too."""
    runner = CliRunner()
    data = ["--data-dir", str(tmp_path)]
    stored = runner.invoke(app, ["secrets", "set", "mail-token", *data], input="tok-123\n")
    assert stored.exit_code == 0, stored.output
    assert "tok-123" not in stored.output
    assert SecretStore(tmp_path).get("mail-token").reveal() == "tok-123"
    listed = runner.invoke(app, ["secrets", "list", *data])
    assert "mail-token" in listed.output and "tok-123" not in listed.output
    empty = runner.invoke(app, ["secrets", "set", "x", *data], input="")
    assert empty.exit_code != 0 and "no secret value" in empty.output
    gone = runner.invoke(app, ["secrets", "delete", "mail-token", *data])
    assert gone.exit_code == 0 and SecretStore(tmp_path).names() == []


def test_secrets_are_one_group_put_still_sets_and_mcp_has_no_second_one(tmp_path: Path) -> None:
    runner = CliRunner()
    data = ["--data-dir", str(tmp_path)]
    put = runner.invoke(app, ["secrets", "put", "mail-token", *data], input="tok-456")
    assert put.exit_code == 0, put.output
    assert SecretStore(tmp_path).get("mail-token").reveal() == "tok-456"
    listing = runner.invoke(app, ["secrets", "--help"])
    assert " set " in listing.output and " put " not in listing.output  # the alias is hidden
    gone = runner.invoke(app, ["mcp", "secrets", "set", "x", *data], input="v")
    assert gone.exit_code == 2 and "No such command 'secrets'" in gone.output


@pytest.mark.parametrize(
    "command",
    [
        ["mcp-gateway"],
        ["mcp"],
        ["mcp", "pins", "list"],
        ["mcp", "pins", "approve"],
    ],
    ids=" ".join,
)
def test_every_mcp_command_has_help(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_a_bad_config_stops_the_gateway_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("upstreams:\n  crm:\n    comand: python\n")
    result = CliRunner().invoke(
        app, ["mcp-gateway", "--gateway-config", str(path), "-d", str(tmp_path / "d")]
    )
    assert result.exit_code == 2
    assert "upstreams.crm.comand: unknown key" in result.output
