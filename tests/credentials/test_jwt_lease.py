"""Scoped JWT leases: minted by tether, verified as an HTTP API would verify them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from tether.core.errors import (
    ConfigurationError,
    Conflict,
    ErrorCode,
    InvalidRequest,
    Unauthenticated,
)
from tether.core.ids import GrantId, TaskId
from tether.core.lease import IssuerKind, new_lease_id, open_lease, revoke
from tether.core.scope import Scope
from tether.credentials.jwt_lease import (
    LEASE_TOKEN_TYPE,
    MAX_ACTOR_DEPTH,
    ScopedJwtIssuer,
    jwks_document,
    scope_operations,
    verify_scoped_jwt,
)
from tether.identity.keys import KeySet, SigningKey
from tether.service.clock import ManualClock

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
API = "https://crm.example.com/api"
AGENT = "spiffe://example.org/agent/analyst"
PARENT = "spiffe://example.org/agent/planner"
ROOT = "spiffe://example.org/agent/orchestrator"
ISSUER = "https://tether.example.com"


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def issuer(key: SigningKey) -> ScopedJwtIssuer:
    return ScopedJwtIssuer(key, ISSUER)


def b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    return header, claims


def mint(issuer: ScopedJwtIssuer, now: datetime, **kw: Any) -> str:
    args: dict[str, Any] = {
        "jti": "lse_0123456789abcdefghjkmnpqrs",
        "audience": API,
        "operations": ["crm.query:read"],
        "subject": AGENT,
        "now": now,
        "grant_expires_at": now + timedelta(minutes=15),
    }
    args.update(kw)
    return issuer.issue(**args).token


# -- round trip ---------------------------------------------------------------------------------


def test_round_trip_carries_every_claim(issuer: ScopedJwtIssuer, key: SigningKey) -> None:
    minted = issuer.issue(
        jti="lse_0123456789abcdefghjkmnpqrs",
        audience=API,
        operations=["crm.query:read", "crm.export:read"],
        subject=AGENT,
        actors=[PARENT, ROOT],
        now=T0,
        grant_expires_at=T0 + timedelta(minutes=15),
    )
    claims = verify_scoped_jwt(minted.token, jwks_document([key]), API, T0, issuer=ISSUER)
    assert claims.subject == AGENT
    assert claims.audience == API
    assert claims.operations == frozenset({"crm.query:read", "crm.export:read"})
    assert claims.allows("crm.query:read") and not claims.allows("crm.query:write")
    assert claims.actors == (PARENT, ROOT)
    assert claims.jti == minted.jti
    assert claims.issued_at == T0 and claims.expires_at == T0 + timedelta(seconds=300)

    header, raw = parts(minted.token)
    assert header == {"alg": "ES256", "typ": LEASE_TOKEN_TYPE, "kid": key.kid}
    assert raw["aud"] == API
    assert raw["scope"] == "crm.query:read crm.export:read"
    assert raw["sub"] == AGENT
    assert raw["iss"] == ISSUER
    assert raw["jti"] == "lse_0123456789abcdefghjkmnpqrs"
    assert raw["iat"] == raw["nbf"] == int(T0.timestamp())
    assert raw["exp"] == int(T0.timestamp()) + 300
    # RFC 8693 §4.1: the outermost act is the current actor, nested ones came before.
    assert raw["act"] == {"sub": PARENT, "act": {"sub": ROOT}}


def test_no_act_claim_without_a_delegation_chain(issuer: ScopedJwtIssuer, key: SigningKey) -> None:
    token = mint(issuer, T0)
    assert "act" not in parts(token)[1]
    assert verify_scoped_jwt(token, key.key_set(), API, T0).actors == ()


def test_the_token_never_shows_in_a_repr(issuer: ScopedJwtIssuer) -> None:
    minted = issuer.issue(
        jti="j1",
        audience=API,
        operations=["crm.query:read"],
        subject=AGENT,
        now=T0,
        grant_expires_at=T0 + timedelta(minutes=5),
    )
    for shown in (repr(minted), str(minted), f"{minted}"):
        assert minted.token not in shown
        assert minted.token.split(".")[2] not in shown


# -- lifetime -----------------------------------------------------------------------------------


def test_ttl_is_capped_at_300_seconds(issuer: ScopedJwtIssuer) -> None:
    _, raw = parts(mint(issuer, T0, ttl=timedelta(hours=8)))
    assert raw["exp"] - raw["iat"] == 300
    _, raw = parts(mint(issuer, T0, ttl=timedelta(seconds=30)))
    assert raw["exp"] - raw["iat"] == 30


def test_ttl_never_passes_the_grant_s_expiry(issuer: ScopedJwtIssuer) -> None:
    grant_end = T0 + timedelta(seconds=42, milliseconds=900)
    _, raw = parts(mint(issuer, T0, grant_expires_at=grant_end))
    assert raw["exp"] == int(T0.timestamp()) + 42  # rounded down, never past the grant
    assert raw["exp"] <= grant_end.timestamp()


def test_fractional_now_keeps_the_cap(issuer: ScopedJwtIssuer) -> None:
    now = T0 + timedelta(milliseconds=999)
    _, raw = parts(mint(issuer, now))
    assert raw["exp"] - raw["iat"] == 300


def test_an_expired_grant_gets_no_token(issuer: ScopedJwtIssuer) -> None:
    for end in (T0, T0 - timedelta(seconds=1), T0 + timedelta(milliseconds=500)):
        with pytest.raises(Conflict):
            mint(issuer, T0, grant_expires_at=end)


def test_issue_for_lease_binds_jti_subject_scope_and_lease_expiry(
    issuer: ScopedJwtIssuer, key: SigningKey
) -> None:
    lease = open_lease(
        lease_id=new_lease_id(bytes(range(16))),
        task_id=TaskId("tsk_0123456789abcdefghjkmnpqrs"),
        grant_id=GrantId("grt_0123456789abcdefghjkmnpqrs"),
        agent=AGENT,
        issuer=IssuerKind.SCOPED_JWT,
        scope=Scope.of("crm.query", ["read", "write"]),
        now=T0,
        ttl=timedelta(seconds=90),
        max_ttl=timedelta(minutes=10),
        grant_expires_at=T0 + timedelta(minutes=15),
    )
    minted = issuer.issue_for_lease(
        lease, audience=API, now=T0, grant_expires_at=T0 + timedelta(minutes=15)
    )
    claims = verify_scoped_jwt(minted.token, key.key_set(), API, T0)
    assert claims.jti == lease.lease_id
    assert claims.subject == AGENT
    assert claims.operations == frozenset({"crm.query:read", "crm.query:write"})
    assert claims.expires_at == lease.expires_at == T0 + timedelta(seconds=90)
    with pytest.raises(Conflict):
        issuer.issue_for_lease(
            revoke(lease, T0), audience=API, now=T0, grant_expires_at=T0 + timedelta(minutes=15)
        )


def test_scope_operations_name_tool_and_action() -> None:
    assert scope_operations(Scope.of("crm.query", ["write", "read"])) == (
        "crm.query:read",
        "crm.query:write",
    )


# -- the reference verifier refuses ------------------------------------------------------------


def rejects(token: str, keys: Any, audience: str = API, now: datetime = T0, **kw: Any) -> str:
    with pytest.raises(Unauthenticated) as caught:
        verify_scoped_jwt(token, keys, audience, now, **kw)
    assert caught.value.code is ErrorCode.INVALID_TOKEN
    assert token not in caught.value.message
    return caught.value.message


def test_wrong_audience_is_rejected(issuer: ScopedJwtIssuer, key: SigningKey) -> None:
    token = mint(issuer, T0)
    assert "audience" in rejects(token, key.jwks(), audience="https://payments.example.com")


def test_an_expired_token_is_rejected(
    issuer: ScopedJwtIssuer, key: SigningKey, clock: ManualClock
) -> None:
    token = mint(issuer, clock.now())
    verify_scoped_jwt(token, key.jwks(), API, clock.advance(299))
    assert "expired" in rejects(token, key.jwks(), now=clock.advance(1))


def test_a_token_not_yet_valid_is_rejected(issuer: ScopedJwtIssuer, key: SigningKey) -> None:
    token = mint(issuer, T0 + timedelta(minutes=1))
    rejects(token, key.jwks(), now=T0)


def test_alg_none_is_rejected(issuer: ScopedJwtIssuer, key: SigningKey) -> None:
    _, raw = parts(mint(issuer, T0))
    for header in (
        {"alg": "none", "typ": LEASE_TOKEN_TYPE},
        {"alg": "None", "typ": LEASE_TOKEN_TYPE, "kid": key.kid},
    ):
        unsigned = f"{b64(header)}.{b64(raw)}."
        rejects(unsigned, key.jwks())
        rejects(f"{b64(header)}.{b64(raw)}.AAAA", key.jwks())


def test_hs256_with_the_public_key_as_secret_is_rejected(
    issuer: ScopedJwtIssuer, key: SigningKey
) -> None:
    _, raw = parts(mint(issuer, T0))
    # The classic confusion attack: HMAC keyed with the published public key (built by hand,
    # since PyJWT itself refuses to do it).
    secret = json.dumps(key.public_jwk()).encode()
    signing_input = f"{b64({'alg': 'HS256', 'typ': LEASE_TOKEN_TYPE, 'kid': key.kid})}.{b64(raw)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    assert "algorithm" in rejects(forged, key.jwks())


@pytest.mark.parametrize("typ", ["JWT", "tether-grant+jwt", "at+jwt", ""])
def test_a_token_of_another_type_is_rejected(
    key: SigningKey, issuer: ScopedJwtIssuer, typ: str
) -> None:
    _, raw = parts(mint(issuer, T0))
    token = key.sign(raw, typ=typ)  # PyJWT leaves an empty typ out of the header
    assert jwt.get_unverified_header(token).get("typ") == (typ or None)
    assert "type" in rejects(token, key.jwks())


def test_a_token_from_another_key_is_rejected(issuer: ScopedJwtIssuer) -> None:
    token = mint(issuer, T0)
    rejects(token, SigningKey.generate().jwks())


def test_a_tampered_token_is_rejected(issuer: ScopedJwtIssuer, key: SigningKey) -> None:
    token = mint(issuer, T0)
    header, _, signature = token.split(".")
    _, raw = parts(token)
    widened = b64({**raw, "scope": "crm.query:read crm.query:delete"})
    rejects(f"{header}.{widened}.{signature}", key.jwks())


def test_issuer_mismatch_and_audience_lists_are_rejected(
    issuer: ScopedJwtIssuer, key: SigningKey
) -> None:
    rejects(mint(issuer, T0), key.jwks(), issuer="https://other.example.com")
    _, raw = parts(mint(issuer, T0))
    listed = key.sign({**raw, "aud": [API, "https://other.example.com"]}, typ=LEASE_TOKEN_TYPE)
    rejects(listed, key.jwks())


def test_a_lifetime_over_300_seconds_is_rejected(issuer: ScopedJwtIssuer, key: SigningKey) -> None:
    _, raw = parts(mint(issuer, T0))
    long_lived = key.sign({**raw, "exp": raw["iat"] + 3600}, typ=LEASE_TOKEN_TYPE)
    assert "lifetime" in rejects(long_lived, key.jwks())


def test_malformed_act_and_missing_claims_are_rejected(
    issuer: ScopedJwtIssuer, key: SigningKey
) -> None:
    _, raw = parts(mint(issuer, T0))
    for changed in (
        {**raw, "act": "spiffe://example.org/agent/x"},
        {**raw, "act": {"sub": "not a spiffe id"}},
        {**raw, "act": _deep_act(MAX_ACTOR_DEPTH + 1)},
        {k: v for k, v in raw.items() if k != "scope"},
        {k: v for k, v in raw.items() if k != "jti"},
        {k: v for k, v in raw.items() if k != "iat"},
        {k: v for k, v in raw.items() if k != "exp"},
        {**raw, "sub": "analyst"},
    ):
        rejects(key.sign(changed, typ=LEASE_TOKEN_TYPE), key.jwks())


def _deep_act(depth: int) -> dict[str, Any]:
    act: dict[str, Any] = {"sub": ROOT}
    for _ in range(depth - 1):
        act = {"sub": PARENT, "act": act}
    return act


# -- bad input when minting ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"subject": "analyst"},
        {"subject": "spiffe://Example.org/agent"},
        {"actors": ["not-spiffe"]},
        {"actors": [PARENT] * (MAX_ACTOR_DEPTH + 1)},
        {"audience": ""},
        {"audience": "two words"},
        {"operations": []},
        {"operations": ["crm.query:read crm.query:delete"]},
        {"operations": ['crm"query']},
        {"jti": ""},
        {"ttl": timedelta(0)},
        {"now": datetime(2026, 11, 28, 12, 0)},
    ],
)
def test_malformed_requests_are_refused(issuer: ScopedJwtIssuer, change: dict[str, Any]) -> None:
    args: dict[str, Any] = {"now": T0, **change}
    with pytest.raises(InvalidRequest):
        mint(issuer, **args)


def test_an_issuer_name_must_be_printable(key: SigningKey) -> None:
    with pytest.raises(ConfigurationError):
        ScopedJwtIssuer(key, "")
    with pytest.raises(ConfigurationError):
        ScopedJwtIssuer(key, "tether example")
    assert key.kid in repr(ScopedJwtIssuer(key, ISSUER))


# -- JWKS ---------------------------------------------------------------------------------------


def test_jwks_document_shape(key: SigningKey) -> None:
    retired = SigningKey.generate()
    document = jwks_document([key, retired, key])
    assert list(document) == ["keys"]
    assert [k["kid"] for k in document["keys"]] == [key.kid, retired.kid]
    for jwk in document["keys"]:
        assert set(jwk) == {"kty", "crv", "x", "y", "kid", "alg", "use"}
        assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == ("EC", "P-256", "ES256", "sig")
    json.dumps(document)  # serves as-is
    assert len(KeySet.from_jwks(document)) == 2
    with pytest.raises(ConfigurationError):
        jwks_document([])


def test_a_token_verifies_against_a_rotated_jwks(key: SigningKey) -> None:
    retired = SigningKey.generate()
    old_token = mint(ScopedJwtIssuer(retired, ISSUER), T0)
    new_token = mint(ScopedJwtIssuer(key, ISSUER), T0)
    document = jwks_document([key, retired])
    assert verify_scoped_jwt(old_token, document, API, T0).subject == AGENT
    assert verify_scoped_jwt(new_token, document, API, T0).subject == AGENT
