"""OIDC token verification, following OpenID Connect Core 1.0 §3.1.3.7 and RFC 7519.

For workload tokens issued by an OIDC provider: Kubernetes service-account tokens, CI job tokens
(GitHub Actions, GitLab), cloud workload identity. ``iss`` must equal the configured issuer
exactly (no normalisation: OIDC Core compares it as a case-sensitive string), ``aud`` must name
tether, ``exp`` and ``iat`` are required, the declared lifetime (``exp - iat``) is at most
``max_lifetime_seconds`` (24 h unless configured), and every time check uses the injected
``now``. Keys come from a JWKS file or the issuer's JWKS URL
(:class:`~tether.identity.jwks_url.JwksUrlSource`); given as a string, an ``https://`` (or
loopback ``http://``) value is a URL and anything else a file path.

The workload is named ``issuer#subject``; its short name is the subject's last ``:`` or ``/``
separated segment (``system:serviceaccount:ns:builder`` → ``builder``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from datetime import datetime
from urllib.parse import urlsplit

from tether.core.errors import ConfigurationError
from tether.core.identity import CredentialKind, Workload
from tether.identity._jose import (
    DEFAULT_MAX_LIFETIME_SECONDS,
    KeySource,
    check_algorithms,
    check_audience,
    check_audience_config,
    check_leeway,
    check_lifetime,
    check_max_lifetime,
    check_time,
    reject,
    verify_jws,
)
from tether.identity.jwks_url import JwksUrlSource
from tether.identity.keys import KeySet, load_jwks_file

#: Accepted ``typ`` values: plain JWTs and RFC 9068 access tokens. Grant tokens never pass.
OIDC_TYPES: frozenset[str | None] = frozenset({None, "jwt", "jose", "at+jwt"})
#: OIDC Core §2: ``sub`` is at most 255 ASCII characters; tether also refuses spaces and
#: control characters, since the subject ends up in audit records and policy entities.
_SUBJECT = re.compile(r"^[\x21-\x7e]{1,255}$")


class OidcVerifier:
    """Verifies tokens from one OIDC issuer; implements ``WorkloadVerifier``."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        jwks: KeySource | str | os.PathLike[str],
        algorithms: Iterable[str] = ("RS256", "ES256"),
        leeway_seconds: int = 60,
        max_token_bytes: int = 8192,
        max_lifetime_seconds: int = DEFAULT_MAX_LIFETIME_SECONDS,
    ) -> None:
        parts = urlsplit(issuer) if isinstance(issuer, str) else None
        if parts is None or parts.scheme != "https" or not parts.hostname:
            raise ConfigurationError("an OIDC issuer is an https URL (OIDC Core §2)")
        if parts.query or parts.fragment:
            raise ConfigurationError("an OIDC issuer has no query or fragment (OIDC Core §2)")
        self._issuer = issuer
        self._host = parts.hostname
        self._audience = check_audience_config(audience)
        self._keys = key_source(jwks)
        self._algorithms = check_algorithms(algorithms)
        self._leeway = check_leeway(leeway_seconds)
        self._max_lifetime = check_max_lifetime(max_lifetime_seconds)
        if max_token_bytes < 256:
            raise ConfigurationError("max_token_bytes must be at least 256")
        self._max_bytes = max_token_bytes
        if isinstance(self._keys, KeySet) and not self._keys.algorithms() & set(self._algorithms):
            raise ConfigurationError("no configured key can verify the configured algorithms")

    @property
    def issuer(self) -> str:
        return self._issuer

    def verify(self, token: str, now: datetime) -> Workload:
        verified = verify_jws(
            token,
            keys=self._keys,
            algorithms=self._algorithms,
            typs=OIDC_TYPES,
            max_bytes=self._max_bytes,
            now=now,
        )
        claims = verified.claims
        if claims.get("iss") != self._issuer:
            raise reject("token issuer is not trusted")
        check_audience(claims, self._audience)
        check_time(claims, now, self._leeway)
        check_lifetime(claims, self._max_lifetime)
        subject = claims.get("sub")
        if not isinstance(subject, str) or not _SUBJECT.fullmatch(subject):
            raise reject("token subject is missing or malformed")
        segments = [part for part in re.split(r"[:/]", subject) if part]
        return Workload(
            id=f"{self._issuer}#{subject}",
            kind=CredentialKind.OIDC,
            trust_domain=self._host,
            name=segments[-1] if segments else subject,
        )

    def __repr__(self) -> str:
        return f"OidcVerifier(issuer={self._issuer!r}, audience={self._audience!r})"


def key_source(jwks: KeySource | str | os.PathLike[str]) -> KeySource:
    """A key source from a source, a JWKS URL (``https://``, or ``http://`` to loopback), or a
    path to a JWKS file."""
    if isinstance(jwks, str) and jwks.startswith(("https://", "http://")):
        return JwksUrlSource(jwks)
    if isinstance(jwks, str | os.PathLike):
        return load_jwks_file(jwks)
    return jwks
