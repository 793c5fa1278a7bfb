"""Redacting named secrets from bytes, text and JSON, in every form an echo gives them: the one
place tether finds a secret it gave away (the MCP gateway and the egress proxy both use it).

An upstream that prints its environment, reflects a header, quotes its URL in an error page or
redirects with the query kept hands back a credential tether gave it, in whatever encoding it
happened to use. A :class:`Redactor` is built once per set of named secrets and replaces each
occurrence of any of them with the fixed marker ``[redacted:NAME]`` (never the value), in:

    encodings   raw; base64 and base64url, with or without padding, at each of the three
                alignments a secret embedded in a longer stream can have; hex, lower or upper case
    escapings   on top of each encoding, any character may be percent-encoded (either hex case,
                ``+`` for a space, ``%25`` for a doubly encoded ``%``), JSON-escaped (``\\/``,
                ``\\"``, ``\\uXXXX`` of any character in either hex case, surrogate pairs, and the
                extra backslashes of JSON inside JSON) or, unless a letter or digit, written as an
                HTML character reference (``&#47;``, ``&#x2F;``, ``&sol;``, ``&amp;`` …), in any mix
    wrapping    any of them broken into lines (MIME, PEM, a long value folded at 76 columns),
                the breaks raw or JSON-escaped

It says which secret (by name) was found in which forms and how often, for the audit record
(:func:`audit_body`, the ``secret_redacted`` record both doors write).

Base64: a secret at byte offset 0, 1 or 2 of a stream gives three texts; the characters wholly
inside the secret are matched (:func:`base64_fragments`: those do not depend on what surrounds
it), and the one character at each edge that mixes the secret's bits with its neighbours' is
redacted with them (across a line break or a ``%2F``/``\\/`` escape too), so no bit of the
secret is left.

One pass: every encoded form of every secret is computed once, when the redactor is built, into
one compiled pattern whose branches are grouped by their first byte (a trie's first level), so
the search skips at C speed to the bytes a match can start with and tries only the branches that
start there. Input with no byte an escape or a line break starts with (``%``, ``\\``, ``&``,
CR, LF) can hold only the exact forms, so it is searched for those with ``bytes.find`` alone.
Input without a secret comes back unchanged, the same object.

Limits, by design:

- A secret shorter than :data:`MIN_SECRET_BYTES` (8) bytes is refused when the redactor is
  built: a short needle matches ordinary text, and redacting it would mangle results.
- Each string is redacted on its own: a secret split across two strings (two content blocks,
  two headers, two chunks of a stream) is not found in either. What is redacted is checked again
  afterwards, and :class:`Unredactable` raised if a secret is still there (JSON: on the whole
  value's wire form), so the caller withholds the value instead (fail closed).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from tether.core.errors import ConfigurationError
from tether.core.risks import Risk
from tether.core.scope import JSONValue

#: What stands in for a secret: its name, never its value.
MARKER: Final = "[redacted:{name}]"
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
#: What may stand between two characters of a wrapped form: line breaks, raw or JSON-escaped.
_GAP: Final = rb"(?:\r|\n|\\r|\\n)*"
_BREAKS: Final = re.compile(rb"\r|\n|\\r|\\n")
#: The bytes an escape (``%``, ``\``, ``&``) or a line break starts with.
_ESCAPE_MARKS: Final = (b"%", b"\\", b"&", b"\r", b"\n")
#: One base64 character next to a match (maybe escaped, maybe across a line break): the edge
#: character that also carries bits of the secret.
_B64_CHAR: Final = rb"(?:[A-Za-z0-9+/_-]|%2[BbFf]|\\/)"
_EDGE_BEFORE: Final = re.compile(_B64_CHAR + _GAP + rb"\Z")
_EDGE_AFTER: Final = re.compile(_GAP + _B64_CHAR)


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


def form_name(encoding: Encoding, escapings: Iterable[Escaping] = (), wrapped: bool = False) -> str:
    """``raw``, ``hex``, ``raw+percent``, ``base64+json+percent``, ``base64+wrapped`` …: how an
    audit record names the form a secret was found in (never the secret)."""
    parts = [encoding.value, *sorted(e.value for e in escapings)]
    return "+".join(parts + (["wrapped"] if wrapped else []))


class Unredactable(Exception):
    """A secret is still in the value after redaction (it straddles two strings, or the JSON
    around it): the value must be withheld. The message names no secret."""


# -- the encoded forms --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Needle:
    """One encoded form of one secret, and whether the base64 character just before or after
    it also carries bits of the secret (redacted with it)."""

    secret: int
    encoding: Encoding
    text: bytes
    grow_left: bool = False
    grow_right: bool = False


def _base64_needles(secret: int, value: bytes, encoding: Encoding) -> list[_Needle]:
    """Character ``j`` of a base64 text covers bits ``[6j, 6j + 6)``; with ``k`` bytes before
    it the secret covers bits ``[8k, 8(k + n))``. The characters wholly inside run from
    ``ceil(8k / 6)`` to ``floor(8(k + n) / 6)``; the one on each side of them is shared with a
    neighbour whenever the bit offset there is not a multiple of six."""
    encode = base64.urlsafe_b64encode if encoding is Encoding.BASE64URL else base64.b64encode
    n = len(value)
    out: list[_Needle] = []
    for k in range(3):
        text = encode(b"\0" * k + value)
        start, end = -(-8 * k // 6), (8 * (k + n)) // 6
        out.append(
            _Needle(secret, encoding, text[start:end], (8 * k) % 6 != 0, (8 * (k + n)) % 6 != 0)
        )
    return out


def base64_fragments(secret: bytes, *, urlsafe: bool = False) -> tuple[bytes, ...]:
    """The parts of the base64 text of ``secret`` that do not depend on its neighbours, for each
    of the three alignments it can have inside a longer stream (duplicates removed)."""
    encoding = Encoding.BASE64URL if urlsafe else Encoding.BASE64
    return tuple(dict.fromkeys(n.text for n in _base64_needles(0, secret, encoding)))


def _needles(secret: int, value: bytes) -> list[_Needle]:
    needles = [_Needle(secret, Encoding.RAW, value)]
    standard = _base64_needles(secret, value, Encoding.BASE64)
    needles += standard
    seen = {n.text for n in standard}
    # A fragment with neither + nor / (nor - or _) is the same text in both alphabets.
    needles += [n for n in _base64_needles(secret, value, Encoding.BASE64URL) if n.text not in seen]
    hexed = value.hex().encode()
    needles += [_Needle(secret, Encoding.HEX, hexed), _Needle(secret, Encoding.HEX, hexed.upper())]
    return needles


# -- the escaped forms, as one pattern ----------------------------------------------------------


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


def _alternation(options: Iterable[tuple[bytes, bytes]]) -> bytes:
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


def _escaped(text: bytes) -> list[tuple[bytes, bytes]]:
    """``text`` with every character allowed in any of its escaped forms, and line breaks
    between any two, as (lead, rest) patterns: one per way its first character may begin."""
    try:
        chars = [(c, c.encode()) for c in text.decode("utf-8")]
    except UnicodeDecodeError:  # not text: each byte stands for itself (as Latin-1 would read it)
        chars = [(chr(b), bytes([b])) for b in text]
    tail = b"".join(_GAP + _alternation(_char_options(c, e)) for c, e in chars[1:])
    return [(lead, rest + tail) for lead, rest in _char_options(*chars[0])]


_PERCENT_ESCAPE: Final = re.compile(rb"%[0-9A-Fa-f]{2}")


def _escapings(matched: bytes, form: bytes) -> frozenset[Escaping]:
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


def _form_of(needle: _Needle, matched: bytes) -> str:
    """The audit name of the form ``matched`` (a match of ``needle``) is in."""
    wrapped = len(_BREAKS.findall(matched)) > len(_BREAKS.findall(needle.text))
    unwrapped = _BREAKS.sub(b"", matched) if wrapped else matched
    return form_name(needle.encoding, _escapings(unwrapped, needle.text), wrapped)


# -- redacting ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Found:
    """One secret found (by name), the forms it was in (``raw``, ``base64``, ``hex``,
    ``raw+percent``, ``base64+wrapped``…: :func:`form_name`) and how many times."""

    name: str
    forms: tuple[str, ...]
    count: int


@dataclass(frozen=True, slots=True)
class Redacted:
    """A value with every secret replaced by its marker, and what was found (empty: the value
    is the one given, unchanged)."""

    value: JSONValue
    found: tuple[Found, ...] = ()

    def __repr__(self) -> str:
        return f"Redacted(found={self.found!r})"


class _Tally:
    """What one redaction found: forms and counts by secret name."""

    def __init__(self) -> None:
        self.forms: dict[str, set[str]] = {}
        self.counts: dict[str, int] = {}

    def add(self, name: str, form: str) -> None:
        self.forms.setdefault(name, set()).add(form)
        self.counts[name] = self.counts.get(name, 0) + 1

    def found(self) -> tuple[Found, ...]:
        return tuple(
            Found(name, tuple(sorted(self.forms[name])), self.counts[name])
            for name in sorted(self.forms)
        )


class Redactor:
    """Replaces any of a set of named secrets, in every form above. Build once, use many times.

    Its repr names the secrets' names, never their values; the compiled pattern (whose repr
    would show them) is never exposed.
    """

    __slots__ = ("_exact", "_marks", "_names", "_needles", "_pattern")

    def __init__(self, secrets: Iterable[tuple[str, bytes]]) -> None:
        """``secrets``: (name, value) pairs; a name may come with several values (a secret
        rotated while upstreams still hold the old one)."""
        pairs = list(secrets)
        if not pairs:
            raise ConfigurationError("a redactor needs at least one secret to look for")
        names = tuple(name for name, _ in pairs)
        needles: list[_Needle] = []
        for index, (name, value) in enumerate(pairs):
            if not isinstance(value, bytes):
                raise ConfigurationError(f"secret {name!r} to redact is not bytes")
            if len(value) < MIN_SECRET_BYTES:
                # INVARIANT: the message names the secret and says why, never what it is.
                raise ConfigurationError(
                    f"secret {name!r} is {len(value)} bytes; a secret given to an upstream must "
                    f"be at least {MIN_SECRET_BYTES} bytes, since a shorter one cannot be told "
                    "from ordinary text and redacting it would mangle results: replace it "
                    f"with a longer one (tether secrets set {name})"
                )
            if len(value) > MAX_SECRET_BYTES:
                raise ConfigurationError(f"secret {name!r} is longer than {MAX_SECRET_BYTES} bytes")
            needles += _needles(index, value)
        # Longer needles first: where two start at the same byte, the longer one is redacted.
        needles.sort(key=lambda n: -len(n.text))
        unique: dict[tuple[int, bytes], _Needle] = {}
        for needle in needles:
            unique.setdefault((needle.secret, needle.text), needle)
        self._names = names
        self._needles = tuple(unique.values())
        # One alternation over every way every needle may begin; an empty group closing each
        # branch names its needle (at the end, so every branch starts with a literal byte).
        branches = [
            (lead, b"%s(?P<n%d_%d>)" % (rest, i, k))
            for i, needle in enumerate(self._needles)
            for k, (lead, rest) in enumerate(_escaped(needle.text))
        ]
        self._pattern = re.compile(_alternation(branches))
        # INVARIANT: a match that is not one of the exact needle texts uses an escape or a line
        # break, each of which starts with one of these bytes (``+`` stands for a space).
        spaced = any(b" " in n.text for n in self._needles)
        self._marks = _ESCAPE_MARKS + ((b"+",) if spaced else ())
        self._exact = tuple(dict.fromkeys(n.text for n in self._needles))

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def __repr__(self) -> str:
        return f"Redactor(names={sorted(set(self._names))!r})"

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("redactors hold secrets and are not picklable")

    # -- finding -------------------------------------------------------------------------------

    def _may_hold(self, data: bytes) -> bool:
        """False when ``data`` cannot hold a secret: it has no byte an escape or a line break
        starts with, and none of the exact forms (``bytes.find``, much cheaper than the
        pattern's search, which runs only when this is true)."""
        return any(mark in data for mark in self._marks) or any(t in data for t in self._exact)

    def holds(self, data: bytes) -> bool:
        """Whether ``data`` holds any of the secrets, in any form: one search."""
        return self._may_hold(data) and self._pattern.search(data) is not None

    def find(self, data: bytes) -> tuple[Found, ...]:
        """Which secrets ``data`` holds, in which forms and how often (empty: none), without
        redacting it."""
        tally = _Tally()
        self._spans(data, tally)
        return tally.found()

    def _spans(self, data: bytes, tally: _Tally) -> list[tuple[int, int, int]]:
        """(start, end, secret) of every occurrence, the base64 edge characters included,
        overlapping spans merged."""
        spans: list[tuple[int, int, int]] = []
        if not self._may_hold(data):
            return spans
        for match in self._pattern.finditer(data):
            assert match.lastgroup is not None  # every branch ends in its needle's group
            needle = self._needles[int(match.lastgroup[1:].partition("_")[0])]
            start, end = match.span()
            if needle.grow_left and start > 0:
                edge = _EDGE_BEFORE.search(data, max(0, start - 16), start)
                start = start if edge is None else edge.start()
            if needle.grow_right and end < len(data):
                after = _EDGE_AFTER.match(data, end)
                end = end if after is None else after.end()
            tally.add(self._names[needle.secret], _form_of(needle, match.group()))
            if spans and start < spans[-1][1]:  # touches the one before: one marker for both
                spans[-1] = (spans[-1][0], max(end, spans[-1][1]), spans[-1][2])
            else:
                spans.append((start, end, needle.secret))
        return spans

    # -- redacting -----------------------------------------------------------------------------

    def _redact(self, data: bytes, tally: _Tally) -> bytes:
        spans = self._spans(data, tally)
        return self._replace(data, spans) if spans else data

    def _replace(self, data: bytes, spans: list[tuple[int, int, int]]) -> bytes:
        out: list[bytes] = []
        at = 0
        for start, end, secret in spans:
            out += [data[at:start], MARKER.format(name=self._names[secret]).encode()]
            at = end
        out.append(data[at:])
        return b"".join(out)

    def redact_bytes(self, data: bytes) -> tuple[bytes, tuple[Found, ...]]:
        """``data`` with every secret replaced by its marker, and what was found (nothing
        found: ``data`` itself, the same object). Raises :class:`Unredactable` when a secret
        is still there afterwards."""
        tally = _Tally()
        redacted = self._redact(data, tally)
        if redacted is not data and self.holds(redacted):
            raise Unredactable("a secret is still in the data after redaction")
        return redacted, tally.found()

    def redact_text(self, text: str) -> tuple[str, tuple[Found, ...]]:
        """``text`` redacted as UTF-8 (a match never splits a character: the needles are whole
        characters, or ASCII); unlike :meth:`redact_bytes`, not checked again afterwards."""
        tally = _Tally()
        data = text.encode("utf-8", "surrogatepass")
        redacted = self._redact(data, tally)
        if redacted is data:
            return text, ()
        return redacted.decode("utf-8", "surrogatepass"), tally.found()

    def redact_json(self, value: JSONValue, wire: bytes | None = None) -> Redacted:
        """``value`` with every secret in any string (object keys too) replaced by its marker.

        ``wire`` is the value's JSON (as :func:`wire` writes it), when the caller has it
        already. Redacting is done on that JSON in one pass and the result parsed back: a
        marker has no character JSON escapes, so it replaces a span inside a string and leaves
        valid JSON. Where that cannot hold (a match with a quote in it, which may straddle two
        strings) each string is redacted on its own instead. Raises :class:`Unredactable`
        when a secret is still in the redacted value's JSON."""
        if wire is None:
            wire = dumps(value)
        tally = _Tally()
        spans = self._spans(wire, tally)
        if not spans:
            return Redacted(value)
        if not any(b'"' in wire[start:end] for start, end, _ in spans):
            redacted = self._replace(wire, spans)
            try:
                parsed: JSONValue = json.loads(redacted)
            except ValueError:  # a match began inside an escape: redact string by string
                pass
            else:
                if not self.holds(redacted):
                    return Redacted(parsed, tally.found())
        tally = _Tally()
        walked = self._walk(value, tally)
        if self.holds(dumps(walked)):
            raise Unredactable("a secret is still in the value after redaction")
        return Redacted(walked, tally.found())

    def _walk(self, value: JSONValue, tally: _Tally) -> JSONValue:
        if isinstance(value, str):
            data = value.encode("utf-8", "surrogatepass")
            redacted = self._redact(data, tally)
            return value if redacted is data else redacted.decode("utf-8", "surrogatepass")
        if isinstance(value, list):
            return [self._walk(item, tally) for item in value]
        if isinstance(value, dict):
            out: dict[str, JSONValue] = {}
            for key, item in value.items():
                new_key = self._walk(key, tally)
                assert isinstance(new_key, str)
                out[new_key] = self._walk(item, tally)
            return out
        return value


def dumps(value: JSONValue) -> bytes:
    """A JSON value as the gateway writes it on the wire (compact, UTF-8)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8", "surrogatepass"
    )


def merge(found: Iterable[Found]) -> tuple[Found, ...]:
    """Several redactions' findings as one: forms united and counts added, by name."""
    tally = _Tally()
    for item in found:
        tally.forms.setdefault(item.name, set()).update(item.forms)
        tally.counts[item.name] = tally.counts.get(item.name, 0) + item.count
    return tally.found()


def audit_body(
    upstream: str, tool: str | None, where: str, found: tuple[Found, ...], decision_id: str | None
) -> dict[str, JSONValue]:
    """The body of a ``secret_redacted`` audit record, as every door writes it: the upstream,
    the tool (or prompt, resource) whose answer held it, where in the answer, and each secret's
    name, forms and count; never a value."""
    return {
        "upstream": upstream,
        "tool": tool,
        "where": where,
        "secrets": [{"name": f.name, "forms": list(f.forms), "count": f.count} for f in found],
        "decision_id": decision_id,
        "risks": [Risk.ASI03.value],
    }


__all__ = [
    "MARKER",
    "MAX_SECRET_BYTES",
    "MIN_SECRET_BYTES",
    "Encoding",
    "Escaping",
    "Found",
    "Redacted",
    "Redactor",
    "Unredactable",
    "audit_body",
    "base64_fragments",
    "dumps",
    "form_name",
    "merge",
]
