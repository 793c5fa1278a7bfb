"""Bearer tokens at the API edge (RFC 6750 section 2.1): reading ``Authorization`` and
declaring, in the OpenAPI document, which kind of token each route takes.

Two security schemes, both HTTP ``bearer``:

- ``svid``: a workload's JWT-SVID or OIDC token (agents, enforcement points);
- ``approverToken``: a human approver's token (``tap_…``), for approval, break-glass and kill
  switch routes.

A route declares its scheme by depending on :func:`svid_authorization`,
:func:`approver_authorization` or :func:`any_authorization`, which FastAPI turns into the
operation's ``security``. The declaring dependency never refuses anything itself
(``auto_error=False``): the route's own caller check does, with tether's codes
(``401 missing_token`` / ``invalid_token``) and its error body.
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tether.core.errors import ErrorCode, Unauthenticated

MAX_TOKEN_BYTES: Final = 8192

SVID_SCHEME: Final = HTTPBearer(
    scheme_name="svid",
    bearerFormat="JWT",
    description="The calling workload's JWT-SVID or OIDC token (ES256/EdDSA), audience tether.",
    auto_error=False,
)
APPROVER_SCHEME: Final = HTTPBearer(
    scheme_name="approverToken",
    description="A human approver's token (tap_…), issued by 'tether approvers add'.",
    auto_error=False,
)

_Declared = HTTPAuthorizationCredentials | None


def _header(request: Request) -> str | None:
    return request.headers.get("authorization")


async def svid_authorization(
    request: Request, _svid: Annotated[_Declared, Security(SVID_SCHEME)]
) -> str | None:
    """The ``Authorization`` header of a route that takes a workload's SVID."""
    return _header(request)


async def approver_authorization(
    request: Request, _approver: Annotated[_Declared, Security(APPROVER_SCHEME)]
) -> str | None:
    """The ``Authorization`` header of a route that takes an approver token."""
    return _header(request)


async def any_authorization(
    request: Request,
    _svid: Annotated[_Declared, Security(SVID_SCHEME)],
    _approver: Annotated[_Declared, Security(APPROVER_SCHEME)],
) -> str | None:
    """The ``Authorization`` header of a route that takes either kind."""
    return _header(request)


def bearer_token(authorization: str | None, what: str) -> str:
    """The token of an ``Authorization: Bearer`` header, or a 401 saying what to send."""
    if authorization is None:
        raise Unauthenticated(
            f"send {what} as 'Authorization: Bearer <token>'", code=ErrorCode.MISSING_TOKEN
        )
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated(
            "the Authorization header must be 'Bearer <token>'", code=ErrorCode.MISSING_TOKEN
        )
    if len(token) > MAX_TOKEN_BYTES:
        raise Unauthenticated("the token is too large", code=ErrorCode.INVALID_TOKEN)
    return token
