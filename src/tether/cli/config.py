"""``tether config show``: the configuration ``serve``, ``mcp-gateway`` and ``proxy`` would run
with, and where each value comes from (the environment, ``tether.yaml`` at a line, a default).

It resolves the options exactly as the command does (click parses the command with no arguments
but ``--config``), so what it prints is what the command would see. Secrets are never printed: a
URL loses its password and query, a secret shows only that it is set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Final

import typer
from typer._click.core import Command, Parameter, ParameterSource
from typer._click.exceptions import ClickException

from tether.cli.common import console, fail
from tether.cli.config_file import LOADED_META, ConfigFile, ConfigOption, key_of
from tether.cli.config_schema import KEYS, TetherFile, shown
from tether.cli.lazy import DeferredCommand, Subcommand
from tether.cli.output import AsJson, Column, print_json, print_table

app = typer.Typer(
    help="tether.yaml: the options of serve, mcp-gateway and proxy, and where each comes from.",
    no_args_is_help=True,
)


class CommandName(StrEnum):
    SERVE = "serve"
    MCP_GATEWAY = "mcp-gateway"
    PROXY = "proxy"


#: The commands that read ``tether.yaml``, and where each one lives.
COMMANDS: Final = {
    CommandName.SERVE: "tether.cli.serve:serve",
    CommandName.MCP_GATEWAY: "tether.cli.mcp:mcp_gateway",
    CommandName.PROXY: "tether.cli.proxy:proxy",
}


def command(name: CommandName) -> Command:
    """The click command of ``name``, as ``tether NAME`` runs it."""
    return DeferredCommand(Subcommand(name.value, COMMANDS[name], "")).load()


@dataclass
class Setting:
    """One key's effective value, as printed (secrets hidden), and where it came from."""

    key: str
    flag: str
    env: str
    value: object
    source: str
    where: str | None
    commands: list[str] = field(default_factory=list)


def resolve(names: list[CommandName], config: Path | None) -> tuple[Path | None, list[Setting]]:
    """Each key the commands ``names`` read, resolved as they would resolve it."""
    settings: dict[str, Setting] = {}
    loaded: ConfigFile | None = None
    for name in names:
        cmd = command(name)
        args = ["--config", str(config)] if config is not None else []
        try:
            ctx = cmd.make_context(name.value, args)
        except ClickException as error:
            fail(error.format_message(), "configuration_error")
        loaded = ctx.meta.get(LOADED_META, loaded)
        for param in cmd.params:
            key = key_of(param)
            if key is None or param.name is None:
                continue
            source = ctx.get_parameter_source(param.name)
            where: str | None = None
            if source is ParameterSource.ENVIRONMENT:
                where = key.env
            elif source is ParameterSource.DEFAULT_MAP and loaded is not None:
                where = loaded.where(key.name)
            setting = settings.setdefault(
                key.name,
                Setting(
                    key=key.name,
                    flag=_long_flag(param),
                    env=key.env,
                    value=shown(key.name, ctx.params[param.name]),
                    source=_SOURCES.get(source, "default") if source is not None else "default",
                    where=where,
                ),
            )
            setting.commands.append(name.value)
    return (loaded.path if loaded else None), sorted(settings.values(), key=_order)


def _long_flag(param: Parameter) -> str:
    flags: list[str] = list(param.opts)
    return next((flag for flag in flags if flag.startswith("--")), flags[0])


_SOURCES: Final = {
    ParameterSource.COMMANDLINE: "flag",
    ParameterSource.ENVIRONMENT: "env",
    ParameterSource.DEFAULT_MAP: "file",
    ParameterSource.DEFAULT: "default",
}


def _order(setting: Setting) -> int:
    return _POSITION[setting.key]  # the schema's order: shared keys, then each command's


_POSITION: Final = {name: n for n, name in enumerate(KEYS)}


@app.command("show")
def show(
    name: Annotated[
        CommandName | None,
        typer.Argument(metavar="[COMMAND]", help="Only this command's options (default: all)."),
    ] = None,
    config: ConfigOption = None,
    as_json: AsJson = False,
) -> None:
    """Show every option's effective value and where it comes from: env (the variable), file
    (file:line) or default. Secrets are hidden."""
    names = [name] if name is not None else list(CommandName)
    path, settings = resolve(names, config)
    if as_json:
        print_json(
            {
                "file": str(path) if path else None,
                "settings": [
                    {
                        "key": s.key,
                        "value": s.value,
                        "source": s.source,
                        "where": s.where,
                        "flag": s.flag,
                        "env": s.env,
                        "commands": s.commands,
                    }
                    for s in settings
                ],
            }
        )
        return
    if path is not None:
        console.print(f"configuration file: {path}", highlight=False)
    print_table(
        "effective configuration",
        [Column("key", key=True), Column("value"), Column("from"), Column("env var")],
        (
            [
                s.key,
                "" if s.value is None else str(s.value),
                s.where if s.source == "file" and s.where else s.source,
                s.env,
            ]
            for s in settings
        ),
    )


@app.command("schema")
def schema() -> None:
    """Print tether.yaml's JSON Schema (for an editor's YAML support): every key with its type,
    bounds, help and environment variable ("env")."""
    document = TetherFile.model_json_schema()
    document["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    document["title"] = "tether.yaml"
    print_json(document)
