"""The HTML privileges report, opened offline from disk in a real headless Chromium."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from playwright.sync_api import Browser, ConsoleMessage, Locator, Page, Request

from reports.conftest import InBrowser
from reports.scenario import Recorded
from tether.reports import activity, privileges, render_privileges_html

GENERATED = datetime(2026, 11, 28, 13, 0, tzinfo=UTC)


def text(locator: Locator) -> str:
    """The text of an element (SVG elements have no inner text)."""
    value = locator.text_content()
    assert value is not None
    return value


def open_offline(browser: Browser, path: Path) -> tuple[Page, list[str], list[str], list[str]]:
    """Open ``path`` with the network cut off; return the page and what went wrong."""
    context = browser.new_context(offline=True, viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []
    failed: list[str] = []
    requests: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            errors.append(message.text)

    def on_failed(request: Request) -> None:
        failed.append(request.url)

    page.on("console", on_console)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("requestfailed", on_failed)
    page.on("request", lambda request: requests.append(request.url))
    page.goto(path.as_uri(), wait_until="load")
    return page, errors, failed, requests


def test_the_report_opens_offline_with_its_charts(
    day: Recorded, in_browser: InBrowser, tmp_path: Path
) -> None:
    report = privileges(day.records)
    html = render_privileges_html(
        report, activity(day.records), source=str(day.export), generated_at=GENERATED
    )
    # Self-contained: no script, and no address but the SVG namespace.
    assert "<script" not in html.lower()
    assert set(re.findall(r"https?://[^\s\"'<>)]+", html)) == {"http://www.w3.org/2000/svg"}
    path = tmp_path / "privileges.html"
    path.write_text(html, encoding="utf-8")
    in_browser(lambda browser: check_full_report(browser, path))


def check_full_report(browser: Browser, path: Path) -> None:
    page, errors, failed, requests = open_offline(browser, path)
    try:
        assert errors == [] and failed == []
        assert requests == [path.as_uri()]  # the file itself and nothing else
        assert page.title() == "tether privileges report"
        count = page.locator
        for chart in ("chart-privileges", "chart-decisions", "chart-records", "chart-bytes"):
            svg = count(f"svg#{chart}")
            assert svg.count() == 1, chart
            box = svg.bounding_box()
            assert box is not None and box["width"] > 300 and box["height"] > 40, chart
        # Used against granted: one row per agent with a grant (analyst, helper, support).
        assert count("svg#chart-privileges rect.bar-granted").count() == 3
        assert count("svg#chart-privileges rect.bar-used").count() == 3
        assert count("svg#chart-privileges g.row").nth(0).get_attribute("data-agent") == (
            "spiffe://tether.local/agent/analyst"
        )
        assert "4 / 11 used (36%)" in text(count("svg#chart-privileges"))
        # Decisions over time: 40 one-minute columns (12:01 to 12:40); 8 allow, 1 ask, 5 deny.
        assert count("svg#chart-decisions g.bucket").count() == 40
        assert count("svg#chart-decisions rect.seg-allow").count() == 5
        assert count("svg#chart-decisions rect.seg-deny").count() == 4
        assert count("svg#chart-decisions rect.seg-approval-required").count() == 1
        legend = text(count("svg#chart-decisions g.legend"))
        assert "allow (8)" in legend and "deny (5)" in legend and "approval_required (1)" in legend
        # Data read, from effects: analyst 155 records / 58000 bytes, helper 1 / 200.
        assert count("svg#chart-records rect.bar-amount").count() == 2
        records_text = text(count("svg#chart-records"))
        assert "155" in records_text and "56.6 KiB" in text(count("svg#chart-bytes"))
        # The table and the proposals are there, readable.
        rows = count("table#groups tbody tr")
        assert rows.count() == 4
        assert rows.nth(1).locator("td").nth(5).text_content() == "0.30"
        assert count("pre.proposed-cedar").count() == 4
        assert (
            "least-privilege.analyst.support-triage.1"
            in count("pre.proposed-cedar").nth(1).inner_text()
        )
        assert count("#ratio-definition").is_visible()
    finally:
        page.context.close()


def test_an_empty_report_still_opens_cleanly(in_browser: InBrowser, tmp_path: Path) -> None:
    html = render_privileges_html(
        privileges([]), activity([]), source="empty.jsonl", generated_at=GENERATED
    )
    path = tmp_path / "empty.html"
    path.write_text(html, encoding="utf-8")
    in_browser(lambda browser: check_empty_report(browser, path))


def check_empty_report(browser: Browser, path: Path) -> None:
    page, errors, failed, _ = open_offline(browser, path)
    try:
        assert errors == [] and failed == []
        locate = page.locator
        assert locate("#no-records").is_visible()
        assert locate("svg.chart").count() == 4
        assert locate("svg#chart-decisions text.empty").text_content() == (
            "No decisions in this window."
        )
    finally:
        page.context.close()
