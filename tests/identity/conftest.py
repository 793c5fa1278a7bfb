"""Fixtures for the identity adapter tests: real keys, a hand-moved clock, a token kit."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tether.core.errors import ErrorCode, Unauthenticated
from tether.identity import KeySet, SigningKey
from tether.service.clock import ManualClock

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def public_jwk(private: Any, kid: str | None, alg: str | None = None) -> dict[str, Any]:
    """The public JWK of a cryptography private key, as an issuer would publish it."""
    public = private.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, rsa.RSAPublicKey):
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = jwt.algorithms.OKPAlgorithm.to_jwk(public, as_dict=True)
    if kid is not None:
        jwk["kid"] = kid
    if alg is not None:
        jwk["alg"] = alg
    return dict(jwk)


class TokenKit:
    """Builds tokens the way an attacker or a foreign issuer would: by hand, or with PyJWT."""

    def sign(
        self,
        private: Any,
        alg: str,
        claims: dict[str, Any],
        *,
        kid: str | None = None,
        typ: str | None = "JWT",
        extra_headers: dict[str, Any] | None = None,
    ) -> str:
        headers: dict[str, Any] = dict(extra_headers or {})
        if kid is not None:
            headers["kid"] = kid
        headers["typ"] = typ
        # PyJWS, not PyJWT: an attacker is not held to PyJWT's rules about claim types.
        payload = json.dumps(claims).encode()
        return jwt.api_jws.encode(payload, private, algorithm=alg, headers=headers)

    def raw(self, header: dict[str, Any], claims: Any, signature: bytes = b"") -> str:
        head = b64url(json.dumps(header).encode())
        body = b64url(claims if isinstance(claims, bytes) else json.dumps(claims).encode())
        return f"{head}.{body}.{b64url(signature)}"

    def hmac(self, secret: bytes, header: dict[str, Any], claims: dict[str, Any]) -> str:
        head = b64url(json.dumps(header).encode())
        body = b64url(json.dumps(claims).encode())
        mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
        return f"{head}.{body}.{b64url(mac)}"


@pytest.fixture
def kit() -> TokenKit:
    return TokenKit()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def signing_key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def other_ec() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def key_set_of() -> Callable[..., KeySet]:
    def build(*jwks: dict[str, Any]) -> KeySet:
        return KeySet.from_jwks({"keys": list(jwks)})

    return build


Rejects = Callable[[Any, str, datetime], Unauthenticated]


@pytest.fixture
def rejects() -> Rejects:
    """Assert ``verifier.verify(token, now)`` fails with INVALID_TOKEN and does not echo it."""

    def check(verifier: Any, token: str, now: datetime) -> Unauthenticated:
        with pytest.raises(Unauthenticated) as caught:
            verifier.verify(token, now)
        error = caught.value
        assert error.code is ErrorCode.INVALID_TOKEN
        if len(token) > 8:
            assert token not in str(error)
            assert token not in repr(error)
            for segment in token.split("."):
                if len(segment) > 8:
                    assert segment not in error.message
        return error

    return check
