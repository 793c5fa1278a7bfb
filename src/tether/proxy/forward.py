"""Forwarding one allowed request upstream (httpx), with the standing secret injected, and reading
the answer back within bounds.

The secret is revealed in exactly one place, :func:`_credential`, as it goes into the outgoing
request (and in :meth:`Forwarder.redactor`, which turns it into the needles the answer is searched
for). On the way back the whole answer is searched for the secret, raw or in any form an echo
gives it (:mod:`tether.core.redact`, as the MCP gateway does): the status line, every header's
name and value (``Location``, ``Set-Cookie`` and the dropped ones included) and the body after
decompression. Where the proxy can rewrite the part whole the secret becomes ``[redacted:NAME]``
and the answer passes, with a :class:`~tether.proxy.answer.Redaction` for each place; where it
cannot (a content-coded body, a part that still holds it once redacted) the whole answer is
withheld (``leaked_secret``), naming the form and where it was, never the secret
(:mod:`tether.proxy.answer` says which part is which). Headers named like the secret's own
header, and ``Set-Cookie``, are dropped from what passes: a session the upstream opens is a
credential, and credentials are tether's, not the agent's.

Redirects are never followed, to any origin: the agent gets the 3xx (checked like any answer),
and whatever it asks next passes through the proxy and is decided again. Proxy settings from the
environment are ignored (``trust_env=False``: the secret goes to the configured upstream and
nowhere else). The exchange is bounded in time (``timeout_seconds``) and size
(``max_response_bytes``, on the bytes received and again after decompression); the proxy asks
for the codings it can decode (gzip, deflate) and withholds a body in any other, or one that does
not decode, since it could not be checked.

Every failure is an :class:`UpstreamFailure` whose message is safe to show the agent and to
audit: it never carries the URL (which may hold the secret as a query parameter), a header or
a body.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

import anyio
import anyio.to_thread
import httpx

from tether.core.redact import Redactor
from tether.core.secret import Secret
from tether.proxy.answer import (
    Redaction,
    Withheld,
    passed_headers,
    redacted_body,
    status_line,
)
from tether.proxy.config import SecretRef, Upstream
from tether.proxy.decoding import ACCEPT_ENCODING, BodyDecoder, BodyTooLarge, BodyUnreadable
from tether.proxy.routes import encode_query


class FailureKind(StrEnum):
    UNREACHABLE = "unreachable"  # refused, reset, DNS, TLS: no answer at all
    TIMEOUT = "timeout"  # no full answer within timeout_seconds
    TOO_LARGE = "response_too_large"  # the body passed max_response_bytes
    MALFORMED = "malformed"  # an answer that could not be read (bad framing or encoding)
    LEAKED_SECRET = "leaked_secret"  # the answer carried the injected secret


#: Bodies larger than this are searched in a worker thread, off the event loop.
_SCAN_INLINE_BYTES: Final = 64 * 1024


class UpstreamFailure(Exception):
    """Why an allowed call got no answer. ``message`` is safe for the agent and the audit log;
    ``detail`` holds extra audit fields (for a leak: the form and where it was, never the secret).
    """

    def __init__(
        self,
        upstream: str,
        kind: FailureKind,
        message: str,
        detail: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"upstream {upstream!r} {kind.value}: {message}")
        self.upstream = upstream
        self.kind = kind
        self.message = message
        self.detail = dict(detail or {})


@dataclass(frozen=True, slots=True)
class Outgoing:
    """The request as the upstream gets it, before the secret is added."""

    method: str
    path: str  # already encoded, from the matched route
    query: Mapping[str, str]
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True, slots=True)
class Answer:
    """The upstream's answer, as the agent may see it, and where a secret was taken out of it."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    redactions: tuple[Redaction, ...] = ()


@dataclass(frozen=True, slots=True)
class _Received:
    """The upstream's answer as it came: every part the agent could learn anything from."""

    status: int
    reason: bytes
    raw_headers: tuple[tuple[bytes, bytes], ...] = field(repr=False)
    body: bytes = field(repr=False)
    coded: bool = False  # the body came content-coded (and was decoded to be searched)


def forwarded_headers(
    headers: Iterable[tuple[str, str]], upstream: Upstream
) -> tuple[tuple[str, str], ...]:
    """The agent's headers the upstream may see: an allow-list, never the agent's credentials."""
    return tuple(
        (name, value)
        for name, value in headers
        if name.lower() in upstream.forward_headers and "\r" not in value and "\n" not in value
    )


def _credential(
    ref: SecretRef, secret: Secret
) -> tuple[dict[str, str], tuple[tuple[str, str], ...]]:
    """The header or query parameter carrying the secret: where it is revealed for the wire."""
    value = secret.reveal()
    if ref.query_param is not None:
        return {}, ((ref.query_param, value),)
    assert ref.header is not None
    return {ref.header: ref.header_value(value)}, ()


def _withheld(upstream: str, withheld: Withheld) -> UpstreamFailure:
    return UpstreamFailure(
        upstream,
        FailureKind.LEAKED_SECRET,
        "the upstream's answer carried the injected credential where it could not be redacted, "
        "so it was withheld",
        {"form": withheld.forms, "where": withheld.where},
    )


