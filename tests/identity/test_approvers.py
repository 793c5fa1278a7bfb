"""Approver credentials: static tokens kept only as digests, and OIDC sign-in for humans."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tether.core.errors import InvalidRequest, Unauthenticated
from tether.identity import KeySet, OidcVerifier
from tether.identity.approvers import CompositeApprovers, OidcApprovers, StaticApprovers

from .conftest import T0, TokenKit, public_jwk

ISSUER = "https://login.example.com"


def test_static_tokens_are_printed_once_and_stored_as_digests(tmp_path: Path) -> None:
    registry = StaticApprovers(tmp_path / "approvers.json")
    token = registry.add("alice")
    assert token.startswith("tap_")
    stored = (tmp_path / "approvers.json").read_text()
    assert token not in stored and "alice" in stored
    assert (tmp_path / "approvers.json").stat().st_mode & 0o077 == 0
    assert registry.verify(token).id == "approver:alice"
    # Another process (the CLI) adds an approver; this one picks it up without a restart.
    other = StaticApprovers(tmp_path / "approvers.json").add("bob")
    assert registry.verify(other).id == "approver:bob"
    assert registry.remove("alice")
    with pytest.raises(Unauthenticated):
        registry.verify(token)
    with pytest.raises(Unauthenticated):
        registry.verify("tap_forged")
    with pytest.raises(InvalidRequest):
        registry.add("Not A Name!")


def _claims(**over: Any) -> dict[str, Any]:
    base = {
        "iss": ISSUER,
        "sub": "alice@example.com",
        "aud": ["tether-approver"],
        "iat": int(T0.timestamp()),
        "exp": int(T0.timestamp()) + 600,
    }
    base.update(over)
    return base


def test_oidc_approvers_need_the_approver_audience(
    tmp_path: Path,
    kit: TokenKit,
    rsa_key: rsa.RSAPrivateKey,
    key_set_of: Callable[..., KeySet],
) -> None:
    keys = key_set_of(public_jwk(rsa_key, "rsa-1"))
    verifier = OidcVerifier(ISSUER, "tether-approver", keys)
    approvers = CompositeApprovers(
        StaticApprovers(tmp_path / "approvers.json"), [OidcApprovers(verifier, lambda: T0)]
    )
    good = kit.sign(rsa_key, "RS256", _claims(), kid="rsa-1")
    who = approvers.verify(good)
    assert who.id == f"oidc:{ISSUER}#alice@example.com"
    workload_token = kit.sign(rsa_key, "RS256", _claims(aud=["tether"]), kid="rsa-1")
    with pytest.raises(Unauthenticated):
        approvers.verify(workload_token)
    static = approvers.add("carol")
    assert approvers.verify(static).id == "approver:carol"
    assert json.loads((tmp_path / "approvers.json").read_text()).keys() == {"carol"}
