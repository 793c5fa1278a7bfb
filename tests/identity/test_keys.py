"""SigningKey and KeySet: key files, RFC 7638 kid, JWKS and SPIFFE bundle loading."""

from __future__ import annotations

import json
import os
import pickle
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tether.core.errors import ConfigurationError
from tether.identity import KeySet, SigningKey, jwk_thumbprint, load_jwks_file

from .conftest import public_jwk


def test_key_file_is_created_0600_and_reused_with_the_same_kid(tmp_path: Path) -> None:
    path = tmp_path / "data" / "keys" / "grant.pem"
    first = SigningKey.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    second = SigningKey.load_or_create(path)
    assert second.kid == first.kid
    assert second.public_jwk() == first.public_jwk()
    assert [p.name for p in path.parent.iterdir()] == ["grant.pem"]  # no temp file left


def test_existing_key_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    original = SigningKey.load_or_create(path)
    before = path.read_bytes()
    for _ in range(3):
        assert SigningKey.load_or_create(path).kid == original.kid
    assert path.read_bytes() == before


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    SigningKey.load_or_create(path)
    path.chmod(0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        SigningKey.load_or_create(path)


def test_corrupt_key_file_is_refused_without_echoing_it(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"not-a-key-SECRETBYTES")
    os.close(fd)
    with pytest.raises(ConfigurationError) as caught:
        SigningKey.load_or_create(path)
    assert "SECRETBYTES" not in str(caught.value)


def test_key_file_of_the_wrong_type_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rsa.pem"
    pem = rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, pem)
    os.close(fd)
    with pytest.raises(ConfigurationError, match="P-256"):
        SigningKey.load_or_create(path)
    with pytest.raises(ConfigurationError, match="P-256"):
        SigningKey(ec.generate_private_key(ec.SECP384R1()))


def test_repr_and_pickle_reveal_no_key_material(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    key = SigningKey.load_or_create(path)
    private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    d = private.private_numbers().private_value
    text = repr(key) + str(key)
    assert text == f"SigningKey(kid={key.kid!r}, alg='ES256')" * 2
    assert "PRIVATE" not in text and str(d) not in text and hex(d)[2:] not in text
    with pytest.raises(TypeError):
        pickle.dumps(key)


def test_kid_is_the_rfc7638_thumbprint() -> None:
    # RFC 7638 §3.1 worked example.
    example = {
        "kty": "RSA",
        "n": (
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc"
            "_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0"
            "_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhA"
            "I4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
        ),
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert jwk_thumbprint(example) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    key = SigningKey.generate()
    jwk = key.public_jwk()
    assert key.kid == jwk["kid"] == jwk_thumbprint(jwk)
    # Only the required members count: extra members do not change it.
    assert jwk_thumbprint({**jwk, "use": "other", "kid": "x"}) == key.kid


def test_public_jwk_and_jwks_hold_only_public_members() -> None:
    key = SigningKey.generate()
    jwk = key.public_jwk()
    assert set(jwk) == {"kty", "crv", "x", "y", "kid", "alg", "use"}
    assert (jwk["kty"], jwk["crv"], jwk["alg"]) == ("EC", "P-256", "ES256")
    assert key.jwks() == {"keys": [jwk]}
    assert list(key.key_set().kids()) == [key.kid]


def test_load_jwks_file(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "jwks.json"
    path.write_text(
        json.dumps({"keys": [public_jwk(ec_key, "ec-1"), public_jwk(rsa_key, "rsa-1")]})
    )
    keys = load_jwks_file(path)
    assert keys.kids() == ("ec-1", "rsa-1")
    assert keys.algorithms() == {"ES256", "RS256"}
    assert keys.select("ec-1", "ES256") is not None
    assert keys.select("rsa-1", "ES256") is None  # the key must suit the algorithm
    assert keys.select("ec-1", "HS256") is None


def test_load_spiffe_trust_bundle_keeps_only_jwt_svid_keys(tmp_path: Path) -> None:
    jwt_key = ec.generate_private_key(ec.SECP256R1())
    x509_key = ec.generate_private_key(ec.SECP256R1())
    bundle = {
        "spiffe_sequence": 7,
        "spiffe_refresh_hint": 300,
        "keys": [
            {**public_jwk(x509_key, None), "use": "x509-svid", "x5c": ["MIIB"]},
            {**public_jwk(jwt_key, "jwt-authority"), "use": "jwt-svid"},
            {"kty": "unknown-kind", "kid": "future"},
        ],
    }
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle))
    assert load_jwks_file(path).kids() == ("jwt-authority",)


@pytest.mark.parametrize(
    "document",
    [
        "not json",
        "[]",
        '{"keys": "nope"}',
        '{"keys": []}',
        '{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}',
        '{"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "use": "enc"}]}',
    ],
)
def test_unusable_key_sets_are_refused(tmp_path: Path, document: str) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(document)
    with pytest.raises(ConfigurationError):
        load_jwks_file(path)


def test_key_set_refuses_private_key_material() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = public_jwk(private, "k")
    jwk["d"] = "AAAA"
    with pytest.raises(ConfigurationError, match="public keys only"):
        KeySet.from_jwks({"keys": [jwk]})


def test_missing_jwks_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_jwks_file(tmp_path / "absent.json")
