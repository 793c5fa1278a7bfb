"""Finding a secret in bytes that came back from elsewhere, in the forms an echo gives it.

An upstream that reflects what it was sent (a URL in an error page, a request header in a debug
endpoint, a redirect's ``Location``) hands the secret back in whatever encoding it happened to use.
A :class:`LeakScanner` is built once per set of secrets and answers whether a byte string holds any
of them, and in which form (for the audit record; never the secret itself):

    encodings   raw; base64 and base64url, with or without padding, at each of the three
                alignments a secret embedded in a longer stream can have; hex, lower or upper case
    escapings   on top of each encoding, any character may be percent-encoded (either hex case,
                ``+`` for a space, ``%25`` for a doubly encoded ``%``), JSON-escaped (``\\/``,
                ``\\"``, ``\\uXXXX`` of any character in either hex case, surrogate pairs, and the
                extra backslashes of JSON inside JSON) or, unless a letter or digit, written as an
                HTML character reference (``&#47;``, ``&#x2F;``, ``&sol;``, ``&amp;`` …), in any mix
    wrapping    base64 or hex broken into lines (MIME, PEM), the breaks raw or JSON-escaped

Base64 at three alignments: a secret starting at byte offset 0, 1 or 2 of a base64 stream
encodes to three different strings. Each is computed, and the characters at its edges that also
depend on the neighbouring bytes (and on padding) are dropped, as secret scanners do; what is
left appears in any base64 stream that holds the secret, whatever surrounds it.

Speed: the exact forms are looked for with ``bytes.find`` (C speed). Escapes need ``%``, ``\\`` or
``&`` in the haystack; only when one is present does the escape-tolerant regular expression,
compiled once per scanner, run (every branch of it starts with a literal byte, so the search
skips at C speed to the places a match can start). Line breaks are taken out with one
substitution, and the search run again, only when the haystack has some.

A secret shorter than :data:`MIN_SECRET_BYTES` is refused when the scanner is built: a short
needle matches ordinary text, and an answer withheld for it would be noise.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from tether.core.errors import ConfigurationError

#: Secrets shorter than this are refused: an 8-byte needle already gives 10 base64 characters
#: (60 bits) at every alignment, so random data does not hold it by chance.
MIN_SECRET_BYTES: Final = 8
#: A bound on secrets, so the compiled pattern stays small.
MAX_SECRET_BYTES: Final = 4096

_JSON_SHORT: Final = {
    '"': b'"',
    "\\": b"\\",
    "/": b"/",
    "\b": b"b",
    "\f": b"f",
    "\n": b"n",
    "\r": b"r",
    "\t": b"t",
}
#: HTML's named references for the characters of base64 and the few HTML escapes by name.
_HTML_NAMED: Final = {
    "&": b"amp",
    '"': b"quot",
    "'": b"apos",
    "<": b"lt",
    ">": b"gt",
    "/": b"sol",
    "+": b"plus",
    "=": b"equals",
}
#: Bytes whose presence means an escaped form may be there: without them the exact search is all.
_ESCAPE_MARKERS: Final = (b"%", b"\\", b"&")
#: Line breaks, raw or JSON-escaped, that wrapped base64 or hex may have between its characters.
_LINE_BREAKS: Final = re.compile(rb"\r|\n|\\r|\\n")


class Encoding(StrEnum):
    """How the secret's bytes were turned into text."""

    RAW = "raw"
    BASE64 = "base64"
    BASE64URL = "base64url"
    HEX = "hex"


class Escaping(StrEnum):
    """How that text was escaped on the way back (a match may mix them)."""

    PERCENT = "percent"  # URL encoding: %XX, + for space
    JSON = "json"  # \/, \", \uXXXX …
    HTML = "html"  # &#47;, &#x2F;, &sol; …


@dataclass(frozen=True, slots=True)
class Leak:
    """Which form of a secret was found. It never holds the secret or the bytes that matched."""

    encoding: Encoding
    escapings: frozenset[Escaping] = frozenset()
    wrapped: bool = False  # found once line breaks were taken out

    @property
    def form(self) -> str:
        """``raw``, ``hex``, ``raw+percent``, ``base64+json+percent``, ``base64+wrapped`` …: what
        an audit record names."""
        parts = [self.encoding.value, *sorted(e.value for e in self.escapings)]
        return "+".join(parts + (["wrapped"] if self.wrapped else []))


@dataclass(frozen=True, slots=True)
class _Form:
    encoding: Encoding
    text: bytes  # the encoded secret (an edge-trimmed fragment for base64)


