"""The pages in a real headless Chromium with a fake camera (R1, R3, R4, R9).

The wall plays a live stream published by the Python field client and shows the officer's
acknowledgement of a directive sent from it; the officer page publishes the fake camera and
acknowledges a directive from the command room.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from typing import Any

import cv2
import numpy as np
from playwright.async_api import Page

from tests.browser.conftest import sign_in
from tests.conftest import ApiClient
from tests.media import publishing, watching
from tests.support import ZhihuiProcess


async def _frames_decoded(page: Page, selector: str) -> int:
    return int(
        await page.eval_on_selector(
            selector, "v => v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality().totalVideoFrames : 0"
        )
    )


async def _wait_frames(page: Page, selector: str, at_least: int, timeout: float = 20) -> int:
    deadline = asyncio.get_running_loop().time() + timeout
    while (count := await _frames_decoded(page, selector)) < at_least:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"only {count} frames decoded in {selector}")
        await asyncio.sleep(0.2)
    return count


async def test_wall_plays_a_live_stream_and_shows_the_acknowledged_directive(
    zhihui: ZhihuiProcess, page: Page, officer1: ApiClient
) -> None:
    acked: list[int] = []
    async with publishing(zhihui, "officer1", width=640, height=480) as live:

        async def on_message(message: dict[str, Any]) -> None:
            if message["type"] == "directive":
                await live.client.acknowledge(message["directive"]["id"])
                acked.append(message["directive"]["id"])

        listener = asyncio.create_task(live.client.listen(on_message))
        try:
            await sign_in(page, f"{zhihui.base_url}/wall", "commander", zhihui.credentials["commander"])
            video = f'#wall-grid .tile[data-stream-id="{live.stream_id}"] video'
            await page.wait_for_selector(video)
            first = await _wait_frames(page, video, 10)
            await asyncio.sleep(1.5)
            assert await _frames_decoded(page, video) > first  # it keeps playing

            # What the wall shows is the officer's picture: the colour bars, not a black tile.
            png = np.frombuffer(await page.locator(video).screenshot(), dtype=np.uint8)
            pixels = cv2.imdecode(png, cv2.IMREAD_COLOR).reshape(-1, 3)
            assert pixels.std(axis=0).mean() > 30, "the tile looks blank"

            await page.select_option("#directive-target", str(officer1.id))
            await page.fill("#directive-text", "Secure the entrance 控制入口")
            await page.fill("#directive-deadline", "60")
            await page.click("#directive-form button[type=submit]")
            card = page.locator("#directive-list .directive", has_text="Secure the entrance 控制入口")
            await card.locator(
                f'.target[data-person-id="{officer1.id}"][data-state="acknowledged"]'
            ).wait_for()
            directive_id = int(await card.get_attribute("data-directive-id") or 0)
            assert directive_id in acked
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    with sqlite3.connect(zhihui.database) as db:
        row = db.execute(
            "SELECT d.text, t.state FROM directive d"
            " JOIN directive_target t ON t.directive_id = d.id WHERE d.id = ?",
            (directive_id,),
        ).fetchone()
    assert row == ("Secure the entrance 控制入口", "ACKNOWLEDGED")


async def test_officer_page_publishes_the_camera_and_acknowledges_a_directive(
    zhihui: ZhihuiProcess, page: Page, commander: ApiClient, officer2: ApiClient
) -> None:
    await sign_in(page, f"{zhihui.base_url}/officer", "officer2", zhihui.credentials["officer2"])
    await page.click("#start-stream")
    await page.wait_for_selector('#stream-state[data-state="live"]')

    streams = [s for s in commander.http.get("/api/streams").json() if s["officer"]["id"] == officer2.id]
    assert len(streams) == 1, streams
    stream = streams[0]
    async with watching(zhihui, commander, stream["stream_id"]) as viewer:
        await asyncio.wait_for(viewer.first_video_frame.wait(), 15)
        await asyncio.sleep(1)
        assert viewer.frames["video"] >= 10
        assert viewer.last_video_frame is not None
        picture = viewer.last_video_frame.to_ndarray(format="rgb24")
        assert picture.shape[1] >= 320 and picture.std() > 10  # Chromium's fake camera, not black

    response = commander.http.post(
        "/api/directives",
        json={"target_ids": [officer2.id], "text": "Move to the second floor", "ack_deadline_seconds": 60},
    )
    directive_id = response.json()["id"]
    card = f'#directives .directive[data-directive-id="{directive_id}"]'
    await page.wait_for_selector(card)
    assert "Move to the second floor" in await page.inner_text(card)
    await page.click(f"{card} button.ack")
    await page.wait_for_selector(f'{card}[data-state="acknowledged"]')

    await asyncio.sleep(0.3)
    listed = {d["id"]: d for d in commander.http.get("/api/directives").json()}
    assert listed[directive_id]["targets"][0]["state"] == "acknowledged"

    await page.click("#stop-stream")
    await page.wait_for_selector('#stream-state[data-state="idle"]')
