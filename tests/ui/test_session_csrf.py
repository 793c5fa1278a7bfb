"""The approval page's anti-forgery token is bound to the session, and its one cookie is a
``__Host-`` cookie: a token from another session, or a value planted in a cookie, is refused."""

from __future__ import annotations

import httpx
from playwright.sync_api import Page

from tether.api.ui import csrf_token
from tether.cli.browser import browser_client, page_csrf
from tether.runtime import Runtime
from ui.pages import SESSION, Pending, sign_in, sign_in_http


def state(client: httpx.Client, pending: Pending) -> str:
    shown = client.get(f"/ui/approvals/{pending.approval_id}").text
    return shown.split('data-state="', 1)[1].split('"', 1)[0]


def test_a_token_from_session_a_is_refused_in_session_b(
    base_url: str, pending: Pending, approver_token: str
) -> None:
    target = f"/ui/approvals/{pending.approval_id}/approve"
    with browser_client(base_url) as a, browser_client(base_url) as b:
        token_a = sign_in_http(a, approver_token)
        token_b = sign_in_http(b, approver_token)  # the same approver, another session
        assert token_a != token_b
        refused = b.post(target, data={"reason": "looks fine", "csrf": token_a})
        assert refused.status_code == 403
        assert "does not match this session" in refused.text
        assert state(b, pending) == "pending"
        assert b.post(target, data={"reason": "looks fine", "csrf": token_b}).status_code == 303
        assert state(b, pending) == "approved"


def test_a_csrf_value_planted_in_a_cookie_counts_for_nothing(
    base_url: str, pending: Pending, approver_token: str
) -> None:
    planted = "A" * 43
    with browser_client(base_url) as victim:
        sign_in_http(victim, approver_token)
        # What an attacker able to write cookies (a sibling host, plain http) would plant.
        for name, path in [("tether_csrf", "/ui"), ("__Host-tether_csrf", "/"), ("csrf", "/")]:
            victim.cookies.set(name, planted, domain="127.0.0.1", path=path)
        forged = victim.post(
            f"/ui/approvals/{pending.approval_id}/approve",
            data={"reason": "forged", "csrf": planted},
        )
        assert forged.status_code == 403
        assert state(victim, pending) == "pending"


def test_the_token_is_the_sessions_hmac_and_sign_in_starts_a_new_session(
    base_url: str, runtime: Runtime, pending: Pending, approver_token: str
) -> None:
    with browser_client(base_url) as client:
        login = client.get("/ui/login")
        anonymous = client.cookies[SESSION]
        before = page_csrf(login.text)
        assert before == csrf_token(runtime.ui_key, anonymous)
        after = sign_in_http(client, approver_token)
        sid, _, token = client.cookies[SESSION].partition(".")
        assert token == approver_token and sid != anonymous
        assert after == csrf_token(runtime.ui_key, sid) != before
        stale = client.post(
            f"/ui/approvals/{pending.approval_id}/deny", data={"reason": "x", "csrf": before}
        )
        assert stale.status_code == 403  # the pre-sign-in token died with that session
        assert state(client, pending) == "pending"


def test_chromium_keeps_one_host_only_secure_cookie_over_loopback_http(
    page: Page, base_url: str, approver_token: str
) -> None:
    assert base_url.startswith("http://127.0.0.1:")
    sign_in(page, approver_token)  # signs in: the browser kept and sent the Secure cookie
    [cookie] = page.context.cookies()
    assert cookie["name"] == SESSION
    assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/" and cookie["domain"] == "127.0.0.1"
