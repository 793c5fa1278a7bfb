"""The identity package's public surface is explicit and importable."""

from __future__ import annotations

import inspect

import tether.identity as identity


def test_all_names_resolve() -> None:
    assert len(identity.__all__) == len(set(identity.__all__))
    for name in identity.__all__:
        assert getattr(identity, name) is not None, name


def test_verify_signatures_match_the_ports() -> None:
    # mypy checks conformance statically (see the TYPE_CHECKING block in tether.identity);
    # this keeps the parameter names callers may pass by keyword.
    for adapter in (
        identity.JwtSvidVerifier,
        identity.OidcVerifier,
        identity.CompositeVerifier,
        identity.GrantTokenSigner,
    ):
        assert list(inspect.signature(adapter.verify).parameters) == ["self", "token", "now"]
    assert list(inspect.signature(identity.GrantTokenSigner.sign).parameters) == ["self", "grant"]
