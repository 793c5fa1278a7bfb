"""JwtSvidVerifier: what a JWT-SVID must be (SPIFFE JWT-SVID spec) and every way one is refused."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tether.core.errors import ConfigurationError
from tether.core.identity import CredentialKind
from tether.identity import JwtSvidVerifier, KeySet, SigningKey
from tether.service.clock import ManualClock

from .conftest import T0, Rejects, TokenKit, public_jwk

TD = "prod.example"
SPIFFE_ID = f"spiffe://{TD}/ns/agents/sa/analyst"
AUD = "tether"


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "sub": SPIFFE_ID,
        "aud": [AUD],
        "iat": int(T0.timestamp()),
        "exp": int(T0.timestamp()) + 300,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


@pytest.fixture
def issuer_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def bundle(issuer_key: ec.EllipticCurvePrivateKey, key_set_of: Callable[..., KeySet]) -> KeySet:
    return key_set_of({**public_jwk(issuer_key, "authority-1"), "use": "jwt-svid"})


@pytest.fixture
def verifier(bundle: KeySet) -> JwtSvidVerifier:
    return JwtSvidVerifier(bundle, {TD}, AUD)


@pytest.fixture
def mint(kit: TokenKit, issuer_key: ec.EllipticCurvePrivateKey) -> Callable[..., str]:
    def build(kid: str | None = "authority-1", **overrides: Any) -> str:
        return kit.sign(issuer_key, "ES256", claims(**overrides), kid=kid)

    return build


def test_valid_svid_is_accepted(verifier: JwtSvidVerifier, mint: Callable[..., str]) -> None:
    workload = verifier.verify(mint(), T0)
    assert workload.id == SPIFFE_ID
    assert workload.kind is CredentialKind.JWT_SVID
    assert workload.trust_domain == TD
    assert workload.name == "analyst"


def test_audience_may_be_a_single_string(
    verifier: JwtSvidVerifier, mint: Callable[..., str]
) -> None:
    assert verifier.verify(mint(aud=AUD), T0).id == SPIFFE_ID
    assert verifier.verify(mint(aud=["other", AUD]), T0).id == SPIFFE_ID


def test_forged_signature_from_another_key_is_rejected(
    verifier: JwtSvidVerifier, kit: TokenKit, other_ec: ec.EllipticCurvePrivateKey, rejects: Rejects
) -> None:
    forged = kit.sign(other_ec, "ES256", claims(), kid="authority-1")
    assert rejects(verifier, forged, T0).message == "token signature is invalid"


def test_tampered_payload_is_rejected(
    verifier: JwtSvidVerifier, mint: Callable[..., str], kit: TokenKit, rejects: Rejects
) -> None:
    head, _body, sig = mint().split(".")
    other_body = kit.raw({}, claims(sub=f"spiffe://{TD}/admin")).split(".")[1]
    rejects(verifier, f"{head}.{other_body}.{sig}", T0)


@pytest.mark.parametrize("signature", [b"", b"x"])
@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_rejected(
    verifier: JwtSvidVerifier, kit: TokenKit, rejects: Rejects, alg: str, signature: bytes
) -> None:
    token = kit.raw({"alg": alg, "typ": "JWT", "kid": "authority-1"}, claims(), signature)
    rejects(verifier, token, T0)


def test_hs256_signed_with_the_public_key_pem_is_rejected(
    verifier: JwtSvidVerifier,
    issuer_key: ec.EllipticCurvePrivateKey,
    kit: TokenKit,
    rejects: Rejects,
) -> None:
    pem = issuer_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for kid in ("authority-1", None):
        header = {"alg": "HS256", "typ": "JWT", **({"kid": kid} if kid else {})}
        error = rejects(verifier, kit.hmac(pem, header, claims()), T0)
        assert error.message == "token algorithm is not allowed"


def test_hs256_cannot_slip_through_even_when_listed_in_the_header_with_rs256_key(
    rsa_key: rsa.RSAPrivateKey,
    key_set_of: Callable[..., KeySet],
    kit: TokenKit,
    rejects: Rejects,
) -> None:
    verifier = JwtSvidVerifier(
        key_set_of(public_jwk(rsa_key, "r")), {TD}, AUD, algorithms=("RS256",)
    )
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    rejects(verifier, kit.hmac(pem, {"alg": "HS256", "kid": "r"}, claims()), T0)
    assert verifier.verify(kit.sign(rsa_key, "RS256", claims(), kid="r"), T0).id == SPIFFE_ID


@pytest.mark.parametrize("algorithms", [("none",), ("HS256",), ("ES256", "HS512"), ("PS256",), ()])
def test_unsafe_algorithms_cannot_be_configured(bundle: KeySet, algorithms: tuple[str]) -> None:
    with pytest.raises(ConfigurationError):
        JwtSvidVerifier(bundle, {TD}, AUD, algorithms=algorithms)


def test_key_type_must_match_the_algorithm(
    rsa_key: rsa.RSAPrivateKey,
    issuer_key: ec.EllipticCurvePrivateKey,
    key_set_of: Callable[..., KeySet],
    kit: TokenKit,
    rejects: Rejects,
) -> None:
    keys = key_set_of(public_jwk(rsa_key, "shared"))
    verifier = JwtSvidVerifier(keys, {TD}, AUD, algorithms=("ES256", "RS256"))
    # An ES256 token naming the RSA key's kid finds no key that suits ES256.
    token = kit.sign(issuer_key, "ES256", claims(), kid="shared")
    assert rejects(verifier, token, T0).message == "no trusted key matches this token"


def test_expired_and_leeway(
    verifier: JwtSvidVerifier, mint: Callable[..., str], clock: ManualClock, rejects: Rejects
) -> None:
    token = mint()  # exp = T0 + 300, leeway 60
    clock.advance(300 + 59)
    assert verifier.verify(token, clock.now()).id == SPIFFE_ID  # inside the leeway
    clock.advance(1)
    assert rejects(verifier, token, clock.now()).message == "token has expired"
    clock.advance(3600)
    rejects(verifier, token, clock.now())


def test_zero_leeway_means_exp_is_exact(
    bundle: KeySet, mint: Callable[..., str], rejects: Rejects
) -> None:
    strict = JwtSvidVerifier(bundle, {TD}, AUD, leeway_seconds=0)
    token = mint()
    assert strict.verify(token, T0 + timedelta(seconds=299)).id == SPIFFE_ID
    rejects(strict, token, T0 + timedelta(seconds=300))


@pytest.mark.parametrize("leeway", [-1, 301, 3600])
def test_leeway_is_bounded(bundle: KeySet, leeway: int) -> None:
    with pytest.raises(ConfigurationError):
        JwtSvidVerifier(bundle, {TD}, AUD, leeway_seconds=leeway)


def test_not_yet_valid(
    verifier: JwtSvidVerifier, mint: Callable[..., str], clock: ManualClock, rejects: Rejects
) -> None:
    start = int(T0.timestamp())
    token = mint(nbf=start + 120, exp=start + 600)
    assert rejects(verifier, token, clock.now()).message == "token is not yet valid"
    clock.advance(60)  # nbf - 60: inside the leeway
    assert verifier.verify(token, clock.now()).id == SPIFFE_ID


def test_issued_in_the_future(
    verifier: JwtSvidVerifier, mint: Callable[..., str], rejects: Rejects
) -> None:
    start = int(T0.timestamp())
    assert verifier.verify(mint(iat=start + 60), T0).id == SPIFFE_ID
    far = mint(iat=start + 24 * 3600, exp=start + 25 * 3600)
    assert rejects(verifier, far, T0).message == "token was issued in the future"


def test_iat_is_required(
    verifier: JwtSvidVerifier, mint: Callable[..., str], rejects: Rejects
) -> None:
    # Without iat a token's lifetime is unknown (see test_token_lifetime.py).
    assert "token has no issued-at time (iat)" in rejects(verifier, mint(iat=None), T0).message


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"aud": ["someone-else"]}, "token audience does not match"),
        ({"aud": []}, "token audience does not match"),
        ({"aud": None}, "token has no audience"),
        ({"aud": 7}, "token audience is malformed"),
        ({"aud": [AUD, 7]}, "token audience is malformed"),
        ({"exp": None}, "token has no expiry"),
        ({"exp": "9999999999"}, "token exp claim is malformed"),
        ({"exp": True}, "token exp claim is malformed"),
        ({"nbf": [1]}, "token nbf claim is malformed"),
        ({"iat": {}}, "token iat claim is malformed"),
        ({"sub": None}, "token subject is not a SPIFFE ID"),
        ({"sub": 42}, "token subject is not a SPIFFE ID"),
        ({"sub": f"spiffe://{TD}/"}, "token subject is not a SPIFFE ID"),
        ({"sub": f"spiffe://{TD}"}, "token subject is not a SPIFFE ID"),
        ({"sub": "https://x"}, "token subject is not a SPIFFE ID"),
        ({"sub": "spiffe://Prod.Example/a"}, "token subject is not a SPIFFE ID"),
        ({"sub": f"spiffe://{TD}/a/../b"}, "token subject is not a SPIFFE ID"),
        (
            {"sub": "spiffe://evil.example/ns/agents/sa/analyst"},
            "token trust domain is not trusted",
        ),
    ],
)
def test_bad_claims_are_rejected(
    verifier: JwtSvidVerifier,
    mint: Callable[..., str],
    rejects: Rejects,
    overrides: dict[str, Any],
    message: str,
) -> None:
    assert rejects(verifier, mint(**overrides), T0).message == message


def test_unknown_kid_is_rejected(
    bundle: KeySet,
    issuer_key: ec.EllipticCurvePrivateKey,
    other_ec: ec.EllipticCurvePrivateKey,
    key_set_of: Callable[..., KeySet],
    kit: TokenKit,
    rejects: Rejects,
) -> None:
    single = JwtSvidVerifier(bundle, {TD}, AUD)
    rejects(single, kit.sign(issuer_key, "ES256", claims(), kid="authority-9"), T0)
    two = JwtSvidVerifier(
        key_set_of(public_jwk(issuer_key, "authority-1"), public_jwk(other_ec, "authority-2")),
        {TD},
        AUD,
    )
    assert two.verify(kit.sign(issuer_key, "ES256", claims(), kid="authority-1"), T0)
    assert two.verify(kit.sign(other_ec, "ES256", claims(), kid="authority-2"), T0)
    rejects(two, kit.sign(issuer_key, "ES256", claims(), kid="authority-9"), T0)
    # No kid and more than one key: ambiguous, refused.
    rejects(two, kit.sign(issuer_key, "ES256", claims()), T0)
    # No kid and exactly one key: that key.
    assert single.verify(kit.sign(issuer_key, "ES256", claims()), T0).id == SPIFFE_ID


@pytest.mark.parametrize("kid", [5, ["authority-1"], "k" * 300])
def test_kid_must_be_a_short_string(
    verifier: JwtSvidVerifier, kit: TokenKit, rejects: Rejects, kid: object
) -> None:
    token = kit.raw({"alg": "ES256", "kid": kid}, claims(), b"\x01" * 64)
    assert rejects(verifier, token, T0).message == "token key id is malformed"


def test_eddsa_is_accepted_only_when_configured(
    ed_key: ed25519.Ed25519PrivateKey,
    key_set_of: Callable[..., KeySet],
    kit: TokenKit,
    rejects: Rejects,
) -> None:
    keys = key_set_of(public_jwk(ed_key, "ed-1"))
    token = kit.sign(ed_key, "EdDSA", claims(), kid="ed-1")
    assert JwtSvidVerifier(keys, {TD}, AUD, algorithms=("EdDSA",)).verify(token, T0)
    with pytest.raises(ConfigurationError):  # no configured key can do ES256
        JwtSvidVerifier(keys, {TD}, AUD)
    mixed = key_set_of(
        public_jwk(ed_key, "ed-1"), public_jwk(ec.generate_private_key(ec.SECP256R1()), "ec")
    )
    es_only = JwtSvidVerifier(mixed, {TD}, AUD, algorithms=("ES256",))
    assert rejects(es_only, token, T0).message == "token algorithm is not allowed"


def test_es384_when_configured(key_set_of: Callable[..., KeySet], kit: TokenKit) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    keys = key_set_of(public_jwk(p384, "p384"))
    verifier = JwtSvidVerifier(keys, {TD}, AUD, algorithms=("ES384",))
    assert verifier.verify(kit.sign(p384, "ES384", claims(), kid="p384"), T0).id == SPIFFE_ID


@pytest.mark.parametrize("typ", ["JWT", "jwt", "JOSE", "application/jwt", None])
def test_jwt_svid_typ_values_are_accepted(
    verifier: JwtSvidVerifier, issuer_key: Any, kit: TokenKit, typ: str | None
) -> None:
    token = kit.sign(issuer_key, "ES256", claims(), kid="authority-1", typ=typ)
    assert verifier.verify(token, T0).id == SPIFFE_ID


@pytest.mark.parametrize("typ", ["tether-grant+jwt", "at+jwt", "secevent+jwt"])
def test_other_token_types_are_rejected(
    verifier: JwtSvidVerifier, issuer_key: Any, kit: TokenKit, rejects: Rejects, typ: str
) -> None:
    token = kit.sign(issuer_key, "ES256", claims(), kid="authority-1", typ=typ)
    assert rejects(verifier, token, T0).message == "token type is not accepted"


def test_crit_header_is_rejected(
    verifier: JwtSvidVerifier, issuer_key: Any, kit: TokenKit, rejects: Rejects
) -> None:
    token = kit.sign(
        issuer_key, "ES256", claims(), kid="authority-1", extra_headers={"crit": ["exp"]}
    )
    rejects(verifier, token, T0)


def test_duplicate_claim_names_are_rejected(
    verifier: JwtSvidVerifier, issuer_key: Any, rejects: Rejects
) -> None:
    import jwt as pyjwt

    body = (
        b'{"sub":"spiffe://evil.example/x","aud":"tether","exp":9999999999,'
        b'"sub":"' + SPIFFE_ID.encode() + b'"}'
    )
    token = pyjwt.api_jws.encode(
        body, issuer_key, algorithm="ES256", headers={"kid": "authority-1"}
    )
    rejects(verifier, token, T0)


@pytest.mark.parametrize(
    "token",
    [
        "",
        " ",
        "abc",
        "a.b",
        "a.b.c",
        "a.b.c.d",
        "...",
        "..",
        "e30.e30.",
        "e30.e30.e30",
        "W10.W10.AA",
        "bnVsbA.bnVsbA.AA",
        "eyJhbGciOiJFUzI1NiJ9.!!!!.AA",
        "Bearer abc.def.ghi",
        "é.é.é",
        "\x00.\x00.\x00",
        "\ud800.e30.e30",
        "x" * 9000,
        "eyJhbGciOiJFUzI1NiJ9." + "A" * 9000 + ".AA",
    ],
)
def test_malformed_tokens_are_rejected(
    verifier: JwtSvidVerifier, rejects: Rejects, token: str
) -> None:
    rejects(verifier, token, T0)


def test_trailing_newline_is_rejected(
    verifier: JwtSvidVerifier, mint: Callable[..., str], rejects: Rejects
) -> None:
    rejects(verifier, mint() + "\n", T0)


def test_per_trust_domain_bundles_do_not_vouch_for_each_other(
    key_set_of: Callable[..., KeySet], kit: TokenKit, rejects: Rejects
) -> None:
    key_a = ec.generate_private_key(ec.SECP256R1())
    key_b = ec.generate_private_key(ec.SECP256R1())
    verifier = JwtSvidVerifier(
        {
            "a.example": key_set_of(public_jwk(key_a, "a")),
            "b.example": key_set_of(public_jwk(key_b, "b")),
        },
        {"a.example", "b.example"},
        AUD,
    )
    good = kit.sign(key_a, "ES256", claims(sub="spiffe://a.example/agent/x"), kid="a")
    assert verifier.verify(good, T0).trust_domain == "a.example"
    # a.example's key signs for b.example: refused, whichever kid it names.
    for kid in ("a", "b", None):
        cross = kit.sign(key_a, "ES256", claims(sub="spiffe://b.example/agent/x"), kid=kid)
        rejects(verifier, cross, T0)
    with pytest.raises(ConfigurationError):
        JwtSvidVerifier({"a.example": key_set_of(public_jwk(key_a, "a"))}, {"b.example"}, AUD)


@pytest.mark.parametrize("domain", ["", "UPPER.example", "a/b", "spiffe://x"])
def test_invalid_trust_domains_cannot_be_configured(bundle: KeySet, domain: str) -> None:
    with pytest.raises(ConfigurationError):
        JwtSvidVerifier(bundle, {domain}, AUD)


def test_empty_configuration_is_refused(bundle: KeySet) -> None:
    with pytest.raises(ConfigurationError):
        JwtSvidVerifier(bundle, set(), AUD)
    with pytest.raises(ConfigurationError):
        JwtSvidVerifier(bundle, {TD}, "")


def test_verification_uses_the_given_time_not_the_wall_clock(
    verifier: JwtSvidVerifier, mint: Callable[..., str], rejects: Rejects
) -> None:
    token = mint()  # valid around T0 (2026-03-01), whatever today's date is
    assert verifier.verify(token, T0).id == SPIFFE_ID
    rejects(verifier, token, T0 + timedelta(days=1))
    rejects(verifier, token, T0 - timedelta(days=1))  # iat in the future


def test_signing_key_tokens_verify_via_its_key_set(kit: TokenKit, rejects: Rejects) -> None:
    key = SigningKey.generate()
    verifier = JwtSvidVerifier(key.key_set(), {TD}, AUD)
    assert verifier.verify(key.sign(claims(), typ="JWT"), T0).id == SPIFFE_ID
    rejects(verifier, key.sign(claims(), typ="tether-grant+jwt"), T0)


def test_naive_now_is_a_programming_error(
    verifier: JwtSvidVerifier, mint: Callable[..., str]
) -> None:
    with pytest.raises(ValueError):
        verifier.verify(mint(), datetime(2026, 3, 1, 12, 0))
