"""A login link with a hostile `next`, in a real browser (Debian's headless Chromium): whatever the link says, the
browser ends up on `/` of the dashboard's own origin and never asks another host for anything. Chromium reads a
Location more loosely than a naive check does (it drops tabs and newlines, takes `\\` for `/`), which is the point
of trying it here and not only in tests/web/test_web_units.py."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from playwright.async_api import Browser, Dialog, Route, async_playwright, expect

from shared.config import Settings
from tests.web.browser.test_web_browser import CHROMIUM, CHROMIUM_ARGS
from tests.web.webapp import PASSWORDS, serve_web, web_settings

pytestmark = pytest.mark.asyncio(loop_scope="session")

HOSTILE_NEXT = [
    "/\t/evil.example/",
    "/\n/evil.example/",
    "//evil.example/",
    "/\\evil.example/",
    "\\\\evil.example/",
    "https://evil.example/",
    " //evil.example/",
    "/%2F%2Fevil.example/",
    "/%5Cevil.example/",
    "javascript:alert(document.domain)",
]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            await chromium.close()


async def log_in_with_next(browser: Browser, base: str, target: str) -> tuple[str, list[str], list[str]]:
    """Log in from a link with `next=target`; where the browser ends up, what it asked other hosts, and any dialogs."""
    origin = urlsplit(base).netloc
    elsewhere: list[str] = []
    dialogs: list[str] = []

    async def only_this_site(route: Route) -> None:
        if urlsplit(route.request.url).netloc == origin:
            await route.continue_()
        else:
            elsewhere.append(route.request.url)
            await route.abort()

    async def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    context = await browser.new_context()
    try:
        await context.route("**/*", only_this_site)
        page = await context.new_page()
        page.on("dialog", on_dialog)
        await page.goto(f"{base}/login?next={quote(target, safe='')}")
        await page.get_by_label("User name").fill("alice")
        await page.get_by_label("Password").fill(PASSWORDS["alice"])
        await page.get_by_role("button", name="Log in").click()
        await page.wait_for_load_state()
        with contextlib.suppress(AssertionError):
            await expect(page).to_have_url(f"{base}/", timeout=5_000)
        return page.url, elsewhere, dialogs
    finally:
        await context.close()


async def test_a_hostile_next_after_login_lands_on_this_sites_home(
    settings: Settings, tmp_path: Path, browser: Browser
) -> None:
    async with serve_web(web_settings(settings, tmp_path)) as web:
        outcomes = {target: await log_in_with_next(browser, web.url, target) for target in HOSTILE_NEXT}
        # The check is no blanket ban: an ordinary next is still where the login goes.
        plain = await log_in_with_next(browser, web.url, "/audit?x=1")
    assert outcomes == dict.fromkeys(HOSTILE_NEXT, (f"{web.url}/", [], []))
    assert plain == (f"{web.url}/audit?x=1", [], [])
