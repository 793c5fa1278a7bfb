"""Decoding an upstream's compressed body within a size bound, so it can be checked before the agent
gets it (RFC 9110 §8.4 ``Content-Encoding``; gzip is RFC 1952, deflate the zlib format of
RFC 1950, which some servers send as a bare RFC 1951 stream).

The proxy asks for what it can read (:data:`ACCEPT_ENCODING`) and reads nothing else: a body in
any other coding (``br``, ``zstd``, ``compress``, an unknown token) could not be checked for the
secret, so it is refused, never passed on as it came. Decompression is incremental with
``max_length``: no step produces more than the bound allows, so a small bomb cannot make a large
buffer. A stream that ends early or has bytes after its end is refused too (fail closed).
"""

from __future__ import annotations

import re
import zlib
from typing import Final

#: The codings the proxy asks for and decodes. Any other is refused.
ACCEPT_ENCODING: Final = "gzip, deflate"
#: Codings stacked deeper than this are refused (each layer is another pass over the body).
MAX_LAYERS: Final = 4
_GZIP_MAGIC: Final = b"\x1f\x8b"
_TOKEN: Final = re.compile(r"[^a-z0-9._+-]")


class BodyTooLarge(Exception):
    """The decoded body passed the bound."""


class BodyUnreadable(Exception):
    """The body cannot be decoded; the message is safe to show (it names the coding, bounded)."""


def _shown(token: str) -> str:
    return _TOKEN.sub("?", token[:32])


def codings(values: list[str]) -> list[str]:
    """The codings of ``Content-Encoding`` header values, in the order they were applied."""
    out: list[str] = []
    for value in values:
        for token in value.split(","):
            name = token.strip().lower()
            if name in {"", "identity"}:
                continue
            name = {"x-gzip": "gzip"}.get(name, name)
            if name not in {"gzip", "deflate"}:
                raise BodyUnreadable(
                    f"the upstream's answer is encoded as {_shown(name)!r}, which the proxy cannot "
                    "decode to check it"
                )
            out.append(name)
    if len(out) > MAX_LAYERS:
        raise BodyUnreadable(f"the upstream's answer is encoded in more than {MAX_LAYERS} layers")
    return out


class _Layer:
    """One coding undone incrementally: gzip (members in sequence) or deflate (zlib or raw)."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self._d: zlib._Decompress | None = None
        self._pending = b""  # deflate: bytes held until its first two say zlib or raw
        self._seen = False

    def _start(self, data: bytes) -> zlib._Decompress:
        if self.coding == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        # A zlib stream starts with a CMF/FLG pair: method 8 and a header check (RFC 1950 §2.2).
        zlib_header = data[0] & 0x0F == 8 and int.from_bytes(data[:2], "big") % 31 == 0
        return zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)

    def feed(self, data: bytes, room: int) -> bytes:
        """Decode ``data``; more than ``room`` bytes out is :class:`BodyTooLarge`."""
        if not data:
            return b""
        self._seen = True
        out: list[bytes] = []
        size = 0
        data = self._pending + data
        self._pending = b""
        while data:
            if self._d is None:
                if self.coding == "deflate" and len(data) < 2:
                    self._pending = data
                    break
                self._d = self._start(data)
            elif self._d.eof:
                # Another gzip member may follow (RFC 1952 §2.2); anything else is refused.
                if self.coding != "gzip" or not data.startswith(_GZIP_MAGIC[: len(data)]):
                    raise BodyUnreadable("the upstream's answer has bytes after its compressed end")
                if len(data) < 2:
                    self._pending = data
                    break
                self._d = self._start(data)
            try:
                chunk = self._d.decompress(data, room - size + 1)
            except zlib.error:
                raise BodyUnreadable(
                    f"the upstream's {self.coding} answer could not be decoded"
                ) from None
            size += len(chunk)
            if size > room:
                raise BodyTooLarge
            out.append(chunk)
            data = self._d.unconsumed_tail or (self._d.unused_data if self._d.eof else b"")
        return b"".join(out)

    def finish(self) -> None:
        if self._seen and (self._pending or self._d is None or not self._d.eof):
            raise BodyUnreadable(f"the upstream's {self.coding} answer ends before its stream does")


class BodyDecoder:
    """Undoes a body's codings, last applied first, never producing more than ``limit`` bytes."""

    def __init__(self, content_encoding: list[str], limit: int) -> None:
        self._limit = limit
        self._size = 0
        self._refusal: BodyUnreadable | None = None
        self._layers: list[_Layer] = []
        try:
            self._layers = [_Layer(c) for c in reversed(codings(content_encoding))]
        except BodyUnreadable as refusal:  # refused once a body arrives: HEAD, 204, 304 have none
            self._refusal = refusal

    @property
    def coded(self) -> bool:
        """Whether the body is in a content coding (one this decoder undoes)."""
        return bool(self._layers)

    def feed(self, data: bytes) -> bytes:
        if data and self._refusal is not None:
            raise self._refusal
        room = self._limit - self._size
        for layer in self._layers:
            data = layer.feed(data, room)
        self._size += len(data)
        if self._size > self._limit:
            raise BodyTooLarge
        return data

    def finish(self) -> None:
        for layer in self._layers:
            layer.finish()
