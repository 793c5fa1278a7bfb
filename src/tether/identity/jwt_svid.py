"""JWT-SVID verification, following the SPIFFE JWT-SVID spec (on RFC 7519 and RFC 7515).

A JWT-SVID is a JWT whose ``sub`` is the workload's SPIFFE ID, with ``aud`` (required) naming the
relying party and ``exp`` (required) bounding its life. Per the spec's validation section the
verifier pins the algorithm, picks the trust bundle's key by ``kid``, and rejects a token whose
``typ`` is present and not ``JWT`` or ``JOSE`` (which also keeps a tether grant token from being
accepted as an SVID). The SPIFFE ID must parse and belong to a configured trust domain.
Beyond the spec, ``iat`` is required and the lifetime a token declares (``exp - iat``) may not
exceed ``max_lifetime_seconds`` (24 h unless configured): an SVID valid for years is a standing
credential, whatever its signature.

With federation, give one bundle per trust domain (a mapping): a token is then checked only
against the keys of the trust domain its ``sub`` names, so one domain's signing key can never
vouch for another domain's workloads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from tether.core.errors import ConfigurationError
from tether.core.identity import CredentialKind, Workload, parse_spiffe_id
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
    unverified_claims,
    verify_jws,
)
from tether.identity.keys import KeySet

#: Accepted ``typ`` header values (normalized); ``None``: the header may be absent.
SVID_TYPES: frozenset[str | None] = frozenset({None, "jwt", "jose"})


class JwtSvidVerifier:
    """Verifies JWT-SVIDs from configured trust domains; implements ``WorkloadVerifier``."""

    def __init__(
        self,
        keys: KeySource | Mapping[str, KeySource],
        trust_domains: Iterable[str],
        audience: str,
        algorithms: Iterable[str] = ("ES256",),
        leeway_seconds: int = 60,
        max_token_bytes: int = 8192,
        max_lifetime_seconds: int = DEFAULT_MAX_LIFETIME_SECONDS,
    ) -> None:
        self._algorithms = check_algorithms(algorithms)
        self._audience = check_audience_config(audience)
        self._leeway = check_leeway(leeway_seconds)
        self._max_lifetime = check_max_lifetime(max_lifetime_seconds)
        if max_token_bytes < 256:
            raise ConfigurationError("max_token_bytes must be at least 256")
        self._max_bytes = max_token_bytes
        domains = frozenset(check_trust_domain(domain) for domain in trust_domains)
        if not domains:
            raise ConfigurationError("a JWT-SVID verifier needs at least one trust domain")
        self._trust_domains = domains
        if isinstance(keys, Mapping):
            if set(keys) != domains:
                raise ConfigurationError("give exactly one key source per trusted trust domain")
            self._keys: KeySource | Mapping[str, KeySource] = dict(keys)
            sources: list[KeySource] = list(keys.values())
        else:
            self._keys = keys
            sources = [keys]
        for source in sources:
            if isinstance(source, KeySet) and not source.algorithms() & set(self._algorithms):
                raise ConfigurationError("no configured key can verify the configured algorithms")

    @property
    def trust_domains(self) -> frozenset[str]:
        return self._trust_domains

    def verify(self, token: str, now: datetime) -> Workload:
        source, routed_domain = self._source_for(token)
        verified = verify_jws(
            token,
            keys=source,
            algorithms=self._algorithms,
            typs=SVID_TYPES,
            max_bytes=self._max_bytes,
            now=now,
        )
        claims = verified.claims
        check_audience(claims, self._audience)
        check_time(claims, now, self._leeway)
        check_lifetime(claims, self._max_lifetime)
        subject = claims.get("sub")
        trust_domain = _trust_domain(subject)
        if trust_domain is None or not isinstance(subject, str):
            raise reject("token subject is not a SPIFFE ID")
        if trust_domain not in self._trust_domains:
            raise reject("token trust domain is not trusted")
        if routed_domain is not None and trust_domain != routed_domain:
            raise reject("token trust domain is not trusted")
        return Workload.from_spiffe_id(subject, CredentialKind.JWT_SVID)

    def _source_for(self, token: str) -> tuple[KeySource, str | None]:
        """The key source for ``token``, and the trust domain it was chosen for (if per-domain)."""
        if not isinstance(self._keys, Mapping):
            return self._keys, None
        # Routing only: the claims are verified in full once the bundle is chosen.
        domain = _trust_domain(unverified_claims(token, self._max_bytes).get("sub"))
        source = self._keys.get(domain) if domain is not None else None
        if source is None:
            raise reject("token trust domain is not trusted")
        return source, domain

    def __repr__(self) -> str:
        return (
            f"JwtSvidVerifier(trust_domains={sorted(self._trust_domains)!r}, "
            f"audience={self._audience!r}, algorithms={list(self._algorithms)!r})"
        )


def _trust_domain(subject: object) -> str | None:
    if not isinstance(subject, str):
        return None
    try:
        trust_domain, _path = parse_spiffe_id(subject)
    except ValueError:
        return None
    return trust_domain


def check_trust_domain(domain: str) -> str:
    """``domain`` if it is a valid SPIFFE trust domain name; raises ``ConfigurationError``."""
    try:
        parsed, _path = parse_spiffe_id(f"spiffe://{domain}/x")
    except ValueError as exc:
        raise ConfigurationError(f"invalid trust domain {domain!r}: {exc}") from exc
    if parsed != domain:
        raise ConfigurationError(f"invalid trust domain {domain!r}: it is a name, not a path")
    return domain
