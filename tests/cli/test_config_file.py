"""``tether.yaml`` and the options of ``serve``, ``mcp-gateway`` and ``proxy``: every option has an
environment variable and a key, the shared ones are the same on the three, a value comes from the
flag, else the environment, else the file, else the default; a bad file is refused with every
problem at its line and column; ``tether config show`` says where each value came from and never
prints a secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer._click.core import Command, ParameterSource
from typer.testing import CliRunner

from ops.ops_support import ServeProcess, _wait_ready, free_port
from tether.cli.config import CommandName, command
from tether.cli.config_file import CONFIG_ENV, key_of, load
from tether.cli.config_schema import BY_ENV, KEYS

runner = CliRunner()

#: Keys every one of the three commands reads (the rest belong to one command's section).
SHARED = [name for name in KEYS if name.split(".")[0] not in ("serve", "mcp_gateway", "proxy")]


def _app():  # type: ignore[no-untyped-def]
    from tether.cli.main import app

    return app


def _options(cmd: Command) -> list:  # type: ignore[type-arg]
    return [p for p in cmd.params if p.name != "help"]


def _clean_env() -> dict[str, str]:
    """The environment without any of tether's variables (the test sets its own)."""
    names = {*BY_ENV, CONFIG_ENV}
    return {k: v for k, v in os.environ.items() if k not in names}


@pytest.fixture(autouse=True)
def _no_tether_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [*BY_ENV, CONFIG_ENV]:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("name", list(CommandName), ids=str)
def test_every_option_has_an_env_var_and_a_key_of_the_file(name: CommandName) -> None:
    cmd = command(name)
    for param in _options(cmd):
        assert isinstance(param.envvar, str) and param.envvar, (name, param.name)
        if param.name != "config":
            assert key_of(param) is not None, (name, param.name, param.envvar)
    section = name.value.replace("-", "_")
    read = {key.name for p in _options(cmd) if (key := key_of(p)) is not None}
    assert read == {*SHARED, *(k for k in KEYS if k.startswith(f"{section}."))}


def test_every_key_is_read_and_each_variable_names_one_key() -> None:
    read = {key.name for name in CommandName for p in command(name).params if (key := key_of(p))}
    assert read == set(KEYS)
    assert len(BY_ENV) == len(KEYS)
    assert CONFIG_ENV not in BY_ENV


def test_the_shared_options_are_the_same_on_the_three_commands() -> None:
    seen: dict[str, set[tuple[object, ...]]] = {name: set() for name in SHARED}
    for name in CommandName:
        for param in _options(command(name)):
            key = key_of(param)
            if key is not None and key.name in seen:
                seen[key.name].add((tuple(param.opts), param.envvar, str(param.default)))
    assert all(len(shapes) == 1 for shapes in seen.values()), seen


def _resolve(name: CommandName, *args: str) -> tuple[dict[str, object], dict[str, object]]:
    cmd = command(name)
    ctx = cmd.make_context(name.value, list(args))
    sources = {p: ctx.get_parameter_source(p) for p in ctx.params}
    return ctx.params, sources  # type: ignore[return-value]


def test_flag_beats_env_beats_file_beats_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "tether.yaml"
    config.write_text(
        "log: {level: debug}\n"
        "identity: {trust_domain: file.example, audience: file-aud}\n"
        "serve: {port: 1111, workers: 3}\n"
    )
    monkeypatch.setenv("TETHER_TRUST_DOMAIN", "env.example")
    monkeypatch.setenv("TETHER_SERVE_PORT", "2222")
    params, sources = _resolve(CommandName.SERVE, "--config", str(config), "--port", "3333")
    assert (params["port"], sources["port"]) == (3333, ParameterSource.COMMANDLINE)
    assert params["trust_domain"] == "env.example"
    assert sources["trust_domain"] is ParameterSource.ENVIRONMENT
    assert (params["audience"], sources["audience"]) == ("file-aud", ParameterSource.DEFAULT_MAP)
    assert (params["workers"], params["log_level"]) == (3, "debug")
    assert (params["host"], sources["host"]) == ("127.0.0.1", ParameterSource.DEFAULT)
    # Without --config nor TETHER_CONFIG, no file is read.
    params, _ = _resolve(CommandName.SERVE)
    assert (params["port"], params["audience"]) == (2222, "tether")
    # TETHER_CONFIG selects the file as --config does.
    monkeypatch.setenv(CONFIG_ENV, str(config))
    params, _ = _resolve(CommandName.PROXY)
    assert (params["audience"], params["log_level"]) == ("file-aud", "debug")


def test_relative_paths_in_the_file_are_relative_to_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "etc" / "policies").mkdir(parents=True)
    config = tmp_path / "etc" / "tether.yaml"
    config.write_text(
        "data_dir: state\npolicies: policies\nmcp_gateway: {gateway_config: gateway.yaml}\n"
        "identity: {oidc_jwks: https://issuer.example/jwks}\n"
    )
    monkeypatch.chdir(tmp_path)
    params, _ = _resolve(CommandName.MCP_GATEWAY, "-c", "etc/tether.yaml")
    assert params["data_dir"] == tmp_path / "etc" / "state"
    assert params["policies"] == tmp_path / "etc" / "policies"
    assert params["gateway_config"] == tmp_path / "etc" / "gateway.yaml"
    assert params["oidc_jwks"] == "https://issuer.example/jwks"  # a URL stays a URL


