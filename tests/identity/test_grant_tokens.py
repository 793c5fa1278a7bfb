"""GrantTokenSigner: grant tokens round-trip, stay apart from SVIDs, and flag expiry honestly."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import jwt
import pytest

from tether.core.errors import ErrorCode, Unauthenticated
from tether.core.ids import GrantId, IdFactory, TaskId
from tether.core.task import Grant, GrantState
from tether.identity import (
    GRANT_AUDIENCE,
    GRANT_TOKEN_TYPE,
    DevIssuer,
    GrantTokenSigner,
    InvalidGrantToken,
    SigningKey,
)
from tether.service.clock import ManualClock
from tether.service.ports import GrantClaims

from .conftest import T0, Rejects, TokenKit

AGENT = "spiffe://tether.local/agent/analyst"
IDS = IdFactory(lambda n: bytes(range(n)))


def make_grant(ttl_seconds: int = 300, **overrides: Any) -> Grant:
    fields: dict[str, Any] = {
        "grant_id": IDS.grant(),
        "task_id": IDS.task(),
        "agent": AGENT,
        "scopes": (),
        "issued_at": T0,
        "expires_at": T0 + timedelta(seconds=ttl_seconds),
        "state": GrantState.ACTIVE,
        "policy_revision": "rev-1",
    }
    fields.update(overrides)
    return Grant(**fields)


@pytest.fixture
def signer(signing_key: SigningKey) -> GrantTokenSigner:
    return GrantTokenSigner(signing_key)


def test_grant_token_round_trip(signer: GrantTokenSigner, signing_key: SigningKey) -> None:
    grant = make_grant()
    token = signer.sign(grant)
    claims = signer.verify(token, T0)
    assert claims == GrantClaims(
        grant_id=grant.grant_id,
        task_id=grant.task_id,
        agent=AGENT,
        expires_at=grant.expires_at,
    )
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "ES256", "kid": signing_key.kid, "typ": GRANT_TOKEN_TYPE}
    body = jwt.decode(token, options={"verify_signature": False})
    assert body == {
        "iss": "tether",
        "aud": GRANT_AUDIENCE,
        "sub": AGENT,
        "jti": grant.grant_id,
        "tid": grant.task_id,
        "iat": int(T0.timestamp()),
        "nbf": int(T0.timestamp()),
        "exp": int(grant.expires_at.timestamp()),
    }


def test_exp_is_rounded_down_so_a_token_never_outlives_its_grant(
    signer: GrantTokenSigner,
) -> None:
    grant = make_grant(expires_at=T0 + timedelta(seconds=300, microseconds=900_000))
    claims = signer.verify(signer.sign(grant), T0)
    assert claims.expires_at <= grant.expires_at
    assert claims.expires_at == T0 + timedelta(seconds=300)


def test_expired_grant_is_flagged_as_expired(signer: GrantTokenSigner, clock: ManualClock) -> None:
    token = signer.sign(make_grant(ttl_seconds=300))
    clock.advance(299)
    assert signer.verify(token, clock.now()).agent == AGENT
    clock.advance(1)  # exactly at exp: no leeway on expiry
    with pytest.raises(Unauthenticated) as caught:
        signer.verify(token, clock.now())
    error = caught.value
    assert isinstance(error, InvalidGrantToken)
    assert error.expired is True
    assert error.code is ErrorCode.INVALID_TOKEN
    assert error.message == "grant has expired"
    assert getattr(error, "expired", False)  # how the service reads it, without importing us


def test_forged_or_foreign_expired_token_is_not_flagged_expired(
    signing_key: SigningKey, clock: ManualClock
) -> None:
    grant = make_grant(ttl_seconds=60)
    forged = GrantTokenSigner(SigningKey.generate()).sign(grant)
    other_issuer = GrantTokenSigner(signing_key, issuer="other-tether").sign(grant)
    clock.advance(3600)
    signer = GrantTokenSigner(signing_key)
    for token in (forged, other_issuer):
        with pytest.raises(InvalidGrantToken) as caught:
            signer.verify(token, clock.now())
        assert caught.value.expired is False
        assert caught.value.code is ErrorCode.INVALID_TOKEN


def test_grant_token_is_not_an_svid_and_an_svid_is_not_a_grant(
    signing_key: SigningKey, rejects: Rejects
) -> None:
    # Same key for both on purpose: explicit typing alone keeps them apart.
    issuer = DevIssuer(signing_key, environ={})
    svid_verifier = issuer.dev_verifier()
    signer = GrantTokenSigner(signing_key)
    grant_token = signer.sign(make_grant())
    svid = issuer.mint_svid("analyst", audience="tether", now=T0)

    assert svid_verifier.verify(svid, T0).id == AGENT
    assert signer.verify(grant_token, T0).agent == AGENT
    assert rejects(svid_verifier, grant_token, T0).message == "token type is not accepted"
    error = rejects(signer, svid, T0)
    assert isinstance(error, InvalidGrantToken) and not error.expired


def test_svid_retyped_as_grant_still_fails_on_claims(
    signing_key: SigningKey, rejects: Rejects
) -> None:
    signer = GrantTokenSigner(signing_key)
    exp = int(T0.timestamp()) + 300
    svid_claims = {"sub": AGENT, "aud": ["tether"], "exp": exp, "iat": exp - 300}
    rejects(signer, signing_key.sign(svid_claims, typ=GRANT_TOKEN_TYPE), T0)


def good_claims(**overrides: Any) -> dict[str, Any]:
    now = int(T0.timestamp())
    base: dict[str, Any] = {
        "iss": "tether",
        "aud": GRANT_AUDIENCE,
        "sub": AGENT,
        "jti": IDS.grant(),
        "tid": IDS.task(),
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


@pytest.mark.parametrize(
    "overrides",
    [
        {"iss": "someone"},
        {"iss": None},
        {"aud": "tether"},
        {"aud": None},
        {"jti": None},
        {"jti": "grt_short"},
        {"jti": IDS.task()},  # a task id is not a grant id
        {"jti": 5},
        {"tid": None},
        {"tid": IDS.grant()},
        {"sub": None},
        {"sub": ""},
        {"sub": 3},
        {"exp": None},
        {"nbf": None},
        {"iat": None},
        {"exp": "soon"},
        {"nbf": int(T0.timestamp()) + 60},
        {"exp": 10**30},
    ],
)
def test_malformed_grant_claims_are_rejected(
    signer: GrantTokenSigner, signing_key: SigningKey, overrides: dict[str, Any], rejects: Rejects
) -> None:
    token = signing_key.sign(good_claims(**overrides), typ=GRANT_TOKEN_TYPE)
    error = rejects(signer, token, T0)
    assert isinstance(error, InvalidGrantToken) and not error.expired


def test_well_formed_hand_made_grant_is_accepted(
    signer: GrantTokenSigner, signing_key: SigningKey
) -> None:
    claims = good_claims()
    got = signer.verify(signing_key.sign(claims, typ=GRANT_TOKEN_TYPE), T0)
    assert got.grant_id == GrantId(claims["jti"]) and got.task_id == TaskId(claims["tid"])


@pytest.mark.parametrize("typ", [None, "JWT", "tether-grant", "TETHER-GRANT+JWT+X"])
def test_grant_type_header_is_required(
    signer: GrantTokenSigner,
    signing_key: SigningKey,
    kit: TokenKit,
    rejects: Rejects,
    typ: str | None,
) -> None:
    private = signing_key._private  # the test plays an insider holding the key
    token = kit.sign(private, "ES256", good_claims(), kid=signing_key.kid, typ=typ)
    rejects(signer, token, T0)


def test_grant_algorithm_is_pinned_to_es256(
    signer: GrantTokenSigner, signing_key: SigningKey, kit: TokenKit, rejects: Rejects
) -> None:
    public_pem = json.dumps(signing_key.public_jwk()).encode()
    header = {"alg": "HS256", "typ": GRANT_TOKEN_TYPE, "kid": signing_key.kid}
    rejects(signer, kit.hmac(public_pem, header, good_claims()), T0)
    rejects(signer, kit.raw({"alg": "none", "typ": GRANT_TOKEN_TYPE}, good_claims()), T0)


@pytest.mark.parametrize("token", ["", "x", "a.b.c", "x" * 10_000])
def test_garbage_grant_tokens_are_rejected(
    signer: GrantTokenSigner, rejects: Rejects, token: str
) -> None:
    error = rejects(signer, token, T0)
    assert isinstance(error, InvalidGrantToken) and not error.expired
