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

import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from starlette.types import ASGIApp, Receive, Scope, Send

from tether.core.errors import ErrorCode, Forbidden, Unauthenticated
from tether.core.identity import Workload
from tether.core.task import Grant, grant_is_usable
from tether.logs import get_logger
from tether.service.ports import Clock, GrantSigner, Store, WorkloadVerifier

log = get_logger("tether.mcp.callers")

GRANT_HEADER: Final = "x-tether-grant"
GRANT_META_KEY: Final = "tether/grant"
SVID_ENV: Final = "TETHER_SVID"
GRANT_ENV: Final = "TETHER_GRANT"
CALLER_SCOPE_KEY: Final = "tether.caller"
MAX_TOKEN_BYTES: Final = 8192


@dataclass(frozen=True, slots=True)
class Caller:
    """A verified workload and the grant token it presents (``None`` when it named none)."""

    workload: Workload
    grant_token: str | None

    def with_meta(self, meta: Mapping[str, Any] | None) -> Caller:
        """This caller with the grant named in a request's ``_meta``, if it names one."""
        token = (meta or {}).get(GRANT_META_KEY)
        if isinstance(token, str) and 0 < len(token) <= MAX_TOKEN_BYTES:
            return Caller(self.workload, token)
        return self

    def __repr__(self) -> str:
        return f"Caller(workload={self.workload.id!r})"


@dataclass(frozen=True, slots=True)
class GrantReader:
    """Reads a caller's grant to filter ``tools/list``; calls are decided by the authorizer."""

    signer: GrantSigner
    store: Store
    clock: Clock

    def usable_grant(self, caller: Caller) -> Grant | None:
        """The caller's grant if it verifies, is bound to the caller and usable now; else ``None``.

        Fail closed: any error (bad token, store down) shows the caller nothing.
        """
        if caller.grant_token is None:
            return None
        now = self.clock.now()
        try:
            claims = self.signer.verify(caller.grant_token, now)
            if not hmac.compare_digest(claims.agent, caller.workload.id):
                return None
            grant = self.store.get_grant(claims.grant_id)
            if grant is None or not hmac.compare_digest(grant.agent, caller.workload.id):
                return None
            task = self.store.get_task(grant.task_id)
        except Exception as error:  # fail closed, whatever went wrong
            log.info("grant_unreadable", error_type=type(error).__name__)
            return None
        if task is None or not grant_is_usable(grant, task, now):
            return None
        return grant


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


class BearerAuth:
    """ASGI middleware: verify the bearer SVID of every HTTP request before MCP sees it."""

    def __init__(self, app: ASGIApp, verifier: WorkloadVerifier, clock: Clock) -> None:
        self.app = app
        self.verifier = verifier
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            token = _bearer(headers)
            workload = self.verifier.verify(token, self.clock.now())
        except Unauthenticated as error:
            log.info("authentication_failed", reason=error.message)
            await _unauthorized(error, send)
            return
        grant = headers.get(GRANT_HEADER, "").strip()
        if len(grant) > MAX_TOKEN_BYTES:
            grant = ""
        scope[CALLER_SCOPE_KEY] = Caller(workload, grant or None)
        await self.app(scope, receive, send)


async def _unauthorized(error: Unauthenticated, send: Send) -> None:
    body = json.dumps({"error": {"code": error.code.value, "message": error.message}}).encode()
    challenge = f'Bearer realm="tether", error="{error.code.value}"'
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", challenge.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def caller_from_scope(scope: Mapping[str, Any] | None) -> Caller | None:
    if scope is None:
        return None
    caller = scope.get(CALLER_SCOPE_KEY)
    return caller if isinstance(caller, Caller) else None


def stdio_caller(
    environ: Mapping[str, str], verifier: WorkloadVerifier, grants: GrantReader
) -> Caller:
    """The one caller of a stdio gateway, from ``TETHER_SVID`` and ``TETHER_GRANT``.

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
        workload = verifier.verify(svid, grants.clock.now())
    except Unauthenticated as error:
        raise Unauthenticated(f"{SVID_ENV} does not verify: {error.message}") from None
    grant = environ.get(GRANT_ENV, "").strip()
    if not grant:
        raise Unauthenticated(
            f"set {GRANT_ENV} to the grant token of the agent's open task",
            code=ErrorCode.MISSING_TOKEN,
        )
    caller = Caller(workload, grant)
    if grants.usable_grant(caller) is None:
        raise Forbidden(
            f"{GRANT_ENV} is not a usable grant for {workload.id} (invalid, expired, revoked, "
            "or issued to another agent)",
            code=ErrorCode.GRANT_NOT_BOUND,
        )
    return caller
