"""Break-glass is loud on the approver's page, in a real browser."""

from __future__ import annotations

import httpx
from playwright.sync_api import Page

from support import Agent
from tether.runtime import Runtime
from ui.pages import sign_in

SCOPE = {"tool": "crm.purge", "actions": ["delete"], "datasets": ["crm"]}


def test_active_break_glass_and_owed_reviews_show_on_the_list(
    page: Page, analyst: Agent, client: httpx.Client, runtime: Runtime, approver_token: str
) -> None:
    task = analyst.open_task(
        [{"tool": "crm.query", "actions": ["read"], "datasets": ["crm"]}], ttl_seconds=3600
    ).json()
    humans = {n: {"Authorization": f"Bearer {runtime.approvers.add(n)}"} for n in ("bob", "carol")}
    bg = client.post(
        f"/v1/tasks/{task['task_id']}/breakglass",
        json={"scopes": [SCOPE], "reason": "<b>purge</b> a poisoned record"},
        headers=analyst.headers,
    ).json()
    for name in ("bob", "carol"):
        client.post(f"/v1/breakglass/{bg['breakglass_id']}/approve", headers=humans[name])

    sign_in(page, approver_token)
    page.goto("/ui/approvals")
    banner = page.locator(".breakglass")
    assert banner.is_visible()
    text = banner.inner_text()
    assert "BREAK-GLASS ACTIVE" in text and bg["breakglass_id"] in text
    assert "REVIEW OWED" in text
    assert "<b>purge</b> a poisoned record" in text  # shown as text, not markup
    assert page.locator(".breakglass b").count() == 0