BAD = """\
data_dir: x
identity:
  oidc_isuer: https://issuer.example
  max_token_lifetime: 5
store:
  uri: postgresql://tether:hunter2-in-a-key@db/tether
serve:
  port: 70000
  approval_webhook_secret: [whsec_in_a_list]
log: {level: whsec_debugg}
upstreams: {}
"""


def test_a_bad_file_stops_the_command_with_every_problem_at_its_line(tmp_path: Path) -> None:
    config = tmp_path / "tether.yaml"
    config.write_text(BAD)
    result = subprocess.run(
        [sys.executable, "-m", "tether", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env=_clean_env(),
    )
    assert result.returncode == 2, result.stderr  # a usage error; nothing was started
    problems = [line for line in result.stderr.splitlines() if line.startswith(str(config))]
    assert problems == [
        f"{config}:3:3: identity.oidc_isuer: unknown key; did you mean 'oidc_issuer'?",
        f"{config}:4:23: identity.max_token_lifetime: must be at least 60",
        f"{config}:6:3: store.uri: unknown key; did you mean 'url'?",
        f"{config}:8:9: serve.port: must be at most 65535",
        f"{config}:9:28: serve.approval_webhook_secret: must be a string",
        f"{config}:10:14: log.level: must be one of 'debug', 'info', 'warning' or 'error'",
        f"{config}:11:1: upstreams: unknown key (this looks like another file: pass it with "
        "--gateway-config (mcp-gateway) or --proxy-config (proxy))",
    ]
    assert "7 problem(s)" in result.stderr
    # No value of the file, nor a hint drawn from one ("did you mean 'debug'?" would tell what
    # the value nearly is): a value may be a secret.
    for secret in ("hunter2", "whsec_in_a_list", "debugg", "did you mean 'debug'"):
        assert secret not in result.stderr, secret


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("serve: [\n", "2:1: not valid YAML"),
        ("- a\n- b\n", "1:1: (top level): must be a mapping (keys: data_dir, policies,"),
        ("serve:\n  port: 99999\n", "2:9: serve.port: must be at most 65535"),
        ("log: {level: loud}\n", "1:14: log.level: must be one of 'debug', 'info'"),
        (
            "proxy: [8472]\n",
            "1:8: proxy: must be a mapping (keys: proxy_config, host, port, metrics)",
        ),
        ("serve:\n  port: 1\n  port: 2\n", "3:3: serve.port: duplicate key (first at line 2)"),
        ("serve: {port: !!int p4ss}\n", "1:15: serve.port: not a valid int"),
        ("data_dir: [p4ss]\n", "1:11: data_dir: must be a path (a string)"),
        ("a: &a [*a]\n", "1:4: a[0][0]…: nested more than 64 levels deep"),
        (
            "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
            "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\n"
            "e: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n",
            "1:26: e[10][0]…: more than 100000 values",  # placed at the aliased value
        ),
    ],
)
def test_each_kind_of_bad_file_is_a_usage_error_at_its_place(
    tmp_path: Path, text: str, message: str
) -> None:
    config = tmp_path / "tether.yaml"
    config.write_text(text)
    result = runner.invoke(_app(), ["proxy", "--config", str(config)])
    assert result.exit_code == 2
    assert f"{config}:{message}" in result.output
    assert "p4ss" not in result.output


def test_a_file_that_cannot_be_read_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "absent.yaml"
    result = runner.invoke(_app(), ["proxy", "--config", str(config)])
    assert result.exit_code == 2
    assert f"{config}: cannot be read (No such file or directory)" in result.output


def test_an_empty_file_sets_nothing(tmp_path: Path) -> None:
    config = tmp_path / "tether.yaml"
    config.write_text("# nothing yet\n")
    params, sources = _resolve(CommandName.SERVE, "--config", str(config))
    assert params["port"] == 8470 and sources["port"] is ParameterSource.DEFAULT


