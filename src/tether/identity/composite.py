"""One verifier in front of several: routes a token to the verifier for its issuer.

Routing reads the *unverified* payload (RFC 7519 claims ``iss`` and ``sub``) and nothing else;
the chosen verifier then checks the token in full, so a lie in the payload can only send a token
to a verifier that will refuse it. A token whose ``iss`` is a configured OIDC issuer goes to that
issuer's verifier; otherwise one whose ``sub`` is a SPIFFE ID goes to the JWT-SVID verifier;
anything else is refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from tether.core.errors import ConfigurationError
from tether.core.identity import Workload
from tether.identity._cache import VerifiedCache
from tether.identity._jose import reject, unverified_claims
from tether.identity.jwt_svid import JwtSvidVerifier
from tether.identity.oidc import OidcVerifier

#: The cache never widens a verifier's own leeway (60 s by default); 0 keeps it strict.
CACHE_LEEWAY = 0


class CompositeVerifier:
    """Implements ``WorkloadVerifier`` by delegating to the verifier for the token's issuer."""

    def __init__(
        self,
        svid: JwtSvidVerifier | None,
        oidc: Iterable[OidcVerifier] = (),
        *,
        max_token_bytes: int = 8192,
    ) -> None:
        self._svid = svid
        self._oidc: dict[str, OidcVerifier] = {}
        for verifier in oidc:
            if verifier.issuer in self._oidc:
                raise ConfigurationError(f"OIDC issuer {verifier.issuer!r} is configured twice")
            self._oidc[verifier.issuer] = verifier
        if svid is None and not self._oidc:
            raise ConfigurationError("configure a JWT-SVID verifier or at least one OIDC issuer")
        self._max_bytes = max_token_bytes
        self._cache: VerifiedCache[Workload] = VerifiedCache()

    def verify(self, token: str, now: datetime) -> Workload:
        cached = self._cache.get(token, now)
        if cached is not None:
            return cached
        claims = unverified_claims(token, self._max_bytes)
        issuer, subject = claims.get("iss"), claims.get("sub")
        if isinstance(issuer, str) and issuer in self._oidc:
            workload = self._oidc[issuer].verify(token, now)
        elif (
            self._svid is not None and isinstance(subject, str) and subject.startswith("spiffe://")
        ):
            workload = self._svid.verify(token, now)
        else:
            raise reject("token issuer is not trusted")
        # Verified: the claims read above are the token's own. Cache within their time window.
        self._cache.put(token, workload, claims, now, leeway=CACHE_LEEWAY)
        return workload

    def __repr__(self) -> str:
        return f"CompositeVerifier(svid={self._svid!r}, oidc={sorted(self._oidc)!r})"
