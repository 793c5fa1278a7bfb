"""RFC 8785 JSON Canonicalization Scheme (JCS): the byte form of audit chains of format 2.

So that anyone can re-hash an exported chain with an off-the-shelf JCS library, whatever their
language. The rules (RFC 8785 §3.2):

- no whitespace; UTF-8;
- object members sorted by their names' UTF-16 code units (§3.2.3), not by code points: the two
  orders differ once a name holds a character outside the Basic Multilingual Plane;
- strings escape only ``"``, ``\\`` and the control characters (``\\b \\f \\n \\r \\t``, the rest
  as lowercase ``\\u00xx``), and a lone surrogate is refused (§3.2.2.2);
- numbers are IEEE-754 doubles written as ECMAScript's ``Number.prototype.toString`` writes them
  (§3.2.2.3): ``1.0`` is ``1``, ``1e21`` is ``1e+21``, ``1e-7`` is ``1e-7``, ``-0`` is ``0``;
  NaN and the infinities are refused. An integer is read as a double first, as every JCS
  implementation parsing the exported JSON does.

Written here rather than taken from a package because ``core`` uses only the standard library.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence

from tether.core.scope import JSONValue

# json.dumps with ensure_ascii=False escapes exactly what RFC 8785 §3.2.2.2 asks: '"', '\\',
# \b \f \n \r \t, other controls as lowercase \u00xx, and nothing else.
_string = json.JSONEncoder(ensure_ascii=False).encode


# Beyond 2**53 an integer read as a double may change; such integers take the general path.
_SAFE_INTEGER = 2**53

_plain = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
).encode


PlainEncoder = Callable[[object], bytes]
"""Writes a value :func:`as_is` passed (or :func:`_plain_form` made) as ``json.dumps`` with sorted
keys and no spaces writes it, in UTF-8: its RFC 8785 bytes. ``ValueError`` for a string holding a
lone surrogate. :func:`plain_bytes` is the standard library's; a caller may bring a faster one
that writes the same bytes (the store's, :mod:`tether.store.fastjson`)."""


def plain_bytes(value: object) -> bytes:
    """The standard library's :data:`PlainEncoder`."""
    try:
        return _plain(value).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("a string holds a lone surrogate, which RFC 8785 refuses") from None


def canonicalize(value: JSONValue) -> bytes:
    """The RFC 8785 bytes of ``value``; ``ValueError`` for what JSON cannot carry."""
    return canonicalize_as_is(value)[0]


def canonicalize_as_is(value: JSONValue, plain: PlainEncoder = plain_bytes) -> tuple[bytes, bool]:
    """:func:`canonicalize`, and whether ``value`` was written as it stands (:func:`as_is`):
    then every part of the bytes is also that part's format-1 text. ``plain`` writes a value
    that passed :func:`as_is` (every audit record's usual shape, written as it is)."""
    if as_is(value):
        return plain(value), True
    try:
        form = _plain_form(value)
    except _NotPlain:
        return _general(value), False
    return plain_bytes(form), False


def as_is(value: object) -> bool:
    """True when ``json.dumps`` (sorted keys, no spaces) writes ``value``'s RFC 8785 text as
    ``value`` stands, so that it is also its format-1 text
    (:func:`tether.core.audit.canonical_json`).

    Only exact types pass (``dict``, ``list``, ``str``, ``int``, ``float``, ``bool``, ``None``: a
    subclass or another mapping takes the careful path), under :func:`_plain_form`'s rules, and
    no whole float (JCS writes ``1.0`` as ``1``, Python as ``1.0``). A check, not a copy: the
    walk that rebuilt every value was most of the cost of sealing an audit record."""
    if type(value) is dict:
        for name, member in value.items():
            if type(name) is not str or not name.isascii():
                return False
            if type(member) is not str and not as_is(member):
                return False
        return True
    if type(value) is list:
        return all(type(item) is str or as_is(item) for item in value)
    if type(value) is int:
        return -_SAFE_INTEGER <= value <= _SAFE_INTEGER
    if type(value) is float:
        return not value.is_integer() and 1e-4 <= abs(value) < 1e16
    return value is None or type(value) is str or type(value) is bool


def _general(value: JSONValue) -> bytes:
    """RFC 8785 written out rule by rule, for any value."""
    parts: list[str] = []
    _write(value, parts)
    try:
        return "".join(parts).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("a string holds a lone surrogate, which RFC 8785 refuses") from None


class _NotPlain(Exception):
    pass


def _plain_form(value: object) -> object:
    """``value`` in a form whose ``json.dumps`` (sorted keys, no spaces) is its RFC 8785 text,
    or ``_NotPlain``. Member names must be ASCII (code-point order is then UTF-16 order);
    integers and whole floats must be ones a double holds exactly (a whole float is written as
    an integer, as ECMAScript does); other floats must lie where Python's shortest repr and
    ECMAScript's Number::toString agree (1e-4 <= |x| < 1e16, positional). Strings escape alike."""
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, int):
        if -_SAFE_INTEGER <= value <= _SAFE_INTEGER:
            return value
        raise _NotPlain
    if isinstance(value, float):
        if value.is_integer():
            if -_SAFE_INTEGER <= value <= _SAFE_INTEGER:
                return int(value)
            raise _NotPlain
        if math.isfinite(value) and 1e-4 <= abs(value) < 1e16:
            return value
        raise _NotPlain
    if isinstance(value, dict):
        out = {}
        for name, member in value.items():
            if not isinstance(name, str) or not name.isascii():
                raise _NotPlain
            out[name] = _plain_form(member)
        return out
    if isinstance(value, list | tuple):
        return [_plain_form(item) for item in value]
    raise _NotPlain


