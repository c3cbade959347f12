"""The archive page's redacted copy in a real headless Chromium (R2, R17; issue 4): a commander asks
for a copy of the recording in the player with the faces blurred, sees its progress in percent, and
gets a link to it; an officer of the watch who may not export sees no button."""

from __future__ import annotations

import asyncio

import httpx
from playwright.async_api import Page

from field_client.sources import StillTrack
from tests.archive_support import catalogued, record_with_gap
from tests.browser.conftest import sign_in
from tests.conftest import ApiClient
from tests.faces_support import picture
from tests.support import ZhihuiProcess


async def test_a_commander_gets_a_redacted_copy_from_the_archive_page(
    zhihui: ZhihuiProcess, page: Page, commander: ApiClient
) -> None:
    stream_id = await record_with_gap(
        zhihui, "officer2", "page-face", seconds=1.0, video=lambda: StillTrack(picture(0))
    )
    await asyncio.to_thread(catalogued, commander, stream_id)

    await sign_in(page, f"{zhihui.base_url}/archive", "commander", zhihui.credentials["commander"])
    await page.click(f'.recording[data-stream-id="{stream_id}"]')
    await page.click("#redact-button")
    await page.locator("#redact-progress").wait_for()
    link = page.locator("#redact-download")
    await link.wait_for(timeout=120_000)
    assert await page.text_content("#redact-progress") == "100%"
    href = await link.get_attribute("href")
    assert href and href.startswith("/api/redactions/")
    copy = await asyncio.to_thread(httpx.get, zhihui.base_url + href, timeout=30)
    assert copy.status_code == 200 and copy.headers["content-type"] == "video/webm"
    (job,) = await asyncio.to_thread(
        lambda: commander.http.get("/api/redactions", params={"stream_id": stream_id}).json()
    )
    assert job["state"] == "done" and job["frames_with_faces"] == job["frames"] > 0


async def test_no_redact_button_for_a_role_that_may_not_export(
    zhihui: ZhihuiProcess, page: Page, commander: ApiClient
) -> None:
    stream_id = await record_with_gap(zhihui, "officer2", "page-duty", seconds=1.0)
    await asyncio.to_thread(catalogued, commander, stream_id)
    assert zhihui.admin_password
    admin = ApiClient(zhihui.base_url, "admin", zhihui.admin_password)
    body = {
        "username": "duty-redact",
        "display_name": "Duty",
        "role": "duty_officer",
        "password": "duty-pass-123",
    }
    assert admin.http.post("/api/people", json=body).status_code == 201

    await sign_in(page, f"{zhihui.base_url}/archive", "duty-redact", "duty-pass-123")
    await page.click(f'.recording[data-stream-id="{stream_id}"]')
    await page.locator("#verify-button").wait_for()
    assert await page.locator("#redact-button").is_hidden()
