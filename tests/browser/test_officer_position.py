"""R9: the officer page shares the phone's position with the command room while signed in (again
at once after a move, else every 10 s), says so on the page, and an SOS carries the position it
already has. Chromium with a fake geolocation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import new_page, sign_in
from tests.conftest import ApiClient
from tests.support import ZhihuiProcess

START = {"latitude": 31.2304, "longitude": 121.4737, "accuracy": 12}
MOVED = {"latitude": 31.2314, "longitude": 121.4737, "accuracy": 8}  # ~110 m north


@pytest.fixture
async def located_page(browser: Browser) -> AsyncIterator[Page]:
    async with new_page(browser, permissions=["geolocation"], geolocation=START) as page:
        yield page


async def _latest(commander: ApiClient, person_id: int, latitude: float) -> dict[str, Any] | None:
    """The person's newest stored position once it has this latitude (within 5 s), else None."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for item in commander.http.get("/api/positions/latest").json()["items"]:
            if item["person_id"] == person_id and item["latitude"] == pytest.approx(latitude, abs=1e-7):
                return item  # type: ignore[no-any-return]
        await asyncio.sleep(0.1)
    return None


async def test_the_officer_page_shares_its_position_and_sends_it_with_an_sos(
    zhihui: ZhihuiProcess, located_page: Page, commander: ApiClient, officer1: ApiClient
) -> None:
    page = located_page
    await sign_in(page, f"{zhihui.base_url}/officer", "officer1", zhihui.credentials["officer1"])
    await expect(page.locator("#position-state")).to_contain_text("Position shared with the command room")
    first = await _latest(commander, officer1.id, START["latitude"])
    assert first is not None and first["accuracy_m"] == 12

    # A move of more than 25 m is reported at once, not at the next 10 s.
    await page.context.set_geolocation(MOVED)
    assert await _latest(commander, officer1.id, MOVED["latitude"]) is not None

    await page.click("#sos")
    await expect(page.locator("#sos-state")).to_contain_text("SOS sent")
    alerts = commander.http.get("/api/alerts", params={"kind": "sos", "person_id": officer1.id}).json()
    [alert] = alerts["items"]
    try:
        assert (alert["latitude"], alert["longitude"]) == (MOVED["latitude"], MOVED["longitude"])
    finally:
        commander.http.post(f"/api/alerts/{alert['id']}/resolve", json={"note": "test over"})


async def test_without_location_permission_the_page_says_its_position_is_not_shared(
    zhihui: ZhihuiProcess, page: Page
) -> None:
    await sign_in(page, f"{zhihui.base_url}/officer", "officer2", zhihui.credentials["officer2"])
    await expect(page.locator("#position-state")).to_contain_text("Position not shared")
