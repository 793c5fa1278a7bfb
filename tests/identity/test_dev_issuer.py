"""DevIssuer: spec-shaped JWT-SVIDs for development, and refused outright in production."""

from __future__ import annotations

from datetime import datetime

import jwt
import pytest

from tether.core.errors import ConfigurationError, ErrorCode, Forbidden, InvalidRequest
from tether.identity import DevIssuer, SigningKey, ensure_dev_allowed

from .conftest import T0, Rejects


@pytest.mark.parametrize("value", ["production", "PRODUCTION", " production "])
def test_dev_issuer_is_refused_in_production(signing_key: SigningKey, value: str) -> None:
    environ = {"TETHER_ENV": value}
    with pytest.raises(Forbidden) as caught:
        ensure_dev_allowed(environ)
    assert caught.value.code is ErrorCode.DEV_ISSUER_REFUSED
    assert "TETHER_ENV=production" in caught.value.message
    with pytest.raises(Forbidden) as again:
        DevIssuer(signing_key, environ=environ)
    assert again.value.code is ErrorCode.DEV_ISSUER_REFUSED


@pytest.mark.parametrize("environ", [{}, {"TETHER_ENV": "development"}, {"TETHER_ENV": "test"}])
def test_dev_issuer_is_allowed_elsewhere(signing_key: SigningKey, environ: dict[str, str]) -> None:
    ensure_dev_allowed(environ)
    assert DevIssuer(signing_key, environ=environ).trust_domain == "tether.local"


def test_default_environ_is_the_process_environment(
    signing_key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_ENV", "production")
    with pytest.raises(Forbidden):
        DevIssuer(signing_key)


def test_minted_svid_follows_the_jwt_svid_spec(signing_key: SigningKey) -> None:
    issuer = DevIssuer(signing_key, "dev.example", environ={})
    token = issuer.mint_svid("analyst", audience="tether", now=T0, ttl_seconds=600)
    assert jwt.get_unverified_header(token) == {
        "alg": "ES256",
        "kid": signing_key.kid,
        "typ": "JWT",
    }
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims == {
        "sub": "spiffe://dev.example/agent/analyst",
        "aud": ["tether"],
        "iat": int(T0.timestamp()),
        "exp": int(T0.timestamp()) + 600,
    }
    workload = issuer.dev_verifier().verify(token, T0)
    assert (workload.id, workload.trust_domain, workload.name) == (
        "spiffe://dev.example/agent/analyst",
        "dev.example",
        "analyst",
    )


@pytest.mark.parametrize("agent", ["a", "Analyst-2", "etl_v1.2", "x" * 64, "-", "..."])
def test_valid_agent_names(signing_key: SigningKey, agent: str) -> None:
    issuer = DevIssuer(signing_key, environ={})
    token = issuer.mint_svid(agent, audience="tether", now=T0)
    assert issuer.dev_verifier().verify(token, T0).name == agent


@pytest.mark.parametrize(
    "agent", ["", "x" * 65, "a/b", "a b", "ünïcode", ".", "..", "a\n", "spiffe://x/y", "a:b"]
)
def test_invalid_agent_names_are_refused(signing_key: SigningKey, agent: str) -> None:
    issuer = DevIssuer(signing_key, environ={})
    with pytest.raises(InvalidRequest):
        issuer.mint_svid(agent, audience="tether", now=T0)


@pytest.mark.parametrize("ttl", [0, -1, 86_401])
def test_ttl_is_bounded(signing_key: SigningKey, ttl: int) -> None:
    with pytest.raises(InvalidRequest):
        DevIssuer(signing_key, environ={}).mint_svid("a", audience="t", now=T0, ttl_seconds=ttl)


def test_naive_time_and_empty_audience_are_refused(signing_key: SigningKey) -> None:
    issuer = DevIssuer(signing_key, environ={})
    with pytest.raises(InvalidRequest):
        issuer.mint_svid("a", audience="tether", now=datetime(2026, 1, 1))
    with pytest.raises(InvalidRequest):
        issuer.mint_svid("a", audience="", now=T0)


@pytest.mark.parametrize("domain", ["", "Tether.Local", "a/b", "tether.local/agent"])
def test_invalid_trust_domain_is_refused(signing_key: SigningKey, domain: str) -> None:
    with pytest.raises(ConfigurationError):
        DevIssuer(signing_key, domain, environ={})


def test_dev_verifier_trusts_only_its_own_key_and_domain(
    signing_key: SigningKey, rejects: Rejects
) -> None:
    mine = DevIssuer(signing_key, environ={})
    other_key = DevIssuer(SigningKey.generate(), environ={})
    other_domain = DevIssuer(signing_key, "elsewhere.local", environ={})
    verifier = mine.dev_verifier()
    rejects(verifier, other_key.mint_svid("analyst", audience="tether", now=T0), T0)
    rejects(verifier, other_domain.mint_svid("analyst", audience="tether", now=T0), T0)
    rejects(verifier, mine.mint_svid("analyst", audience="not-tether", now=T0), T0)
    assert mine.dev_verifier("not-tether").verify(
        mine.mint_svid("analyst", audience="not-tether", now=T0), T0
    )


def test_repr_shows_no_key_material(signing_key: SigningKey) -> None:
    text = repr(DevIssuer(signing_key, environ={}))
    assert signing_key.kid in text and "PRIVATE" not in text
