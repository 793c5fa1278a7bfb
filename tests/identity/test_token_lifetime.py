"""A workload token is short-lived or refused: ``iat`` required, ``exp - iat`` at most a configured
maximum (24 h by default), for JWT-SVIDs and OIDC tokens alike, and through the HTTP API."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient

from tether.api.app import create_app
from tether.core.errors import ConfigurationError
from tether.identity import (
    DEFAULT_MAX_LIFETIME_SECONDS,
    JwtSvidVerifier,
    KeySet,
    OidcVerifier,
    SigningKey,
)
from tether.runtime import RuntimeConfig, open_runtime
from tether.service.clock import ManualClock

from .conftest import T0, Rejects, TokenKit, public_jwk

TD = "prod.example"
SPIFFE_ID = f"spiffe://{TD}/ns/agents/sa/analyst"
ANALYST = "spiffe://tether.local/agent/analyst"  # an agent the example policies know
ISSUER = "https://oidc.cluster.example"
AUD = "tether"
NOW = int(T0.timestamp())
DAY = 24 * 3600
TEN_YEARS = 10 * 365 * DAY
TOO_LONG = "token lifetime (exp - iat) is longer than the 86400 s allowed"
NO_IAT = "token has no issued-at time (iat)"


@pytest.fixture
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def svid(kit: TokenKit, ec_key: ec.EllipticCurvePrivateKey) -> Callable[..., str]:
    def build(**claims: Any) -> str:
        body = {"sub": SPIFFE_ID, "aud": [AUD], **claims}
        return kit.sign(ec_key, "ES256", {k: v for k, v in body.items() if v is not None}, kid="a")

    return build


@pytest.fixture
def svid_verifier(
    ec_key: ec.EllipticCurvePrivateKey, key_set_of: Callable[..., KeySet]
) -> JwtSvidVerifier:
    return JwtSvidVerifier(key_set_of(public_jwk(ec_key, "a")), {TD}, AUD)


@pytest.fixture
def oidc_token(kit: TokenKit, rsa_key: rsa.RSAPrivateKey) -> Callable[..., str]:
    def build(**claims: Any) -> str:
        body = {"iss": ISSUER, "sub": "system:serviceaccount:agents:builder", "aud": AUD, **claims}
        return kit.sign(rsa_key, "RS256", {k: v for k, v in body.items() if v is not None}, kid="r")

    return build


@pytest.fixture
def oidc_verifier(rsa_key: rsa.RSAPrivateKey, key_set_of: Callable[..., KeySet]) -> OidcVerifier:
    return OidcVerifier(ISSUER, AUD, key_set_of(public_jwk(rsa_key, "r")))


def test_the_default_maximum_is_a_day() -> None:
    assert DEFAULT_MAX_LIFETIME_SECONDS == DAY


def test_a_ten_year_svid_is_refused(
    svid_verifier: JwtSvidVerifier, svid: Callable[..., str], rejects: Rejects
) -> None:
    token = svid(iat=NOW - 60, exp=NOW - 60 + TEN_YEARS)  # well signed, not expired
    assert TOO_LONG in rejects(svid_verifier, token, T0).message


def test_an_svid_without_iat_is_refused(
    svid_verifier: JwtSvidVerifier, svid: Callable[..., str], rejects: Rejects
) -> None:
    assert NO_IAT in rejects(svid_verifier, svid(exp=NOW + 300), T0).message


def test_an_svid_of_exactly_the_maximum_is_accepted_and_one_second_more_is_not(
    svid_verifier: JwtSvidVerifier, svid: Callable[..., str], rejects: Rejects
) -> None:
    assert svid_verifier.verify(svid(iat=NOW, exp=NOW + DAY), T0).id == SPIFFE_ID
    assert TOO_LONG in rejects(svid_verifier, svid(iat=NOW, exp=NOW + DAY + 1), T0).message


def test_the_maximum_is_configurable(
    ec_key: ec.EllipticCurvePrivateKey,
    key_set_of: Callable[..., KeySet],
    svid: Callable[..., str],
    rejects: Rejects,
) -> None:
    hour = JwtSvidVerifier(
        key_set_of(public_jwk(ec_key, "a")), {TD}, AUD, max_lifetime_seconds=3600
    )
    assert hour.verify(svid(iat=NOW, exp=NOW + 3600), T0).id == SPIFFE_ID
    error = rejects(hour, svid(iat=NOW, exp=NOW + 7200), T0)
    assert "longer than the 3600 s allowed" in error.message


@pytest.mark.parametrize("bad", [0, 59, -1, 400 * DAY, True, 3600.5])
def test_a_maximum_out_of_range_is_a_configuration_error(
    ec_key: ec.EllipticCurvePrivateKey, key_set_of: Callable[..., KeySet], bad: Any
) -> None:
    with pytest.raises(ConfigurationError):
        JwtSvidVerifier(key_set_of(public_jwk(ec_key, "a")), {TD}, AUD, max_lifetime_seconds=bad)


def test_a_ten_year_or_iat_less_oidc_token_is_refused(
    oidc_verifier: OidcVerifier, oidc_token: Callable[..., str], rejects: Rejects
) -> None:
    assert oidc_verifier.verify(oidc_token(iat=NOW, exp=NOW + 3600), T0).name == "builder"
    long_lived = oidc_token(iat=NOW - 60, exp=NOW + TEN_YEARS)
    assert TOO_LONG in rejects(oidc_verifier, long_lived, T0).message
    assert NO_IAT in rejects(oidc_verifier, oidc_token(exp=NOW + 600), T0).message


def test_the_api_refuses_a_ten_year_svid_from_a_trusted_bundle(tmp_path: Path) -> None:
    issuer = SigningKey.generate()
    bundle = tmp_path / "bundle.jwks"
    bundle.write_text(json.dumps(issuer.jwks()))
    clock = ManualClock(T0)
    runtime = open_runtime(
        RuntimeConfig(
            data_dir=tmp_path / "data",
            environ={},
            trust_bundle=bundle,
            max_token_lifetime_seconds=3600,
        ),
        clock=clock,
    )
    try:
        client = TestClient(create_app(runtime.api_deps))
        body = {
            "intent": {"workflow": "w", "purpose": "p", "on_behalf_of": "u"},
            "scopes": [{"tool": "crm.query", "actions": ["read"], "datasets": ["crm"]}],
        }

        def open_task(lifetime: int) -> Any:
            claims = {"sub": ANALYST, "aud": [AUD], "iat": NOW, "exp": NOW + lifetime}
            token = issuer.sign(claims, typ="JWT")
            return client.post("/v1/tasks", json=body, headers={"Authorization": f"Bearer {token}"})

        refused = open_task(TEN_YEARS)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "invalid_token"
        assert open_task(3600).status_code == 201
        assert open_task(3601).status_code == 401  # the configured maximum, not the default
    finally:
        runtime.close()
