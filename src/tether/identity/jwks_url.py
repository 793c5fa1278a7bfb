"""A JWK Set fetched from an issuer's JWKS URL (RFC 7517 §5, OIDC Discovery ``jwks_uri``).

Fetches with httpx: a timeout, a body size cap, no redirects, https only (plain http only to a
loopback address, for local issuers and tests). The set is cached and refreshed on an interval
measured with the ``now`` each verification is given, never the wall clock, so tests move a
clock. When a token names a ``kid`` the cache does not have (the issuer rotated keys), the set is
refetched at once, but never more than once per ``min_refetch_seconds``: a stream of tokens with
made-up key ids cannot turn tether into a flood of requests to the issuer.

If a refresh fails, the last good set keeps serving for ``max_stale_seconds``; after that, and
before the first successful fetch, every token is refused (fail closed).

Why not PyJWT's ``PyJWKClient`` (2.15): its cache lifespan and its refetch cooldown run on
``time.monotonic()``, not the ``now`` each verification is given (tests move a clock); it
reads a body of any size (``json.load`` of the response) and fetches plain http
from any host; once its lifespan passes with the issuer down it has nothing to serve, where
tether keeps the last good set for a bounded time; and its ``PyJWKSet`` takes ``oct`` (HMAC)
keys, which a trusted set must refuse. Parsing each key is PyJWT's (``PyJWK``, through
:class:`~tether.identity.keys.KeySet`).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from tether.core.errors import ConfigurationError, TetherError
from tether.identity._jose import reject
from tether.identity.keys import KeySet

if TYPE_CHECKING:
    import httpx

_log = logging.getLogger(__name__)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class JwksUrlSource:
    """A refreshing :class:`~tether.identity._jose.KeySource` backed by a JWKS URL."""

    def __init__(
        self,
        url: str,
        *,
        timeout_seconds: float = 5.0,
        max_bytes: int = 256 * 1024,
        refresh_seconds: int = 300,
        min_refetch_seconds: int = 60,
        max_stale_seconds: int = 24 * 3600,
        client: httpx.Client | None = None,
    ) -> None:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if not host or not (
            parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(host))
        ):
            raise ConfigurationError("a JWKS URL must be https (plain http only to loopback)")
        if not 0 < timeout_seconds <= 60 or max_bytes < 1024:
            raise ConfigurationError("JWKS timeout must be in (0, 60] s, size cap >= 1 KiB")
        if not 0 < min_refetch_seconds <= refresh_seconds:
            raise ConfigurationError("need 0 < min_refetch_seconds <= refresh_seconds")
        self._url = url
        self._timeout = timeout_seconds
        self._max_bytes = max_bytes
        self._refresh = timedelta(seconds=refresh_seconds)
        self._min_refetch = timedelta(seconds=min_refetch_seconds)
        self._max_stale = timedelta(seconds=max_stale_seconds)
        self._client = client
        self._lock = threading.Lock()
        self._keys: KeySet | None = None
        self._fetched_at: datetime | None = None
        self._last_attempt: datetime | None = None

    @property
    def url(self) -> str:
        return self._url

    def current(self, now: datetime) -> KeySet:
        with self._lock:
            if self._fetched_at is None or now - self._fetched_at >= self._refresh:
                self._fetch(now)
            if self._keys is None or self._fetched_at is None:
                raise reject("the issuer's signing keys are unavailable")
            if now - self._fetched_at >= self._refresh + self._max_stale:
                raise reject("the issuer's signing keys are unavailable")
            return self._keys

    def refresh(self, now: datetime) -> KeySet | None:
        with self._lock:
            return self._keys if self._fetch(now) else None

    def _fetch(self, now: datetime) -> bool:
        """Fetch unless one was attempted within ``min_refetch``; True when the set changed."""
        if self._last_attempt is not None and now - self._last_attempt < self._min_refetch:
            return False
        self._last_attempt = now
        import httpx  # here, not at the top: the CLI imports this package and must start fast

        try:
            keys = KeySet.from_jwks(json.loads(self._download()))
        except (httpx.HTTPError, OSError, ValueError, RecursionError, TetherError) as exc:
            # The operator needs the cause; the caller only ever sees "keys unavailable".
            _log.warning("JWKS fetch from %s failed: %s", self._url, type(exc).__name__)
            return False
        self._keys = keys
        self._fetched_at = now
        return True

    def _download(self) -> bytes:
        import httpx

        client = self._client or httpx.Client(timeout=self._timeout, follow_redirects=False)
        try:
            with client.stream(
                "GET",
                self._url,
                # identity: the size cap then bounds what is decompressed, too.
                headers={"Accept": "application/json", "Accept-Encoding": "identity"},
                timeout=self._timeout,
                follow_redirects=False,
            ) as response:
                if response.status_code != 200:
                    raise ValueError(f"JWKS URL answered HTTP {response.status_code}")
                declared = response.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > self._max_bytes:
                    raise ValueError("JWKS document is larger than the size cap")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > self._max_bytes:
                        raise ValueError("JWKS document is larger than the size cap")
                return bytes(body)
        finally:
            if self._client is None:
                client.close()

    def __repr__(self) -> str:
        return f"JwksUrlSource(url={self._url!r})"
