"""The archive page in a real headless Chromium (R2, issue 4): a recorded stream plays (frames
decoded from the WebM remuxed on the fly), its gap is marked on the timeline, a click on the
timeline seeks, and an export shows its percentage and offers the package."""

from __future__ import annotations

import asyncio

from playwright.async_api import Page

from tests.archive_support import catalogued, record_with_gap
from tests.browser.conftest import sign_in
from tests.conftest import ApiClient
from tests.support import ZhihuiProcess

PLAYER = "#player"


async def _frames(page: Page) -> int:
    return int(await page.eval_on_selector(PLAYER, "v => v.getVideoPlaybackQuality().totalVideoFrames"))


async def _wait_frames(page: Page, at_least: int, timeout: float = 15) -> int:
    deadline = asyncio.get_running_loop().time() + timeout
    while (count := await _frames(page)) < at_least:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"only {count} frames decoded in the archive player")
        await asyncio.sleep(0.1)
    return count


async def test_archive_page_plays_a_recording_marks_its_gap_seeks_and_exports(
    zhihui: ZhihuiProcess, page: Page, commander: ApiClient
) -> None:
    stream_id = await record_with_gap(zhihui, "officer1", "review")
    recording = await asyncio.to_thread(catalogued, commander, stream_id)
    recorded = sum(s["video_frames"] for s in recording["segments"])

    await sign_in(page, f"{zhihui.base_url}/archive", "commander", zhihui.credentials["commander"])
    await page.click(f'.recording[data-stream-id="{stream_id}"]')
    await _wait_frames(page, 10)
    assert await page.locator("#timeline .tl-gap[data-reason='publisher reconnected']").count() == 1
    assert await page.locator("#timeline .tl-segment").count() == 2
    assert await page.locator("#gap-list li").count() == 1
    played = await _wait_frames(page, recorded - 5)
    assert played <= recorded
    assert await page.eval_on_selector(PLAYER, "v => v.videoWidth") == 320

    # Seek: a click near the end of the timeline plays from the second segment on.
    source = await page.eval_on_selector(PLAYER, "v => v.currentSrc")
    box = await page.locator("#timeline").bounding_box()
    assert box is not None
    await page.mouse.click(box["x"] + box["width"] * 0.8, box["y"] + box["height"] / 2)
    await page.wait_for_function(f"document.querySelector('{PLAYER}').currentSrc !== {source!r}")
    assert "start=" in await page.eval_on_selector(PLAYER, "v => v.currentSrc")
    await _wait_frames(page, 5)
    assert await _frames(page) < played

    await page.click("#export-button")
    await page.locator("#export-download:not([hidden])").wait_for()
    assert await page.text_content("#export-progress") == "100%"
    href = await page.get_attribute("#export-download", "href")
    assert href and "/download?ticket=" in href
