"""Alerts in a real headless Chromium (R9, R8): an officer's SOS appears on the wall at once,
critical, and the commander acknowledges it with a note and resolves it from the panel; the
server has both notes. The officer page sends an SOS with the phone's position and shows it seen
and resolved."""

from __future__ import annotations

import asyncio

from playwright.async_api import Browser, Page

from tests.browser.conftest import sign_in
from tests.conftest import ApiClient
from tests.support import ZhihuiProcess


async def test_the_wall_shows_an_sos_and_acknowledges_and_resolves_it(
    zhihui: ZhihuiProcess, page: Page, officer2: ApiClient, commander: ApiClient
) -> None:
    await sign_in(page, f"{zhihui.base_url}/wall", "commander", zhihui.credentials["commander"])
    await page.locator("#connection-status[data-status='connected']").wait_for()

    raised = await asyncio.to_thread(
        officer2.http.post, "/api/alerts/sos", json={"position": {"latitude": 31.2304, "longitude": 121.4737}}
    )
    assert raised.status_code == 201, raised.text
    alert_id = raised.json()["id"]
    item = page.locator(f'.alert[data-alert-id="{alert_id}"]')
    await item.wait_for()
    assert "alert-critical" in (await item.get_attribute("class") or "")
    assert "SOS" in (await item.locator(".alert-kind").text_content() or "")
    assert "31.23040, 121.47370" in (await item.locator(".alert-text").text_content() or "")

    await item.locator(".alert-note-input").fill("Unit 2 dispatched")
    await item.get_by_role("button", name="Acknowledge 确认").click()
    await item.locator(".alert-ack", has_text="Unit 2 dispatched").wait_for()
    assert await item.get_by_role("button", name="Acknowledge 确认").count() == 0

    await page.locator(f'.alert[data-alert-id="{alert_id}"] .alert-note-input').fill("Officer safe")
    await (
        page.locator(f'.alert[data-alert-id="{alert_id}"]').get_by_role("button", name="Resolve 解除").click()
    )
    await item.wait_for(state="detached")

    stored = (await asyncio.to_thread(commander.http.get, f"/api/alerts/{alert_id}")).json()
    assert (stored["acknowledged_note"], stored["resolved_note"]) == ("Unit 2 dispatched", "Officer safe")
    assert stored["resolved_by"]["username"] == "commander"


async def test_the_officer_page_sends_an_sos_with_its_position_and_shows_it_seen(
    zhihui: ZhihuiProcess, browser: Browser, commander: ApiClient
) -> None:
    context = await browser.new_context(
        permissions=["geolocation"], geolocation={"latitude": 22.5431, "longitude": 114.0579, "accuracy": 15}
    )
    page = await context.new_page()
    page.set_default_timeout(15000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        await sign_in(page, f"{zhihui.base_url}/officer", "officer1", zhihui.credentials["officer1"])
        await page.locator("#connection-status[data-status='connected']").wait_for()
        await page.click("#sos")
        await page.locator("#sos-state[data-status='sent']").wait_for()

        mine = {"kind": "sos", "person_id": int(str(await _me(page)))}
        listed = (await asyncio.to_thread(commander.http.get, "/api/alerts", params=mine)).json()["items"]
        (alert,) = listed
        assert (alert["latitude"], alert["longitude"], alert["accuracy_m"]) == (22.5431, 114.0579, 15)
        acked = await asyncio.to_thread(
            commander.http.post, f"/api/alerts/{alert['id']}/acknowledge", json={"note": "Unit 5, 3 minutes"}
        )
        assert acked.status_code == 200, acked.text
        seen = page.locator("#sos-state[data-status='seen']")
        await seen.wait_for()
        assert "Unit 5, 3 minutes" in (await seen.text_content() or "")
        await asyncio.to_thread(
            commander.http.post, f"/api/alerts/{alert['id']}/resolve", json={"note": "Safe"}
        )
        await page.locator("#sos-state[data-status='resolved']", has_text="Safe").wait_for()
    finally:
        await context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


async def _me(page: Page) -> object:
    return await page.evaluate("JSON.parse(sessionStorage.getItem('zhihui.user')).id")
