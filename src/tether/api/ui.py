"""The approver's web page: sign in with an approver token, list approvals, read one, decide.

Server-rendered HTML under ``/ui`` with no JavaScript (pages in ``ui_pages``, from templates); it
follows the rules of the JSON approval routes (``tether.api.approvals``): only an approver token
signs in, a workload SVID never does, and every vote goes through ``ApprovalService.vote``.

Sessions and forgery:

- One cookie, ``__Host-tether_session``, holds a random session id and, once signed in, the
  approver token itself (``SID.TOKEN``). The ``__Host-`` prefix makes browsers insist on
  ``Secure; Path=/`` and no ``Domain``, so no sibling host or path can plant or shadow it.
  Browsers treat http://127.0.0.1 and http://localhost as secure, so ``Secure`` cookies work
  there too; anywhere else the page must be served over https (directly or behind a proxy).
  The token is verified on every request, so removing an approver (``tether approvers
  remove``) ends their sessions at once, on every replica, with no session store.
- Every POST carries a CSRF token bound to the session: ``HMAC-SHA256(server key, session id)``
  in a hidden form field, compared in constant time. Nothing the browser holds but the session
  cookie feeds it, so a token from one session never passes in another, and a value planted in
  a cookie counts for nothing. Sign-in starts a new session id (and so a new token). The key is
  ``keys/ui-session.key`` in the data directory, shared by replicas. A browser's
  ``Sec-Fetch-Site`` saying the form came from another site is refused as well.
- Every response under ``/ui`` carries a strict Content-Security-Policy (no scripts at all),
  ``X-Frame-Options: DENY``, ``Referrer-Policy: no-referrer`` and ``Cache-Control: no-store``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final
from urllib.parse import parse_qsl, quote

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as AsgiScope

from tether.api.errors import HTTP_STATUS
from tether.api.ui_pages import detail_page, list_page, login_page, message_page
from tether.core.errors import ConfigurationError, ErrorCode, TetherError, Unauthenticated
from tether.core.ids import ApprovalId, IdKind, is_well_formed
from tether.logs import get_logger
from tether.service.approvals import Approver

if TYPE_CHECKING:
    from tether.api.app import ApiDeps

log = get_logger("tether.api.ui")

UI_PREFIX: Final = "/ui"
SESSION_COOKIE: Final = "__Host-tether_session"
SESSION_SECONDS: Final = 8 * 3600
LIST_LIMIT: Final = 200
MAX_FORM_BYTES: Final = 16 * 1024
MAX_TOKEN_CHARS: Final = 8192
MIN_KEY_BYTES: Final = 32
_SID_SHAPE: Final = re.compile(r"^[A-Za-z0-9_-]{43}$")
_CSRF_LABEL: Final = b"tether-ui-csrf\x00"

SECURITY_HEADERS: Final[dict[str, str]] = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self' 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


def _is_ui(path: str) -> bool:
    return path == UI_PREFIX or path.startswith(UI_PREFIX + "/")


class UiSecurityHeaders:
    """Put the page's security headers on every response under ``/ui``, errors included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_ui(scope["path"]):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, with_headers)


class Form:
    """A parsed ``application/x-www-form-urlencoded`` body, or why it could not be read."""

    def __init__(self, fields: dict[str, str], problem: str | None = None) -> None:
        self.fields = fields
        self.problem = problem

    def get(self, name: str) -> str:
        return self.fields.get(name, "")


async def read_form(request: Request) -> Form:
    """Parse the form ourselves: small, urlencoded, each field once, nothing else accepted."""
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    body = await request.body()
    if kind != "application/x-www-form-urlencoded":
        return Form({}, "the form must be sent as application/x-www-form-urlencoded")
    if len(body) > MAX_FORM_BYTES:
        return Form({}, f"the form is limited to {MAX_FORM_BYTES} bytes")
    try:
        pairs = parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, max_num_fields=8, errors="strict"
        )
    except (UnicodeDecodeError, ValueError):
        return Form({}, "the form could not be read")
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields:
            return Form({}, f"the form field {name!r} was sent twice")
        fields[name] = value
    return Form(fields)


