"""The value extractors of argument provenance (core/provenance_extract.py): what each kind
finds and misses, that one value written two ways has one normal form, and that extraction is
bounded and never raises."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.core.errors import ConfigurationError
from tether.core.provenance_extract import (
    ALL_KINDS,
    Extracted,
    ExtractLimits,
    ValueKind,
    extract,
    extract_json,
    iban_valid,
)
from tether.core.scope import JSONValue

K = ValueKind


def found(text: str, kind: ValueKind) -> list[str]:
    return [v.value for v in extract(text, frozenset({kind})).values]


# (kind, text, the normal forms expected, in any order)
POSITIVE: list[tuple[ValueKind, str, set[str]]] = [
    # URLs: scheme and host lower-cased, default port and fragment dropped, empty path "/".
    (K.URL, "Go to https://WWW.Example.COM:443/a/B?x=1#top now.", {"https://www.example.com/a/B?x=1"}),
    (K.URL, "(see http://example.com:8080)", {"http://example.com:8080/"}),
    (K.URL, "http://example.com.", {"http://example.com/"}),
    (K.URL, "ftp://files.example.org:21/pub", {"ftp://files.example.org/pub"}),
    (K.URL, "http://bücher.example/katalog", {"http://xn--bcher-kva.example/katalog"}),
    (K.URL, "two: https://a.example/x and https://b.example/y", {"https://a.example/x", "https://b.example/y"}),
    # Domains: of URLs, and bare names; lower-case, IDNA, no trailing dot.
    (K.DOMAIN, "https://Shop.Example.com/cart", {"shop.example.com"}),
    (K.DOMAIN, "visit www.True-Informations.com.", {"www.true-informations.com"}),
    (K.DOMAIN, "host: api.example.co.uk", {"api.example.co.uk"}),
    (K.DOMAIN, "http://bücher.example./", {"xn--bcher-kva.example"}),
    # E-mail addresses: lower-cased, domain IDNA.
    (K.EMAIL, "write to Bob.Smith+tag@Example.COM today", {"bob.smith+tag@example.com"}),
    (K.EMAIL, "<alice@mail.example.org>", {"alice@mail.example.org"}),
    (K.EMAIL, "jörg@bücher.example", {"jörg@xn--bcher-kva.example"}),
    # IBANs (mod-97) and account-like identifiers.
    (K.IBAN, "IBAN: GB29 NWBK 6016 1331 9268 19.", {"GB29NWBK60161331926819"}),
    (K.IBAN, "de89370400440532013000", {"DE89370400440532013000"}),
    (K.IBAN, "GB29 NWBK 6016 1331 9268 19 THEN", {"GB29NWBK60161331926819"}),
    (K.ACCOUNT, "to US133000000121212121212", {"US133000000121212121212"}),
    (K.ACCOUNT, "account 0123456789", {"0123456789"}),
    (K.ACCOUNT, "card 4111 1111 1111 1111", {"4111111111111111"}),
    # Phone numbers: digits, with the country code when written with one.
    (K.PHONE, "call +1 (555) 123-4567", {"+15551234567"}),
    (K.PHONE, "call +44 20 7946 0958", {"+442079460958"}),
    (K.PHONE, "office (555) 123-4567", {"5551234567"}),
    (K.PHONE, "fax 555.123.4567", {"5551234567"}),
    (K.PHONE, "+41791234567", {"+41791234567"}),
    # Dates: ISO and the common written forms, to yyyy-mm-dd.
    (K.DATE, "on 2024-05-19", {"2024-05-19"}),
    (K.DATE, "at 2024-05-19T10:00:00Z", {"2024-05-19"}),
    (K.DATE, "May 1st, 2024", {"2024-05-01"}),
    (K.DATE, "Monday, 19 May 2024", {"2024-05-19"}),
    (K.DATE, "the 3rd of June 2024", {"2024-06-03"}),
    (K.DATE, "Sept. 9 2024", {"2024-09-09"}),
    (K.DATE, "19.05.2024", {"2024-05-19"}),
    (K.DATE, "05/19/2024", {"2024-05-19"}),
    (K.DATE, "19/05/2024", {"2024-05-19"}),
    (K.DATE, "2024/5/9", {"2024-05-09"}),
    # Amounts: canonical decimal.
    (K.AMOUNT, "pay $1,234.50", {"1234.5"}),
    (K.AMOUNT, "pay 1.234,50 €", {"1234.5"}),
    (K.AMOUNT, "100 EUR", {"100"}),
    (K.AMOUNT, "USD 98.70", {"98.7"}),
    (K.AMOUNT, "£5", {"5"}),
    (K.AMOUNT, "total 1,000,000", {"1000000"}),
    (K.AMOUNT, "it costs 12.00", {"12"}),
    (K.AMOUNT, "20 dollars", {"20"}),
    # Text: quoted spans, NFKC, case-folded, whitespace collapsed.
    (K.TEXT, "title should be 'Booking a room at the  Riverside View Hotel'.", {"booking a room at the riverside view hotel"}),
    (K.TEXT, 'subject "Quarterly Report"', {"quarterly report"}),
    (K.TEXT, "“Curly Quotes”", {"curly quotes"}),
]  # fmt: skip

NEGATIVE: list[tuple[ValueKind, str]] = [
    (K.URL, "javascript:alert(1)"),
    (K.URL, "https://"),
    (K.DOMAIN, "see report.pdf and notes.md"),
    (K.DOMAIN, "e.g. this, i.e. that"),
    (K.DOMAIN, "version 1.2.3"),
    (K.DOMAIN, "mail bob@example.com"),  # an address, not a bare name
    (K.EMAIL, "not@an address"),
    (K.EMAIL, "@example.com"),
    (K.IBAN, "GB00 NWBK 6016 1331 9268 19"),  # fails mod-97
    (K.IBAN, "US133000000121212121212"),
    (K.ACCOUNT, "order 1234567"),  # seven digits
    (K.ACCOUNT, "GB29 NWBK 6016 1331 9268 19"),  # a valid IBAN is not also an account
    (K.PHONE, "on 2024-05-19"),  # a date is not a phone number
    (K.PHONE, "12 34"),
    (K.PHONE, "1234567890123456789"),
    (K.DATE, "2024-02-30"),
    (K.DATE, "May 19"),  # no year: no yyyy-mm-dd
    (K.DATE, "13/13/2024"),
    (K.AMOUNT, "version 1.2"),
    (K.AMOUNT, "I have 3 cats"),
    (K.AMOUNT, "on 19.05.2024"),
    (K.TEXT, "don't stop, it's Bob's"),
    (K.TEXT, "x" * 300),
]

# Pairs written differently that are one value.
EQUIVALENT: list[tuple[ValueKind, str, str]] = [
    (K.URL, "https://example.com", "HTTPS://EXAMPLE.COM:443/#frag"),
    (K.URL, "http://example.com./a", "http://Example.com:80/a"),
    (K.DOMAIN, "www.example.com", "https://WWW.EXAMPLE.COM./x"),
    (K.EMAIL, "Bob@Example.com", "bob@example.com"),
    (K.IBAN, "GB29 NWBK 6016 1331 9268 19", "gb29nwbk60161331926819"),
    (K.PHONE, "+1 (555) 123-4567", "+1-555-123-4567"),
    (K.DATE, "May 1st, 2024", "2024-05-01"),
    (K.DATE, "1 May 2024", "01.05.2024"),
    (K.AMOUNT, "$1,234.50", "1234.50 USD"),
    (K.AMOUNT, "1.234,50 €", "EUR 1,234.5"),
    (K.TEXT, "'Team  Sync'", '"team sync"'),
]


@pytest.mark.parametrize(("kind", "text", "expected"), POSITIVE)
def test_an_extractor_finds_its_kind_in_normal_form(
    kind: ValueKind, text: str, expected: set[str]
) -> None:
    assert set(found(text, kind)) == expected


@pytest.mark.parametrize(("kind", "text"), NEGATIVE)
def test_an_extractor_finds_nothing_that_is_not_its_kind(kind: ValueKind, text: str) -> None:
    assert found(text, kind) == []


@pytest.mark.parametrize(("kind", "a", "b"), EQUIVALENT)
def test_one_value_written_two_ways_has_one_normal_form(kind: ValueKind, a: str, b: str) -> None:
    assert found(a, kind) == found(b, kind)
    assert len(found(a, kind)) == 1


# A dot that ends a sentence, then the next sentence's first word: the dot ends the host name.
# (text, the domains expected)
SENTENCE_ENDS: list[tuple[str, set[str]]] = [
    ("post them to our website www.our-company.com.They sent their hobbies", {"www.our-company.com"}),
    ("see example.org.Then write back", {"example.org"}),
    ("at https://www.our-company.com.They said so", {"www.our-company.com"}),
    # Not split: a host written in capitals or mixed case, a capital inside the name, lower-case
    # labels, a single label before the dot, a capital label that is not the last one.
    ("WWW.Example.Com", {"www.example.com"}),
    ("www.Example.com", {"www.example.com"}),
    ("mail.Google.com", {"mail.google.com"}),
    ("www.mail.Google.com", {"www.mail.google.com"}),
    ("docs.python.org.uk", {"docs.python.org.uk"}),
    ("api.example.co.uk", {"api.example.co.uk"}),
    ("www.example.com.IT", {"www.example.com.it"}),
    ("https://shop.example.com/Cart.Html", {"shop.example.com"}),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), SENTENCE_ENDS)
def test_a_sentence_ending_dot_before_a_capitalised_word_ends_a_host(
    text: str, expected: set[str]
) -> None:
    assert set(found(text, K.DOMAIN)) == expected


def test_a_url_glued_to_the_next_sentence_ends_at_the_dot() -> None:
    assert found("at https://www.our-company.com.They said", K.URL) == [
        "https://www.our-company.com/"
    ]
    assert found("at https://www.our-company.com/a.They", K.URL) == [
        "https://www.our-company.com/a.They"
    ]


def test_the_kinds_asked_for_only_filter_what_is_found() -> None:
    text = "Meet on 2024-05-19, call 555-123-4567, see https://example.com/x, pay $12.50"
    every = set(extract(text).values)
    for kind in ValueKind:
        assert set(extract(text, frozenset({kind})).values) == {v for v in every if v.kind is kind}


def test_iban_check_is_iso_13616_mod_97() -> None:
    assert iban_valid("GB29NWBK60161331926819")
    assert iban_valid("DE89370400440532013000")
    assert not iban_valid("GB28NWBK60161331926819")
    assert not iban_valid("GB29NWBK6016133192681")  # one character short
    assert not iban_valid("29GBNWBK60161331926819")


def test_json_strings_are_scanned_and_are_text_values_and_numbers_are_amounts() -> None:
    result: JSONValue = {
        "events": [{"title": "Dinner", "start": "2024-05-19 19:00", "url": "https://x.example/"}],
        "balance": 1250.0,
        "flag": True,
        "none": None,
    }
    values = set(extract_json(result).values)
    assert Extracted(K.TEXT, "dinner") in values
    assert Extracted(K.DATE, "2024-05-19") in values
    assert Extracted(K.URL, "https://x.example/") in values
    assert Extracted(K.AMOUNT, "1250") in values
    assert Extracted(K.AMOUNT, "1") not in values  # True is not a number here
    assert not any(v.value in {"events", "title", "balance"} for v in values)  # keys are not


def test_a_text_too_long_is_scanned_up_to_the_limit_and_the_rest_reported() -> None:
    limits = ExtractLimits(max_chars=40, max_values=100)
    text = "mail bob@example.com " + " " * 30 + "eve@attacker.example"
    got = extract(text, limits=limits)
    assert [v.value for v in got.values] == ["bob@example.com"]
    assert (got.scanned, got.unscanned, got.complete) == (40, len(text) - 40, False)


def test_json_past_the_budget_counts_its_remaining_strings_as_unscanned() -> None:
    limits = ExtractLimits(max_chars=10, max_values=100)
    got = extract_json(["0123456789", "eve@attacker.example"], limits=limits)
    assert got.unscanned == len("eve@attacker.example")
    assert not got.complete
    assert all(v.kind is not K.EMAIL for v in got.values)


def test_extraction_stops_at_the_value_limit_and_says_so() -> None:
    text = " ".join(f"user{i}@example.com" for i in range(10))
    got = extract(text, frozenset({K.EMAIL}), ExtractLimits(max_values=3))
    assert len(got.values) == 3 and got.capped and not got.complete


@pytest.mark.parametrize(("chars", "values"), [(0, 10), (10, 0), (-1, 10)])
def test_limits_that_scan_nothing_are_refused(chars: int, values: int) -> None:
    with pytest.raises(ConfigurationError):
        ExtractLimits(max_chars=chars, max_values=values)


def test_an_extracted_value_never_shows_in_its_repr() -> None:
    (value,) = extract("bob@example.com", frozenset({K.EMAIL})).values
    assert "bob" not in repr(value)


def test_adversarial_text_is_scanned_in_bounded_time() -> None:
    # No timing threshold: these complete at all only if no pattern backtracks catastrophically.
    for text in ["a." * 5000, "1-" * 5000, "a" * 10000 + "@", "1 " * 5000, "aa11 " * 2000]:
        extract(text)


json_values: st.SearchStrategy[JSONValue] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=20,
)
limits_strategy = st.builds(
    ExtractLimits, max_chars=st.integers(1, 200), max_values=st.integers(1, 20)
)
kinds_strategy = st.frozensets(st.sampled_from(list(ValueKind)), min_size=1)
value_texts = st.text(
    alphabet=st.characters(codec="utf-8") | st.sampled_from(list("0123456789@.:/-+$€ ,'\"")),
    max_size=300,
)


@settings(max_examples=300, deadline=None)
@given(text=value_texts, kinds=kinds_strategy, limits=limits_strategy)
def test_extraction_never_raises_and_respects_its_bounds(
    text: str, kinds: frozenset[ValueKind], limits: ExtractLimits
) -> None:
    got = extract(text, kinds, limits)
    assert len(got.values) <= limits.max_values
    assert got.scanned <= limits.max_chars
    assert got.scanned + got.unscanned == len(text)
    assert all(v.kind in kinds for v in got.values)
    assert len(set(got.values)) == len(got.values)


@settings(max_examples=200, deadline=None)
@given(value=json_values, limits=limits_strategy)
def test_json_extraction_never_raises_and_respects_its_bounds(
    value: JSONValue, limits: ExtractLimits
) -> None:
    got = extract_json(value, ALL_KINDS, limits)
    assert len(got.values) <= limits.max_values
    assert got.scanned <= limits.max_chars


@settings(max_examples=200, deadline=None)
@given(text=value_texts)
def test_extraction_is_deterministic_and_normal_forms_are_fixed_points(text: str) -> None:
    # Normalizing a normal form changes nothing, for the kinds whose normal form is itself a
    # way the value can be written.
    got = extract(text)
    assert extract(text) == got
    for value in got.values:
        if value.kind in {K.URL, K.EMAIL, K.IBAN, K.DATE}:
            assert value in extract(f" {value.value} ", frozenset({value.kind})).values
