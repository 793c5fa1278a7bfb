"""How commands print what they found: a table on a terminal, complete lines in a pipe, or JSON.

A script reads what a person sees, so nothing is cut: on a terminal, id columns never wrap or
shorten (a cell too wide folds rather than ending in "…"), and a terminal too narrow for whole ids,
or for a report's many columns, gets one field a line instead of a table; in a pipe or a file, a
table is tab-separated lines (a header, then one row a line: ``cut -f1`` gives the ids; times
whole, in ISO 8601), messages are not wrapped at the console width, and no spinner is drawn.

``--json`` prints the objects themselves, as one document (:func:`print_json`), or as one object
a line for a stream (:func:`print_json_line`: ``audit tail``, ``audit export``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from tether.cli.common import console, err_console

AsJson = Annotated[
    bool, typer.Option("--json", help="Print JSON for scripts: complete, never cut or wrapped.")
]


#: The narrowest a column that is not an id gets in a table on a terminal.
_MIN_OTHER = 6
#: A report table on a terminal gets at least this many columns of width per column, else its
#: rows are printed one field a line (twelve columns in 80 are unreadable).
_MIN_READABLE = 9


@dataclass(frozen=True)
class Column:
    """A table column; ``key`` marks an id or name the next command needs whole."""

    header: str
    key: bool = False


def configure_output() -> None:
    """Messages to a pipe or file are not wrapped at the console width (a terminal's are)."""
    for each in (console, err_console):
        each.soft_wrap = not each.is_terminal


def instant(iso: str) -> str:
    """An ISO 8601 time for a table: whole in a pipe or a file (zone and fraction kept), to the
    second on a terminal."""
    return iso[:19] if console.is_terminal else iso


def print_json(value: Any) -> None:
    """One JSON document on stdout."""
    typer.echo(json.dumps(value, indent=2, sort_keys=True))


def print_json_line(value: Any) -> None:
    """One JSON object on one line (a stream: ``audit tail --follow --json``)."""
    typer.echo(json.dumps(value, sort_keys=True, separators=(",", ":")))


def _cell(value: str) -> str:
    # A row stays one line and its fields stay apart, whatever a value holds.
    return value.replace("\t", " ").replace("\r", " ").replace("\n", "; ")


def print_rich_table(out: Console, table: Table) -> None:
    """A rich table built for a terminal: as it is there (one field a line when the terminal has
    too few columns for it), as its title, a header and tab-separated rows elsewhere (markup
    dropped, a cell's lines joined with "; ")."""
    columns = table.columns
    if out.is_terminal:
        if len(columns) * _MIN_READABLE <= out.width:
            out.print(table)
            return
        # Too many columns for this terminal: each row as its fields, one a line.
        if table.title:
            out.print(_plain(table.title), style="bold", markup=False, highlight=False)
        cells = [list(c.cells) for c in columns]
        for index in range(table.row_count):
            for number, column in enumerate(columns):
                value = _plain(cells[number][index]).replace("\n", "; ")
                line = f"{'' if number == 0 else '  '}{_plain(column.header)}: {value}"
                out.print(line, markup=False, highlight=False, soft_wrap=True)
        return
    lines = [_plain(table.title)] if table.title else []  # a report prints several: each titled
    lines.append("\t".join(_cell(str(c.header)) for c in columns))
    cells = [list(c.cells) for c in columns]
    for index in range(table.row_count):
        lines.append("\t".join(_cell(_plain(column[index])) for column in cells))
    # Written as is: rich's print would expand the tabs into spaces.
    out.file.write("".join(f"{line}\n" for line in lines))


def _plain(cell: object) -> str:
    if isinstance(cell, Text):
        return cell.plain
    if isinstance(cell, str):
        return Text.from_markup(cell).plain
    return str(cell)


def print_rows(rows: Iterable[Sequence[str]], *, loud: Sequence[bool] | None = None) -> None:
    """Rows with no header, as they arrive (``audit tail --follow``): tab-separated lines;
    ``loud`` rows in bold red on a terminal."""
    for number, row in enumerate(rows):
        line = "\t".join(_cell(v) for v in row)
        if console.is_terminal:
            style = "bold red" if loud is not None and loud[number] else None
            console.print(line, style=style, markup=False, highlight=False, soft_wrap=True)
        else:
            typer.echo(line)


def print_table(
    title: str,
    columns: Sequence[Column],
    rows: Iterable[Sequence[str]],
    *,
    loud: Sequence[bool] | None = None,
) -> None:
    """A table of plain strings (no markup): rich on a terminal, tab-separated lines otherwise.

    ``loud`` marks rows to show in bold red on a terminal (break-glass, say)."""
    materialised = [list(row) for row in rows]
    if not console.is_terminal:
        typer.echo("\t".join(c.header for c in columns))
        for row in materialised:
            typer.echo("\t".join(_cell(v) for v in row))
        return
    widths = [
        max([len(column.header), *(len(row[i]) for row in materialised)]) if column.key else 0
        for i, column in enumerate(columns)
    ]
    # Whole ids, a little room for every other column, and the borders (3 a column, plus 1).
    needed = sum(widths) + _MIN_OTHER * widths.count(0) + 3 * len(columns) + 1
    if needed > console.width:  # too narrow for a table that cuts nothing: one field a line
        for number, row in enumerate(materialised):
            style = "bold red" if loud is not None and loud[number] else None
            for index, (column, value) in enumerate(zip(columns, row, strict=True)):
                line = f"{'' if index == 0 else '  '}{column.header}: {value}"
                console.print(line, style=style, markup=False, highlight=False, soft_wrap=True)
        return
    table = Table(title=title)
    for column, width in zip(columns, widths, strict=True):
        if column.key:
            table.add_column(column.header, no_wrap=True, overflow="fold", min_width=width)
        else:
            table.add_column(column.header, overflow="fold", min_width=_MIN_OTHER)
    for number, row in enumerate(materialised):
        style = "bold red" if loud is not None and loud[number] else None
        table.add_row(*(escape(v) for v in row), style=style)
    console.print(table)
