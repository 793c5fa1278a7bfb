"""Reading ``tether.yaml`` (schema: :mod:`tether.cli.config_schema`) and the ``--config`` option
that hands it to a command.

Precedence is click's own: command line > environment variable > ``default_map`` > default. The
``--config`` option is eager, so its callback reads the file before any other option is resolved
and makes the keys it sets that command's ``default_map``: flag > environment > file > default.

A file that does not match the schema is refused with every problem found, each as
``file:line:col: message`` ("did you mean" for a misspelt key) and never with the value itself
(it may be a secret). Relative paths in the file are relative to the file's directory.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Final

import typer
import yaml
from pydantic import BaseModel, ValidationError
from typer import _click as click

from tether.cli.common import err_console, fail
from tether.cli.config_schema import BY_ENV, KEYS, Key, PathRole, Section, TetherFile

#: Selects the file when ``--config`` is not given.
CONFIG_ENV: Final = "TETHER_CONFIG"
#: A config file is small; a larger one is refused before it is parsed.
MAX_CONFIG_BYTES: Final = 1024 * 1024
#: More nodes than a configuration has, or nesting deeper, once YAML aliases are expanded.
MAX_NODES: Final = 10_000
MAX_DEPTH: Final = 32


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the file, where it is (1-based line and column)."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class ConfigFileError(Exception):
    """The file cannot be used; ``problems`` lists every one found."""

    def __init__(self, path: Path, problems: list[Problem]) -> None:
        super().__init__(f"{path}: {len(problems)} problem(s)")
        self.path = path
        self.problems = problems


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """A valid file: the keys it sets (dotted name to value, relative paths resolved against
    the file's directory) and where each one is written (``file:line``)."""

    path: Path
    #: Kept out of repr: a value may be a secret (a database URL with its password).
    values: dict[str, object] = field(repr=False)
    lines: dict[str, int] = field(default_factory=dict)

    def where(self, key: str) -> str:
        return f"{self.path}:{self.lines[key]}"


Location = tuple[str | int, ...]


class _Marks:
    """The parsed document as plain Python values, with the position of each key and value."""

    def __init__(self) -> None:
        self.keys: dict[Location, yaml.Mark] = {}
        self.values: dict[Location, yaml.Mark] = {}
        self.duplicates: list[tuple[Location, yaml.Mark]] = []
        self._constructor = yaml.SafeLoader("")
        self._nodes = 0

    def build(self, node: yaml.Node, at: Location = ()) -> object:
        # Aliases repeat a node where they appear: a few can stand for millions, or for itself.
        self._nodes += 1
        if self._nodes > MAX_NODES or len(at) > MAX_DEPTH:
            raise _TooLarge(node.start_mark)
        self.values[at] = node.start_mark
        if isinstance(node, yaml.MappingNode):
            out: dict[object, object] = {}
            for key_node, value_node in node.value:
                key = self._constructor.construct_object(key_node, deep=True)
                if not isinstance(key, str):
                    key = str(key)
                here = (*at, key)
                if key in out:
                    self.duplicates.append((here, key_node.start_mark))
                self.keys[here] = key_node.start_mark
                out[key] = self.build(value_node, here)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*at, n)) for n, item in enumerate(node.value)]
        return self._constructor.construct_object(node, deep=True)

    def near(self, at: Location, *, key: bool = False) -> yaml.Mark:
        """The mark of ``at`` (its key's, or its value's), else of the nearest enclosing one."""
        while at:
            mark = (self.keys if key else self.values).get(at) or self.values.get(at)
            if mark is not None:
                return mark
            at = at[:-1]
            key = False
        return self.values[()]


class _TooLarge(Exception):
    def __init__(self, mark: yaml.Mark) -> None:
        super().__init__("too large")
        self.mark = mark


def load(path: Path) -> ConfigFile:
    """Read and check the file at ``path``; :class:`ConfigFileError` lists what is wrong."""
    name = str(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise ConfigFileError(
            path, [Problem(name, 1, 1, f"cannot read the file: {error.strerror or error}")]
        ) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigFileError(path, [Problem(name, 1, 1, "larger than 1 MiB")])
    try:
        text = raw.decode("utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except UnicodeDecodeError:
        raise ConfigFileError(path, [Problem(name, 1, 1, "not UTF-8 text")]) from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = f"not valid YAML: {error.problem or error.context}"
        raise ConfigFileError(path, [Problem(name, line, column, message)]) from None
    if node is None:  # an empty file sets nothing
        return ConfigFile(path, {}, {})
    marks = _Marks()
    try:
        document = marks.build(node)
    except _TooLarge as error:
        message = "too many values or too deeply nested (YAML aliases?)"
        raise ConfigFileError(path, [_problem(name, error.mark, message)]) from None
    if not isinstance(document, dict):
        mark = node.start_mark
        raise ConfigFileError(
            path,
            [Problem(name, mark.line + 1, mark.column + 1, "expected a mapping of settings")],
        )
    problems = [_problem(name, mark, f"{_dotted(at)}: set twice") for at, mark in marks.duplicates]
    try:
        model = TetherFile.model_validate(document)
    except ValidationError as error:
        problems += [_explain(name, marks, document, item) for item in error.errors()]
    if problems:
        problems.sort(key=lambda p: (p.line, p.column))
        raise ConfigFileError(path, problems)
    values = _flatten(model.model_dump(exclude_none=True), path.resolve().parent)
    lines = {key: marks.keys[tuple(key.split("."))].line + 1 for key in values}
    return ConfigFile(path, values, lines)


def _problem(file: str, mark: yaml.Mark, message: str) -> Problem:
    return Problem(file, mark.line + 1, mark.column + 1, message)


def _dotted(at: Location) -> str:
    return ".".join(str(part) for part in at) or "(top level)"


#: Top-level keys of the files that name these commands' own YAML, for a hint when one of them
#: is passed as --config by mistake.
_OTHER_FILES: Final = {
    "upstreams": "--gateway-config (mcp-gateway) or --proxy-config (proxy)",
    "tools": "--gateway-config",
    "routes": "--proxy-config",
}


def _explain(file: str, marks: _Marks, document: dict[object, object], error: Any) -> Problem:
    """One pydantic error as a problem at its key, without the value (it may be a secret)."""
    at: Location = tuple(error["loc"])
    if error["type"] == "extra_forbidden":
        parent = _section_model(at[:-1])
        known = list(parent.model_fields) if parent is not None else []
        message = f"{_dotted(at)}: unknown key"
        close = difflib.get_close_matches(str(at[-1]), known, n=1, cutoff=0.6)
        if close:
            message += f"; did you mean {_dotted((*at[:-1], close[0]))!r}?"
        elif len(at) == 1 and at[0] in _OTHER_FILES:
            message += f" (this looks like another file: pass it with {_OTHER_FILES[str(at[0])]})"
        else:
            message += f"; expected one of: {', '.join(known)}"
        return _problem(file, marks.near(at, key=True), message)
    message = "expected a mapping of keys" if error["type"] == "model_type" else error["msg"]
    return _problem(file, marks.near(at), f"{_dotted(at)}: {message}")


def _section_model(at: Location) -> type[BaseModel] | None:
    model: type[BaseModel] = TetherFile
    for part in at:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, Section)):
            return None
        model = annotation
    return model


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
    except ConfigFileError as error:
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
