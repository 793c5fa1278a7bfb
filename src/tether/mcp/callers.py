"""Who is calling the gateway, and under which grant (MCP authorization: bearer tokens).

Streamable HTTP: every HTTP request carries the agent's SVID (or OIDC token) as
``Authorization: Bearer <token>``; :class:`BearerAuth` verifies it before any MCP message is
read and answers ``401`` with a JSON error otherwise. The grant token travels in the
``X-Tether-Grant`` header; a request's ``_meta["tether/grant"]`` overrides it for that request.
Identity is taken per HTTP request, never per MCP session, so a session id is worth nothing
in another workload's hands.

stdio: the gateway runs for one agent. ``TETHER_SVID`` and ``TETHER_GRANT`` come from its
environment and are verified at start (:func:`stdio_caller`).

Tokens are never logged; failures log only their reason.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from starlette.types import ASGIApp, Receive, Scope, Send

from tether.core.errors import ErrorCode, Forbidden, TetherError, Unauthenticated, Unavailable
from tether.core.identity import Workload
from tether.logs import get_logger

log = get_logger("tether.mcp.callers")

GRANT_HEADER: Final = "x-tether-grant"
GRANT_META_KEY: Final = "tether/grant"
SVID_ENV: Final = "TETHER_SVID"
GRANT_ENV: Final = "TETHER_GRANT"
CALLER_SCOPE_KEY: Final = "tether.caller"
MAX_TOKEN_BYTES: Final = 8192


@dataclass(frozen=True, slots=True)
class Caller:
    """A verified workload and the grant token it presents (``None`` when it named none), with
    the bearer token it was verified from (forwarded to ``tether serve`` by a gateway deciding
    remotely; never logged, never in a repr)."""

    workload: Workload
    grant_token: str | None
    bearer: str | None = field(default=None, repr=False, compare=False)

    def with_meta(self, meta: Mapping[str, Any] | None) -> Caller:
        """This caller with the grant named in a request's ``_meta``, if it names one."""
        token = (meta or {}).get(GRANT_META_KEY)
        if isinstance(token, str) and 0 < len(token) <= MAX_TOKEN_BYTES:
            return Caller(self.workload, token, self.bearer)
        return self

    def __repr__(self) -> str:
        return f"Caller(workload={self.workload.id!r})"


def _bearer(headers: Mapping[str, str]) -> str:
    value = headers.get("authorization")
    if value is None:
        raise Unauthenticated(
            "send the agent's SVID as 'Authorization: Bearer <token>'", code=ErrorCode.MISSING_TOKEN
        )
    scheme, _, token = value.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated(
            "the Authorization header must be 'Bearer <token>'", code=ErrorCode.MISSING_TOKEN
        )
    if len(token) > MAX_TOKEN_BYTES:
        raise Unauthenticated("the token is too large", code=ErrorCode.INVALID_TOKEN)
    return token


#: Verifies a bearer token: the workload it names (``Unauthenticated`` if none; ``Unavailable``
#: when the decision point that verifies it cannot answer).
Verify = Callable[[str], Awaitable[Workload]]


class BearerAuth:
    """ASGI middleware: verify the bearer SVID of every HTTP request before MCP sees it."""

    def __init__(self, app: ASGIApp, verify: Verify) -> None:
        self.app = app
        self.verify = verify

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            token = _bearer(headers)
            workload = await self.verify(token)
        except Unauthenticated as error:
            log.info("authentication_failed", reason=error.message)
            await _unauthorized(error, send)
            return
        except Unavailable as error:  # fail closed: no identity, no MCP
            log.warning("authentication_unavailable", code=error.code.value)
            await _json_error(error, 503, send)
            return
        except TetherError as error:  # e.g. agent_revoked: a verified workload refused
            log.info("authentication_refused", code=error.code.value)
            await _json_error(error, 403, send)
            return
        grant = headers.get(GRANT_HEADER, "").strip()
        if len(grant) > MAX_TOKEN_BYTES:
            grant = ""
        scope[CALLER_SCOPE_KEY] = Caller(workload, grant or None, token)
        await self.app(scope, receive, send)


async def _unauthorized(error: Unauthenticated, send: Send) -> None:
    challenge = f'Bearer realm="tether", error="{error.code.value}"'
    await _json_error(error, 401, send, [(b"www-authenticate", challenge.encode())])


async def _json_error(
    error: TetherError, status: int, send: Send, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"error": {"code": error.code.value, "message": error.message}}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def caller_from_scope(scope: Mapping[str, Any] | None) -> Caller | None:
    if scope is None:
        return None
    caller = scope.get(CALLER_SCOPE_KEY)
    return caller if isinstance(caller, Caller) else None


async def stdio_caller(
    environ: Mapping[str, str],
    verify: Verify,
    usable: Callable[[Caller], Awaitable[object | None]],
) -> Caller:
    """The one caller of a stdio gateway, from ``TETHER_SVID`` and ``TETHER_GRANT``, checked
    with the gateway's decision point (``verify``, and ``usable`` reading the grant).

    Raises ``Unauthenticated`` or ``Forbidden`` with a one-line reason when either is missing or
    does not verify, so the gateway refuses to start rather than serve an agent it cannot name.
    """
    svid = environ.get(SVID_ENV, "").strip()
    if not svid:
        raise Unauthenticated(
            f"set {SVID_ENV} to the agent's SVID (e.g. from `tether dev svid`)",
            code=ErrorCode.MISSING_TOKEN,
        )
    try:
        workload = await verify(svid)
    except Unauthenticated as error:
        raise Unauthenticated(f"{SVID_ENV} does not verify: {error.message}") from None
    grant = environ.get(GRANT_ENV, "").strip()
    if not grant:
        raise Unauthenticated(
            f"set {GRANT_ENV} to the grant token of the agent's open task",
            code=ErrorCode.MISSING_TOKEN,
        )
    caller = Caller(workload, grant, svid)
    if await usable(caller) is None:
        raise Forbidden(
            f"{GRANT_ENV} is not a usable grant for {workload.id} (invalid, expired, revoked, "
            "or issued to another agent)",
            code=ErrorCode.GRANT_NOT_BOUND,
        )
    return caller
