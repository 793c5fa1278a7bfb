"""Redacting named secrets from text and JSON, in every form an echo gives them.

An upstream that prints its environment, or reflects a header, hands back a credential tether
gave it. A :class:`Redactor` is built once per set of named secrets and replaces each occurrence
of any of them with the fixed marker ``[redacted:NAME]`` (never the value), in the forms
:mod:`tether.core.leaks` describes: raw; base64 and base64url at each of the three alignments a
secret embedded in a longer stream can have; hex in either case; any of them percent-encoded,
JSON-escaped (JSON inside JSON too) or HTML-escaped, in any mix; base64 and hex broken into lines.
It says which secret (by name) was found in which forms, for the audit record.

Base64: a secret at byte offset 0, 1 or 2 of a stream gives three texts; the characters wholly
inside the secret are matched (:func:`tether.core.leaks.base64_fragments`), and the one character
at each edge that mixes the secret's bits with its neighbours' is redacted with them, so no bit
of the secret is left.

One pass: every encoded form of every secret is computed once, when the redactor is built, into
one compiled pattern whose branches are grouped by their first byte (a trie's first level), so
the search skips at C speed to the bytes a match can start with and tries only the branches that
start there. Text without a secret costs that one search and comes back unchanged, the same
object.

Limits, by design:

- A secret shorter than :data:`~tether.core.leaks.MIN_SECRET_BYTES` (8) bytes is refused when the
  redactor is built: a short needle matches ordinary text, and redacting it would mangle results.
- Each string is redacted on its own: a secret split across two strings (two content blocks,
  two progress messages, two chunks of a stream) is not found in either. JSON redaction checks
  the whole value's wire form afterwards and raises :class:`Unredactable` if a secret is still
  there, so the caller withholds the value instead (fail closed).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from tether.core.errors import ConfigurationError
from tether.core.leaks import (
    MAX_SECRET_BYTES,
    MIN_SECRET_BYTES,
    WRAP_GAP,
    Encoding,
    Leak,
    alternation,
    escaped,
    escapings,
)
from tether.core.scope import JSONValue

#: What stands in for a secret: its name, never its value.
MARKER: Final = "[redacted:{name}]"

_BASE64_ALPHABET: Final = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_"
)
_BREAKS: Final = re.compile(rb"\r|\n|\\r|\\n")


class Unredactable(Exception):
    """A secret is still in the value after redaction (it straddles two strings, or the JSON
    around it): the value must be withheld. The message names no secret."""


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


@dataclass(frozen=True, slots=True)
class Found:
    """One secret found (by name) and the forms it was in: ``raw``, ``base64``, ``hex``,
    ``raw+percent``, ``base64+wrapped``… (see :attr:`tether.core.leaks.Leak.form`)."""

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

    __slots__ = ("_names", "_needles", "_pattern")

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
            for k, (lead, rest) in enumerate(
                escaped(needle.text, b"" if needle.encoding is Encoding.RAW else WRAP_GAP)
            )
        ]
        self._pattern = re.compile(alternation(branches))

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def __repr__(self) -> str:
        return f"Redactor(names={sorted(set(self._names))!r})"

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("redactors hold secrets and are not picklable")

    # -- finding -------------------------------------------------------------------------------

    def holds(self, data: bytes) -> bool:
        """Whether ``data`` holds any of the secrets, in any form: one search."""
        return self._pattern.search(data) is not None

    def _spans(self, data: bytes, tally: _Tally) -> list[tuple[int, int, int]]:
        """(start, end, secret) of every occurrence, the base64 edge characters included,
        overlapping spans merged."""
        spans: list[tuple[int, int, int]] = []
        for match in self._pattern.finditer(data):
            assert match.lastgroup is not None  # every branch ends in its needle's group
            needle = self._needles[int(match.lastgroup[1:].partition("_")[0])]
            start, end = match.span()
            if needle.grow_left and start > 0 and data[start - 1] in _BASE64_ALPHABET:
                start -= 1
            if needle.grow_right and end < len(data) and data[end] in _BASE64_ALPHABET:
                end += 1
            matched = match.group()
            wrapped = needle.encoding is not Encoding.RAW and _BREAKS.search(matched) is not None
            used = escapings(_BREAKS.sub(b"", matched) if wrapped else matched, needle.text)
            tally.add(self._names[needle.secret], Leak(needle.encoding, used, wrapped).form)
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
        """``data`` with every secret replaced by its marker, and what was found."""
        tally = _Tally()
        return self._redact(data, tally), tally.found()

    def redact_text(self, text: str) -> tuple[str, tuple[Found, ...]]:
        """:meth:`redact_bytes` of ``text`` in UTF-8 (a match never splits a character: the
        needles are whole characters, or ASCII)."""
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


__all__ = ["MARKER", "Found", "Redacted", "Redactor", "Unredactable", "dumps", "merge"]