def test_config_show_names_each_source_and_hides_every_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "tether.yaml"
    config.write_text(
        "store:\n"
        "  url: postgresql://tether:db-pass-1@db:5432/tether?sslpassword=ssl-pass-2\n"
        "serve:\n"
        "  port: 9000\n"
        "  approval_webhook: https://hooks.example/services/T0/B0/hook-token-3\n"
    )
    monkeypatch.setenv("TETHER_REDIS_URL", "redis://:redis-pass-4@cache:6379/0")
    monkeypatch.setenv("TETHER_APPROVAL_WEBHOOK_SECRET", "whsec_c2VjcmV0LTU=")
    result = runner.invoke(_app(), ["config", "show", "--json", "--config", str(config)])
    assert result.exit_code == 0, result.output
    for secret in ("db-pass-1", "ssl-pass-2", "hook-token-3", "redis-pass-4", "c2VjcmV0LTU"):
        assert secret not in result.output
    shown = {s["key"]: s for s in json.loads(result.output)["settings"]}
    assert shown["store.url"]["value"] == "postgresql://tether:********@db:5432/tether?********"
    assert shown["store.url"]["source"] == "file"
    assert shown["store.url"]["where"] == f"{config}:2"
    assert shown["store.redis_url"]["value"] == "redis://:********@cache:6379/0"
    assert (shown["store.redis_url"]["source"], shown["store.redis_url"]["where"]) == (
        "env",
        "TETHER_REDIS_URL",
    )
    assert shown["serve.approval_webhook_secret"]["value"] == "********"
    assert shown["serve.approval_webhook"]["value"] == "********"
    assert (shown["serve.port"]["value"], shown["serve.port"]["where"]) == (9000, f"{config}:4")
    assert shown["proxy.port"] == {
        "key": "proxy.port",
        "value": 8472,
        "source": "default",
        "where": None,
        "flag": "--port",
        "env": "TETHER_PROXY_PORT",
        "commands": ["proxy"],
    }
    assert shown["identity.oidc_issuer"]["commands"] == ["serve", "mcp-gateway", "proxy"]
    assert "db-pass-1" not in repr(load(config))  # nor in the loaded file's repr
    # The table says the same, secrets hidden too.
    table = runner.invoke(_app(), ["config", "show", "serve", "--config", str(config)])
    assert table.exit_code == 0, table.output
    assert "db-pass-1" not in table.output and "redis-pass-4" not in table.output
    rows = {line.split("\t")[0]: line.split("\t") for line in table.output.splitlines()}
    assert rows["serve.port"][1:] == ["9000", f"{config}:4", "TETHER_SERVE_PORT"]
    assert "proxy.port" not in rows


def test_a_server_starts_from_the_file_with_the_environment_on_top(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "etc" / "tether.yaml"
    config.parent.mkdir()
    config.write_text("data_dir: state\nlog: {level: warning}\nserve: {port: 1, workers: 1}\n")
    env = _clean_env() | {"TETHER_SERVE_PORT": str(port), CONFIG_ENV: str(config)}
    stderr, stdout = tmp_path / "serve.stderr", tmp_path / "serve.stdout"
    with stderr.open("wb") as err, stdout.open("wb") as out:
        popen = subprocess.Popen(
            [sys.executable, "-m", "tether", "serve"], env=env, stdout=out, stderr=err
        )
    process = ServeProcess(popen, f"http://127.0.0.1:{port}", stderr, stdout)
    try:
        _wait_ready(process)  # on the environment's port, not the file's port 1
        assert (tmp_path / "etc" / "state" / "tether.db").exists()  # the file's data_dir
    finally:
        process.stop()
    assert f"data {tmp_path / 'etc' / 'state'}" in stdout.read_text()


def test_config_schema_prints_every_key_with_its_variable() -> None:
    result = runner.invoke(_app(), ["config", "schema"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    found: dict[str, str] = {}
    sections = {"identity": "Identity", "store": "Store", "log": "Log", "serve": "Serve"}
    sections |= {"mcp_gateway": "McpGateway", "proxy": "Proxy"}
    for name, spec in document["properties"].items():
        if name in sections:
            for key, leaf in document["$defs"][sections[name]]["properties"].items():
                found[f"{name}.{key}"] = leaf["env"]
        else:
            found[name] = spec["env"]
    assert found == {name: key.env for name, key in KEYS.items()}
    assert document["additionalProperties"] is False


def _another_value(key: str, default: object, tmp_path: Path) -> str:
    """A valid value for the option of ``key`` other than ``default``, as the environment holds
    it (the type and bounds from the schema)."""
    field = KEYS[key].field
    kind = field.annotation
    low = next((m.ge for m in field.metadata if hasattr(m, "ge")), None)
    if kind == bool | None:
        return "false" if default else "true"
    if kind in (int | None, float | None):
        return str(low if low is not None and low != default else 7000)
    if kind == Path | None:
        (tmp_path / "a-dir").mkdir(exist_ok=True)
        (tmp_path / "a-file").touch()
        return str(tmp_path / ("a-dir" if key in ("data_dir", "policies") else "a-file"))
    members = getattr(next(a for a in kind.__args__ if a is not type(None)), "__members__", {})
    if members:
        return next(m.value for m in members.values() if m.value != str(default))
    return "https://from-env.example/x"


@pytest.mark.parametrize("name", list(CommandName), ids=str)
def test_each_environment_variable_sets_its_option(
    name: CommandName, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cmd = command(name)
    for param in _options(cmd):
        if param.name == "config":
            continue
        key = key_of(param)
        assert key is not None
        value = _another_value(key.name, param.default, tmp_path)
        monkeypatch.setenv(param.envvar, value)
        params, sources = _resolve(name)
        monkeypatch.delenv(param.envvar)
        assert sources[param.name] is ParameterSource.ENVIRONMENT, (param.name, param.envvar)
        assert params[param.name] != param.default, (param.name, value)
