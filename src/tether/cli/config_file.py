"""Reading ``tether.yaml`` (schema: :mod:`tether.cli.config_schema`) and the ``--config`` option
that hands it to a command.

Precedence is click's own: command line > environment variable > ``default_map`` > default. The
``--config`` option is eager, so its callback reads the file before any other option is resolved
and makes the keys it sets that command's ``default_map``: flag > environment > file > default.

The file is read and checked as every file tether is configured by (:mod:`tether.configfile`:
safe, bounded, duplicate keys refused). One that does not match the schema is refused with every
problem found, each as ``file:line:col: key: message`` ("did you mean" for a misspelt key) and
never with a value of the file, nor a hint drawn from one (a value may be a secret). Relative
paths in the file are relative to the file's directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Final

import typer
from typer import _click as click

from tether.cli.common import err_console, fail
from tether.cli.config_schema import BY_ENV, KEYS, Key, PathRole, TetherFile
from tether.configfile import ProblemsError, read_yaml_file, validate

#: Selects the file when ``--config`` is not given.
CONFIG_ENV: Final = "TETHER_CONFIG"


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """A valid file: the keys it sets (dotted name to value, relative paths resolved against
    the file's directory) and where each one is written (``file:line``)."""

    path: Path
    #: Kept out of repr: a value may be a secret (a database URL with its password).
    values: dict[str, object] = field(repr=False)
    lines: dict[str, int] = field(default_factory=dict)

    def where(self, key: str) -> str:
        line = self.lines.get(key)
        return f"{self.path}:{line}" if line is not None else str(self.path)


def load(path: Path) -> ConfigFile:
    """Read and check the file at ``path`` (:func:`tether.configfile.read_yaml_file`, then the
    schema); :class:`~tether.configfile.ProblemsError` lists what is wrong, never with a value
    of the file (``echo_values=False``)."""
    doc = read_yaml_file(path)
    model = validate(doc, TetherFile, if_empty={}, echo_values=False)
    values = _flatten(model.model_dump(exclude_none=True), path.resolve().parent)
    lines: dict[str, int] = {}
    for key in values:
        place = doc.place(tuple(key.split(".")), key=True)
        if place is not None:
            lines[key] = place.line
    return ConfigFile(path, values, lines)


def _flatten(tree: dict[str, Any], base: Path, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for name, value in tree.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            out.update(_flatten(value, base, f"{key}."))
            continue
        role = KEYS[key].path
        if role is not None and not (role is PathRole.PATH_OR_URL and "://" in str(value)):
            value = base / Path(str(value)).expanduser()
        out[key] = value.value if isinstance(value, StrEnum) else value
    return out


# -- the --config option ------------------------------------------------------------------------

#: Where a command's context keeps the file it read (for ``tether config show``).
LOADED_META: Final = "tether.config_file"


def key_of(param: click.Parameter) -> Key | None:
    """The key of the file a command's parameter reads (through its environment variable)."""
    return BY_ENV.get(param.envvar) if isinstance(param.envvar, str) else None


def _read_config(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """``--config``'s callback: read the file before any other option (the option is eager), and
    make the keys it sets the defaults of this command's parameters (click's ``default_map``,
    below the command line and the environment)."""
    if value is None or ctx.resilient_parsing:
        return value
    path = value.expanduser()
    try:
        loaded = load(path)
    except ProblemsError as error:
        for problem in error.problems:
            err_console.print(str(problem), markup=False, highlight=False, soft_wrap=True)
        fail(
            f"{len(error.problems)} problem(s) in the configuration file {path}",
            "configuration_error",
        )
    defaults = dict(ctx.default_map or {})
    for other in ctx.command.params:
        key = key_of(other)
        if key is not None and key.name in loaded.values and other.name is not None:
            defaults[other.name] = loaded.values[key.name]
    ctx.default_map = defaults
    ctx.meta[LOADED_META] = loaded
    return value


ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        envvar=CONFIG_ENV,
        dir_okay=False,
        help='tether.yaml, the configuration file (README "Configuration"). Flags and '
        "environment variables override it.",
        is_eager=True,
        callback=_read_config,
        show_default=False,
    ),
]
