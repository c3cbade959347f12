"""R8: a bodycam whose picture goes black reaches the command room: in SQL, on the websocket, in
the stream list, and as a badge on the wall's tile."""

from __future__ import annotations

import asyncio
import json

import websockets
from playwright.async_api import Page

from field_client.sources import StillTrack
from tests.browser.conftest import sign_in
from tests.conftest import ApiClient
from tests.media import publishing
from tests.support import ZhihuiProcess


async def test_a_black_picture_is_reported_to_the_command_room(
    zhihui: ZhihuiProcess, commander: ApiClient, page: Page
) -> None:
    ws_url = zhihui.base_url.replace("http", "ws") + "/ws"
    async with websockets.connect(ws_url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": commander.token}))
        async with publishing(zhihui, "officer2", device="bodycam") as live:
            live.publisher.pc.getTransceivers()[0].sender.replaceTrack(StillTrack.black(320, 240))

            async def health_event() -> dict[str, object]:
                while True:
                    message = json.loads(await ws.recv())
                    if message["type"] == "stream_health" and message["stream_id"] == live.stream_id:
                        return message  # type: ignore[no-any-return]

            event = await asyncio.wait_for(health_event(), 15)
            assert event["flags"] == ["black"] and event["event_id"]
            listed = {s["stream_id"]: s for s in commander.http.get("/api/streams").json()}
            assert listed[live.stream_id]["health"] == ["black"]

            await sign_in(page, f"{zhihui.base_url}/wall", "commander", zhihui.credentials["commander"])
            tile = f'.tile[data-stream-id="{live.stream_id}"][data-health~="black"]'
            badge = page.locator(f"{tile} .badge-health")
            await badge.wait_for()
            assert "BLACK" in await badge.inner_text()
