"""Lease issuers: just-in-time downstream credentials, minted only after an allow.

One module per issuer, each following the spec it names:

    jwt_lease    scoped, audience-bound JWTs for HTTP APIs (RFC 7519, RFC 8693 ``act``)
    postgres     dynamic PostgreSQL login roles with exact grants and ``VALID UNTIL``
    secrets      standing secrets for legacy systems, encrypted at rest, injected by the proxy

Issuers import :mod:`tether.core` (and tether's signing key); they never import entry points.
"""
