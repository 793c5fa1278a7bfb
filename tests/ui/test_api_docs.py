"""/docs and /redoc render in a real browser with no network but tether itself: Swagger UI and
ReDoc come from tether, not a CDN, and show tether's own API."""

from __future__ import annotations

from urllib.parse import urlparse

from playwright.sync_api import Page, Route


def _only_tether(page: Page, base_url: str) -> list[str]:
    """Refuse every request that is not to tether, as a machine with no network would; return
    what was refused that a page needs to work (scripts, styles, fonts, API calls). ReDoc's
    "powered by" logo is an image from its CDN: refused, and the page works without it."""
    ours = urlparse(base_url).netloc
    refused: list[str] = []

    def route(r: Route) -> None:
        if urlparse(r.request.url).netloc == ours:
            r.continue_()
            return
        if r.request.resource_type != "image":
            refused.append(f"{r.request.resource_type} {r.request.url}")
        r.abort()

    page.route("**/*", route)
    return refused


def test_swagger_ui_renders_offline(page: Page, base_url: str) -> None:
    refused = _only_tether(page, base_url)
    page.goto("/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "tether" in page.inner_text(".swagger-ui .info .title")
    page.wait_for_selector("[data-path='/v1/authorize']")
    assert refused == []


def test_redoc_renders_offline(page: Page, base_url: str) -> None:
    refused = _only_tether(page, base_url)
    page.goto("/redoc")
    page.wait_for_selector("h1")
    assert "tether" in page.inner_text("h1")
    page.get_by_text("/v1/authorize").first.wait_for(state="attached")
    assert refused == []
