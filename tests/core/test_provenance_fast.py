"""The fast paths of argument provenance find and fingerprint exactly what the reference
paths do: a URL's normal form taken apart by hand against ``urllib.parse.urlsplit``."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from tether.core import provenance_extract as pe

_SCHEMES = st.sampled_from(["http", "https", "ftp", "HTTP", "Https", "fTp", "é", "h1", ""])
_NETLOC = st.text(alphabet="aZ09.-_@:[]%é\t", max_size=12)
_TAIL = st.text(alphabet="/?#a.%:@é\t\n", max_size=12)


@settings(max_examples=2000, deadline=None)
@given(_SCHEMES, st.sampled_from(["://", ":/", ":"]), _NETLOC, _TAIL)
@example("https", "://", "Example.COM.", "")
@example("https", "://", ".", "/x")
@example("http", "://", "a.com", "?")
@example("http", "://", "a.com", "?q#f?g")
@example("http", "://", "a.com", "#f?g")
@example("http", "://", "a.b", "/p\tq")
def test_a_urls_normal_form_is_the_one_urlsplit_gives(
    scheme: str, sep: str, netloc: str, tail: str
) -> None:
    raw = f"{scheme}{sep}{netloc}{tail}"
    assert pe._url(raw) == pe._url_parsed(raw)


# --- the scan, against the scan as it was -------------------------------------------------------


class _ReferenceCollector:
    """The collector as it was: values kept in a set of ``Extracted``."""

    def __init__(self, kinds: frozenset[pe.ValueKind], limit: int) -> None:
        self.kinds = kinds
        self.limit = limit
        self.seen: set[pe.Extracted] = set()
        self.values: list[pe.Extracted] = []
        self.capped = False

    def add(self, value: pe.Extracted) -> bool:
        if self.capped:
            return False
        if value.kind in self.kinds and value not in self.seen:
            if len(self.values) >= self.limit:
                self.capped = True
                return False
            self.seen.add(value)
            self.values.append(value)
        return True


def _reference_scan(text: str, into: _ReferenceCollector) -> None:
    """The scan as it was: every extractor asked in turn, everything matched blanked."""
    work = text
    digits = pe._has_digit(work)
    for (extractor, gate, _yields), remaining in zip(pe._EXTRACTORS, pe._REMAINING, strict=True):
        if not into.kinds & remaining or work.isspace():
            break
        if gate is pe._has_digit:
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
            pieces, last = [], 0
            for start, end in sorted(spans):
                if start >= last:
                    pieces.append(work[last:start])
                    pieces.append(" " * (end - start))
                    last = end
            pieces.append(work[last:])
            work = "".join(pieces)
            digits = pe._has_digit(work)
    if pe.ValueKind.TEXT in into.kinds:
        for m in pe._QUOTED.finditer(text):
            quoted = pe._text(m.group(1) or m.group(2) or m.group(3))
            if quoted is not None and not into.add(pe.Extracted(pe.ValueKind.TEXT, quoted)):
                return


_TOKENS = st.sampled_from(
    [
        "https://shop.example.com/order?id=7#top",
        "http://user@Example.COM:8080/a",
        "ftp://files.example.org",
        "eve@evil.example.net",
        "Bob@Example.com",
        "www.example.org",
        "report.pdf",
        "DE89 3704 0044 0532 0130 00",
        "GB82WEST12345698765432",
        "2024-05-19",
        "19.05.2024",
        "05/19/2024",
        "May 1st, 2024",
        "the 3rd of June 2024",
        "$1,250.00",
        "100 EUR",
        "1.234,50",
        "+1 555 010 9999",
        "(030) 1234 5678",
        "4111 1111 1111 1111",
        "12345678901",
        '"a quoted title"',
        "'single'",
        "see",
        "and",
        ",",
        ".",
        " ",
        "\n",
    ]
)
_KINDS = st.frozensets(st.sampled_from(list(pe.ValueKind)), min_size=1)


@settings(max_examples=1500, deadline=None)
@given(st.lists(_TOKENS, max_size=8).map(" ".join), _KINDS, st.integers(1, 6))
def test_the_scan_finds_what_the_reference_scan_found(
    text: str, kinds: frozenset[pe.ValueKind], limit: int
) -> None:
    fast, reference = pe._Collector(kinds, limit), _ReferenceCollector(kinds, limit)
    pe._scan(text, fast)
    _reference_scan(text, reference)
    assert (fast.values, fast.capped) == (reference.values, reference.capped)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(_TOKENS, max_size=6).map(" ".join),
    _KINDS,
    st.integers(1, 80),
    st.integers(1, 6),
)
def test_one_string_is_extracted_as_it_is_inside_a_list(
    text: str, kinds: frozenset[pe.ValueKind], chars: int, values: int
) -> None:
    limits = pe.ExtractLimits(max_chars=chars, max_values=values)
    assert pe.extract_json(text, kinds, limits) == pe.extract_json([text], kinds, limits)