def _write(value: object, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, int | float):
        out.append(number(value))
    elif isinstance(value, Mapping):
        names = list(value)
        if not all(isinstance(n, str) for n in names):
            raise ValueError("object member names must be strings")
        out.append("{")
        for i, name in enumerate(sorted(names, key=lambda n: n.encode("utf-16-be"))):
            if i:
                out.append(",")
            out.append(_string(name))
            out.append(":")
            _write(value[name], out)
        out.append("}")
    elif isinstance(value, Sequence):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise ValueError(f"{type(value).__name__} is not a JSON value")


def number(value: int | float) -> str:
    """``value`` as a double, written as ECMA-262's Number::toString writes it."""
    try:
        x = float(value)
    except OverflowError:
        raise ValueError("an integer too large for a double has no RFC 8785 form") from None
    if not math.isfinite(x):
        raise ValueError("NaN and infinities have no RFC 8785 form")
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    digits, exponent = _shortest(abs(x))
    k, n = len(digits), exponent + 1  # the value is 0.d1d2...dk x 10^n
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * -n + digits
    else:
        e = n - 1
        rest = "." + digits[1:] if k > 1 else ""
        body = f"{digits[0]}{rest}e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + body


def _shortest(x: float) -> tuple[str, int]:
    """The shortest digits that round-trip positive ``x`` (as ECMAScript requires; Python's repr
    finds the same), without leading or trailing zeros, and the decimal exponent of the first."""
    mantissa, _, exp_text = repr(x).partition("e")
    whole, _, frac = mantissa.partition(".")
    frac = frac.rstrip("0")  # repr writes one as 1.0
    # Where the first significant digit sits: left of the point, or after the zeros right of it.
    lead = len(whole) - 1 if whole != "0" else -(len(frac) - len(frac.lstrip("0")) + 1)
    digits = (whole + frac).lstrip("0").rstrip("0")
    return digits, (int(exp_text) if exp_text else 0) + lead


__all__ = [
    "PlainEncoder",
    "as_is",
    "canonicalize",
    "canonicalize_as_is",
    "number",
    "plain_bytes",
]