def base64_fragments(secret: bytes, *, urlsafe: bool = False) -> tuple[bytes, ...]:
    """The parts of the base64 text of ``secret`` that do not depend on its neighbours, for each
    of the three alignments it can have inside a longer stream (duplicates removed).

    Character ``j`` of a base64 text covers bits ``[6j, 6j + 6)``. With ``k`` bytes before it the
    secret covers bits ``[8k, 8(k + n))``: the characters wholly inside are those from
    ``ceil(8k / 6)`` up to ``floor(8(k + n) / 6)``, exclusive.
    """
    encode = base64.urlsafe_b64encode if urlsafe else base64.standard_b64encode
    n = len(secret)
    out: list[bytes] = []
    for k in range(3):
        text = encode(b"\0" * k + secret)
        fragment = text[-(-8 * k // 6) : (8 * (k + n)) // 6]
        if fragment not in out:
            out.append(fragment)
    return tuple(out)


def _forms(secret: bytes) -> list[_Form]:
    forms = [_Form(Encoding.RAW, secret)]
    forms += [_Form(Encoding.BASE64, f) for f in base64_fragments(secret)]
    forms += [
        _Form(Encoding.BASE64URL, f)
        for f in base64_fragments(secret, urlsafe=True)
        if f not in base64_fragments(secret)  # a fragment without + or / is the same text
    ]
    hexed = secret.hex().encode()
    forms += [_Form(Encoding.HEX, hexed), _Form(Encoding.HEX, hexed.upper())]
    return forms


def _hex_digit(value: int) -> bytes:
    digit = b"0123456789abcdef"[value : value + 1]
    return digit if digit.isdigit() else b"[" + digit + digit.upper() + b"]"


def _hex_pattern(value: int, width: int) -> bytes:
    return b"".join(_hex_digit((value >> shift) & 0xF) for shift in range(4 * (width - 1), -1, -4))


#: How escaped forms begin: a ``%`` (maybe itself encoded as ``%25``), or one backslash and any
#: more (JSON inside JSON doubles them). Raw characters and ``+`` have no lead.
_PERCENT: Final = b"%(?:25)?"
_BACKSLASHES: Final = rb"\\\\*"


def _char_options(char: str, encoded: bytes) -> list[tuple[bytes, bytes]]:
    """Every way one character may come back, as (lead, rest) patterns (the lead is always a
    literal: the character's first byte, or what an escape starts with): itself; percent-encoded
    (each of its UTF-8 bytes, either hex case); ``+`` for a space; JSON-escaped (``\\uXXXX`` in
    either hex case, a surrogate pair beyond the BMP, or the short escape JSON has for it); an
    HTML character reference for any but an ASCII letter or digit (decimal or hex, leading zeros
    allowed, or the name HTML has)."""
    percent = b"".join(_PERCENT + _hex_pattern(byte, 2) for byte in encoded)
    options = [
        (re.escape(encoded[:1]), re.escape(encoded[1:])),
        (_PERCENT, percent[len(_PERCENT) :]),
    ]
    if char == " ":
        options.append((rb"\+", b""))
    point = ord(char)
    if point > 0xFFFF:  # JSON writes astral characters as a UTF-16 surrogate pair
        high = 0xD800 + ((point - 0x10000) >> 10)
        low = 0xDC00 + ((point - 0x10000) & 0x3FF)
        pair = b"u" + _hex_pattern(high, 4) + _BACKSLASHES + b"u" + _hex_pattern(low, 4)
        options.append((_BACKSLASHES, pair))
    else:
        options.append((_BACKSLASHES, b"u" + _hex_pattern(point, 4)))
    if char in _JSON_SHORT:
        options.append((_BACKSLASHES, re.escape(_JSON_SHORT[char])))
    if char.isascii() and char.isalnum():
        return options  # HTML encoders leave letters and digits as they are
    html = [b"#0*%d;" % point, b"#[xX]0*" + _hex_pattern(point, len(f"{point:x}")) + b";"]
    if char in _HTML_NAMED:
        html.append(_HTML_NAMED[char] + b";")
    options += [(b"&", reference) for reference in html]
    return options


def alternation(options: Iterable[tuple[bytes, bytes]]) -> bytes:
    """``(?:…|…)`` of (lead, rest) options, those sharing a lead written once, so that every
    branch starts with a literal byte and each lead is tried once per position: the compiled
    search skips at C speed to the bytes a match can start with, and a branch whose first byte
    differs is left at once."""
    by_lead: dict[bytes, list[bytes]] = {}
    for lead, rest in options:
        by_lead.setdefault(lead, []).append(rest)
    branches: list[bytes] = []
    for lead, rests in by_lead.items():
        if lead:
            inner = rests[0] if len(rests) == 1 else b"(?:" + b"|".join(rests) + b")"
            branches.append(lead + inner)
        else:
            branches += rests
    return b"(?:" + b"|".join(branches) + b")"


#: What may stand between two characters of base64 or hex broken into lines (MIME, PEM): line
#: breaks, raw or JSON-escaped.
WRAP_GAP: Final = rb"(?:\r|\n|\\r|\\n)*"


def escaped(text: bytes, gap: bytes = b"") -> list[tuple[bytes, bytes]]:
    """``text`` with every character allowed in any of its escaped forms (and ``gap``, a
    pattern, between any two), as (lead, rest) patterns: one per way its first character may
    begin."""
    try:
        chars = [(c, c.encode()) for c in text.decode("utf-8")]
    except UnicodeDecodeError:  # not text: each byte stands for itself (as Latin-1 would read it)
        chars = [(chr(b), bytes([b])) for b in text]
    tail = b"".join(gap + alternation(_char_options(c, e)) for c, e in chars[1:])
    return [(lead, rest + tail) for lead, rest in _char_options(*chars[0])]


_PERCENT_ESCAPE: Final = re.compile(rb"%[0-9A-Fa-f]{2}")


def escapings(matched: bytes, form: bytes) -> frozenset[Escaping]:
    """Which escapings a match used: those whose marks it has more of than the form itself."""
    used: set[Escaping] = set()
    if len(_PERCENT_ESCAPE.findall(matched)) > len(_PERCENT_ESCAPE.findall(form)) or (
        matched.count(b"+") > form.count(b"+")
    ):
        used.add(Escaping.PERCENT)
    if matched.count(b"\\") > form.count(b"\\"):
        used.add(Escaping.JSON)
    if matched.count(b"&") > form.count(b"&"):
        used.add(Escaping.HTML)
    return frozenset(used)


class LeakScanner:
    """Looks for any of a set of secrets, in every form above. Build once, scan many times.

    Its repr names how many secrets it holds, never them; its attributes are private, and the
    compiled pattern (whose repr would show a secret) is never exposed.
    """

    __slots__ = ("_count", "_exact", "_forms", "_markers", "_pattern")

    def __init__(self, secrets: Iterable[bytes]) -> None:
        values = list(secrets)
        if not values:
            raise ConfigurationError("a leak scanner needs at least one secret to look for")
        forms: list[_Form] = []
        for index, secret in enumerate(values):
            if not isinstance(secret, bytes):
                raise ConfigurationError(f"secret #{index + 1} to scan for is not bytes")
            if len(secret) < MIN_SECRET_BYTES:
                # INVARIANT: the message says which secret and why, never what it is.
                raise ConfigurationError(
                    f"secret #{index + 1} is {len(secret)} bytes; a secret tether injects must be "
                    f"at least {MIN_SECRET_BYTES} bytes so its echo can be told from ordinary "
                    "text: replace it with a longer one"
                )
            if len(secret) > MAX_SECRET_BYTES:
                raise ConfigurationError(
                    f"secret #{index + 1} is longer than {MAX_SECRET_BYTES} bytes"
                )
            forms += [f for f in _forms(secret) if f not in forms]
        self._count = len(values)
        self._forms = tuple(forms)
        exact: list[tuple[bytes, _Form]] = []
        for form in forms:
            exact.append((form.text, form))
            if b" " in form.text:  # quote_plus: spaces alone escaped, as +
                exact.append((form.text.replace(b" ", b"+"), form))
        self._exact = tuple(exact)
        spaced = any(b" " in form.text for form in forms)
        self._markers = _ESCAPE_MARKERS + ((b"+",) if spaced else ())
        # One alternation over every form. An empty group closing each branch names its form
        # (at the end, so every branch still starts with a literal byte).
        branches = [
            (lead, b"%s(?P<f%d_%d>)" % (rest, i, k))
            for i, form in enumerate(forms)
            for k, (lead, rest) in enumerate(escaped(form.text))
        ]
        self._pattern = re.compile(alternation(branches))

    def __repr__(self) -> str:
        return f"LeakScanner(secrets={self._count})"

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("leak scanners hold secrets and are not picklable")

    def find(self, data: bytes) -> Leak | None:
        """The form of the first secret found in ``data``, or ``None`` when it holds none."""
        found = self._find(data)
        if found is not None or not (b"\n" in data or b"\r" in data or b"\\" in data):
            return found
        joined = _LINE_BREAKS.sub(b"", data)
        if joined == data:
            return None
        found = self._find(joined)
        return None if found is None else Leak(found.encoding, found.escapings, wrapped=True)

    def _find(self, data: bytes) -> Leak | None:
        for needle, form in self._exact:
            if needle in data:
                plus = needle != form.text  # the quote_plus form
                return Leak(form.encoding, frozenset({Escaping.PERCENT}) if plus else frozenset())
        if not any(marker in data for marker in self._markers):
            return None  # an escaped form needs % \ or & (+ for a space): the exact search was all
        match = self._pattern.search(data)
        if match is None or match.lastgroup is None:
            return None
        form = self._forms[int(match.lastgroup[1:].partition("_")[0])]
        return Leak(form.encoding, escapings(match.group(), form.text))

    def __contains__(self, data: object) -> bool:
        return isinstance(data, bytes) and self.find(data) is not None


__all__ = [
    "MAX_SECRET_BYTES",
    "MIN_SECRET_BYTES",
    "Encoding",
    "Escaping",
    "Leak",
    "LeakScanner",
    "base64_fragments",
]