def _html(page: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(page, status_code=status)


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


@dataclass(frozen=True, slots=True)
class Session:
    """What the session cookie says: its id and, once signed in, the approver token."""

    sid: str
    token: str | None = field(default=None, repr=False)

    @property
    def cookie(self) -> str:
        return self.sid if self.token is None else f"{self.sid}.{self.token}"


def _session(request: Request) -> Session | None:
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw or len(raw) > MAX_TOKEN_CHARS + 64:
        return None
    sid, _, token = raw.partition(".")
    if not _SID_SHAPE.match(sid):
        return None
    return Session(sid, token or None)


def _new_session(token: str | None = None) -> Session:
    return Session(secrets.token_urlsafe(32), token)


def _set_session(response: Response, session: Session) -> None:
    # __Host-: Secure, Path=/ and no Domain, or a browser refuses the cookie.
    response.set_cookie(
        SESSION_COOKIE,
        session.cookie,
        max_age=SESSION_SECONDS,
        path="/",
        secure=True,
        httponly=True,
        samesite="strict",
    )


def _clear_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")


def csrf_token(key: bytes, sid: str) -> str:
    """The anti-forgery token of session ``sid``: derived, never stored, never in a cookie."""
    mac = hmac.new(key, _CSRF_LABEL + sid.encode("ascii"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def _forgery(request: Request, form: Form, key: bytes) -> str | None:
    """Why this POST might be forged, or ``None`` when its CSRF token is this session's."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return "the form was sent from another site"
    session = _session(request)
    field_value = form.get("csrf")
    if session is None or not field_value:
        return "the form's anti-forgery token is missing"
    expected = csrf_token(key, session.sid)
    if not hmac.compare_digest(expected.encode("ascii"), field_value.encode("utf-8")):
        return "the form's anti-forgery token does not match this session"
    return None


def _refused(reason: str) -> HTMLResponse:
    log.info("ui_csrf_refused", reason=reason)
    return _html(
        message_page(
            "Request refused",
            f"{reason}. Reload the page and submit the form again.",
            link="/ui/login",
        ),
        403,
    )


def _approval_id(value: str) -> ApprovalId | None:
    return ApprovalId(value) if is_well_formed(value, IdKind.APPROVAL) else None


def _not_an_id() -> HTMLResponse:
    return _html(
        message_page(
            "Bad request",
            "approval_id is not a tether approval id",
            code=ErrorCode.INVALID_FIELD.value,
            link="/ui/approvals",
        ),
        HTTP_STATUS[ErrorCode.INVALID_FIELD],
    )


_TITLES: Final[dict[int, str]] = {400: "Bad request", 404: "Not found", 409: "Conflict"}


def _error_page(error: TetherError) -> HTMLResponse:
    status = HTTP_STATUS[error.code]
    title = _TITLES.get(status, "Something went wrong")
    return _html(
        message_page(title, error.message, code=error.code.value, link="/ui/approvals"), status
    )


def install_ui(app: FastAPI, deps: ApiDeps) -> None:
    """Add the ``/ui`` routes and the middleware that puts security headers on them."""
    key = deps.ui_key
    if len(key) < MIN_KEY_BYTES:
        # INVARIANT: no page without a session-bound CSRF key; never a guessable one.
        raise ConfigurationError(f"the approval page needs a key of at least {MIN_KEY_BYTES} bytes")

    def signed_in(request: Request) -> Approver | None:
        session = _session(request)
        if session is None or session.token is None or len(session.token) > MAX_TOKEN_CHARS:
            return None
        try:
            return deps.approvers.verify(session.token)
        except Unauthenticated:
            return None

    def is_workload(token: str) -> bool:
        try:
            deps.verifier.verify(token, deps.clock.now())
        except TetherError:
            return False
        return True

    def to_login(request: Request) -> RedirectResponse:
        response = _redirect("/ui/login")
        if request.cookies.get(SESSION_COOKIE) is not None:
            _clear_session(response)
        return response

    def with_csrf(request: Request) -> tuple[str, Session | None]:
        """This session's CSRF token, and a new session to set when there was none."""
        existing = _session(request)
        if existing is not None:
            return csrf_token(key, existing.sid), None
        fresh = _new_session()
        return csrf_token(key, fresh.sid), fresh

    def forgery(request: Request, form: Form) -> str | None:
        return form.problem or _forgery(request, form, key)

    def html_with(request: Request, render: Callable[[str], str], status: int = 200) -> Response:
        csrf, fresh = with_csrf(request)
        response = _html(render(csrf), status)
        if fresh is not None:
            _set_session(response, fresh)
        return response

    form_body = Depends(read_form)

    @app.get(UI_PREFIX, include_in_schema=False)
    def ui_root() -> RedirectResponse:
        return _redirect("/ui/approvals")

    @app.get("/ui/login", include_in_schema=False)
    def login_form(request: Request) -> Response:
        if signed_in(request) is not None:
            return _redirect("/ui/approvals")
        return html_with(request, login_page)

    @app.post("/ui/login", include_in_schema=False)
    def login(request: Request, form: Form = form_body) -> Response:
        forged = forgery(request, form)
        if forged:
            return _refused(forged)
        csrf = form.get("csrf")
        token = form.get("token").strip()
        if not token:
            return _html(login_page(csrf, "Paste your approver token to sign in."), 400)
        try:
            who = deps.approvers.verify(token) if len(token) <= MAX_TOKEN_CHARS else None
        except Unauthenticated:
            who = None
        except TetherError as error:
            log.error("ui_login_unavailable", code=error.code.value)
            return _error_page(error)
        if who is None:
            if is_workload(token):
                log.info("ui_login_refused", reason="workload_identity")
                message = (
                    "That is a workload identity (an SVID). Workloads can never approve: "
                    "sign in with an approver token (tap_…)."
                )
                return _html(login_page(csrf, message), 403)
            log.info("ui_login_refused", reason="invalid_token")
            message = (
                "That is not a valid approver token. Paste the whole token "
                "(it starts with tap_), or ask an operator for one."
            )
            return _html(login_page(csrf, message), 401)
        log.info("ui_login", approver=who.id)
        response = _redirect("/ui/approvals")
        _set_session(response, _new_session(token))  # a new session id, so a new CSRF token
        return response

    @app.post("/ui/logout", include_in_schema=False)
    def logout(request: Request, form: Form = form_body) -> Response:
        forged = forgery(request, form)
        if forged:
            return _refused(forged)
        response = _redirect("/ui/login")
        _clear_session(response)
        return response

    @app.get("/ui/approvals", include_in_schema=False)
    def approvals_list(request: Request) -> Response:
        who = signed_in(request)
        if who is None:
            return to_login(request)
        try:
            items = deps.approvals.list(LIST_LIMIT)
            emergencies = deps.breakglass.list(LIST_LIMIT)
        except TetherError as error:
            return _error_page(error)
        now = deps.clock.now()
        return html_with(
            request, lambda csrf: list_page(items, now, who, csrf, LIST_LIMIT, emergencies)
        )

    def show(
        request: Request,
        who: Approver,
        approval_id: ApprovalId,
        error: TetherError | None = None,
    ) -> Response:
        try:
            approval = deps.approvals.get(approval_id)
        except TetherError as missing:
            return _error_page(missing)
        shown = (error.code.value, error.message) if error else None
        status = HTTP_STATUS[error.code] if error else 200
        now = deps.clock.now()
        return html_with(request, lambda csrf: detail_page(approval, now, who, csrf, shown), status)

    @app.get("/ui/approvals/{approval_id}", include_in_schema=False)
    def approval_detail(request: Request, approval_id: str) -> Response:
        who = signed_in(request)
        if who is None:
            return to_login(request)
        found = _approval_id(approval_id)
        return _not_an_id() if found is None else show(request, who, found)

    def decide(request: Request, form: Form, approval_id: str, approve: bool) -> Response:
        forged = forgery(request, form)
        if forged:
            return _refused(forged)
        who = signed_in(request)
        if who is None:
            return to_login(request)
        found = _approval_id(approval_id)
        if found is None:
            return _not_an_id()
        reason = form.get("reason").strip()
        if not reason:
            missing = TetherError(
                "write a reason: it is recorded with your vote in the audit log",
                code=ErrorCode.INVALID_FIELD,
            )
            return show(request, who, found, missing)
        try:
            deps.approvals.vote(who, found, approve, reason)
        except TetherError as error:
            log.info("ui_vote_refused", approver=who.id, code=error.code.value)
            return show(request, who, found, error)
        log.info("ui_vote", approver=who.id, approval_id=found, approve=approve)
        return _redirect(f"/ui/approvals/{quote(found, safe='')}")

    @app.post("/ui/approvals/{approval_id}/approve", include_in_schema=False)
    def approve(request: Request, approval_id: str, form: Form = form_body) -> Response:
        return decide(request, form, approval_id, True)

    @app.post("/ui/approvals/{approval_id}/deny", include_in_schema=False)
    def deny(request: Request, approval_id: str, form: Form = form_body) -> Response:
        return decide(request, form, approval_id, False)

    app.add_middleware(UiSecurityHeaders)
