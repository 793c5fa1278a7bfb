"""A real audit log for the report tests, and a real headless Chromium to open the HTML report.

``runtime`` is the root fixture's runtime with the packaged example policies plus one policy
(``files.share`` may be read and written) so a grant can hold an action that goes unused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, sync_playwright

from reports.scenario import Recorded, record_day
from support import Agent, copy_policies, make_runtime
from tether.runtime import Runtime
from tether.service.clock import ManualClock

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
]
FILES_POLICY = """// Shared files: any agent may read and write them.
@id("agents-share-files")
@risk("ASI02")
permit (
  principal,
  action in [Action::"read", Action::"write"],
  resource == Tool::"files.share"
);
"""


@pytest.fixture
def runtime(tmp_path: Path, clock: ManualClock) -> Iterator[Runtime]:
    policies = copy_policies(tmp_path / "policies")
    (policies / "files.cedar").write_text(FILES_POLICY, encoding="utf-8")
    rt = make_runtime(tmp_path / "data", clock, policy_dir=policies)
    yield rt
    rt.close()


@pytest.fixture
def day(
    runtime: Runtime,
    client: httpx.Client,
    clock: ManualClock,
    analyst: Agent,
    intruder: Agent,
    tmp_path: Path,
) -> Recorded:
    return record_day(runtime, client, clock, analyst, intruder, tmp_path / "audit.jsonl")


InBrowser = Callable[[Callable[[Browser], None]], None]


def _run_in_browser(check: Callable[[Browser], None]) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            check(browser)
        finally:
            browser.close()


@pytest.fixture
def in_browser() -> InBrowser:
    """Run a check against a fresh headless Chromium, in a thread of its own.

    Playwright's sync API allows one running instance per thread, and the approval-page tests
    keep one open for the whole session; a thread of our own keeps the two apart whatever the
    order the tests run in. Failures in the check are raised here, in the test.
    """
    if not CHROMIUM.is_file():
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}; the HTML report is tested in a real "
            "browser. Install it with: sudo bash scripts/ensure-chromium.sh",
            pytrace=False,
        )

    def run(check: Callable[[Browser], None]) -> None:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="chromium") as pool:
            pool.submit(_run_in_browser, check).result(timeout=120)

    return run
