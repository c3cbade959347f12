"""Headless Chromium (Debian's, driven by Playwright) with a fake camera and microphone.

Outside CI a machine without Chromium skips these tests; in CI (``CI=true``) it fails them.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.support import in_ci

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: `make test` installs Debian's chromium package"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@contextlib.asynccontextmanager
async def new_page(browser: Browser, **context_options: Any) -> AsyncIterator[Page]:
    """A page in a browser context of its own (``context_options``: Playwright's ``new_context``);
    an uncaught error in the page fails the test when it closes."""
    context = await browser.new_context(**context_options)
    page = await context.new_page()
    page.set_default_timeout(15000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        await context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    async with new_page(
        browser, permissions=["camera", "microphone"], viewport={"width": 1400, "height": 900}
    ) as page:
        yield page


async def sign_in(page: Page, url: str, username: str, password: str) -> None:
    await page.goto(url)
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.press("#password", "Enter")
