"""Workload identity: who is calling, proved cryptographically (SPIFFE JWT-SVID, OIDC, RFC 7519).

Adapters for the service's ``WorkloadVerifier`` and ``GrantSigner`` ports, plus the key handling
they share and a development issuer for the embedded default (refused in production).

    keys          SigningKey (tether's ES256 key), KeySet (trusted public keys), load_jwks_file
    jwks_url      JwksUrlSource: an issuer's JWKS URL, cached and rate-limited
    jwt_svid      JwtSvidVerifier (SPIFFE JWT-SVID)
    oidc          OidcVerifier (OpenID Connect Core: Kubernetes, CI, cloud tokens)
    composite     CompositeVerifier: routes a token to the verifier for its issuer
    grant_tokens  GrantTokenSigner: tether's own grant tokens
    dev_issuer    DevIssuer: development JWT-SVIDs, never in production

Every verification failure is ``Unauthenticated(code=INVALID_TOKEN)`` with a message that never
repeats the token.
"""

from typing import TYPE_CHECKING

from tether.identity._jose import DEFAULT_MAX_LIFETIME_SECONDS, KeySource
from tether.identity.composite import CompositeVerifier
from tether.identity.dev_issuer import DEFAULT_AUDIENCE, DevIssuer, ensure_dev_allowed
from tether.identity.grant_tokens import (
    GRANT_AUDIENCE,
    GRANT_TOKEN_TYPE,
    GrantTokenSigner,
    InvalidGrantToken,
)
from tether.identity.jwks_url import JwksUrlSource
from tether.identity.jwt_svid import JwtSvidVerifier
from tether.identity.keys import (
    VERIFY_ALGORITHMS,
    KeySet,
    SigningKey,
    jwk_thumbprint,
    load_jwks_file,
)
from tether.identity.oidc import OidcVerifier

if TYPE_CHECKING:
    from tether.service.ports import GrantSigner, WorkloadVerifier

__all__ = [
    "DEFAULT_AUDIENCE",
    "DEFAULT_MAX_LIFETIME_SECONDS",
    "GRANT_AUDIENCE",
    "GRANT_TOKEN_TYPE",
    "VERIFY_ALGORITHMS",
    "CompositeVerifier",
    "DevIssuer",
    "GrantTokenSigner",
    "InvalidGrantToken",
    "JwksUrlSource",
    "JwtSvidVerifier",
    "KeySet",
    "KeySource",
    "OidcVerifier",
    "SigningKey",
    "ensure_dev_allowed",
    "jwk_thumbprint",
    "load_jwks_file",
]

if TYPE_CHECKING:  # mypy checks that each adapter satisfies the service port it implements

    def _ports(
        svid: JwtSvidVerifier, oidc: OidcVerifier, any_: CompositeVerifier, grants: GrantTokenSigner
    ) -> tuple[WorkloadVerifier, WorkloadVerifier, WorkloadVerifier, GrantSigner]:
        return svid, oidc, any_, grants
