"""The redactor replaces a named secret, in every form an echo gives it, with a marker naming it,
says which forms it found, and leaves everything else as it was, byte for byte."""

from __future__ import annotations

import base64
import html
import json
import pickle
import random
from collections.abc import Callable
from urllib.parse import quote, quote_plus, unquote, unquote_plus

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether.core.errors import ConfigurationError
from tether.core.redact import (
    MIN_SECRET_BYTES,
    Redactor,
    Unredactable,
    audit_body,
    base64_fragments,
    dumps,
    merge,
)
from tether.core.scope import JSONValue

SECRET = "svc-token-5f1e/2d3c+4b7a"
FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Transform = Callable[[bytes], bytes]

#: How the bytes around and including the secret were turned into text.
ENCODINGS: dict[str, Transform] = {
    "raw": lambda b: b,
    "base64": base64.b64encode,
    "base64-unpadded": lambda b: base64.b64encode(b).rstrip(b"="),
    "base64url": base64.urlsafe_b64encode,
    "hex": lambda b: b.hex().encode(),
    "HEX": lambda b: b.hex().upper().encode(),
}
#: How that text was escaped, and how to undo it (to check what is left after redaction).
ESCAPINGS: dict[str, tuple[Callable[[str], str], Callable[[str], str]]] = {
    "none": (lambda t: t, lambda t: t),
    "percent": (lambda t: quote(t, safe=""), unquote),
    "percent-plus": (lambda t: quote_plus(t, safe=""), unquote_plus),
    "json": (lambda t: json.dumps(t).replace("/", "\\/"), json.loads),
    "json-ascii": (lambda t: json.dumps(t, ensure_ascii=True), json.loads),
    "html": (lambda t: html.escape(t).replace("/", "&#x2F;"), html.unescape),
}

text_secrets = st.text(
    alphabet=st.characters(exclude_categories=["Cs", "Cc"]), min_size=MIN_SECRET_BYTES, max_size=30
)
around = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=12)


def _survivors(text: str, secret: bytes) -> list[str]:
    """Which encodings of ``secret`` are still in ``text`` (undone of its escaping)."""
    data = text.encode("utf-8", "surrogatepass")
    left = []
    if secret in data:
        left.append("raw")
    if secret.hex().encode() in data.lower():
        left.append("hex")
    fragments = base64_fragments(secret) + base64_fragments(secret, urlsafe=True)
    if any(f in data for f in fragments):
        left.append("base64")
    return left


@FAST
@given(
    secret=text_secrets,
    before=around,
    after=around,
    outside=st.tuples(around, around),
    encoding=st.sampled_from(sorted(ENCODINGS)),
    escaping=st.sampled_from(sorted(ESCAPINGS)),
)
def test_no_encoding_of_a_secret_survives(
    secret: str,
    before: str,
    after: str,
    outside: tuple[str, str],
    encoding: str,
    escaping: str,
) -> None:
    raw = secret.encode()
    escape, undo = ESCAPINGS[escaping]
    carried = ENCODINGS[encoding](before.encode() + raw + after.encode()).decode()
    text = outside[0] + escape(carried) + outside[1]
    value: JSONValue = {"content": [{"type": "text", "text": text}], "n": 1}
    redacted = Redactor([("svc-token", raw)]).redact_json(value)
    assert [f.name for f in redacted.found] == ["svc-token"]
    assert isinstance(redacted.value, dict)
    out = redacted.value["content"][0]["text"]  # type: ignore[index, call-overload]
    assert "[redacted:svc-token]" in out
    assert _survivors(out, raw) == []
    # Undoing the escaping around the marker leaves no encoding either.
    start, end = len(outside[0]), len(out) - len(outside[1])
    try:
        undone = undo(out[start:end])
    except ValueError:
        undone = out  # the marker cut an escape: nothing left to decode
    assert _survivors(undone, raw) == []
    assert redacted.value["n"] == 1  # type: ignore[call-overload,index]


