"""Small pieces of Cedar surface syntax that tether needs outside the Cedar parser.

Cedar (through cedarpy) reports a parse error without its position, so :func:`split_statements`
cuts a policy file into its statements (at ``;`` outside string literals and ``//`` comments) to
say *which* policy, starting on which line, failed to parse. :func:`entity_uid` writes an entity
uid literal with Cedar's string escapes, for the calls that only accept surface syntax (partial
evaluation).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Statement:
    """One ``;``-terminated statement of a policy file and the line (1-based) it starts on."""

    line: int
    text: str


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
                statements.append(Statement(start_line, text[start : i + 1]))
                start = i + 1
                start_line = None
        i += 1
    if start_line is not None:
        statements.append(Statement(start_line, text[start:]))
    return statements


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
