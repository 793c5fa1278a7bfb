"""The redactor finds a secret embedded in arbitrary bytes in every form an echo gives it, takes
every one of them out, names the form for the audit record, and leaves data that does not hold
it alone. (What the egress proxy's scanner was tested for, now against the one redactor both
doors use.)"""

from __future__ import annotations

import base64
import html
import json
import pickle
import random
import re
from collections.abc import Callable
from urllib.parse import quote_from_bytes, quote_plus

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether.core.errors import ConfigurationError, ErrorCode
from tether.core.redact import (
    MIN_SECRET_BYTES,
    Encoding,
    Escaping,
    Redactor,
    base64_fragments,
    form_name,
)

SECRET = b"legacy-standing-key+5f1e/2d3c4b7a"
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Transform = Callable[[bytes], bytes]

#: The carriers: how the bytes around and including the secret were turned into text.
ENCODINGS: dict[str, tuple[Encoding, Transform]] = {
    "raw": (Encoding.RAW, lambda b: b),
    "base64": (Encoding.BASE64, base64.standard_b64encode),
    "base64-unpadded": (Encoding.BASE64, lambda b: base64.standard_b64encode(b).rstrip(b"=")),
    "base64url": (Encoding.BASE64URL, base64.urlsafe_b64encode),
    "base64url-unpadded": (Encoding.BASE64URL, lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")),
    "hex": (Encoding.HEX, lambda b: b.hex().encode()),
    "HEX": (Encoding.HEX, lambda b: b.hex().upper().encode()),
}


def _lower_hex(text: bytes) -> bytes:
    return re.sub(rb"%[0-9A-F]{2}", lambda m: m.group().lower(), text)


def _json_all(text: bytes, upper: bool) -> bytes:
    """Every character as a \\uXXXX escape, as the most cautious JSON encoders write them."""
    units = text.decode("utf-8").encode("utf-16-be")  # surrogate pairs beyond the BMP
    out = "".join(f"\\u{units[i]:02x}{units[i + 1]:02x}" for i in range(0, len(units), 2))
    return (out.upper().replace("\\U", "\\u") if upper else out).encode()


def _json(text: bytes) -> bytes:
    return json.dumps(text.decode("utf-8")).replace("/", "\\/").encode()


def _html_all(text: bytes, hexadecimal: bool) -> bytes:
    """Every character but ASCII letters and digits as a numeric character reference, as
    OWASP-style HTML encoders write."""
    form = "&#x{:X};" if hexadecimal else "&#{:d};"
    return "".join(
        c if c.isascii() and c.isalnum() else form.format(ord(c)) for c in text.decode("utf-8")
    ).encode()


def _wrap(text: bytes, width: int, newline: bytes) -> bytes:
    return newline.join(text[i : i + width] for i in range(0, len(text), width))


#: The escapings applied to that text on the way back (None: none). The JSON and HTML ones need
#: UTF-8 text.
ESCAPINGS: dict[str, tuple[Escaping | None, bool, Transform]] = {
    "none": (None, False, lambda t: t),
    "quote": (Escaping.PERCENT, False, lambda t: quote_from_bytes(t, safe="").encode()),
    "quote-lower": (
        Escaping.PERCENT,
        False,
        lambda t: _lower_hex(quote_from_bytes(t, safe="").encode()),
    ),
    "quote-plus": (Escaping.PERCENT, False, lambda t: quote_plus(t, safe="").encode()),
    "quote-twice": (
        Escaping.PERCENT,
        False,
        lambda t: quote_from_bytes(quote_from_bytes(t, safe="").encode(), safe="").encode(),
    ),
    "json": (Escaping.JSON, True, _json),
    "json-utf8": (
        Escaping.JSON,
        True,
        lambda t: json.dumps(t.decode("utf-8"), ensure_ascii=False).encode(),
    ),
    "json-all": (Escaping.JSON, True, lambda t: _json_all(t, upper=False)),
    "json-all-upper": (Escaping.JSON, True, lambda t: _json_all(t, upper=True)),
    "json-in-json": (Escaping.JSON, True, lambda t: json.dumps(_json(t).decode()).encode()),
    "html": (
        Escaping.HTML,
        True,
        lambda t: html.escape(t.decode()).replace("/", "&#x2F;").encode(),
    ),
    "html-decimal": (Escaping.HTML, True, lambda t: _html_all(t, hexadecimal=False)),
    "html-hex": (Escaping.HTML, True, lambda t: _html_all(t, hexadecimal=True)),
}

secrets = st.binary(min_size=MIN_SECRET_BYTES, max_size=40)
text_secrets = st.text(min_size=MIN_SECRET_BYTES, max_size=30).filter(
    lambda s: len(s.encode()) >= MIN_SECRET_BYTES
)


def _embed(secret: bytes, before: bytes, after: bytes, encoding: str, escaping: str) -> bytes:
    _, encode = ENCODINGS[encoding]
    return escaping_of(escaping)(encode(before + secret + after))


def escaping_of(name: str) -> Transform:
    return ESCAPINGS[name][2]


def redactor(*secrets: bytes) -> Redactor:
    return Redactor([(f"s{i}", secret) for i, secret in enumerate(secrets)])


def redacted(data: bytes, *secrets: bytes) -> tuple[str, ...]:
    """Redact ``data``: check a secret was found and none is left, in any form; the forms found
    (what the audit record names)."""
    found_by = redactor(*secrets)
    out, found = found_by.redact_bytes(data)
    assert found, data
    assert not found_by.holds(out)
    assert all(secret not in out for secret in secrets)
    return tuple(form for item in found for form in item.forms)


# -- found --------------------------------------------------------------------------------------


@FAST
@given(
    secret=secrets,
    before=st.binary(max_size=20),
    after=st.binary(max_size=20),
    outside=st.tuples(st.binary(max_size=30), st.binary(max_size=30)),
    encoding=st.sampled_from(sorted(ENCODINGS)),
    escaping=st.sampled_from([n for n, (_, needs_text, _) in ESCAPINGS.items() if not needs_text]),
)
def test_any_secret_in_any_encoding_and_percent_escaping_is_found(
    secret: bytes,
    before: bytes,
    after: bytes,
    outside: tuple[bytes, bytes],
    encoding: str,
    escaping: str,
) -> None:
    data = outside[0] + _embed(secret, before, after, encoding, escaping) + outside[1]
    redacted(data, secret)


@FAST
@given(
    secret=text_secrets,
    before=st.text(max_size=10),
    after=st.text(max_size=10),
    outside=st.tuples(st.binary(max_size=30), st.binary(max_size=30)),
    encoding=st.sampled_from(sorted(ENCODINGS)),
    escaping=st.sampled_from(sorted(ESCAPINGS)),
)
def test_any_text_secret_in_any_encoding_and_escaping_is_found(
    secret: str,
    before: str,
    after: str,
    outside: tuple[bytes, bytes],
    encoding: str,
    escaping: str,
) -> None:
    # Base64 and hex carriers turn any bytes into ASCII, so the JSON escapings apply to them too.
    _, encode = ENCODINGS[encoding]
    carried = encode(before.encode() + secret.encode() + after.encode())
    data = outside[0] + escaping_of(escaping)(carried) + outside[1]
    redacted(data, secret.encode())


@FAST
@given(
    secret=st.text(
        alphabet=st.characters(codec="ascii", exclude_categories=["Cc"]), min_size=8, max_size=24
    ),
    mask=st.lists(
        st.sampled_from(["raw", "percent", "PERCENT", "json", "JSON", "html"]), min_size=24
    ),
)
def test_a_secret_escaped_character_by_character_in_any_mix_is_found(
    secret: str, mask: list[str]
) -> None:
    """Encoders differ in which characters they escape; any subset, in any mix, is found."""
    pieces = []
    for char, how in zip(secret, mask, strict=False):
        match how:
            case "raw":
                pieces.append(char)
            case "html":  # letters and digits stay as they are
                pieces.append(char if char.isalnum() else f"&#x{ord(char):x};")
            case "percent" | "PERCENT":
                escaped = f"%{ord(char):02x}"
                pieces.append(escaped.upper() if how == "PERCENT" else escaped)
            case _:
                escaped = f"{ord(char):04x}"
                pieces.append("\\u" + (escaped.upper() if how == "JSON" else escaped))
    data = b'{"echo": "' + "".join(pieces).encode() + b'"}'
    redacted(data, secret.encode())


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize("escaping", sorted(ESCAPINGS))
def test_each_form_is_named_for_the_audit_record(encoding: str, escaping: str) -> None:
    want_encoding, encode = ENCODINGS[encoding]
    want_escaping, _, escape = ESCAPINGS[escaping]
    data = b"<p>" + escape(encode(b"id=42&key=" + SECRET + b"&x=1")) + b"</p>"
    (form,) = redacted(data, SECRET)
    encodings = {want_encoding}
    if want_encoding is Encoding.BASE64URL:  # a fragment with neither -_ nor +/ reads as both
        encodings.add(Encoding.BASE64)
    want = [] if want_escaping is None else [want_escaping]
    if want_encoding is Encoding.RAW:
        changed = escape(SECRET).strip(b'"') != SECRET  # json.dumps adds quotes
        assert form == form_name(Encoding.RAW, want if changed else [])
    else:  # an escaping may leave base64 or hex text as it is
        assert form in {form_name(e, w) for e in encodings for w in (want, [])}
    assert SECRET.decode() not in form


def test_the_escapes_the_issue_names() -> None:
    assert redacted(b'{"auth": "legacy-standing-key\\u002b5f1e\\/2d3c4b7a"}', SECRET) == (
        form_name(Encoding.RAW, [Escaping.JSON]),
    )
    location = b"Location: /login?next=%2Fapi%3Fkey%3Dlegacy-standing-key%2B5f1e%2F2d3c4b7a"
    assert redacted(location, SECRET) == ("raw+percent",)
    assert redacted(b"X-Debug: " + base64.b64encode(b"Bearer " + SECRET), SECRET) == ("base64",)
    assert redacted(SECRET.hex().encode(), SECRET) == ("hex",)
    assert redacted(b"legacy-standing-key%2B5f1e\\/2d3c4b7a", SECRET) == ("raw+json+percent",)
    page = b"<a href='?k=legacy-standing-key&#43;5f1e&sol;2d3c4b7a'>"
    assert redacted(page, SECRET) == ("raw+html",)


@FAST
@given(
    secret=secrets,
    before=st.binary(max_size=60),
    width=st.sampled_from([64, 76]),
    newline=st.sampled_from([b"\n", b"\r\n", b"\\n", b"\\r\\n"]),
    encoding=st.sampled_from(["base64", "base64url", "hex"]),
)
def test_base64_or_hex_broken_into_lines_is_found(
    secret: bytes, before: bytes, width: int, newline: bytes, encoding: str
) -> None:
    """MIME and PEM wrap base64 at 76 or 64 characters; in JSON the breaks are escaped."""
    _, encode = ENCODINGS[encoding]
    data = _wrap(encode(before + secret + b"tail"), width, newline)
    forms = redacted(b'{"pem": "' + data + b'"}', secret)
    assert all(f.startswith(encoding[:3]) for f in forms)  # base64url text may read as base64


def test_base64_fragments_cover_every_alignment() -> None:
    fragments = base64_fragments(SECRET)
    assert len(fragments) == 3
    for k in range(3):
        for tail in (b"", b"x", b"xy", b"xyz"):
            text = base64.b64encode(b"p" * k + SECRET + tail)
            assert sum(f in text for f in fragments) >= 1, (k, tail)
    # What is kept depends on the secret alone: at least 4n/3 - 4 characters of it.
    assert min(len(f) for f in fragments) >= len(SECRET) * 4 // 3 - 4


def test_several_secrets_are_looked_for_at_once() -> None:
    other = b"second-secret-value-0123456789"
    assert redacted(b"..." + base64.urlsafe_b64encode(b"." + other) + b"...", SECRET, other)
    assert redacted(SECRET, SECRET, other)
    assert not redactor(SECRET, other).holds(b"neither of them")


# -- not found ----------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32), size=st.integers(16, 4096))
def test_random_data_without_the_secret_is_not_flagged(seed: int, size: int) -> None:
    """A random 16-byte secret against random bytes and each of their encodings: a false hit
    would need ~2^-90 luck, so any hit is a bug in the scanner."""
    rng = random.Random(seed)
    secret = rng.randbytes(16)
    data = rng.randbytes(size)
    scanner = redactor(secret)
    for carried in (
        data,
        base64.b64encode(data),
        base64.urlsafe_b64encode(data),
        data.hex().encode(),
        quote_from_bytes(data, safe="").encode(),
        json.dumps(data.decode("latin-1")).encode(),
    ):
        assert not scanner.holds(carried)
        assert scanner.redact_bytes(carried) == (carried, ())


@FAST
@given(secret=secrets, cut=st.integers(1, 4))
def test_a_secret_cut_short_is_not_flagged(secret: bytes, cut: int) -> None:
    """The whole secret must be there: a prefix of it (say, a key id) is not a leak."""
    prefix = secret[: max(0, len(secret) - cut - 8)]
    assert not redactor(secret).holds(b"<" + prefix + b">")


def test_ordinary_documents_are_not_flagged() -> None:
    scanner = redactor(SECRET)
    documents = [
        json.dumps({"id": "c-1042", "items": [{"order": i} for i in range(50)]}).encode(),
        b"<html><a href='/api?q=a%20b&key=legacy-standing-key'>legacy-standing-key</a></html>",
        json.dumps({"path": "/a/b", "note": "caf\u00e9 \u002b"}, ensure_ascii=True).encode(),
        base64.b64encode(b"legacy-standing-key+5f1e/2d3c4b7"),  # one byte short
        (SECRET[:-1] + b"B").hex().encode(),
    ]
    for document in documents:
        assert not scanner.holds(document), document


# -- configuration and hygiene ------------------------------------------------------------------


def test_a_short_secret_is_refused_without_being_named() -> None:
    with pytest.raises(ConfigurationError) as caught:
        redactor(SECRET, b"hunter2")
    assert caught.value.code is ErrorCode.CONFIGURATION
    assert "secret 's1' is 7 bytes" in caught.value.message
    assert "hunter2" not in caught.value.message
    with pytest.raises(ConfigurationError):
        redactor()
    redactor(b"x" * MIN_SECRET_BYTES)  # the minimum itself is fine


def test_the_scanner_never_shows_its_secrets() -> None:
    scanner = redactor(SECRET)
    assert repr(scanner) == "Redactor(names=['s0'])"
    assert not hasattr(scanner, "__dict__")
    with pytest.raises(TypeError):
        pickle.dumps(scanner)
    assert scanner.holds(SECRET) and not scanner.holds(b"nothing here")


@FAST
@given(
    secret=st.binary(min_size=MIN_SECRET_BYTES, max_size=24).filter(
        lambda s: not any(m in s for m in (b"%", b"\\", b"&", b"\r", b"\n", b" "))
    ),
    words=st.lists(st.sampled_from([b"id", b"42", b'"name"', b":", b",", b"{", b"}"]), max_size=40),
    encoding=st.sampled_from(sorted(ENCODINGS)),
)
def test_text_without_an_escape_or_a_break_is_searched_for_the_exact_forms(
    secret: bytes, words: list[bytes], encoding: str
) -> None:
    """Compact JSON without escapes takes the cheap path (``bytes.find``): what it holds is still
    found, and what it does not is returned as it was, the same object."""
    data = b"".join(words)
    _, encode = ENCODINGS[encoding]
    holding = data + encode(b"k=" + secret + b";") + data
    assert not any(m in holding for m in (b"%", b"\\", b"&", b"\r", b"\n"))
    redacted(holding, secret)
    out, found = redactor(secret).redact_bytes(data)
    assert out is data and found == ()