@FAST
@given(
    seed=st.integers(0, 2**32),
    size=st.integers(MIN_SECRET_BYTES, 40),
    before=st.integers(0, 20),
    after=st.integers(0, 20),
    urlsafe=st.booleans(),
)
def test_base64_at_any_alignment_is_redacted_to_the_last_bit(
    seed: int, size: int, before: int, after: int, urlsafe: bool
) -> None:
    """A secret inside a longer base64 blob, at byte offset 0, 1 or 2 of a group: exactly the
    characters that carry any of its bits are replaced, and the rest of the blob is kept.
    (Random bytes: a secret that repeats itself, all zeros, has its match at another offset.)"""
    rng = random.Random(seed)
    secret = rng.randbytes(size)
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    blob = encode(rng.randbytes(before) + secret + rng.randbytes(after)).decode()
    out, found = Redactor([("k", secret)]).redact_text(f"blob={blob};")
    first = (8 * before) // 6  # the first character holding a bit of the secret
    last = -(-8 * (before + size) // 6)  # one past the last
    assert out == f"blob={blob[:first]}[redacted:k]{blob[last:]};"
    assert found[0].forms in {("base64",), ("base64url",)}


@pytest.mark.parametrize("offset", [0, 1, 2])
def test_base64_of_the_secret_in_a_longer_blob_at_each_offset(offset: int) -> None:
    blob = base64.b64encode(b"Bearer"[:offset] + SECRET.encode() + b" and more").decode()
    out, found = Redactor([("svc-token", SECRET.encode())]).redact_text(blob)
    assert "[redacted:svc-token]" in out
    assert _survivors(out, SECRET.encode()) == []
    assert found[0].forms == ("base64",)


def test_each_form_is_named_and_counted() -> None:
    raw = SECRET.encode()
    text = " ".join(
        [
            SECRET,
            quote(SECRET, safe=""),
            json.dumps({"k": SECRET}).replace("/", "\\/"),
            base64.b64encode(raw).decode(),
            base64.urlsafe_b64encode(b"x" + raw).decode(),
            raw.hex(),
            raw.hex().upper(),
        ]
    )
    out, found = Redactor([("svc-token", raw)]).redact_text(text)
    assert out.count("[redacted:svc-token]") == 7
    assert SECRET not in out
    (only,) = found
    assert only.name == "svc-token" and only.count == 7
    # (a base64url fragment with neither - nor _ reads as base64)
    assert {"raw", "raw+percent", "raw+json", "base64", "hex"} <= set(only.forms)
    assert SECRET not in repr(found)


def test_wrapped_base64_is_redacted() -> None:
    raw = SECRET.encode() * 4
    blob = base64.b64encode(b"-----" + raw).decode()
    wrapped = "\n".join(blob[i : i + 16] for i in range(0, len(blob), 16))
    out, found = Redactor([("pem", raw)]).redact_text(wrapped)
    assert "[redacted:pem]" in out
    assert found[0].forms == ("base64+wrapped",)
    assert _survivors(out.replace("\n", ""), raw) == []


def test_several_secrets_are_each_named() -> None:
    other = b"second-secret-0123456789"
    redactor = Redactor([("a", SECRET.encode()), ("b", other)])
    out, found = redactor.redact_text(f"{SECRET} then {other.hex()}")
    assert out == "[redacted:a] then [redacted:b]"
    assert [(f.name, f.forms) for f in found] == [("a", ("raw",)), ("b", ("hex",))]


def test_a_rotated_secret_is_redacted_under_both_values() -> None:
    redactor = Redactor([("k", b"old-value-123456"), ("k", b"new-value-654321")])
    out, _ = redactor.redact_text("old-value-123456 new-value-654321")
    assert out == "[redacted:k] [redacted:k]"
    assert repr(redactor) == "Redactor(names=['k'])"


def test_keys_and_nested_values_are_redacted() -> None:
    value: JSONValue = {
        "structuredContent": {SECRET: [1, {"env": f"TOKEN={SECRET}"}]},
        "isError": False,
    }
    redacted = Redactor([("svc-token", SECRET.encode())]).redact_json(value)
    assert redacted.value == {
        "structuredContent": {"[redacted:svc-token]": [1, {"env": "TOKEN=[redacted:svc-token]"}]},
        "isError": False,
    }


def test_a_secret_with_a_quote_is_redacted_string_by_string() -> None:
    secret = 'quote"in-the-secret'
    value: JSONValue = {"text": f"say {secret}!", "other": "kept"}
    redacted = Redactor([("q", secret.encode())]).redact_json(value)
    assert redacted.value == {"text": "say [redacted:q]!", "other": "kept"}


def test_a_secret_across_two_strings_is_unredactable() -> None:
    """Split over two strings it is in neither; its JSON still holds it: withhold, not pass."""
    secret = 'abcd","b":"efgh'
    value: JSONValue = {"a": "abcd", "b": "efgh"}
    with pytest.raises(Unredactable) as caught:
        Redactor([("s", secret.encode())]).redact_json(value)
    assert secret not in str(caught.value)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


@FAST
@given(value=json_values, seed=st.integers(0, 2**32))
def test_a_value_without_a_secret_is_unchanged_byte_for_byte(value: JSONValue, seed: int) -> None:
    secret = random.Random(seed).randbytes(12).hex()
    wire = dumps(value)
    redacted = Redactor([("k", secret.encode())]).redact_json(value, wire)
    assert redacted.value is value
    assert redacted.found == ()
    assert dumps(redacted.value) == wire
    text, found = Redactor([("k", secret.encode())]).redact_text(wire.decode())
    assert text == wire.decode() and found == ()


def test_a_short_secret_is_refused_by_name_not_value() -> None:
    with pytest.raises(ConfigurationError) as caught:
        Redactor([("long", SECRET.encode()), ("pin", b"1234567")])
    assert "secret 'pin' is 7 bytes" in caught.value.message
    assert "at least 8 bytes" in caught.value.message
    assert "1234567" not in caught.value.message
    with pytest.raises(ConfigurationError):
        Redactor([])
    Redactor([("ok", b"x" * MIN_SECRET_BYTES)])


def test_the_redactor_never_shows_its_secrets() -> None:
    redactor = Redactor([("svc-token", SECRET.encode())])
    assert SECRET not in repr(redactor)
    assert not hasattr(redactor, "__dict__")
    with pytest.raises(TypeError):
        pickle.dumps(redactor)
    assert redactor.holds(SECRET.encode()) and not redactor.holds(b"nothing")


def test_findings_merge_by_name() -> None:
    redactor = Redactor([("a", SECRET.encode())])
    _, one = redactor.redact_text(SECRET)
    _, two = redactor.redact_text(SECRET.encode().hex())
    (merged,) = merge(one + two)
    assert merged.forms == ("hex", "raw") and merged.count == 2


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\\n", "\\r\\n"])
def test_a_raw_secret_broken_into_lines_is_redacted(newline: str) -> None:
    """A long value folded at a fixed width (a mail body, a log line) keeps the secret whole but
    for the breaks: found and redacted, named ``raw+wrapped``."""
    folded = newline.join(SECRET[i : i + 7] for i in range(0, len(SECRET), 7))
    out, found = Redactor([("svc-token", SECRET.encode())]).redact_text(f"key: {folded}.")
    assert out == "key: [redacted:svc-token]."
    assert found[0].forms == ("raw+wrapped",)


@FAST
@given(
    seed=st.integers(0, 2**32),
    size=st.integers(MIN_SECRET_BYTES, 40),
    before=st.integers(1, 20),
    after=st.integers(1, 20),
    width=st.integers(2, 76),
    newline=st.sampled_from(["\n", "\r\n", "\\n"]),
)
def test_wrapped_base64_is_redacted_to_the_last_bit_across_the_breaks(
    seed: int, size: int, before: int, after: int, width: int, newline: str
) -> None:
    """Wherever the lines break, even between an edge character (which also carries bits of
    the secret) and the rest, every character holding a bit of the secret goes."""
    rng = random.Random(seed)
    secret = rng.randbytes(size)
    blob = base64.b64encode(rng.randbytes(before) + secret + rng.randbytes(after)).decode()
    wrapped = newline.join(blob[i : i + width] for i in range(0, len(blob), width))
    out, _ = Redactor([("k", secret)]).redact_text(wrapped)
    first = (8 * before) // 6
    last = -(-8 * (before + size) // 6)
    assert out.replace(newline, "") == f"{blob[:first]}[redacted:k]{blob[last:]}"


@pytest.mark.parametrize(("char", "escape"), [("/", "%2F"), ("/", "\\/"), ("+", "%2b")])
def test_an_escaped_base64_edge_character_is_redacted_with_the_rest(char: str, escape: str) -> None:
    """The character just before the matched part of an offset-1 base64 text holds two bits of
    the secret; escaped (a URL, JSON) it goes too."""
    # The edge character's value is the lead byte's last two bits, then the secret's first four.
    secret = bytes([0xF0 if char == "/" else 0xE0]) + SECRET.encode()
    blob = base64.b64encode(b"\x03" + secret).decode()
    assert blob[1] == char
    out, found = Redactor([("k", secret)]).redact_text(blob[0] + escape + blob[2:])
    assert out.startswith(blob[0] + "[redacted:k]")
    assert found[0].name == "k"


def test_bytes_still_holding_a_secret_after_redaction_are_unredactable() -> None:
    """A marker can complete another secret (contrived here: the second starts with ``]``);
    what still holds one after redaction is refused, never returned."""
    first, second = b"first-secret-zz", b"]second-secret"
    redactor = Redactor([("a", first), ("b", second)])
    with pytest.raises(Unredactable) as caught:
        redactor.redact_bytes(b"x " + first + b"second-secret y")
    assert "secret" in str(caught.value) and first.decode() not in str(caught.value)
    assert redactor.redact_bytes(b"clean") == (b"clean", ())


def test_the_audit_body_names_each_secret_its_forms_and_count_never_the_value() -> None:
    redactor = Redactor([("svc-token", SECRET.encode())])
    _, found = redactor.redact_text(f"{SECRET} {SECRET.encode().hex()}")
    body = audit_body("crm", "crm.query", "header:location", found, "dec_1")
    assert body == {
        "upstream": "crm",
        "tool": "crm.query",
        "where": "header:location",
        "secrets": [{"name": "svc-token", "forms": ["hex", "raw"], "count": 2}],
        "decision_id": "dec_1",
        "risks": ["ASI03"],
    }
    assert not redactor.holds(json.dumps(body).encode())
