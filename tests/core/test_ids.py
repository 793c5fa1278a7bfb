"""Ids: the encoding of 16 random bytes, checked digit by digit against the definition."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.core.ids import IdFactory, IdKind, encode_id, is_well_formed

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lowercase


def _by_definition(kind: IdKind, random_bytes: bytes) -> str:
    """The 128-bit number the bytes spell, in 26 base32 digits, most significant first."""
    number = int.from_bytes(random_bytes, "big")
    digits = [_ALPHABET[(number >> (5 * i)) & 31] for i in reversed(range(26))]
    return f"{kind.value}_{''.join(digits)}"


@settings(max_examples=500, derandomize=True)
@given(kind=st.sampled_from(IdKind), random_bytes=st.binary(min_size=16, max_size=16))
def test_an_id_is_its_bytes_in_crockford_base32(kind: IdKind, random_bytes: bytes) -> None:
    made = encode_id(kind, random_bytes)
    assert made == _by_definition(kind, random_bytes)
    assert is_well_formed(made, kind) and len(made) == 30


@settings(max_examples=200, derandomize=True)
@given(st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=16))
def test_ids_order_as_their_bytes(a: bytes, b: bytes) -> None:
    assert (encode_id(IdKind.DECISION, a) < encode_id(IdKind.DECISION, b)) == (a < b)


def test_the_extremes() -> None:
    assert encode_id(IdKind.TASK, bytes(16)) == "tsk_" + "0" * 26
    assert encode_id(IdKind.AUDIT, b"\xff" * 16) == "aud_7" + "z" * 25
    assert encode_id(IdKind.GRANT, bytes(15) + b"\x01") == "grt_" + "0" * 25 + "1"


@pytest.mark.parametrize("size", [0, 15, 17])
def test_an_id_needs_exactly_16_bytes(size: int) -> None:
    with pytest.raises(ValueError):
        encode_id(IdKind.TASK, bytes(size))


def test_the_factory_draws_16_bytes_per_id() -> None:
    drawn: list[int] = []

    def source(n: int) -> bytes:
        drawn.append(n)
        return bytes([len(drawn)]) * n

    ids = IdFactory(source)
    assert ids.decision() == encode_id(IdKind.DECISION, b"\x01" * 16)
    assert ids.audit() == encode_id(IdKind.AUDIT, b"\x02" * 16)
    assert drawn == [16, 16]
