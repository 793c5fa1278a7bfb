"""Forwarding one allowed request upstream (httpx), with the standing secret injected, and reading
the answer back within bounds.

The secret is revealed in exactly one place, :func:`_credential`, as it goes into the outgoing
request. On the way back, anything that would hand it to the agent is stopped: a response header
naming the secret's header or echoing its value is dropped, and a body that contains it is
withheld (``leaked_secret``). ``Set-Cookie`` is dropped as well: a session the upstream opens is
a credential, and credentials are tether's, not the agent's.

Redirects are not followed (the agent gets the 3xx, less any header echoing the secret), proxy
settings from the environment are ignored (``trust_env=False``: the secret goes to the configured
upstream and nowhere else), and the whole exchange, body included, is bounded in time
(``timeout_seconds``) and size (``max_response_bytes``, counted after decompression).

Every failure is an :class:`UpstreamFailure` whose message is safe to show the agent and to
audit: it never carries the URL (which may hold the secret as a query parameter), a header or
a body.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import anyio
import httpx

from tether.core.secret import Secret
from tether.proxy.config import SecretRef, Upstream
from tether.proxy.routes import encode_query

#: Response headers never passed back (RFC 9110 §7.6.1 hop-by-hop fields, framing, date and
#: server the proxy's own server sets, the upstream's alternative services, and sessions).
_DROPPED_RESPONSE_HEADERS: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "content-encoding",
        "date",
        "server",
        "alt-svc",
        "set-cookie",
        "set-cookie2",
    }
)


class FailureKind(StrEnum):
    UNREACHABLE = "unreachable"  # refused, reset, DNS, TLS: no answer at all
    TIMEOUT = "timeout"  # no full answer within timeout_seconds
    TOO_LARGE = "response_too_large"  # the body passed max_response_bytes
    MALFORMED = "malformed"  # an answer that could not be read (bad framing or encoding)
    LEAKED_SECRET = "leaked_secret"  # the answer carried the injected secret


class UpstreamFailure(Exception):
    def __init__(self, upstream: str, kind: FailureKind, message: str) -> None:
        super().__init__(f"upstream {upstream!r} {kind.value}: {message}")
        self.upstream = upstream
        self.kind = kind
        self.message = message


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
    """The upstream's answer, as the agent may see it."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


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
    """The header or query parameter carrying the secret: the one place it is revealed."""
    value = secret.reveal()
    if ref.query_param is not None:
        return {}, ((ref.query_param, value),)
    assert ref.header is not None
    return {ref.header: ref.header_value(value)}, ()


def _answer_headers(
    response: httpx.Response, ref: SecretRef | None, secret: Secret | None
) -> tuple[tuple[str, str], ...]:
    listed = {
        token.strip().lower()
        for value in response.headers.get_list("connection")
        for token in value.split(",")
    }
    dropped = _DROPPED_RESPONSE_HEADERS | listed
    if ref is not None and ref.header is not None:
        dropped = dropped | {ref.header.lower()}
    revealed = secret.reveal() if secret is not None else None
    return tuple(
        (name, value)
        for name, value in response.headers.multi_items()
        if name.lower() not in dropped and (revealed is None or revealed not in value)
    )


class Forwarder:
    """Sends allowed requests upstream over one shared :class:`httpx.AsyncClient`."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    @staticmethod
    def new_client(transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            transport=transport,
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )

    async def send(self, upstream: Upstream, out: Outgoing, secret: Secret | None) -> Answer:
        ref = upstream.secret
        headers = httpx.Headers(list(out.headers))
        extra_query: tuple[tuple[str, str], ...] = ()
        if ref is not None and secret is not None:
            credential, extra_query = _credential(ref, secret)
            for name, value in credential.items():
                headers[name] = value  # replaces any header of that name
        query = encode_query(out.query, extra_query)
        url = f"{upstream.url}{out.path}" + (f"?{query}" if query else "")
        try:
            with anyio.fail_after(upstream.timeout_seconds):
                return await self._exchange(upstream, out, url, headers, secret)
        except TimeoutError:
            raise UpstreamFailure(
                upstream.name,
                FailureKind.TIMEOUT,
                f"no answer within {upstream.timeout_seconds:g} s",
            ) from None

    async def _exchange(
        self,
        upstream: Upstream,
        out: Outgoing,
        url: str,
        headers: httpx.Headers,
        secret: Secret | None,
    ) -> Answer:
        name = upstream.name
        request = self._client.build_request(
            out.method,
            url,
            headers=headers,
            content=out.body or None,
            timeout=httpx.Timeout(upstream.timeout_seconds),
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TimeoutException:
            raise TimeoutError from None
        except (httpx.TransportError, httpx.InvalidURL):
            # The exception's text is not passed on: it may name the URL.
            raise UpstreamFailure(
                name, FailureKind.UNREACHABLE, "the upstream could not be reached"
            ) from None
        try:
            body = await self._read(upstream, response)
        finally:
            await response.aclose()
        if secret is not None and secret.reveal().encode() in body:
            raise UpstreamFailure(
                name,
                FailureKind.LEAKED_SECRET,
                "the upstream's answer carried the injected credential, so it was withheld",
            )
        return Answer(
            response.status_code, _answer_headers(response, upstream.secret, secret), body
        )

    async def _read(self, upstream: Upstream, response: httpx.Response) -> bytes:
        limit = upstream.max_response_bytes
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise UpstreamFailure(
                        upstream.name,
                        FailureKind.TOO_LARGE,
                        f"the upstream's answer is larger than {limit} bytes",
                    )
                chunks.append(chunk)
        except httpx.TimeoutException:
            raise TimeoutError from None
        except (httpx.TransportError, httpx.DecodingError):
            raise UpstreamFailure(
                upstream.name, FailureKind.MALFORMED, "the upstream's answer could not be read"
            ) from None
        return b"".join(chunks)
