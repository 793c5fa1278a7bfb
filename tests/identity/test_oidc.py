"""OidcVerifier (OIDC Core §3.1.3.7) with a JWKS file and with a JWKS URL served on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tether.core.errors import ConfigurationError
from tether.core.identity import CredentialKind
from tether.identity import JwksUrlSource, KeySet, OidcVerifier
from tether.service.clock import ManualClock

from .conftest import T0, Rejects, TokenKit, public_jwk

ISSUER = "https://oidc.cluster.example"
AUD = "tether"
K8S_SUB = "system:serviceaccount:agents:builder"


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER,
        "sub": K8S_SUB,
        "aud": [AUD],
        "iat": int(T0.timestamp()),
        "exp": int(T0.timestamp()) + 600,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


@pytest.fixture
def keys(rsa_key: rsa.RSAPrivateKey, key_set_of: Callable[..., KeySet]) -> KeySet:
    return key_set_of(public_jwk(rsa_key, "rsa-1"))


@pytest.fixture
def verifier(keys: KeySet) -> OidcVerifier:
    return OidcVerifier(ISSUER, AUD, keys)


@pytest.fixture
def mint(kit: TokenKit, rsa_key: rsa.RSAPrivateKey) -> Callable[..., str]:
    def build(**overrides: Any) -> str:
        return kit.sign(rsa_key, "RS256", claims(**overrides), kid="rsa-1")

    return build


def test_rs256_kubernetes_token_is_accepted(
    verifier: OidcVerifier, mint: Callable[..., str]
) -> None:
    workload = verifier.verify(mint(), T0)
    assert workload.id == f"{ISSUER}#{K8S_SUB}"
    assert workload.kind is CredentialKind.OIDC
    assert workload.trust_domain == "oidc.cluster.example"
    assert workload.name == "builder"


@pytest.mark.parametrize(
    ("subject", "name"),
    [
        ("repo:acme/agents:ref:refs/heads/main", "main"),
        ("project_path:acme/agents:ref_type:branch", "branch"),
        ("1234567890", "1234567890"),
        ("a/b/", "b"),
    ],
)
def test_workload_name_is_the_last_segment(
    verifier: OidcVerifier, mint: Callable[..., str], subject: str, name: str
) -> None:
    assert verifier.verify(mint(sub=subject), T0).name == name


def test_es256_is_accepted_by_default(
    kit: TokenKit, key_set_of: Callable[..., KeySet], other_ec: ec.EllipticCurvePrivateKey
) -> None:
    verifier = OidcVerifier(ISSUER, AUD, key_set_of(public_jwk(other_ec, "ec-1")))
    token = kit.sign(other_ec, "ES256", claims(), kid="ec-1")
    assert verifier.verify(token, T0).id == f"{ISSUER}#{K8S_SUB}"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"iss": "https://evil.example"}, "token issuer is not trusted"),
        ({"iss": ISSUER + "/"}, "token issuer is not trusted"),
        ({"iss": ISSUER.upper()}, "token issuer is not trusted"),
        ({"iss": None}, "token issuer is not trusted"),
        ({"iss": [ISSUER]}, "token issuer is not trusted"),
        ({"aud": ["kubernetes"]}, "token audience does not match"),
        ({"aud": None}, "token has no audience"),
        ({"exp": None}, "token has no expiry"),
        ({"exp": int(T0.timestamp()) - 61}, "token has expired"),
        ({"nbf": int(T0.timestamp()) + 61}, "token is not yet valid"),
        ({"iat": int(T0.timestamp()) + 3600}, "token was issued in the future"),
        ({"sub": None}, "token subject is missing or malformed"),
        ({"sub": ""}, "token subject is missing or malformed"),
        ({"sub": "has space"}, "token subject is missing or malformed"),
        ({"sub": "line\nbreak"}, "token subject is missing or malformed"),
        ({"sub": "x" * 256}, "token subject is missing or malformed"),
        ({"sub": 7}, "token subject is missing or malformed"),
    ],
)
def test_bad_oidc_claims_are_rejected(
    verifier: OidcVerifier,
    mint: Callable[..., str],
    rejects: Rejects,
    overrides: dict[str, Any],
    message: str,
) -> None:
    assert rejects(verifier, mint(**overrides), T0).message == message


def test_oidc_leeway_is_bounded(
    verifier: OidcVerifier, mint: Callable[..., str], clock: ManualClock, rejects: Rejects
) -> None:
    token = mint()
    clock.advance(600 + 59)
    assert verifier.verify(token, clock.now())
    clock.advance(1)
    rejects(verifier, token, clock.now())


def test_forged_oidc_token_is_rejected(
    verifier: OidcVerifier, kit: TokenKit, rejects: Rejects
) -> None:
    impostor = rsa.generate_private_key(65537, 2048)
    forged = kit.sign(impostor, "RS256", claims(), kid="rsa-1")
    assert rejects(verifier, forged, T0).message == "token signature is invalid"


def test_grant_typed_tokens_are_not_oidc_tokens(
    verifier: OidcVerifier, kit: TokenKit, rsa_key: rsa.RSAPrivateKey, rejects: Rejects
) -> None:
    token = kit.sign(rsa_key, "RS256", claims(), kid="rsa-1", typ="tether-grant+jwt")
    rejects(verifier, token, T0)
    access = kit.sign(rsa_key, "RS256", claims(), kid="rsa-1", typ="at+jwt")
    assert verifier.verify(access, T0)


@pytest.mark.parametrize(
    "issuer",
    ["http://oidc.example", "oidc.example", "https://", "https://x.example?a=b", "kubernetes/sa"],
)
def test_issuer_must_be_an_https_url(keys: KeySet, issuer: str) -> None:
    with pytest.raises(ConfigurationError):
        OidcVerifier(issuer, AUD, keys)


def test_jwks_may_be_given_as_a_file_path(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, mint: Callable[..., str]
) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [public_jwk(rsa_key, "rsa-1")]}))
    assert OidcVerifier(ISSUER, AUD, str(path)).verify(mint(), T0)
    assert OidcVerifier(ISSUER, AUD, path).verify(mint(), T0)


# -- JWKS URL ------------------------------------------------------------------------------------


@dataclass
class JwksServer:
    """A real HTTP server on 127.0.0.1 serving whatever ``body``/``status`` currently say."""

    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    requests: int = 0
    url: str = ""

    def serve(self, jwks: dict[str, Any]) -> None:
        self.body = json.dumps(jwks).encode()
        self.status = 200
        self.headers = {}


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    state = JwksServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests += 1
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            for name, value in state.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(state.body)))
            self.end_headers()
            self.wfile.write(state.body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_jwks_url_is_fetched_cached_and_refreshed(
    jwks_server: JwksServer,
    rsa_key: rsa.RSAPrivateKey,
    mint: Callable[..., str],
    clock: ManualClock,
) -> None:
    jwks_server.serve({"keys": [public_jwk(rsa_key, "rsa-1")]})
    source = JwksUrlSource(jwks_server.url, refresh_seconds=300)
    verifier = OidcVerifier(ISSUER, AUD, source)
    token = mint(exp=int(T0.timestamp()) + 3600)
    assert verifier.verify(token, clock.now()).name == "builder"
    assert verifier.verify(token, clock.now()).name == "builder"
    assert jwks_server.requests == 1  # cached
    clock.advance(299)
    verifier.verify(token, clock.now())
    assert jwks_server.requests == 1
    clock.advance(1)  # refresh interval reached, measured with the injected clock
    verifier.verify(token, clock.now())
    assert jwks_server.requests == 2


def test_jwks_url_given_as_a_string(
    jwks_server: JwksServer, rsa_key: rsa.RSAPrivateKey, mint: Callable[..., str]
) -> None:
    jwks_server.serve({"keys": [public_jwk(rsa_key, "rsa-1")]})
    assert OidcVerifier(ISSUER, AUD, jwks_server.url).verify(mint(), T0).name == "builder"


def test_unknown_kid_refetches_once_per_minute_at_most(
    jwks_server: JwksServer,
    rsa_key: rsa.RSAPrivateKey,
    kit: TokenKit,
    clock: ManualClock,
    rejects: Rejects,
) -> None:
    jwks_server.serve({"keys": [public_jwk(rsa_key, "rsa-1")]})
    verifier = OidcVerifier(ISSUER, AUD, JwksUrlSource(jwks_server.url))
    far = int(T0.timestamp()) + 3600
    assert verifier.verify(kit.sign(rsa_key, "RS256", claims(exp=far), kid="rsa-1"), clock.now())
    assert jwks_server.requests == 1

    # The issuer rotates to a new key: the first token naming it triggers one refetch.
    rotated = rsa.generate_private_key(65537, 2048)
    jwks_server.serve({"keys": [public_jwk(rsa_key, "rsa-1"), public_jwk(rotated, "rsa-2")]})
    clock.advance(61)
    new_token = kit.sign(rotated, "RS256", claims(exp=far), kid="rsa-2")
    assert verifier.verify(new_token, clock.now()).name == "builder"
    assert jwks_server.requests == 2

    # Made-up kids: one refetch, then none until a minute has passed.
    bogus = [kit.sign(rotated, "RS256", claims(exp=far), kid=f"made-up-{i}") for i in range(5)]
    clock.advance(61)
    for token in bogus:
        assert rejects(verifier, token, clock.now()).message == "no trusted key matches this token"
    assert jwks_server.requests == 3
    clock.advance(59)
    rejects(verifier, bogus[0], clock.now())
    assert jwks_server.requests == 3
    clock.advance(1)
    rejects(verifier, bogus[0], clock.now())
    assert jwks_server.requests == 4


def test_unreachable_jwks_fails_closed_without_hammering(
    jwks_server: JwksServer, mint: Callable[..., str], clock: ManualClock, rejects: Rejects
) -> None:
    jwks_server.status = 500
    jwks_server.body = b"oops"
    verifier = OidcVerifier(ISSUER, AUD, JwksUrlSource(jwks_server.url))
    token = mint(exp=int(T0.timestamp()) + 3600)
    error = rejects(verifier, token, clock.now())
    assert error.message == "the issuer's signing keys are unavailable"
    rejects(verifier, token, clock.now())
    assert jwks_server.requests == 1


def test_stale_keys_serve_while_the_issuer_is_down_then_expire(
    jwks_server: JwksServer,
    rsa_key: rsa.RSAPrivateKey,
    kit: TokenKit,
    clock: ManualClock,
    rejects: Rejects,
) -> None:
    jwks_server.serve({"keys": [public_jwk(rsa_key, "rsa-1")]})
    source = JwksUrlSource(jwks_server.url, refresh_seconds=300, max_stale_seconds=3600)
    verifier = OidcVerifier(ISSUER, AUD, source)

    def fresh_token() -> str:
        now = int(clock.now().timestamp())
        return kit.sign(rsa_key, "RS256", claims(iat=now, exp=now + 600), kid="rsa-1")

    assert verifier.verify(fresh_token(), clock.now())
    jwks_server.status = 503
    clock.advance(600)
    assert verifier.verify(fresh_token(), clock.now())  # stale but within max_stale
    assert jwks_server.requests == 2
    clock.advance(3300)
    rejects(verifier, fresh_token(), clock.now())


def test_oversized_jwks_is_refused(
    jwks_server: JwksServer, mint: Callable[..., str], rejects: Rejects
) -> None:
    jwks_server.body = b'{"keys": [' + b" " * 5000 + b"]}"
    source = JwksUrlSource(jwks_server.url, max_bytes=4096)
    rejects(OidcVerifier(ISSUER, AUD, source), mint(), T0)
    assert jwks_server.requests == 1


def test_redirects_are_not_followed(
    jwks_server: JwksServer, mint: Callable[..., str], rejects: Rejects
) -> None:
    jwks_server.status = 302
    jwks_server.headers = {"Location": "http://127.0.0.1:9/elsewhere"}
    rejects(OidcVerifier(ISSUER, AUD, JwksUrlSource(jwks_server.url)), mint(), T0)


def test_garbage_jwks_is_refused(
    jwks_server: JwksServer, mint: Callable[..., str], rejects: Rejects
) -> None:
    for body in (b"not json", b"[]", b'{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}'):
        jwks_server.body = body
        rejects(OidcVerifier(ISSUER, AUD, JwksUrlSource(jwks_server.url)), mint(), T0)


@pytest.mark.parametrize(
    "url",
    ["http://oidc.example/jwks", "ftp://127.0.0.1/jwks", "file:///etc/jwks.json", "https://"],
)
def test_jwks_url_must_be_https_or_loopback(url: str) -> None:
    with pytest.raises(ConfigurationError):
        JwksUrlSource(url)


def test_refetch_interval_must_not_exceed_refresh(jwks_server: JwksServer) -> None:
    with pytest.raises(ConfigurationError):
        JwksUrlSource(jwks_server.url, refresh_seconds=30, min_refetch_seconds=60)
