"""CompositeVerifier: routes on unverified iss/sub, then the chosen verifier checks everything."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tether.core.errors import ConfigurationError
from tether.core.identity import CredentialKind
from tether.identity import CompositeVerifier, DevIssuer, KeySet, OidcVerifier, SigningKey

from .conftest import T0, Rejects, TokenKit, public_jwk

ISSUER = "https://token.actions.example"
SUB = "repo:acme/agents:ref:refs/heads/main"


@pytest.fixture
def dev(signing_key: SigningKey) -> DevIssuer:
    return DevIssuer(signing_key, environ={})


@pytest.fixture
def oidc(rsa_key: rsa.RSAPrivateKey, key_set_of: Callable[..., KeySet]) -> OidcVerifier:
    return OidcVerifier(ISSUER, "tether", key_set_of(public_jwk(rsa_key, "gh")))


@pytest.fixture
def composite(dev: DevIssuer, oidc: OidcVerifier) -> CompositeVerifier:
    return CompositeVerifier(dev.dev_verifier(), [oidc])


def oidc_claims(**overrides: Any) -> dict[str, Any]:
    now = int(T0.timestamp())
    return {"iss": ISSUER, "sub": SUB, "aud": "tether", "iat": now, "exp": now + 300, **overrides}


def test_routes_svids_and_oidc_tokens(
    composite: CompositeVerifier, dev: DevIssuer, kit: TokenKit, rsa_key: rsa.RSAPrivateKey
) -> None:
    svid = dev.mint_svid("analyst", audience="tether", now=T0)
    assert composite.verify(svid, T0).kind is CredentialKind.JWT_SVID
    token = kit.sign(rsa_key, "RS256", oidc_claims(), kid="gh")
    workload = composite.verify(token, T0)
    assert workload.kind is CredentialKind.OIDC
    assert workload.id == f"{ISSUER}#{SUB}"


def test_unknown_issuer_is_rejected(
    composite: CompositeVerifier, kit: TokenKit, rsa_key: rsa.RSAPrivateKey, rejects: Rejects
) -> None:
    token = kit.sign(rsa_key, "RS256", oidc_claims(iss="https://other.example"), kid="gh")
    assert rejects(composite, token, T0).message == "token issuer is not trusted"
    rejects(composite, kit.sign(rsa_key, "RS256", oidc_claims(iss=None), kid="gh"), T0)


def test_lying_about_the_issuer_only_reaches_a_verifier_that_refuses(
    composite: CompositeVerifier, signing_key: SigningKey, kit: TokenKit, rejects: Rejects
) -> None:
    # Signed by the SVID key but claiming the OIDC issuer: routed to OIDC, whose keys refuse it.
    token = kit.sign(
        signing_key._private,
        "ES256",
        oidc_claims(sub="spiffe://tether.local/agent/analyst"),
        kid=signing_key.kid,
    )
    rejects(composite, token, T0)


def test_spiffe_subject_without_svid_verifier_is_rejected(
    oidc: OidcVerifier, dev: DevIssuer, rejects: Rejects
) -> None:
    only_oidc = CompositeVerifier(None, [oidc])
    rejects(only_oidc, dev.mint_svid("analyst", audience="tether", now=T0), T0)


def test_configuration_errors(oidc: OidcVerifier) -> None:
    with pytest.raises(ConfigurationError):
        CompositeVerifier(None, [])
    with pytest.raises(ConfigurationError, match="twice"):
        CompositeVerifier(None, [oidc, oidc])


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "e30.e30.e30", "W10.W10.AA", "x" * 9000])
def test_garbage_is_rejected(composite: CompositeVerifier, rejects: Rejects, token: str) -> None:
    rejects(composite, token, T0)
