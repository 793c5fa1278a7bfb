"""The approver's web page in a real headless Chromium, against a real server on loopback."""

from __future__ import annotations

import re

import httpx
from fastapi.testclient import TestClient
from playwright.sync_api import Dialog, Page

from support import Agent, mint
from tether.api.app import create_app
from tether.cli.browser import browser_client, page_csrf
from tether.runtime import Runtime
from tether.service.clock import ManualClock
from ui.pages import CALL, SESSION, Pending, request_approval, sign_in, sign_in_http

SCREENSHOT = "/tmp/tether-approval.png"
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; style-src 'self' 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


def codes(verdict: dict[str, object]) -> list[str]:
    return [r["code"] for r in verdict["reasons"]]  # type: ignore[index, union-attr]


def state_of(page: Page) -> str:
    return page.locator("h1 .badge").get_attribute("data-state") or ""


def decide(page: Page, pending: Pending, verb: str, reason: str) -> None:
    page.goto(f"/ui/approvals/{pending.approval_id}")
    page.fill(f"#reason-{verb}", reason)
    page.click(f"button.{verb}")


def test_sign_in_with_an_approver_token_lists_pending_approvals(
    page: Page, pending: Pending, approver_token: str
) -> None:
    sign_in(page, approver_token)
    row = page.locator(f"tr[data-approval-id='{pending.approval_id}']")
    assert row.locator(".badge").get_attribute("data-state") == "pending"
    cells = row.locator("td").all_inner_texts()
    assert cells[1] == "spiffe://tether.local/agent/analyst"
    assert cells[2] == "payments.transfer · spend"
    assert cells[3] == "0 / 1"
    assert cells[4].startswith("2026-11-28 12:15:00 UTC")  # default expiry, 15 minutes
    assert "alice" in page.locator("header .who").inner_text()

    row.locator("a").click()
    page.wait_for_url(f"**/ui/approvals/{pending.approval_id}")

    page.click("header .who button")  # sign out
    page.wait_for_url("**/ui/login")
    page.goto("/ui/approvals")
    assert page.url.endswith("/ui/login")


def test_detail_page_shows_the_summary_and_the_exact_call(
    page: Page, pending: Pending, approver_token: str
) -> None:
    sign_in(page, approver_token)
    page.goto(f"/ui/approvals/{pending.approval_id}")
    summary = page.locator("#summary li").all_inner_texts()
    assert summary[0] == (
        "Agent spiffe://tether.local/agent/analyst asks to spend with tool payments.transfer."
    )
    assert 'Arguments (the agent\'s input, as sent): amount = 500; to = "c-1042".' in summary
    assert any("transfers-over-100-need-approval" in line for line in summary)
    body = page.locator("main").inner_text()
    assert "Facts written by tether; arguments are the agent's input, shown as sent." in body
    assert page.locator("#arguments").inner_text() == '{\n  "amount": 500,\n  "to": "c-1042"\n}'
    assert "transfers-over-100-need-approval" in page.locator("#policy-h + dl").inner_text()
    assert state_of(page) == "pending"
    assert page.locator("button.approve").is_visible()
    assert page.locator("button.deny").is_visible()
    page.screenshot(path=SCREENSHOT, full_page=True)


def test_approve_click_allows_the_agents_retry_once(
    page: Page, pending: Pending, approver_token: str, analyst: Agent
) -> None:
    sign_in(page, approver_token)
    decide(page, pending, "approve", "refund agreed with the customer")
    page.wait_for_url(f"**/ui/approvals/{pending.approval_id}")
    assert state_of(page) == "approved"
    votes = page.locator("#votes-h + table").inner_text()
    assert "approver:alice" in votes and "refund agreed with the customer" in votes
    assert page.locator("button.approve").count() == 0  # decided: no more forms

    retry = analyst.authorize(pending.grant, approval_id=pending.approval_id, **CALL).json()
    assert retry["decision"] == "allow" and codes(retry) == ["approval_granted"]
    replay = analyst.authorize(pending.grant, approval_id=pending.approval_id, **CALL).json()
    assert replay["decision"] == "deny" and codes(replay)[0] == "approval_used"
    page.reload()
    assert state_of(page) == "used"


