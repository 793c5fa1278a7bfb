"""Hostile text in every field an agent or a person controls shows as text on the approval pages.

Each string mixes markup (``<script>``, an ``<img>`` with a handler), both quotes (to break out of
an attribute) and template syntax (``{{ 7*7 }}``, to catch text rendered as a template). In a
real Chromium: no script element or image appears, no dialog opens, and each string reads back
literally.
"""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import Dialog, Page

from support import INTENT, Agent
from tether.api.ui_pages import login_page, message_page
from tether.runtime import Runtime
from ui.pages import CALL, PAY, sign_in

HOSTILE = "<script>alert(1)</script>\"'{{ 7*7 }}{% raw %}<img src=x onerror=alert(2)>"


def _hostile(label: str) -> str:
    return f"{label} {HOSTILE}"


def _json(text: str) -> str:
    """``text`` as the pages show it inside JSON (the summary and the arguments)."""
    return text.replace('"', '\\"')


def _watch(page: Page) -> list[str]:
    dialogs: list[str] = []

    def record(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", record)
    return dialogs


def _nothing_ran(page: Page, dialogs: list[str]) -> None:
    assert page.locator("script").count() == 0
    assert page.locator("img").count() == 0
    assert page.locator("[onerror]").count() == 0
    assert dialogs == []


def test_every_agent_and_approver_field_is_shown_literally(
    page: Page, analyst: Agent, client: httpx.Client, runtime: Runtime, approver_token: str
) -> None:
    purpose, on_behalf = _hostile("purpose"), _hostile("on-behalf")
    key, value = _hostile("key"), _hostile("value")
    opened = analyst.open_task(
        [PAY], ttl_seconds=3600, intent={**INTENT, "purpose": purpose, "on_behalf_of": on_behalf}
    )
    assert opened.status_code == 201, opened.text
    task = opened.json()
    verdict = analyst.authorize(
        task["grant"], **{**CALL, "args": {"amount": 500, "to": "c-1042", key: value}}
    ).json()
    assert verdict["decision"] == "approval_required", verdict
    approval_id = verdict["approval_id"]

    reason = _hostile("break-glass")
    bob = {"Authorization": f"Bearer {runtime.approvers.add('bob')}"}
    bg = client.post(
        f"/v1/tasks/{task['task_id']}/breakglass",
        json={"scopes": [PAY], "reason": reason},
        headers=analyst.headers,
    )
    assert bg.status_code == 201, bg.text
    assert client.post(f"/v1/breakglass/{bg.json()['breakglass_id']}/approve", headers=bob)

    dialogs = _watch(page)
    sign_in(page, approver_token)
    page.goto("/ui/approvals")
    assert reason in page.locator(".breakglass").inner_text()
    # `{{ 7*7 }}` evaluated would show 49; ids are random and may hold those digits.
    assert "49" not in re.sub(
        r"\b[a-z]{3}_[0-9a-z]{26}\b", "<id>", page.locator(".breakglass").inner_text()
    )
    _nothing_ran(page, dialogs)

    page.goto(f"/ui/approvals/{approval_id}")
    summary = "\n".join(page.locator("#summary li").all_inner_texts())
    for shown in (purpose, on_behalf, value):
        assert _json(shown) in summary, shown
    assert f"{key} = " in summary  # argument names are shown as they are
    arguments = page.locator("#arguments").inner_text()
    assert _json(key) in arguments and _json(value) in arguments
    _nothing_ran(page, dialogs)

    vote = _hostile("</textarea>vote")
    page.fill("#reason-deny", vote)
    page.click("button.deny")
    page.wait_for_url(f"**/ui/approvals/{approval_id}")
    assert vote in page.locator("#votes-h + table").inner_text()
    assert page.locator("h1 .badge").get_attribute("data-state") == "denied"
    _nothing_ran(page, dialogs)


def test_the_sign_in_and_message_pages_show_their_text_literally(page: Page) -> None:
    # Their texts are tether's own today; rendered here with hostile ones in every parameter,
    # straight into the browser (no server, so no CSP to hide a failure to escape).
    dialogs = _watch(page)
    page.set_content(login_page(_hostile("csrf"), _hostile("error")))
    assert page.locator("[role=alert]").inner_text() == _hostile("error")
    assert page.locator("input[name=csrf]").get_attribute("value") == _hostile("csrf")
    _nothing_ran(page, dialogs)

    title, message, code = _hostile("title"), _hostile("message"), _hostile("code")
    page.set_content(message_page(title, message, code=code, link=_hostile("/ui/approvals?")))
    assert page.title() == f"{title} · tether"
    assert page.locator("h1").inner_text() == title
    assert page.locator("[role=alert]").inner_text() == f"{code}: {message}"
    assert page.locator("main a").get_attribute("href") == _hostile("/ui/approvals?")
    _nothing_ran(page, dialogs)
