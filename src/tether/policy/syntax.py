"""Small pieces of Cedar surface syntax that tether needs outside the Cedar parser.

Cedar (through cedarpy) reports errors without their position, so :func:`split_statements` cuts
a policy file into its statements (at ``;`` outside string literals and ``//`` comments), each
with its offset in the file, and :func:`tokenize` cuts a statement into tokens with their
offsets; :mod:`tether.policy.diagnostics` uses both to point at the line and column of a
problem. :func:`entity_uid` writes an entity uid literal with Cedar's string escapes, for the
calls that only accept surface syntax (partial evaluation).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Statement:
    """One ``;``-terminated statement of a policy file, the line (1-based) it starts on and the
    offset (in characters) of ``text`` in the file."""

    line: int
    text: str
    offset: int = 0


def split_statements(text: str) -> list[Statement]:
    """Cut ``text`` at each top-level ``;``; comments and blank space between statements are
    dropped. A trailing fragment without ``;`` is returned too (it is a parse error to report).
    """
    statements: list[Statement] = []
    start = 0
    start_line: int | None = None
    line = 1
    i = 0
    n = len(text)
    in_string = False
    while i < n:
        ch = text[i]
        if in_string:
            if ch == "\\":
                i += 2
                continue
            if ch == '"':
                in_string = False
            elif ch == "\n":
                line += 1
            i += 1
            continue
        if ch == "/" and text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if ch == "\n":
            line += 1
        elif not ch.isspace():
            if start_line is None:
                start_line = line
            if ch == '"':
                in_string = True
            elif ch == ";":
                statements.append(Statement(start_line, text[start : i + 1], start))
                start = i + 1
                start_line = None
        i += 1
    if start_line is not None:
        statements.append(Statement(start_line, text[start:], start))
    return statements


@dataclass(frozen=True, slots=True)
class Token:
    """One token: ``kind`` is ``ident``, ``string``, ``number``, ``punct`` or ``invalid`` (a
    character Cedar cannot lex, or a string left open); ``start``/``end`` are offsets."""

    kind: str
    text: str
    start: int
    end: int


_TOKEN: Final = re.compile(
    r"""(?P<space>\s+|//[^\n]*)
      | (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<number>[0-9]+)
      | (?P<punct>::|==|!=|<=|>=|&&|\|\||[-+*%!<>=(){}\[\],;.:@?])""",
    re.VERBOSE | re.DOTALL,
)


def tokenize(text: str) -> list[Token]:
    """Cedar's tokens in ``text`` (comments and blanks dropped); never raises: what cannot be
    lexed becomes one ``invalid`` token running to the end of its line."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        match = _TOKEN.match(text, i)
        if match is None:
            end = text.find("\n", i)
            end = n if end < 0 else end
            tokens.append(Token("invalid", text[i:end], i, end))
            i = end
            continue
        kind = match.lastgroup or "space"
        if kind != "space":
            tokens.append(Token(kind, match.group(), match.start(), match.end()))
        i = match.end()
    return tokens


def line_col(text: str, offset: int) -> tuple[int, int]:
    """The 1-based line and column (in characters) of ``offset`` in ``text``."""
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def cedar_string(value: str) -> str:
    """A Cedar string literal for ``value`` (quotes, backslashes and controls escaped)."""
    out = ['"']
    for ch in value:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch < " " or ch == "\x7f":
            out.append(f"\\u{{{ord(ch):x}}}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def entity_uid(entity_type: str, entity_id: str) -> str:
    """``Type::"id"`` with ``id`` escaped as a Cedar string."""
    return f"{entity_type}::{cedar_string(entity_id)}"
