"""Who is calling: a verified workload, never what the agent says about itself."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class CredentialKind(StrEnum):
    JWT_SVID = "jwt-svid"
    X509_SVID = "x509-svid"
    OIDC = "oidc"


@dataclass(frozen=True, slots=True)
class Workload:
    """A verified workload identity.

    ``id`` is the SPIFFE ID (``spiffe://trust-domain/path``) for SVIDs, or ``issuer#subject`` for
    OIDC tokens. Grants are bound to ``id``; nothing else about the caller is trusted.
    """

    id: str
    kind: CredentialKind
    trust_domain: str
    name: str

    @staticmethod
    def from_spiffe_id(spiffe_id: str, kind: CredentialKind = CredentialKind.JWT_SVID) -> Workload:
        """Build from an already-verified SPIFFE ID; raises ``ValueError`` if it is malformed."""
        trust_domain, path = parse_spiffe_id(spiffe_id)
        return Workload(
            id=spiffe_id, kind=kind, trust_domain=trust_domain, name=path.rsplit("/", 1)[-1]
        )


_TD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-_")
_PATH_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")


def parse_spiffe_id(value: str) -> tuple[str, str]:
    """Split a SPIFFE ID into (trust domain, path) following the SPIFFE ID spec's rules."""
    if len(value) > 2048 or not value.startswith("spiffe://"):
        raise ValueError("a SPIFFE ID starts with spiffe://")
    rest = value[len("spiffe://") :]
    trust_domain, sep, path = rest.partition("/")
    if not trust_domain or not set(trust_domain) <= _TD_CHARS:
        raise ValueError("the trust domain must be lowercase letters, digits, '.', '-', '_'")
    if not sep or not path:
        raise ValueError("a workload SPIFFE ID needs a path")
    for segment in path.split("/"):
        if not segment or segment in {".", ".."} or not set(segment) <= _PATH_CHARS:
            raise ValueError("each path segment must be non-empty letters, digits, '.', '-', '_'")
    return trust_domain, "/" + path
