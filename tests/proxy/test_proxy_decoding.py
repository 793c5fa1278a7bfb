"""Compressed answers are decoded within the size bound before they are searched; anything that does
not decode cleanly is refused, never passed on as it came."""

from __future__ import annotations

import gzip
import zlib

import pytest

from tether.proxy.decoding import BodyDecoder, BodyTooLarge, BodyUnreadable, codings

TEXT = b'{"items": [' + b", ".join(str(i).encode() for i in range(500)) + b"]}"


def _deflate(data: bytes, *, raw: bool) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


def _decode(body: bytes, encoding: list[str], limit: int = 1 << 20, step: int = 0) -> bytes:
    decoder = BodyDecoder(encoding, limit)
    pieces = [body[i : i + step] for i in range(0, len(body), step)] if step else [body]
    out = b"".join(decoder.feed(piece) for piece in pieces)
    decoder.finish()
    return out


@pytest.mark.parametrize("step", [0, 1, 7, 4096])
@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        (["gzip"], gzip.compress(TEXT)),
        (["x-gzip"], gzip.compress(TEXT)),
        (["deflate"], _deflate(TEXT, raw=False)),  # RFC 1950, as RFC 9110 means it
        (["deflate"], _deflate(TEXT, raw=True)),  # bare RFC 1951, as some servers send it
        (["gzip"], gzip.compress(TEXT[:100]) + gzip.compress(TEXT[100:])),  # two members
        (["deflate, gzip"], gzip.compress(_deflate(TEXT, raw=False))),  # stacked, in order
        (["deflate", "identity", "gzip"], gzip.compress(_deflate(TEXT, raw=True))),
        ([], TEXT),
        (["identity"], TEXT),
    ],
)
def test_each_coding_decodes_whatever_the_chunking(
    encoding: list[str], body: bytes, step: int
) -> None:
    assert _decode(body, encoding, step=step) == TEXT


def test_a_bomb_is_stopped_at_the_bound_without_inflating_it() -> None:
    bomb = gzip.compress(b"\0" * 20_000_000)
    decoder = BodyDecoder(["gzip"], 4096)
    with pytest.raises(BodyTooLarge):
        decoder.feed(bomb)
    # Exactly at the bound is fine.
    assert _decode(gzip.compress(b"a" * 4096), ["gzip"], limit=4096) == b"a" * 4096
    with pytest.raises(BodyTooLarge):
        _decode(gzip.compress(b"a" * 4097), ["gzip"], limit=4096, step=3)


@pytest.mark.parametrize(
    ("encoding", "body", "says"),
    [
        (["br"], b"\x1b\x03\x00opaque", "'br'"),
        (["zstd"], b"(\xb5/\xfd", "'zstd'"),
        (["compress"], b"\x1f\x9d", "'compress'"),
        (["gzip, x-\x01evil\ttoken"], gzip.compress(TEXT), "'x-?evil?token'"),
        (["gzip"], gzip.compress(TEXT)[:-8], "ends before its stream does"),
        (["gzip"], gzip.compress(TEXT) + b"trailing", "bytes after its compressed end"),
        (["deflate"], _deflate(TEXT, raw=False) + b"x", "bytes after its compressed end"),
        (["gzip"], b"not gzip at all", "could not be decoded"),
        (["gzip"] * 5, TEXT, "more than 4 layers"),
    ],
)
def test_what_does_not_decode_cleanly_is_refused(
    encoding: list[str], body: bytes, says: str
) -> None:
    with pytest.raises(BodyUnreadable) as caught:
        _decode(body, encoding)
    assert says in str(caught.value)


def test_an_unknown_coding_without_a_body_is_no_refusal() -> None:
    decoder = BodyDecoder(["br"], 100)
    assert decoder.feed(b"") == b""
    decoder.finish()
    with pytest.raises(BodyUnreadable):
        BodyDecoder(["br"], 100).feed(b"x")


def test_codings_are_read_in_the_order_they_were_applied() -> None:
    assert codings(["gzip", "deflate, identity", "X-GZIP"]) == ["gzip", "deflate", "gzip"]
