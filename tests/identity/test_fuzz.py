"""Property tests: whatever string arrives, a verifier answers a Workload or ``Unauthenticated``."""

from __future__ import annotations

import base64
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether import identity
from tether.core.errors import ErrorCode, Unauthenticated
from tether.identity import (
    GRANT_TOKEN_TYPE,
    CompositeVerifier,
    DevIssuer,
    GrantTokenSigner,
    KeySet,
    OidcVerifier,
    SigningKey,
)

from .conftest import T0, TokenKit, public_jwk

ISSUER = "https://oidc.fuzz.example"
KEY = SigningKey.generate()
RSA = rsa.generate_private_key(65537, 2048)
EC = ec.generate_private_key(ec.SECP256R1())
DEV = DevIssuer(KEY, environ={})
SVID = DEV.dev_verifier()
OIDC = OidcVerifier(
    ISSUER,
    "tether",
    KeySet.from_jwks({"keys": [public_jwk(RSA, "r1"), public_jwk(EC, "e1")]}),
)
VERIFIERS: dict[str, Any] = {
    "svid": SVID,
    "oidc": OIDC,
    "composite": CompositeVerifier(SVID, [OIDC]),
    "grant": GrantTokenSigner(KEY),
}
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _fixed_messages() -> frozenset[str]:
    """Every constant message the verifiers reject with, read from their source."""
    found: set[str] = set()
    for path in Path(identity.__file__).parent.glob("*.py"):
        found.update(re.findall(r'(?:reject|Unauthenticated)\(\s*"([^"{}]*)"', path.read_text()))
    return frozenset(found)


FIXED_MESSAGES = _fixed_messages()


def only_unauthenticated(token: str) -> None:
    for name, verifier in VERIFIERS.items():
        for when in (T0, T0 + timedelta(days=3650)):
            try:
                verifier.verify(token, when)
            except Unauthenticated as error:
                assert error.code is ErrorCode.INVALID_TOKEN, name
                # A fixed message may contain a fuzzed token by chance ("token is malforme");
                # any other message must not echo it.
                if len(token) > 16 and str(error) not in FIXED_MESSAGES:
                    assert token not in str(error), name


def test_the_fixed_messages_are_found() -> None:
    assert {"token is malformed", "token is too large"} <= FIXED_MESSAGES


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
claim_names = st.sampled_from(
    ["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "tid", "kid", "alg", "typ", "crit", "x"]
)
claim_sets = st.dictionaries(claim_names, json_values, max_size=9)
near_times = st.integers(min_value=int(T0.timestamp()) - 400, max_value=int(T0.timestamp()) + 400)
plausible_claims = st.fixed_dictionaries(
    {},
    optional={
        "iss": st.sampled_from([ISSUER, "tether", "https://x", ""]) | json_values,
        "sub": st.sampled_from(
            ["spiffe://tether.local/agent/a", "spiffe://tether.local/", "system:sa:x", ""]
        )
        | json_values,
        "aud": st.sampled_from(["tether", ["tether"], "tether-grant", []]) | json_values,
        "exp": near_times | json_values,
        "nbf": near_times | json_values,
        "iat": near_times | json_values,
        "jti": st.sampled_from(["grt_0123456789abcdefghjkmnpqrs", "grt_x"]) | json_values,
        "tid": st.sampled_from(["tsk_0123456789abcdefghjkmnpqrs", "tsk_x"]) | json_values,
    },
)


@FUZZ
@given(st.text(max_size=300))
def test_arbitrary_text(token: str) -> None:
    only_unauthenticated(token)


@FUZZ
@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.="))
def test_arbitrary_base64url_like_text(token: str) -> None:
    only_unauthenticated(token)


@FUZZ
@given(claim_sets, claim_sets, st.binary(max_size=80))
def test_structured_unsigned_tokens(
    header: dict[str, Any], claims: dict[str, Any], sig: bytes
) -> None:
    token = ".".join([b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(sig)])
    only_unauthenticated(token)


@FUZZ
@given(st.binary(max_size=200), st.binary(max_size=200), st.binary(max_size=80))
def test_arbitrary_segments(header: bytes, payload: bytes, sig: bytes) -> None:
    only_unauthenticated(f"{b64(header)}.{b64(payload)}.{b64(sig)}")


@FUZZ
@given(plausible_claims, st.sampled_from(["JWT", GRANT_TOKEN_TYPE, None, "at+jwt"]))
def test_validly_signed_tokens_with_arbitrary_claims(
    claims: dict[str, Any], typ: str | None
) -> None:
    # Signed by keys every verifier trusts: the claim checks alone must hold the line.
    kit = TokenKit()
    tokens = [
        kit.sign(KEY._private, "ES256", claims, kid=KEY.kid, typ=typ),
        kit.sign(RSA, "RS256", claims, kid="r1", typ=typ),
        kit.sign(EC, "ES256", claims, kid="e1", typ=typ),
    ]
    for token in tokens:
        only_unauthenticated(token)


@pytest.mark.parametrize("depth", [100, 2000])
def test_deeply_nested_json_is_rejected_not_crashed(depth: int) -> None:
    nested = b"[" * depth + b"]" * depth
    only_unauthenticated(f"{b64(nested)}.{b64(nested)}.AA")
    only_unauthenticated(TokenKit().raw({"alg": "ES256"}, nested, b"\x00" * 64))
    # Validly signed, so the nesting reaches tether's own payload parser.
    signed = jwt.api_jws.encode(
        b'{"a":' + nested + b"}", KEY._private, algorithm="ES256", headers={"kid": KEY.kid}
    )
    only_unauthenticated(signed)
