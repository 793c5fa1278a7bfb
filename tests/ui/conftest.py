"""A real headless Chromium (Debian's ``chromium``) driven by Playwright, and a pending approval.

The browser is the system one at ``/usr/bin/chromium`` (``scripts/ensure-chromium.sh`` installs
it); Playwright's own browser downloads are never used. A missing browser fails these tests: the
approval page is a security surface and must not go untested quietly.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from support import Agent
from tether.runtime import Runtime
from ui.pages import Pending, request_approval

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}; the approval page is tested in a real "
            "browser. Install it with: sudo bash scripts/ensure-chromium.sh",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, base_url: str) -> Iterator[Page]:
    context = browser.new_context(base_url=base_url, viewport={"width": 1100, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(10_000)
    yield opened
    context.close()


@pytest.fixture
def approver_token(runtime: Runtime) -> str:
    return runtime.approvers.add("alice")


@pytest.fixture
def pending(analyst: Agent) -> Pending:
    return request_approval(analyst)
