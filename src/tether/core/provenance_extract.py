"""Finding the values in a text that could steer a call, each in one normal form.

Argument provenance (:mod:`tether.core.provenance`) asks where a value the agent passes was
seen. Values are found by the same extractors in a tool's result, in the user's request and in
the call's arguments, so a value written two ways (``Bob@Example.com`` and ``bob@example.com``,
``19 May 2024`` and ``2024-05-19``) is one value.

The kinds, with their normal forms:

===========  ==================================================================================
``url``      ``http``/``https``/``ftp`` URL: scheme and host lower-cased, host IDNA without a
             trailing dot, default port and fragment dropped, empty path ``/``
``domain``   host name of a URL, or a bare name (``www.example.com``): lower-cased, IDNA, no
             trailing dot
``email``    address lower-cased, its domain IDNA
``iban``     IBAN passing the ISO 13616 mod-97 check: upper-case, without spaces
``account``  account-like identifier: an IBAN-shaped string failing the check, a run of 8 to
             34 digits, or digit groups such as a card number; upper-case, no separators
``phone``    7 to 15 digits, ``+`` and the country code first when written with one
``date``     ISO ``yyyy-mm-dd`` from ISO dates, ``yyyy/mm/dd``, ``dd.mm.yyyy``,
             ``mm/dd/yyyy`` (``dd/mm/yyyy`` when the first number is over 12) and written forms
             (``May 1st, 2024``, ``19 May 2024``, ``the 3rd of June 2024``)
``amount``   a number with a currency mark (``$1,234.50``, ``100 EUR``, ``€ 5``), a number with
             thousands separators or a two-digit fraction, or a JSON number: the canonical
             decimal, sign and currency dropped (``1234.5``, ``100``)
``text``     a quoted span of text, or a whole JSON string (a title, a subject): NFKC,
             case-folded, whitespace collapsed; at most 256 characters
===========  ==================================================================================

Extractors run in that order of precedence over one copy of the text, and each blanks what it
matched for the ones after it (a date is not also a phone number). They always run the same way,
whatever kinds are asked for, so a value is found alike wherever it is written; the kinds asked
for only filter what is returned.

Known limits, each on the side of a value not being found (so a ``trusted`` sink fails it): a
bare domain name is found only in ASCII (an IDN is found inside a URL or an address); a date
without a year is not a date; ten digits written without separators are an ``account``, not a
``phone``; a scheme-less ``www.example.com/page`` gives its domain, not a URL. A host written in
lower case and glued to the next sentence by its full stop (``www.example.com.They``) ends at
that dot: a capitalised last label after lower-case ones is read as a word, not a top-level
domain.

# INVARIANT: extraction is bounded. At most ``max_chars`` characters are scanned and
# ``max_values`` values returned; :class:`Extraction` says how much was left unscanned, and
# never raises on any text.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from urllib.parse import urlsplit, urlunsplit

from tether.core.errors import ConfigurationError
from tether.core.scope import JSONValue

__all__ = [
    "ALL_KINDS",
    "DEFAULT_LIMITS",
    "ExtractLimits",
    "Extracted",
    "Extraction",
    "ValueKind",
    "extract",
    "extract_json",
    "iban_valid",
]


class ValueKind(StrEnum):
    URL = "url"
    DOMAIN = "domain"
    EMAIL = "email"
    IBAN = "iban"
    ACCOUNT = "account"
    PHONE = "phone"
    DATE = "date"
    AMOUNT = "amount"
    TEXT = "text"


ALL_KINDS: frozenset[ValueKind] = frozenset(ValueKind)

#: A quoted span or a JSON string longer than this is not a ``text`` value (it is prose).
MAX_TEXT_VALUE = 256


@dataclass(frozen=True, slots=True)
class ExtractLimits:
    """How much of one result (or argument) is scanned."""

    max_chars: int = 65_536
    max_values: int = 1_000

    def __post_init__(self) -> None:
        if self.max_chars < 1 or self.max_values < 1:
            raise ConfigurationError(
                "provenance scan limits (max_chars, max_values) must be at least 1"
            )


#: The limits of one tool result's scan unless the caller sets its own.
DEFAULT_LIMITS = ExtractLimits()


@dataclass(frozen=True, slots=True)
class Extracted:
    """One value found, in its normal form. Never logged: it may be personal data."""

    kind: ValueKind
    value: str

    def __repr__(self) -> str:
        return f"Extracted(kind={self.kind.value!r}, value=<{len(self.value)} chars>)"


@dataclass(frozen=True, slots=True)
class Extraction:
    """The values found in a text, each once (by kind, then where they were found)."""

    values: tuple[Extracted, ...]
    #: Characters of the input that were scanned, and that were not (past ``max_chars``).
    scanned: int
    unscanned: int = 0
    #: True when ``max_values`` values were found and scanning stopped there.
    capped: bool = False

    @property
    def complete(self) -> bool:
        """True when every character was scanned and every value found was kept."""
        return self.unscanned == 0 and not self.capped


# --- normal forms -----------------------------------------------------------------------------

_DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21}


def _host(raw: str) -> str | None:
    """A host name lower-cased, IDNA-encoded, without a trailing dot (``None``: not a name)."""
    host = raw.strip().rstrip(".").lower()
    if not host or len(host) > 253:
        return None
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return None


#: A network location that is a plain host name alone (no user, port, IPv6 or escapes).
_PLAIN_NETLOC = re.compile(r"[A-Za-z0-9.-]+")


def _url(raw: str) -> tuple[str, str] | None:
    """The normal form of a URL and its host, or ``None`` when it does not parse.

    Most URLs name a plain host: their normal form is taken apart here by hand, as
    :func:`urllib.parse.urlsplit` would, which costs a fraction of it; any other goes through
    :func:`_url_parsed` (the tests check that both agree)."""
    scheme, sep, rest = raw.partition("://")
    # (urlsplit drops tabs and line breaks anywhere: such a URL takes the long way.)
    if (
        sep
        and scheme.isascii()
        and scheme.isalpha()
        and "\t" not in rest
        and "\n" not in rest
        and "\r" not in rest
    ):
        end = len(rest)
        for mark in "/?#":
            at = rest.find(mark, 0, end)
            if at >= 0:
                end = at
        netloc = rest[:end]
        if netloc and _PLAIN_NETLOC.fullmatch(netloc):
            host = _host(netloc)
            if host is None:
                return None
            path, _, query = rest[end:].partition("#")[0].partition("?")
            tail = f"?{query}" if query else ""
            return f"{scheme.lower()}://{host}{path or '/'}{tail}", host
    return _url_parsed(raw)


def _url_parsed(raw: str) -> tuple[str, str] | None:
    """:func:`_url` through :func:`urllib.parse.urlsplit`, for any URL."""
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    host = _host(parts.hostname)
    if host is None:
        return None
    scheme = parts.scheme.lower()
    netloc = host if ":" not in host else f"[{host}]"
    if parts.username is not None:
        # Kept as written: userinfo is part of where the URL goes. It is never stored raw.
        netloc = parts.netloc.rsplit("@", 1)[0] + "@" + netloc
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        netloc = f"{netloc}:{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, "")), host


def _decimal(raw: str) -> str | None:
    """The canonical decimal of a written number (``1,234.50`` → ``1234.5``)."""
    digits = raw.replace(" ", "").replace("'", "").replace("\u00a0", "")
    if "," in digits and "." in digits:
        # Both marks: the last one is the decimal point (1,234.50 and 1.234,50).
        point = "." if digits.rfind(".") > digits.rfind(",") else ","
        other = "," if point == "." else "."
        digits = digits.replace(other, "").replace(point, ".")
    elif "," in digits:
        head, _, tail = digits.rpartition(",")
        # One comma and three digits after it is a thousands separator (1,234), else a point.
        if len(tail) == 3 or digits.count(",") > 1:
            digits = digits.replace(",", "")
        else:
            digits = f"{head}.{tail}"
    elif digits.count(".") > 1:
        digits = digits.replace(".", "")
    return _canonical(digits)


def _canonical(digits: str) -> str | None:
    if len(digits) > 64:  # no amount is this long; and int() of a huge one would raise
        return None
    try:
        number = abs(Decimal(digits))
    except InvalidOperation:
        return None
    if not number.is_finite():
        return None
    if number == number.to_integral_value():
        return str(int(number))
    return format(number.normalize(), "f")


def _number(value: int | float) -> str | None:
    try:
        return _canonical(repr(value))
    except ValueError:  # an int past Python's digit limit for str(): no amount anyone wrote
        return None


def _text(raw: str) -> str | None:
    text = " ".join(unicodedata.normalize("NFKC", raw).casefold().split())
    if not text or len(text) > MAX_TEXT_VALUE:
        return None
    return text


def iban_valid(iban: str) -> bool:
    """ISO 13616: the IBAN (upper-case, no spaces) passes the mod-97 check."""
    if not 15 <= len(iban) <= 34 or not iban.isascii() or not iban.isalnum():
        return False
    if not (iban[:2].isalpha() and iban[2:4].isdigit()):
        return False
    rearranged = (iban[4:] + iban[:4]).upper().translate(_IBAN_LETTERS)
    return int(rearranged) % 97 == 1


#: ISO 13616: each letter counts as two digits, A = 10 … Z = 35.
_IBAN_LETTERS = {ord(c): str(ord(c) - ord("A") + 10) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}


# --- the extractors, in order of precedence -----------------------------------------------------

_Found = Iterator[tuple[int, int, Extracted]]

_URL = re.compile(r"(?i)\b(?:https?|ftp)://[^\s<>\"'`{}|\\^\[\]]+")
_URL_TAIL = ".,;:!?)'\""
_EMAIL = re.compile(
    r"(?<![\w.+-])[\w.%+-]{1,64}@((?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{2,63})(?![\w-])"
)
_DOMAIN = re.compile(
    r"(?i)(?<![\w.@/-])((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+([a-z]{2,63}))\.?(?![\w@-])"
)
#: Common file extensions that look like top-level domains in prose (``report.pdf``).
_NOT_TLDS = frozenset(
    {
        *("bak", "bmp", "cfg", "conf", "csv", "doc", "docx", "exe", "gif", "htm", "html"),
        *("ini", "jpeg", "jpg", "js", "json", "log", "md", "pdf", "png", "ppt", "pptx", "py"),
        *("rb", "rs", "sh", "sql", "svg", "tar", "tgz", "toml", "ts", "tsv", "txt", "xls"),
        *("xlsx", "xml", "yaml", "yml", "zip"),
    }
)
_IBAN = re.compile(
    r"(?i)(?<!\w)([a-z]{2}\d{2}"
    r"(?:[a-z0-9]{11,30}|(?: [a-z0-9]{4}){2,7}(?: [a-z0-9]{1,4})?))(?!\w)"
)
_MONTHS = {
    "jan": 1,
    "feb": 2,
    "mar": 3,
    "apr": 4,
    "may": 5,
    "jun": 6,
    "jul": 7,
    "aug": 8,
    "sep": 9,
    "oct": 10,
    "nov": 11,
    "dec": 12,
}
_MONTH = (
    r"(?P<month>jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_DAY = r"(?P<day>\d{1,2})(?:st|nd|rd|th)?"
_YEAR = r"(?P<year>\d{4})"
_DATES = (
    re.compile(r"(?<![\d.-])(?P<year>\d{4})-(?P<mm>\d{1,2})-(?P<dd>\d{1,2})(?![\d-])"),
    re.compile(r"(?<![\d/])(?P<year>\d{4})/(?P<mm>\d{1,2})/(?P<dd>\d{1,2})(?![\d/])"),
    re.compile(rf"(?<![\d.])(?P<dd>\d{{1,2}})\.(?P<mm>\d{{1,2}})\.{_YEAR}(?![\d.]\d)"),
    re.compile(rf"(?<![\d/])(?P<a>\d{{1,2}})/(?P<b>\d{{1,2}})/{_YEAR}(?![\d/])"),
    re.compile(rf"(?i)\b{_MONTH}\s+{_DAY},?\s+{_YEAR}\b"),
    re.compile(rf"(?i)\b(?:the\s+)?{_DAY}\s+(?:of\s+)?{_MONTH},?\s+{_YEAR}\b"),
)
#: A character each date pattern needs (``""``: none in particular).
_DATE_MARKS = ("-", "/", ".", "/", "", "")
_CURRENCY = r"(?:[$€£¥₹]|\b(?:USD|EUR|GBP|CHF|JPY|CAD|AUD|euros?|dollars?|pounds?)\b)"
_NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d{1,3}(?:\.\d{3})+(?:,\d+)?|\d+(?:[.,]\d+)?"
_AMOUNT_MARKED = re.compile(
    rf"(?i)(?:{_CURRENCY}\s?(?P<pre>{_NUMBER})(?![\d.,]\d)"
    rf"|(?<![\d.,])(?P<post>{_NUMBER})\s?{_CURRENCY})"
)
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,5}(?:[ .-]\d{2,5}){1,5}(?![\w])"
    r"|(?<![\w+])\+\d{7,15}(?!\w)"
)
_ACCOUNT = re.compile(r"(?<![\w])(?:\d{8,34}|\d{4}(?:[ -]\d{4}){2,5}(?:[ -]\d{1,4})?)(?![\w])")
_AMOUNT_PLAIN = re.compile(
    r"(?<![\w.,])(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d{1,3}(?:\.\d{3})+,\d{2}|\d+[.,]\d{2})(?![\w.,]\w)"
)
_QUOTED = re.compile(r"(?<!\w)(?:\"([^\"\n]{1,256})\"|'([^'\n]{1,256})'|“([^”\n]{1,256})”)(?!\w)")


def _sentence_end(host: str) -> str:
    """``host`` without the next sentence's first word, when a sentence-ending dot glued one
    capitalised word to a host written in lower case (``example.com.They`` → ``example.com``).
    A host in capitals or mixed case, or with one label before the word, is kept whole."""
    head, dot, word = host.rpartition(".")
    if (
        dot
        and "." in head
        and head.islower()
        and len(word) > 1
        and word[0].isupper()
        and word[1:].isalpha()
        and word[1:].islower()
    ):
        return head
    return host


#: A character that ends a URL's host (a path, query, fragment, user or port follows).
_PAST_HOST = re.compile(r"[/?#@:]")


def _urls(text: str) -> _Found:
    for m in _URL.finditer(text):
        raw = m.group().rstrip(_URL_TAIL)
        authority = raw.partition("://")[2]
        if _PAST_HOST.search(authority) is None:
            raw = raw[: len(raw) - len(authority)] + _sentence_end(authority)
        url = _url(raw)
        if url is not None:
            end = m.start() + len(raw)
            yield m.start(), end, Extracted(ValueKind.URL, url[0])
            yield m.start(), end, Extracted(ValueKind.DOMAIN, url[1])


def _emails(text: str) -> _Found:
    for m in _EMAIL.finditer(text):
        local, _, domain = m.group().rpartition("@")
        host = _host(domain)
        if host is not None:
            yield m.start(), m.end(), Extracted(ValueKind.EMAIL, f"{local.lower()}@{host}")


def _domains(text: str) -> _Found:
    for m in _DOMAIN.finditer(text):
        whole = m.group(1)
        name = _sentence_end(whole)
        if name.rpartition(".")[2].lower() in _NOT_TLDS:
            continue
        host = _host(name)
        if host is not None:
            end = m.end() if len(name) == len(whole) else m.start() + len(name)
            yield m.start(), end, Extracted(ValueKind.DOMAIN, host)


def _ibans(text: str) -> _Found:
    for m in _IBAN.finditer(text):
        groups = m.group(1).upper().split(" ")
        # A spaced IBAN may run into a following word of four letters: drop trailing groups
        # until the check passes; if none does, it is an account-like identifier as written.
        for keep in range(len(groups), 0, -1):
            candidate = "".join(groups[:keep])
            if iban_valid(candidate):
                end = m.start() + len(" ".join(groups[:keep]))
                yield m.start(), end, Extracted(ValueKind.IBAN, candidate)
                break
        else:
            whole = "".join(groups)
            if sum(c.isdigit() for c in whole) >= 8:
                yield m.start(), m.end(), Extracted(ValueKind.ACCOUNT, whole)


def _dates(text: str) -> _Found:
    for needs, pattern in zip(_DATE_MARKS, _DATES, strict=True):
        if needs and needs not in text:
            continue
        for m in pattern.finditer(text):
            fields = m.groupdict()
            year = int(fields["year"])
            if fields.get("month"):
                month, day = _MONTHS[fields["month"][:3].lower()], int(fields["day"])
            elif fields.get("a"):
                a, b = int(fields["a"]), int(fields["b"])
                # US order (mm/dd) unless the first number cannot be a month.
                month, day = (b, a) if a > 12 else (a, b)
            else:
                month, day = int(fields["mm"]), int(fields["dd"])
            try:
                found = date(year, month, day)
            except ValueError:
                continue
            yield m.start(), m.end(), Extracted(ValueKind.DATE, found.isoformat())


def _marked_amounts(text: str) -> _Found:
    for m in _AMOUNT_MARKED.finditer(text):
        value = _decimal(m.group("pre") or m.group("post"))
        if value is not None:
            yield m.start(), m.end(), Extracted(ValueKind.AMOUNT, value)


def _phones(text: str) -> _Found:
    for m in _PHONE.finditer(text):
        raw = m.group()
        digits = "".join(c for c in raw if c.isdigit())
        if 7 <= len(digits) <= 15:
            value = f"+{digits}" if raw.startswith("+") else digits
            yield m.start(), m.end(), Extracted(ValueKind.PHONE, value)


def _accounts(text: str) -> _Found:
    for m in _ACCOUNT.finditer(text):
        value = "".join(c for c in m.group() if c.isdigit())
        if 8 <= len(value) <= 34:
            yield m.start(), m.end(), Extracted(ValueKind.ACCOUNT, value)


def _plain_amounts(text: str) -> _Found:
    for m in _AMOUNT_PLAIN.finditer(text):
        value = _decimal(m.group(1))
        if value is not None:
            yield m.start(), m.end(), Extracted(ValueKind.AMOUNT, value)


def _has_digit(text: str) -> bool:
    return _DIGIT.search(text) is not None


_DIGIT = re.compile(r"\d")

_Gate = Callable[[str], bool]

#: Each extractor, a cheap test that it may find anything at all (every extractor scans the
#: whole text, and most arguments hold one short value), and the kinds it can yield, in order
#: of precedence.
_EXTRACTORS: tuple[tuple[Callable[[str], _Found], _Gate, frozenset[ValueKind]], ...] = (
    (_urls, lambda t: "://" in t, frozenset({ValueKind.URL, ValueKind.DOMAIN})),
    (_emails, lambda t: "@" in t, frozenset({ValueKind.EMAIL})),
    (_domains, lambda t: "." in t, frozenset({ValueKind.DOMAIN})),
    (_ibans, _has_digit, frozenset({ValueKind.IBAN, ValueKind.ACCOUNT})),
    (_dates, _has_digit, frozenset({ValueKind.DATE})),
    (_marked_amounts, _has_digit, frozenset({ValueKind.AMOUNT})),
    (_phones, _has_digit, frozenset({ValueKind.PHONE})),
    (_accounts, _has_digit, frozenset({ValueKind.ACCOUNT})),
    (_plain_amounts, _has_digit, frozenset({ValueKind.AMOUNT})),
)

#: For each extractor (by position), the kinds it and those after it can yield: extraction
#: stops once nothing asked for is left to find.
_REMAINING: tuple[frozenset[ValueKind], ...] = tuple(
    frozenset().union(*(kinds for _e, _g, kinds in _EXTRACTORS[i:]))
    for i in range(len(_EXTRACTORS))
)


class _Collector:
    """Values found so far across one extraction, each once, up to the limit."""

    __slots__ = ("capped", "kinds", "limit", "seen", "values")

    def __init__(self, kinds: frozenset[ValueKind], limit: int) -> None:
        self.kinds = kinds
        self.limit = limit
        # Kind and value as a plain tuple: hashed in C, not by the dataclass's own __hash__.
        self.seen: set[tuple[ValueKind, str]] = set()
        self.values: list[Extracted] = []
        self.capped = False

    def add(self, value: Extracted) -> bool:
        """Keep ``value`` if asked for; False once the limit is reached."""
        if self.capped:
            return False
        if value.kind in self.kinds:
            seen = self.seen
            known = len(seen)
            key = (value.kind, value.value)
            seen.add(key)
            if len(seen) != known:  # a value not seen before
                if known >= self.limit:
                    seen.discard(key)
                    self.capped = True
                    return False
                self.values.append(value)
        return True


@functools.cache
def _plan(kinds: frozenset[ValueKind]) -> tuple[tuple[Callable[[str], _Found], _Gate], ...]:
    """The extractors a scan for ``kinds`` runs: up to the last that can yield one of them."""
    wanted = [i for i, remaining in enumerate(_REMAINING) if not kinds.isdisjoint(remaining)]
    return tuple((extractor, gate) for extractor, gate, _yields in _EXTRACTORS[: len(wanted)])


def _scan(text: str, into: _Collector) -> None:
    work = text
    digits: bool | None = None  # whether ``work`` holds a digit, once asked
    for extractor, gate in _plan(into.kinds):
        if work.isspace():
            break  # nothing is left unmatched
        if gate is _has_digit:
            if digits is None:
                digits = _has_digit(work)
            if not digits:
                continue
        elif not gate(work):
            continue
        spans: list[tuple[int, int]] = []
        for start, end, value in extractor(work):
            if not into.add(value):
                return
            if not spans or spans[-1] != (start, end):
                spans.append((start, end))
        if spans:
            if spans[0] == (0, len(work)):
                break  # it matched the whole text (one URL, one address): nothing is left
            # Blank what matched so that a later, weaker extractor does not read it again.
            pieces, last = [], 0
            for start, end in sorted(spans) if len(spans) > 1 else spans:
                if start >= last:
                    pieces.append(work[last:start])
                    pieces.append(" " * (end - start))
                    last = end
            pieces.append(work[last:])
            work = "".join(pieces)
            digits = None
    if ValueKind.TEXT in into.kinds:
        for m in _QUOTED.finditer(text):
            quoted = _text(m.group(1) or m.group(2) or m.group(3))
            if quoted is not None and not into.add(Extracted(ValueKind.TEXT, quoted)):
                return


def extract(
    text: str,
    kinds: frozenset[ValueKind] = ALL_KINDS,
    limits: ExtractLimits = DEFAULT_LIMITS,
) -> Extraction:
    """The values of ``kinds`` in ``text``, scanning at most ``limits.max_chars`` of it."""
    into = _Collector(kinds, limits.max_values)
    scanned = text[: limits.max_chars]
    _scan(scanned, into)
    return Extraction(tuple(into.values), len(scanned), len(text) - len(scanned), into.capped)


def extract_json(
    value: JSONValue,
    kinds: frozenset[ValueKind] = ALL_KINDS,
    limits: ExtractLimits = DEFAULT_LIMITS,
) -> Extraction:
    """The values of ``kinds`` in a JSON value: every string is scanned as text and is itself a
    ``text`` value; every number is an ``amount``. Keys are not scanned. The character budget
    is shared by the whole value; strings past it are counted as unscanned."""
    into = _Collector(kinds, limits.max_values)
    if type(value) is str:
        # One string (most arguments): the loop below, for one item, without the stack.
        part = value[: limits.max_chars]
        if part:
            whole = len(part) == len(value)
            text = _text(value) if whole and ValueKind.TEXT in kinds else None
            if text is None or into.add(Extracted(ValueKind.TEXT, text)):
                _scan(part, into)
        return Extraction(tuple(into.values), len(part), len(value) - len(part), into.capped)
    budget = limits.max_chars
    unscanned = 0
    stack: list[JSONValue] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            part = item[:budget]
            unscanned += len(item) - len(part)
            budget -= len(part)
            if part:
                if ValueKind.TEXT in kinds and len(part) == len(item):
                    text = _text(item)
                    if text is not None and not into.add(Extracted(ValueKind.TEXT, text)):
                        break
                _scan(part, into)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int | float):
            amount = _number(item) if ValueKind.AMOUNT in kinds else None
            if amount is not None and not into.add(Extracted(ValueKind.AMOUNT, amount)):
                break
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))
        if into.capped:
            break
    return Extraction(
        tuple(into.values), limits.max_chars - budget, unscanned + _rest(stack), into.capped
    )


def _rest(stack: list[JSONValue]) -> int:
    """Characters of strings left on the stack when extraction stopped early."""
    total = 0
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return total
