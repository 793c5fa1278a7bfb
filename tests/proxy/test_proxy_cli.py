"""``tether secrets set|list|delete`` (values from standard input only, never printed back) and
``tether proxy``'s start-up checks. The commands run in process through their own Typer apps, as
``tether.cli.main`` mounts them."""

from __future__ import annotations

from pathlib import Path

import typer
import yaml
from typer.testing import CliRunner

from tether.cli.proxy import proxy
from tether.cli.secrets import app as secrets_app
from tether.credentials.secrets import SecretStore

VALUE = "legacy-standing-key-0c1d2e3f"


def flat(output: str) -> str:
    """Rich wraps long lines at the terminal's width; compare words, not line breaks."""
    return " ".join(output.split())


def proxy_app() -> typer.Typer:
    app = typer.Typer()
    app.command("proxy")(proxy)
    app.command("unused", hidden=True)(lambda: None)  # keep `proxy` a named subcommand
    return app


def test_set_reads_stdin_and_never_prints_the_value(tmp_path: Path) -> None:
    runner = CliRunner()
    data = ["--data-dir", str(tmp_path)]
    stored = runner.invoke(secrets_app, ["set", "legacy-key", *data], input=f"{VALUE}\n")
    assert stored.exit_code == 0, stored.output
    assert "stored secret 'legacy-key'" in flat(stored.output) and VALUE not in stored.output
    # The same store the proxy and the MCP gateway read, encrypted at rest.
    store = SecretStore(tmp_path, environ={})
    assert store.get("legacy-key").reveal() == VALUE
    assert store.path == tmp_path / "secrets.json"
    assert VALUE.encode() not in store.path.read_bytes()

    replaced = runner.invoke(secrets_app, ["set", "legacy-key", *data], input="v2")
    assert replaced.exit_code == 0 and "replaced" in replaced.output
    assert store.get("legacy-key").reveal() == "v2"


def test_set_takes_no_value_on_the_command_line_and_refuses_an_empty_one(tmp_path: Path) -> None:
    runner = CliRunner()
    data = ["--data-dir", str(tmp_path)]
    on_argv = runner.invoke(secrets_app, ["set", "legacy-key", VALUE, *data], input="")
    assert on_argv.exit_code != 0
    empty = runner.invoke(secrets_app, ["set", "legacy-key", *data], input="")
    assert empty.exit_code != 0 and "no secret value" in flat(empty.output)
    bad_name = runner.invoke(secrets_app, ["set", "no spaces", *data], input="x")
    assert bad_name.exit_code != 0 and "invalid_field" in bad_name.output
    assert SecretStore(tmp_path, environ={}).names() == []


def test_list_shows_names_not_values_and_delete_removes(tmp_path: Path) -> None:
    runner = CliRunner()
    data = ["--data-dir", str(tmp_path)]
    assert "no secrets" in flat(runner.invoke(secrets_app, ["list", *data]).output)
    for name in ("legacy-key", "vault-key"):
        assert runner.invoke(secrets_app, ["set", name, *data], input=VALUE).exit_code == 0
    listed = runner.invoke(secrets_app, ["list", *data])
    assert listed.exit_code == 0
    assert "legacy-key" in listed.output and "vault-key" in listed.output
    assert VALUE not in listed.output
    gone = runner.invoke(secrets_app, ["delete", "legacy-key", *data])
    assert gone.exit_code == 0 and SecretStore(tmp_path, environ={}).names() == ["vault-key"]
    again = runner.invoke(secrets_app, ["delete", "legacy-key", *data])
    assert again.exit_code != 0 and "not_found" in again.output


def _config(tmp_path: Path, **upstream: object) -> Path:
    path = tmp_path / "proxy.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "upstreams": {"legacy": {"url": "http://127.0.0.1:9", **upstream}},
                "routes": [
                    {
                        "upstream": "legacy",
                        "method": "GET",
                        "path": "/x",
                        "tool": "crm.query",
                        "action": "read",
                    }
                ],
            }
        )
    )
    return path


def test_proxy_refuses_to_start_on_a_bad_config_or_a_missing_secret(tmp_path: Path) -> None:
    runner = CliRunner()
    data = ["--data-dir", str(tmp_path / "data")]
    bad = runner.invoke(
        proxy_app(), ["proxy", "--proxy-config", str(_config(tmp_path, colour="red")), *data]
    )
    assert bad.exit_code == 2
    assert "upstreams.legacy.colour: unknown key" in flat(bad.output)

    config = _config(tmp_path, secret={"name": "legacy-key"})
    missing = runner.invoke(proxy_app(), ["proxy", "--proxy-config", str(config), *data])
    assert missing.exit_code == 2
    assert "tether secrets set legacy-key" in flat(missing.output)


def test_proxy_reads_its_file_and_data_dir_from_tether_yaml(tmp_path: Path) -> None:
    _config(tmp_path, secret={"name": "legacy-key"})
    (tmp_path / "tether.yaml").write_text("data_dir: data\nproxy: {proxy_config: proxy.yaml}\n")
    args = ["proxy", "--config", str(tmp_path / "tether.yaml")]
    missing = CliRunner().invoke(proxy_app(), args)
    assert missing.exit_code == 2  # it read proxy.yaml, which needs a secret not yet stored
    assert "tether secrets set legacy-key" in flat(missing.output)
    assert (tmp_path / "data" / "tether.db").exists()  # the data directory beside the file
    nothing = CliRunner().invoke(proxy_app(), ["proxy", "-d", str(tmp_path / "data")])
    assert nothing.exit_code == 2 and "--proxy-config" in flat(nothing.output)


def test_proxy_help_names_the_headers_agents_send() -> None:
    shown = CliRunner().invoke(proxy_app(), ["proxy", "--help"])
    assert shown.exit_code == 0
    assert "X-Tether-Grant" in shown.output and "--port" in shown.output
