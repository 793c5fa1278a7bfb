"""Bad input over real HTTP: each gets a clear 4xx with a stable code, never a 500 or an allow."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from support import Agent
from tether.runtime import Runtime
from tether.service.clock import ManualClock

SCOPE = {"tool": "crm.query", "actions": ["read"], "datasets": ["crm"]}


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


def _claims(clock: ManualClock, **over: object) -> dict[str, object]:
    now = clock.now()
    claims: dict[str, object] = {
        "sub": "spiffe://tether.local/agent/analyst",
        "aud": ["tether"],
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=5)).timestamp()),
    }
    claims.update(over)
    return claims


def _dev_key(runtime: Runtime) -> ec.EllipticCurvePrivateKey:
    pem = (runtime.config.data_dir / "keys" / "dev-issuer.pem").read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _kid(analyst: Agent) -> str:
    return str(jwt.get_unverified_header(analyst.svid)["kid"])


@pytest.fixture
def forged_tokens(runtime: Runtime, clock: ManualClock, analyst: Agent) -> dict[str, str]:
    key = _dev_key(runtime)
    kid = _kid(analyst)
    other = ec.generate_private_key(ec.SECP256R1())
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"kid": kid}
    none_token = (
        base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()).rstrip(b"=")
        + b"."
        + base64.urlsafe_b64encode(json.dumps(_claims(clock)).encode()).rstrip(b"=")
        + b"."
    ).decode()
    import hashlib
    import hmac as hmac_mod

    signing_input = (
        base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "kid": kid}).encode()).rstrip(b"=")
        + b"."
        + base64.urlsafe_b64encode(json.dumps(_claims(clock)).encode()).rstrip(b"=")
    )
    hs_sig = base64.urlsafe_b64encode(
        hmac_mod.new(public_pem, signing_input, hashlib.sha256).digest()
    ).rstrip(b"=")
    return {
        "forged signature": jwt.encode(_claims(clock), other, "ES256", headers=header),
        "expired": jwt.encode(
            _claims(clock, exp=int((clock.now() - timedelta(minutes=5)).timestamp())),
            key,
            "ES256",
            headers=header,
        ),
        "not yet valid": jwt.encode(
            _claims(clock, nbf=int((clock.now() + timedelta(minutes=10)).timestamp())),
            key,
            "ES256",
            headers=header,
        ),
        "wrong audience": jwt.encode(
            _claims(clock, aud=["someone-else"]), key, "ES256", headers=header
        ),
        "untrusted trust domain": jwt.encode(
            _claims(clock, sub="spiffe://evil.example/agent/analyst"), key, "ES256", headers=header
        ),
        "alg none": none_token,
        "HS256 with the public key": (signing_input + b"." + hs_sig).decode(),
        "garbage": "abc.def.ghi",
    }


def test_forged_and_invalid_tokens_are_401(
    client: httpx.Client, forged_tokens: dict[str, str]
) -> None:
    body = {"intent": {"workflow": "w", "purpose": "p", "on_behalf_of": "u"}, "scopes": [SCOPE]}
    for label, token in forged_tokens.items():
        response = client.post("/v1/tasks", json=body, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, label
        assert error_code(response) == "invalid_token", label
        assert response.headers["www-authenticate"] == "Bearer"
        assert token not in response.text


def test_the_real_token_passes_so_the_forgeries_are_meaningful(analyst: Agent) -> None:
    assert analyst.open_task([SCOPE]).status_code == 201


def test_missing_or_malformed_authorization_is_401(client: httpx.Client) -> None:
    body = {"grant": "x", "tool": "crm.query", "action": "read"}
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}):
        response = client.post("/v1/authorize", json=body, headers=headers)
        assert response.status_code == 401
        assert error_code(response) == "missing_token"
    huge = client.post(
        "/v1/authorize", json=body, headers={"Authorization": "Bearer " + "a" * 9000}
    )
    assert huge.status_code == 401 and error_code(huge) == "invalid_token"


def test_an_svid_expires_when_the_clock_moves(analyst: Agent, clock: ManualClock) -> None:
    clock.advance(2 * 3600)
    response = analyst.open_task([SCOPE])
    assert response.status_code == 401
    assert error_code(response) == "invalid_token"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{not json", "malformed_json"),
        (b"[1, 2]", "malformed_json"),
        (
            b'{"intent": {"workflow": 1, "purpose": "p", "on_behalf_of": "u"}, "scopes": []}',
            "invalid_field",
        ),
        (b'{"intent": {"workflow": "w", "purpose": "p", "on_behalf_of": "u"}}', "invalid_field"),
        (
            b'{"intent": {"workflow": "w", "purpose": "p", "on_behalf_of": "u"}, '
            b'"scopes": [{"tool": "crm.query", "actions": ["read"]}], "ttl": 5}',
            "invalid_field",
        ),
        (
            b'{"intent": {"workflow": "w", "purpose": "p", "on_behalf_of": "u"}, '
            b'"scopes": [{"tool": "crm.query", "actions": ["fly"]}]}',
            "invalid_field",
        ),
        (
            b'{"intent": {"workflow": "w", "purpose": "p", "on_behalf_of": "u"}, '
            b'"scopes": [{"tool": "crm.query", "actions": ["read"], '
            b'"constraints": {"amount": {"below": 5}}}]}',
            "unknown_constraint",
        ),
        (
            b'{"intent": {"workflow": "w", "purpose": "p", "on_behalf_of": "u"}, '
            b'"scopes": [{"tool": "crm.query", "actions": ["read"], '
            b'"constraints": {"amount": {"max": "lots"}}}]}',
            "invalid_constraint",
        ),
        (
            b'{"intent": {"workflow": "w", "purpose": "p", "on_behalf_of": "u"}, '
            b'"scopes": [{"tool": "crm query!", "actions": ["read"]}]}',
            "invalid_scope",
        ),
        (
            b'{"intent": {"workflow": "w", "purpose": "p", "on_behalf_of": "u"}, '
            b'"scopes": [{"tool": "a", "actions": ["read"]}, {"tool": "a", "actions": ["write"]}]}',
            "invalid_scope",
        ),
        (
            b'{"intent": {"workflow": "w", "purpose": "p", "on_behalf_of": "u"}, '
            b'"scopes": [{"tool": "a", "actions": ["read"]}], "ttl_seconds": 1}',
            "invalid_field",
        ),
        (
            b'{"intent": {"workflow": "  ", "purpose": "p", "on_behalf_of": "u"}, '
            b'"scopes": [{"tool": "a", "actions": ["read"]}]}',
            "invalid_field",
        ),
    ],
)
def test_malformed_task_requests(analyst: Agent, raw: bytes, code: str) -> None:
    response = analyst.client.post(
        "/v1/tasks", content=raw, headers={**analyst.headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert error_code(response) == code
    assert response.json()["error"]["message"]


def test_malformed_authorize_requests(analyst: Agent) -> None:
    grant = analyst.open_task([SCOPE]).json()["grant"]
    bad = [
        ({"grant": grant, "tool": "crm.query", "action": "teleport"}, "invalid_field"),
        ({"grant": grant, "tool": "crm.query"}, "invalid_field"),
        ({"grant": grant, "tool": 7, "action": "read"}, "invalid_field"),
        ({"grant": grant, "tool": "x y", "action": "read"}, "invalid_field"),
        ({"grant": grant, "tool": "crm.query", "action": "read", "args": [1]}, "invalid_field"),
        ({"grant": grant, "tool": "crm.query", "action": "read", "extra": 1}, "invalid_field"),
    ]
    for body, code in bad:
        response = analyst.client.post("/v1/authorize", json=body, headers=analyst.headers)
        assert response.status_code == 400, body
        assert error_code(response) == code, body
    deep: object = 1
    for _ in range(20):
        deep = {"a": deep}
    response = analyst.authorize(
        grant, tool="crm.query", action="read", dataset="crm", args={"d": deep}
    )
    assert response.status_code == 400


def test_oversized_bodies_and_args_are_413(analyst: Agent) -> None:
    grant = analyst.open_task([SCOPE]).json()["grant"]
    big_args = {"blob": "x" * 100_000}
    response = analyst.authorize(
        grant, tool="crm.query", action="read", dataset="crm", args=big_args
    )
    assert response.status_code == 413
    assert error_code(response) == "payload_too_large"
    huge = analyst.client.post(
        "/v1/authorize",
        content=b'{"grant": "' + b"x" * 400_000 + b'"}',
        headers={**analyst.headers, "Content-Type": "application/json"},
    )
    assert huge.status_code == 413
    assert error_code(huge) == "payload_too_large"


def test_unknown_routes_and_bad_ids(analyst: Agent) -> None:
    assert analyst.client.get("/v1/nope").status_code == 404
    bad_close = analyst.close("not-a-task")
    assert bad_close.status_code == 400 and error_code(bad_close) == "invalid_field"
    bad_effect = analyst.effect("nope", status="ok")
    assert bad_effect.status_code == 400
    negative = analyst.effect("dec_" + "0" * 26, status="ok", records=-1)
    assert negative.status_code == 400
    wrong_status = analyst.effect("dec_" + "0" * 26, status="exploded")
    assert wrong_status.status_code == 400