class Forwarder:
    """Sends allowed requests upstream over one shared :class:`httpx.AsyncClient`."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client
        # One redactor per upstream, rebuilt when its secret changes (``tether secrets set``).
        self._redactors: dict[str, tuple[Secret, Redactor]] = {}

    @staticmethod
    def new_client(transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            transport=transport,
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )

    def redactor(self, upstream: Upstream, secret: Secret) -> Redactor:
        """What the answers of ``upstream`` are searched and redacted with for ``secret`` (named
        as the secret store names it): built once per secret value (it compiles a pattern, so
        call it off the event loop). A secret too short to search for is a
        :class:`~tether.core.errors.ConfigurationError`, raised before anything is sent with
        it."""
        cached = self._redactors.get(upstream.name)
        if cached is not None and cached[0] == secret:
            return cached[1]
        name = upstream.secret.name if upstream.secret is not None else upstream.name
        redactor = Redactor([(name, secret.reveal().encode())])
        self._redactors[upstream.name] = (secret, redactor)
        return redactor

    async def send(
        self,
        upstream: Upstream,
        out: Outgoing,
        secret: Secret | None,
        redactor: Redactor | None,
    ) -> Answer:
        """Forward ``out`` with ``secret`` injected; the answer, with every form of the secret
        ``redactor`` finds taken out of it (or withheld: :class:`UpstreamFailure`)."""
        if secret is not None and redactor is None:
            raise ValueError("an answer to a request carrying a secret must be searched for it")
        ref = upstream.secret
        headers = httpx.Headers(list(out.headers))
        headers["Accept-Encoding"] = ACCEPT_ENCODING  # only what can be decoded and checked
        extra_query: tuple[tuple[str, str], ...] = ()
        if ref is not None and secret is not None:
            credential, extra_query = _credential(ref, secret)
            for name, value in credential.items():
                headers[name] = value  # replaces any header of that name
        query = encode_query(out.query, extra_query)
        url = f"{upstream.url}{out.path}" + (f"?{query}" if query else "")
        try:
            with anyio.fail_after(upstream.timeout_seconds):
                received = await self._exchange(upstream, out, url, headers)
        except TimeoutError:
            raise UpstreamFailure(
                upstream.name,
                FailureKind.TIMEOUT,
                f"no answer within {upstream.timeout_seconds:g} s",
            ) from None
        try:
            return await self._redacted(received, ref, redactor)
        except Withheld as withheld:
            raise _withheld(upstream.name, withheld) from None

    @staticmethod
    async def _redacted(
        received: _Received, ref: SecretRef | None, redactor: Redactor | None
    ) -> Answer:
        """The answer as the agent may see it (raises :class:`Withheld`)."""
        headers, redactions = passed_headers(received.raw_headers, ref, redactor)
        if redactor is None:
            return Answer(received.status, headers, received.body)
        redactions = status_line(received.reason, redactor) + redactions
        body = received.body
        if len(body) <= _SCAN_INLINE_BYTES:
            body, found = redacted_body(body, received.coded, redactor)
        else:
            body, found = await anyio.to_thread.run_sync(
                redacted_body, body, received.coded, redactor
            )
        return Answer(received.status, headers, body, tuple(redactions + found))

    async def _exchange(
        self, upstream: Upstream, out: Outgoing, url: str, headers: httpx.Headers
    ) -> _Received:
        name = upstream.name
        request = self._client.build_request(
            out.method,
            url,
            headers=headers,
            content=out.body or None,
            timeout=httpx.Timeout(upstream.timeout_seconds),
        )
        try:
            # INVARIANT: no redirect is followed, to any origin; the 3xx goes back, checked.
            response = await self._client.send(request, stream=True, follow_redirects=False)
        except httpx.TimeoutException:
            raise TimeoutError from None
        except (httpx.TransportError, httpx.InvalidURL):
            # The exception's text is not passed on: it may name the URL.
            raise UpstreamFailure(
                name, FailureKind.UNREACHABLE, "the upstream could not be reached"
            ) from None
        try:
            body, coded = await self._read(upstream, response)
        finally:
            await response.aclose()
        reason = response.extensions.get("reason_phrase", b"")
        return _Received(
            status=response.status_code,
            reason=reason if isinstance(reason, bytes) else b"",
            raw_headers=tuple(response.headers.raw),
            body=body,
            coded=coded,
        )

    async def _read(self, upstream: Upstream, response: httpx.Response) -> tuple[bytes, bool]:
        """The body as the agent would get it: decoded, within ``max_response_bytes`` both as
        received and once decoded; and whether it came content-coded."""
        limit = upstream.max_response_bytes
        too_large = UpstreamFailure(
            upstream.name,
            FailureKind.TOO_LARGE,
            f"the upstream's answer is larger than {limit} bytes",
        )
        decoder = BodyDecoder(response.headers.get_list("content-encoding"), limit)
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in response.aiter_raw():
                size += len(chunk)
                if size > limit:
                    raise too_large
                chunks.append(decoder.feed(chunk))
            decoder.finish()
        except BodyTooLarge:
            raise too_large from None
        except BodyUnreadable as error:
            raise UpstreamFailure(upstream.name, FailureKind.MALFORMED, str(error)) from None
        except httpx.TimeoutException:
            raise TimeoutError from None
        except (httpx.TransportError, httpx.DecodingError):
            raise UpstreamFailure(
                upstream.name, FailureKind.MALFORMED, "the upstream's answer could not be read"
            ) from None
        return b"".join(chunks), decoder.coded
