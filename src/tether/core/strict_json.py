"""Strict JSON reading: the one reader of every JSON body tether decides on.

tether decides on the arguments it reads and a tool acts on the arguments *it* reads, so the two
must never read one text differently. RFC 8259 leaves room for that (section 4: "the names within
an object SHOULD be unique", and parsers differ on a repeated name: first wins, last wins, error;
section 8.2: a string may hold a lone UTF-16 surrogate escape such as ``"\\ud800"``, which no
UTF-8 encoder accepts). This module takes the I-JSON profile (RFC 7493) for what tether reads:

- the text is UTF-8 (RFC 7493 section 2.1), with no byte order mark;
- an object never repeats a name, at any depth (section 2.3);
- no string, name or value, holds a surrogate code point (section 2.1);
- ``NaN`` and ``Infinity`` are not JSON (RFC 8259 section 6) and are refused.

Every refusal is a :class:`JsonRefused` (a ``ValueError``), whose message says what to fix and
never quotes more of the text than a name cut short.
"""

from __future__ import annotations

import json
from typing import Final

from tether.core.scope import JSONValue

#: How much of a repeated name a message quotes.
_NAME_CHARS: Final = 64


class JsonRefused(ValueError):
    """A JSON text tether will not read (not JSON, not UTF-8, too deep)."""


class DuplicateName(JsonRefused):
    """An object repeats a name: readers disagree on which value counts."""


class NotUnicode(JsonRefused):
    """A string holds a lone surrogate: it cannot be encoded, stored, hashed or forwarded."""


def unique_names(pairs: list[tuple[str, JSONValue]]) -> dict[str, JSONValue]:
    """``object_pairs_hook`` for :func:`json.loads`: an object, refused if a name repeats."""
    out: dict[str, JSONValue] = {}
    for name, value in pairs:
        if name in out:
            raise DuplicateName(
                f"the key {name[:_NAME_CHARS]!r} appears twice in one object; send each key once"
            )
        out[name] = value
    return out


def no_constants(name: str) -> JSONValue:
    """``parse_constant`` for :func:`json.loads`: ``NaN`` and ``Infinity`` are not JSON."""
    raise JsonRefused(f"{name} is not JSON; send a finite number")


def _where(path: list[str | int]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(
        "."
    )


def non_unicode_at(value: JSONValue) -> str | None:
    """Which string is not Unicode text (``field 'args.to'``, ``a key of field 'args'``), or
    ``None`` when every name and string encodes as UTF-8."""
    stack: list[tuple[JSONValue, list[str | int]]] = [(value, [])]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if not _encodes(item):
                return f"field {_where(path)!r}" if path else "the body"
        elif isinstance(item, dict):
            for name, inner in item.items():
                if not _encodes(name):
                    return f"a key of field {_where(path)!r}" if path else "a key of the body"
                stack.append((inner, [*path, _printable(name)]))
        elif isinstance(item, list):
            stack.extend((inner, [*path, index]) for index, inner in enumerate(item))
    return None


def _encodes(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(name: str) -> str:
    return name[:_NAME_CHARS] if name.isprintable() else repr(name)[:_NAME_CHARS]


def check_unicode(value: JSONValue) -> None:
    """Refuse a value holding a string (a name or a value) that is not Unicode text."""
    # One pass in C for the common case; the walk only runs to say where the problem is.
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        where = non_unicode_at(value) or "the body"
        raise NotUnicode(
            f"{where} holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is not text; "
            "send valid Unicode"
        ) from None


def loads(data: bytes | str) -> JSONValue:
    """Read one JSON text under the rules above; raise :class:`JsonRefused` otherwise."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise JsonRefused("the body is not UTF-8 text; send JSON encoded as UTF-8") from None
        # Strict UTF-8 decodes to no surrogate, so one can only come from a \u escape.
        surrogate_free = "\\u" not in data
    else:
        surrogate_free = "\\u" not in data and _encodes(data)
    try:
        value: JSONValue = json.loads(
            data, object_pairs_hook=unique_names, parse_constant=no_constants
        )
    except JsonRefused:
        raise
    except json.JSONDecodeError as error:
        raise JsonRefused(
            f"the body is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    except RecursionError:
        raise JsonRefused("the body nests too deeply to read") from None
    except ValueError:
        # e.g. an integer longer than Python reads (sys.get_int_max_str_digits)
        raise JsonRefused("the body holds a number too long to read") from None
    if not surrogate_free:
        check_unicode(value)
    return value


__all__ = [
    "DuplicateName",
    "JsonRefused",
    "NotUnicode",
    "check_unicode",
    "loads",
    "no_constants",
    "non_unicode_at",
    "unique_names",
]
