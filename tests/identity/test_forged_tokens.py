"""Forged tokens, the classic JOSE attacks, against every verifier that reads a JWS.

The checks these pin down are tether's, on top of PyJWT: the algorithm pinned per verifier and
bound to the key, keys only from configuration (never from the token's header), key types and
curves that must suit the algorithm, ``kid`` used only to look a key up. Each token here is
made the way an attacker would, and each must be refused with ``invalid_token``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tether.core.errors import ConfigurationError
from tether.identity import GrantTokenSigner, JwtSvidVerifier, KeySet, OidcVerifier, SigningKey

from .conftest import T0, Rejects, TokenKit, public_jwk

TD = "prod.example"
SPIFFE_ID = f"spiffe://{TD}/ns/agents/sa/analyst"
ISSUER = "https://issuer.example"
NOW = int(T0.timestamp())


def claims() -> dict[str, Any]:
    return {"sub": SPIFFE_ID, "aud": "tether", "iss": ISSUER, "iat": NOW, "exp": NOW + 300}


@pytest.fixture
def issuer_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def svid(issuer_key: ec.EllipticCurvePrivateKey, key_set_of: Callable[..., KeySet]) -> Any:
    return JwtSvidVerifier(key_set_of(public_jwk(issuer_key, "k1")), {TD}, "tether")


def test_a_key_carried_in_the_header_is_never_trusted(
    svid: JwtSvidVerifier, other_ec: ec.EllipticCurvePrivateKey, kit: TokenKit, rejects: Rejects
) -> None:
    # RFC 8725 §3.10: an attacker signs with its own key and offers that key (or where to fetch
    # it) in the header, naming the trusted kid or none at all.
    own = public_jwk(other_ec, "k1")
    for extra in (
        {"jwk": own},
        {"jku": "https://attacker.example/jwks.json"},
        {"x5u": "https://attacker.example/cert.pem"},
        {"jwk": own, "jku": "http://127.0.0.1:1/jwks.json"},
    ):
        for kid in ("k1", None):
            token = kit.sign(other_ec, "ES256", claims(), kid=kid, extra_headers=extra)
            assert rejects(svid, token, T0).message == "token signature is invalid"


@pytest.mark.parametrize(
    "kid", ["../../../dev/null", "k1' OR '1'='1", "k1\x00", "K1", " k1", "*", ""]
)
def test_a_kid_only_ever_names_a_configured_key(
    svid: JwtSvidVerifier,
    issuer_key: ec.EllipticCurvePrivateKey,
    kit: TokenKit,
    rejects: Rejects,
    kid: str,
) -> None:
    token = kit.sign(issuer_key, "ES256", claims(), kid=kid)
    assert rejects(svid, token, T0).message == "no trusted key matches this token"


def test_an_all_zero_ecdsa_signature_is_refused(
    svid: JwtSvidVerifier, kit: TokenKit, rejects: Rejects
) -> None:
    # CVE-2022-21449 ("psychic signatures"): r = s = 0 must never verify.
    token = kit.raw({"alg": "ES256", "typ": "JWT", "kid": "k1"}, claims(), b"\x00" * 64)
    assert rejects(svid, token, T0).message == "token signature is invalid"


def test_hs256_made_with_any_form_of_the_public_key_is_refused(
    rsa_key: rsa.RSAPrivateKey, kit: TokenKit, rejects: Rejects, key_set_of: Callable[..., KeySet]
) -> None:
    # The algorithm-confusion attack against every verifier that holds an RSA key.
    public = rsa_key.public_key()
    secrets = [
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1),
        public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        json.dumps(public_jwk(rsa_key, "r1")).encode(),
    ]
    keys = key_set_of(public_jwk(rsa_key, "r1"))
    oidc = OidcVerifier(ISSUER, "tether", keys, algorithms=("RS256",))
    for secret in secrets:
        for alg in ("HS256", "HS384", "HS512"):
            token = kit.hmac(secret, {"alg": alg, "typ": "JWT", "kid": "r1"}, claims())
            assert rejects(oidc, token, T0).message == "token algorithm is not allowed"


def test_a_token_with_another_algorithm_than_its_key_finds_no_key(
    rsa_key: rsa.RSAPrivateKey, kit: TokenKit, rejects: Rejects, key_set_of: Callable[..., KeySet]
) -> None:
    # RS256 and ES256 both allowed: an ES256 token naming the RSA key's kid still finds nothing,
    # and a PS256 token (same RSA key, another padding) is refused by its algorithm.
    keys = key_set_of(public_jwk(rsa_key, "r1"))
    oidc = OidcVerifier(ISSUER, "tether", keys, algorithms=("RS256", "ES256"))
    es = ec.generate_private_key(ec.SECP256R1())
    assert rejects(oidc, kit.sign(es, "ES256", claims(), kid="r1"), T0).message == (
        "no trusted key matches this token"
    )
    assert rejects(oidc, kit.sign(rsa_key, "PS256", claims(), kid="r1"), T0).message == (
        "token algorithm is not allowed"
    )


def test_a_key_whose_curve_does_not_suit_its_algorithm_is_not_used(
    key_set_of: Callable[..., KeySet],
) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    p256 = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ConfigurationError):
        key_set_of(public_jwk(p384, "mislabelled", alg="ES256"))
    with pytest.raises(ConfigurationError):
        key_set_of(public_jwk(p256, "mislabelled", alg="ES384"))
    with pytest.raises(ConfigurationError):
        key_set_of(public_jwk(p256, "mislabelled", alg="RS256"))
    mixed = key_set_of(public_jwk(p384, "bad", alg="ES256"), public_jwk(p256, "good"))
    assert mixed.kids() == ("good",)


def test_an_rsa_key_shorter_than_2048_bits_is_never_trusted(
    rsa_key: rsa.RSAPrivateKey, key_set_of: Callable[..., KeySet]
) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ConfigurationError):
        key_set_of(public_jwk(weak, "weak"))
    assert key_set_of(public_jwk(weak, "weak"), public_jwk(rsa_key, "r1")).kids() == ("r1",)


def test_unencoded_payload_and_critical_headers_are_refused(
    svid: JwtSvidVerifier, issuer_key: ec.EllipticCurvePrivateKey, kit: TokenKit, rejects: Rejects
) -> None:
    # RFC 7797 (b64: false) and any "crit" extension: tether understands none, so refuses all.
    for extra in ({"b64": False, "crit": ["b64"]}, {"b64": True}, {"crit": ["exp"]}, {"crit": []}):
        token = kit.raw(
            {"alg": "ES256", "typ": "JWT", "kid": "k1", **extra}, claims(), b"\x01" * 64
        )
        assert rejects(svid, token, T0).message == "token uses unsupported header extensions"


def test_a_signature_moved_onto_other_claims_is_refused(
    svid: JwtSvidVerifier, issuer_key: ec.EllipticCurvePrivateKey, kit: TokenKit, rejects: Rejects
) -> None:
    good = kit.sign(issuer_key, "ES256", claims(), kid="k1").split(".")
    other = kit.sign(issuer_key, "ES256", {**claims(), "sub": f"spiffe://{TD}/admin"}, kid="k1")
    spliced = ".".join([good[0], other.split(".")[1], good[2]])
    assert rejects(svid, spliced, T0).message == "token signature is invalid"


def test_a_grant_token_forged_with_a_look_alike_key_is_refused(
    signing_key: SigningKey, kit: TokenKit, rejects: Rejects
) -> None:
    signer = GrantTokenSigner(signing_key)
    impostor = ec.generate_private_key(ec.SECP256R1())
    grant_claims = {
        "iss": "tether",
        "aud": "tether-grant",
        "sub": SPIFFE_ID,
        "jti": "grt_0123456789abcdefghjkmnpqrs",
        "tid": "tsk_0123456789abcdefghjkmnpqrs",
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + 60,
    }
    token = kit.sign(impostor, "ES256", grant_claims, kid=signing_key.kid, typ="tether-grant+jwt")
    assert rejects(signer, token, T0).message == "token signature is invalid"
    none = kit.raw({"alg": "none", "typ": "tether-grant+jwt", "kid": signing_key.kid}, grant_claims)
    assert rejects(signer, none, T0).message == "token is malformed"  # no signature at all
    signed_none = kit.raw({"alg": "none", "typ": "tether-grant+jwt"}, grant_claims, b"\x01")
    assert rejects(signer, signed_none, T0).message == "token algorithm is not allowed"
