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

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from tether.service.ports import GrantSigner, WorkloadVerifier

#: Where each name lives. Imported on first use (PEP 562), so a module of this package that needs
#: only the keys (``tether dev svid``) does not import the verifiers, the grant tokens and the
#: service ports they bring.
_SOURCES = {
    "DEFAULT_MAX_LIFETIME_SECONDS": "_jose",
    "KeySource": "_jose",
    "CompositeVerifier": "composite",
    "DEFAULT_AUDIENCE": "dev_issuer",
    "DevIssuer": "dev_issuer",
    "ensure_dev_allowed": "dev_issuer",
    "GRANT_AUDIENCE": "grant_tokens",
    "GRANT_TOKEN_TYPE": "grant_tokens",
    "GrantTokenSigner": "grant_tokens",
    "InvalidGrantToken": "grant_tokens",
    "JwksUrlSource": "jwks_url",
    "JwtSvidVerifier": "jwt_svid",
    "VERIFY_ALGORITHMS": "keys",
    "KeySet": "keys",
    "SigningKey": "keys",
    "jwk_thumbprint": "keys",
    "load_jwks_file": "keys",
    "OidcVerifier": "oidc",
}

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


def __getattr__(name: str) -> Any:
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_SOURCES[name]}"), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:  # mypy checks that each adapter satisfies the service port it implements

    def _ports(
        svid: JwtSvidVerifier, oidc: OidcVerifier, any_: CompositeVerifier, grants: GrantTokenSigner
    ) -> tuple[WorkloadVerifier, WorkloadVerifier, WorkloadVerifier, GrantSigner]:
        return svid, oidc, any_, grants
