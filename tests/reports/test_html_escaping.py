"""Hostile names in the audit records show as text in the HTML report, in a real Chromium.

Agents, workflows, argument constraints and the source name come from records or from the
command line, never from tether's own words (tool and dataset names are checked against a
strict name syntax before they reach a report). Each carries markup, both quotes and template
syntax; the page must show each literally and run nothing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from playwright.sync_api import Browser, Dialog

from reports.conftest import InBrowser
from reports.test_html import GENERATED, open_offline, text
from reports.test_units import Log
from tether.core.audit import AuditKind
from tether.reports import activity, privileges, render_privileges_html

HOSTILE = "<script>alert(1)</script>\"'{{ 7*7 }}{% raw %}<img src=x onerror=alert(2)>"
AGENT = f"spiffe://tether.local/agent/{HOSTILE}"
WORKFLOW = f"wf {HOSTILE}"
TOOL = "crm.query"
DATASET = "crm"
PAYEE = f"payee {HOSTILE}"
SOURCE = f"audit {HOSTILE}.jsonl"


def _records() -> Log:
    log = Log()
    intent = {"workflow": WORKFLOW, "purpose": HOSTILE, "on_behalf_of": HOSTILE}
    scopes = [
        {
            "tool": TOOL,
            "actions": ["read", "send"],
            "datasets": [DATASET],
            "constraints": {"to": {"one_of": [PAYEE]}},
        }
    ]
    log.add(
        AuditKind.TASK_OPENED,
        {"intent": intent, "granted": scopes, "requested": scopes, "refused": []},
        agent=AGENT,
    )
    log.add(
        AuditKind.DECISION,
        {
            "intent": intent,
            "call": {"tool": TOOL, "action": "read", "dataset": DATASET, "args": {}},
            "verdict": {
                "decision": "allow",
                "reasons": [{"code": "policy_permits", "message": HOSTILE}],
                "risks": ["ASI02"],
                "obligations": [],
                "delegation": {"depth": 0, "chain": []},
            },
        },
        minutes=1,
        agent=AGENT,
    )
    return log


def test_hostile_names_in_the_records_are_shown_literally(
    in_browser: InBrowser, tmp_path: Path
) -> None:
    records = _records().records
    report = privileges(records)
    [group] = report.groups
    assert group.agent == AGENT and group.workflow == WORKFLOW  # the names reached the report
    page = render_privileges_html(report, activity(records), source=SOURCE, generated_at=GENERATED)
    assert "<script" not in page.lower()
    path = tmp_path / "hostile.html"
    path.write_text(page, encoding="utf-8")
    in_browser(lambda browser: _check(browser, path))


def _check(browser: Browser, path: Path) -> None:
    page, errors, failed, _ = open_offline(browser, path)
    dialogs: list[str] = []

    def record(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", record)
    try:
        locate = page.locator
        assert locate("script").count() == 0 and locate("img").count() == 0
        assert locate("[onerror]").count() == 0
        assert errors == [] and failed == [] and dialogs == []
        assert SOURCE in locate(".meta").inner_text()
        row = locate("table#groups tbody tr").nth(0).locator("td")
        assert row.nth(0).inner_text() == AGENT
        assert row.nth(1).inner_text() == WORKFLOW
        section = locate("section.group").nth(0)
        assert section.locator("h3").inner_text() == f"{AGENT} · {WORKFLOW}"
        assert f"{TOOL} read {DATASET}" in section.locator("table").inner_text()
        scope = json.loads(section.locator("pre.proposed-scope").inner_text())
        assert scope[0]["tool"] == TOOL and scope[0]["datasets"] == [DATASET]
        assert scope[0]["constraints"] == {"to": {"one_of": [PAYEE]}}
        assert WORKFLOW.replace('"', '\\"') in section.locator("pre.proposed-cedar").inner_text()
        bar = locate("svg#chart-privileges g.row").nth(0)
        assert bar.get_attribute("data-agent") == AGENT
        assert AGENT in text(locate("svg#chart-privileges desc"))
        # `{{ 7*7 }}` evaluated would show 49; ids and times may hold those digits.
        shown = re.sub(
            r"\b[a-z]{3}_[0-9a-z]{26}\b|\d{4}-\d{2}-\d{2}|\d{2}:\d{2}(:\d{2})?",
            "<id or time>",
            locate("body").inner_text(),
        )
        assert "49" not in shown
    finally:
        page.context.close()