def test_deny_click_denies_the_retry(
    page: Page, pending: Pending, approver_token: str, analyst: Agent
) -> None:
    sign_in(page, approver_token)
    decide(page, pending, "deny", "not in the refund policy")
    page.wait_for_url(f"**/ui/approvals/{pending.approval_id}")
    assert state_of(page) == "denied"
    assert "not in the refund policy" in page.locator("#votes-h + table").inner_text()
    retry = analyst.authorize(pending.grant, approval_id=pending.approval_id, **CALL).json()
    assert retry["decision"] == "deny" and codes(retry)[0] == "approval_denied"


def test_a_hostile_argument_is_shown_as_text_and_never_runs(
    page: Page, analyst: Agent, approver_token: str
) -> None:
    hostile = "<script>alert(1)</script>"
    image = '"><img src=x onerror=alert(2)>'
    pending = request_approval(
        analyst, {**CALL, "args": {"amount": 500, "to": hostile, "memo": image}}
    )
    dialogs: list[str] = []

    def record(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", record)
    sign_in(page, approver_token)
    page.goto(f"/ui/approvals/{pending.approval_id}")
    assert hostile in page.locator("#arguments").inner_text()
    assert image.replace('"', '\\"') in page.locator("#arguments").inner_text()
    assert any(hostile in line for line in page.locator("#summary li").all_inner_texts())
    assert page.locator("script").count() == 0  # escaped, not merely blocked by the CSP
    assert page.locator("img").count() == 0
    page.fill("#reason-approve", "</textarea><script>alert(3)</script>")
    page.click("button.approve")
    page.wait_for_url(f"**/ui/approvals/{pending.approval_id}")
    assert "</textarea><script>alert(3)</script>" in page.locator("#votes-h + table").inner_text()
    assert page.locator("script").count() == 0
    assert dialogs == []


def test_an_svid_or_a_garbage_token_cannot_sign_in(
    page: Page, runtime: Runtime, clock: ManualClock, pending: Pending
) -> None:
    svid = mint(runtime, "analyst", clock)
    for token, status, message in [
        (svid, 403, "That is a workload identity (an SVID). Workloads can never approve"),
        ("tap_not-a-real-token", 401, "That is not a valid approver token."),
        ("garbage <b>bold</b>", 401, "That is not a valid approver token."),
    ]:
        page.goto("/ui/login")
        page.fill("#approver-token", token)
        with page.expect_response(
            lambda r: r.url.endswith("/ui/login") and r.request.method == "POST"
        ) as posted:
            page.click("form[action='/ui/login'] button[type=submit]")
        assert posted.value.status == status
        assert message in page.locator("[role=alert]").inner_text()
        assert page.locator("#approver-token").is_visible()  # the form again
        sessions = [c["value"] for c in page.context.cookies() if c["name"] == SESSION]
        assert all("." not in value for value in sessions)  # never signed in
    page.goto(f"/ui/approvals/{pending.approval_id}")
    assert page.url.endswith("/ui/login")


def test_unauthenticated_get_redirects_to_login(
    page: Page, base_url: str, pending: Pending
) -> None:
    page.goto("/ui/approvals")
    assert page.url == f"{base_url}/ui/login"
    with browser_client(base_url) as client:
        for path in ["/ui", "/ui/approvals", f"/ui/approvals/{pending.approval_id}"]:
            response = client.get(path, follow_redirects=False)
            assert response.status_code in (303, 307), path
            if path != "/ui":
                assert response.headers["location"] == "/ui/login"
    with browser_client(base_url) as stale:
        stale.cookies.set(SESSION, f"{'s' * 43}.tap_gone", domain="127.0.0.1", path="/")
        response = stale.get("/ui/approvals")
        assert response.status_code == 303 and response.headers["location"] == "/ui/login"


def test_a_post_without_the_csrf_field_is_refused(
    base_url: str, pending: Pending, approver_token: str
) -> None:
    with browser_client(base_url) as client:
        csrf = sign_in_http(client, approver_token)
        target = f"/ui/approvals/{pending.approval_id}/approve"
        missing = client.post(target, data={"reason": "looks fine"})
        assert missing.status_code == 403
        assert "anti-forgery token is missing" in missing.text
        wrong = client.post(target, data={"reason": "looks fine", "csrf": "x" * 43})
        assert wrong.status_code == 403 and "does not match" in wrong.text
        cross = client.post(
            target,
            data={"reason": "looks fine", "csrf": csrf},
            headers={"Sec-Fetch-Site": "cross-site"},
        )
        assert cross.status_code == 403
        as_json = client.post(target, json={"reason": "looks fine", "csrf": csrf})
        assert as_json.status_code == 403
        assert client.post("/ui/logout", data={}).status_code == 403
        shown = client.get(f"/ui/approvals/{pending.approval_id}")
        assert 'data-state="pending"' in shown.text  # nothing was decided

        fine = client.post(target, data={"reason": "looks fine", "csrf": csrf})
        assert fine.status_code == 303
        assert fine.headers["location"] == f"/ui/approvals/{pending.approval_id}"

    with browser_client(base_url) as fresh:
        fresh.get("/ui/login")
        anonymous = fresh.cookies[SESSION]
        no_field = fresh.post("/ui/login", data={"token": approver_token})
        assert no_field.status_code == 403
        assert fresh.cookies[SESSION] == anonymous  # not signed in


def test_the_security_headers_and_cookie_attributes(
    base_url: str, pending: Pending, approver_token: str
) -> None:
    with browser_client(base_url) as client:
        responses = [client.get("/ui/approvals"), client.get("/ui/login")]
        token_cookie = client.post(
            "/ui/login", data={"token": approver_token, "csrf": page_csrf(responses[1].text)}
        )
        responses += [
            token_cookie,
            client.get("/ui/approvals"),
            client.get(f"/ui/approvals/{pending.approval_id}"),
            client.get("/ui/approvals/not-an-id"),
            client.post(f"/ui/approvals/{pending.approval_id}/deny", data={"reason": "x"}),
        ]
    assert [r.status_code for r in responses] == [303, 200, 303, 200, 200, 400, 403]
    for response in responses:
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (response.url, name)
    assert responses[3].headers["content-type"].startswith("text/html")
    cookies = [*responses[1].headers.get_list("set-cookie")]
    cookies += token_cookie.headers.get_list("set-cookie")
    assert len(cookies) == 2
    for cookie in cookies:
        # __Host-: Secure, Path=/, no Domain, even over plain http on loopback.
        assert cookie.startswith(f"{SESSION}=")
        assert re.search(r"(?i); HttpOnly", cookie) and re.search(r"(?i); SameSite=strict", cookie)
        assert "; Path=/;" in cookie + ";" and "; Secure" in cookie
        assert "domain=" not in cookie.lower()


def test_cookies_are_secure_over_https(runtime: Runtime, approver_token: str) -> None:
    with TestClient(create_app(runtime.api_deps), base_url="https://tether.test") as client:
        login = client.get("/ui/login")
        signed = client.post(
            "/ui/login",
            data={"token": approver_token, "csrf": page_csrf(login.text)},
            follow_redirects=False,
        )
    assert signed.status_code == 303
    cookies = signed.headers.get_list("set-cookie")
    assert len(cookies) == 1 and cookies[0].startswith(f"{SESSION}=")
    assert "; Secure" in cookies[0] and "; Path=/" in cookies[0]


def test_vote_errors_show_the_stable_code(
    page: Page,
    pending: Pending,
    analyst: Agent,
    approver_token: str,
    runtime: Runtime,
    client: httpx.Client,
    clock: ManualClock,
) -> None:
    sign_in(page, approver_token)
    page.goto(f"/ui/approvals/{pending.approval_id}")
    bob = {"Authorization": f"Bearer {runtime.approvers.add('bob')}"}
    denied = client.post(f"/v1/approvals/{pending.approval_id}/deny", headers=bob)
    assert denied.status_code == 200
    page.fill("#reason-approve", "approving a stale page")
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.click("button.approve")
    assert posted.value.status == 409
    assert (
        "approval_not_pending: the approval is denied" in page.locator("[role=alert]").inner_text()
    )
    assert state_of(page) == "denied"

    later = request_approval(analyst, {**CALL, "args": {"amount": 700, "to": "c-1042"}})
    page.goto(f"/ui/approvals/{later.approval_id}")
    clock.advance(16 * 60)
    page.fill("#reason-deny", "too late")
    page.click("button.deny")
    assert (
        "approval_not_pending: the approval is expired" in page.locator("[role=alert]").inner_text()
    )
    assert state_of(page) == "expired"

    page.goto(f"/ui/approvals/{later.approval_id}")
    assert page.locator("button.approve").count() == 0


def test_removing_an_approver_ends_their_session(
    base_url: str, runtime: Runtime, pending: Pending, approver_token: str
) -> None:
    with browser_client(base_url) as client:
        sign_in_http(client, approver_token)
        assert client.get("/ui/approvals").status_code == 200
        assert runtime.approvers.remove("alice")
        assert client.get("/ui/approvals").status_code == 303
