"""The archive page's retention panel in a real headless Chromium (R2, R17; issue 4): the recording
in the player shows how long it is kept; a commander places an evidence hold with a reason and lifts
it with another, and both are in the audit log."""

from __future__ import annotations

import asyncio

from playwright.async_api import Page

from tests.archive_support import catalogued, record_with_gap
from tests.browser.conftest import sign_in
from tests.conftest import ApiClient
from tests.support import ZhihuiProcess


async def test_a_commander_places_and_lifts_a_hold_from_the_archive_page(
    zhihui: ZhihuiProcess, page: Page, commander: ApiClient
) -> None:
    stream_id = await record_with_gap(zhihui, "officer2", "holds", seconds=1.5)
    await asyncio.to_thread(catalogued, commander, stream_id)

    await sign_in(page, f"{zhihui.base_url}/archive", "commander", zhihui.credentials["commander"])
    await page.click(f'.recording[data-stream-id="{stream_id}"]')
    await page.locator("#retention-status", has_text="Kept until").wait_for()
    assert await page.locator("#hold-list .hold").count() == 0

    await page.fill("#hold-reason", "party appealed the seizure")
    await page.click("#hold-form button[type=submit]")
    hold = page.locator("#hold-list .hold")
    await hold.wait_for()
    assert await hold.locator(".hold-reason").text_content() == "party appealed the seizure"
    assert await page.get_attribute("#retention-status", "data-held") == "true"
    hold_id = int(await hold.get_attribute("data-hold-id") or 0)

    # The server agrees: the recording may not be deleted while held.
    retention = commander.http.get(f"/api/recordings/{stream_id}/retention").json()
    assert [h["id"] for h in retention["holds"]] == [hold_id] and "under evidence hold" in retention[
        "refusal"
    ]

    await hold.locator(".hold-lift-reason").fill("appeal withdrawn")
    await hold.locator(".hold-lift button").click()
    await page.locator("#hold-list .hold").wait_for(state="detached")
    assert await page.get_attribute("#retention-status", "data-held") == "false"

    assert zhihui.admin_password
    admin = ApiClient(zhihui.base_url, "admin", zhihui.admin_password)
    rows = admin.http.get("/api/audit", params={"action": "archive.hold*", "limit": 50}).json()["items"]
    mine = [
        (r["action"], r["outcome"], r["detail"].get("reason")) for r in rows if r["actor_name"] == "commander"
    ]
    assert ("archive.hold", "success", "party appealed the seizure") in mine
    assert ("archive.hold_lift", "success", "appeal withdrawn") in mine
