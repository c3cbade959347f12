"""The pages in a real headless Chromium with a fake camera (R1, R3, R4, R9).

The wall plays a live stream published by the Python field client and shows the officer's
acknowledgement of a directive sent from it; the officer page publishes the fake camera,
acknowledges a directive from the command room and reports it done, and renews its sign-in with
the refresh token when the access token is refused (R17).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
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
    # Done comes after the acknowledgement (R4): the button appears once the server has it.
    await page.click(f"{card} button.done:not([disabled])")
    await page.wait_for_selector(f'{card}[data-state="done"]')
    assert await page.locator(f"{card} button").count() == 0

    listed = {d["id"]: d for d in commander.http.get("/api/directives").json()}
    assert listed[directive_id]["targets"][0]["state"] == "done"

    await page.click("#stop-stream")
    await page.wait_for_selector('#stream-state[data-state="idle"]')


async def test_officer_page_renews_a_refused_access_token_with_the_refresh_token(
    zhihui: ZhihuiProcess, page: Page, commander: ApiClient, officer1: ApiClient
) -> None:
    """R17: the access token is refused (as after 15 minutes); the page exchanges its refresh token
    for new ones and carries on: directives load, the websocket delivers, no login form."""
    await sign_in(page, f"{zhihui.base_url}/officer", "officer1", zhihui.credentials["officer1"])
    await page.wait_for_selector("#connection-status[data-status='connected']")
    first_refresh = await page.evaluate("sessionStorage.getItem('zhihui.refresh_token')")
    assert first_refresh
    await page.evaluate("sessionStorage.setItem('zhihui.token', 'expired-or-forged')")
    await page.reload()
    await page.wait_for_selector("#connection-status[data-status='connected']")
    assert await page.is_hidden("#login-view")
    renewed = await page.evaluate("sessionStorage.getItem('zhihui.refresh_token')")
    assert renewed and renewed != first_refresh
    assert await page.evaluate("sessionStorage.getItem('zhihui.token')") != "expired-or-forged"

    response = commander.http.post(
        "/api/directives",
        json={"target_ids": [officer1.id], "text": "Still there?", "ack_deadline_seconds": 60},
    )
    await page.wait_for_selector(f'#directives .directive[data-directive-id="{response.json()["id"]}"]')

    # Logging out ends the sign-in on the server: the refresh token no longer works.
    await page.click("#logout")
    await page.wait_for_selector("#login-view:not([hidden])")
    assert await page.evaluate("sessionStorage.getItem('zhihui.refresh_token')") is None
    token_hash = hashlib.sha256(renewed.encode()).hexdigest()
    deadline = asyncio.get_running_loop().time() + 10
    while not _revoked(zhihui, token_hash):  # the page's logout request is on its way
        assert asyncio.get_running_loop().time() < deadline, "the logout never reached the server"
        await asyncio.sleep(0.1)
    refused = commander.http.post("/api/auth/refresh", json={"refresh_token": renewed})
    assert refused.status_code == 401


def _revoked(zhihui: ZhihuiProcess, token_hash: str) -> bool:
    with contextlib.closing(sqlite3.connect(zhihui.database)) as db:
        row = db.execute(
            "SELECT revoked_at IS NOT NULL FROM refresh_token WHERE token_hash = ?", (token_hash,)
        ).fetchone()
    return bool(row and row[0])
