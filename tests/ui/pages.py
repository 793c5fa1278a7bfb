"""Helpers for the browser tests: a real pending approval and signing in."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from playwright.sync_api import Page

from support import Agent
from tether.cli.browser import page_csrf

PAY = {"tool": "payments.transfer", "actions": ["spend"], "constraints": {"amount": {"max": 1000}}}
CALL = {"tool": "payments.transfer", "action": "spend", "args": {"amount": 500, "to": "c-1042"}}


@dataclass(frozen=True)
class Pending:
    grant: str
    approval_id: str
    call: dict[str, object]


def request_approval(agent: Agent, call: dict[str, object] = CALL) -> Pending:
    """Open a task and make a call that policy sends to a human: a real ``approval_required``."""
    opened = agent.open_task([PAY], ttl_seconds=3600)
    assert opened.status_code == 201, opened.text
    grant = opened.json()["grant"]
    verdict = agent.authorize(grant, **call).json()
    assert verdict["decision"] == "approval_required", verdict
    return Pending(grant, verdict["approval_id"], call)


def sign_in(page: Page, token: str) -> None:
    page.goto("/ui/login")
    page.fill("#approver-token", token)
    page.click("form[action='/ui/login'] button[type=submit]")
    page.wait_for_url("**/ui/approvals")


SESSION = "__Host-tether_session"


def sign_in_http(client: httpx.Client, token: str) -> str:
    """Sign in as a browser would, with httpx (a :func:`browser_client`); returns the session's
    CSRF token, read from a page's form."""
    login = client.get("/ui/login")
    response = client.post("/ui/login", data={"token": token, "csrf": page_csrf(login.text)})
    assert response.status_code == 303, response.text
    return page_csrf(client.get("/ui/approvals").text)
