"""R1, R3: clients the relay's authors did not write work against it unmodified.

Chromium runs medooze's whip-whep-js (vendored as published, see ``vendor/``): its WHIP client
publishes the fake camera and microphone, with trickle ICE over PATCH, and its WHEP client plays
the stream back in another page. The relay forwards the browser's own packets, so this also checks
that what Chromium sends, Chromium can decode after the relay, and that both ends go away cleanly
on DELETE.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from playwright.async_api import Browser, Page

from tests.conftest import ApiClient
from tests.media_relay.test_publish_and_view import _decoded_video_frames, _stream_folder
from tests.support import ZhihuiProcess

VENDOR = Path(__file__).parent / "vendor" / "whip-whep-js-1.2.0"

PUBLISH = """async ({url, token}) => {
    const media = await navigator.mediaDevices.getUserMedia({video: {width: 640, height: 360}, audio: true});
    const pc = new RTCPeerConnection();
    for (const track of media.getTracks()) pc.addTransceiver(track, {direction: "sendonly"});
    window.client = new WHIPClient();
    window.pc = pc;
    await window.client.publish(pc, url, token);
}"""

VIEW = """async ({url, token}) => {
    const pc = new RTCPeerConnection();
    pc.addTransceiver("video", {direction: "recvonly"});
    pc.addTransceiver("audio", {direction: "recvonly"});
    const video = document.createElement("video");
    video.id = "remote";
    video.muted = true;
    video.autoplay = true;
    video.playsInline = true;
    document.body.append(video);
    const media = new MediaStream();
    pc.ontrack = (event) => { media.addTrack(event.track); video.srcObject = media; };
    window.client = new WHEPClient();
    window.pc = pc;
    await window.client.view(pc, url, token);
}"""


async def _load_client(page: Page, base_url: str, module: str, name: str) -> None:
    """A page of the server's origin with the unmodified module loaded and its class exposed."""
    await page.goto(base_url + "/")
    source = (VENDOR / module).read_text()
    await page.add_script_tag(content=f"{source}\nwindow.{name} = {name};", type="module")
    await page.wait_for_function(f"typeof window.{name} === 'function'")


async def _inbound_video(page: Page) -> dict[str, float]:
    return await page.evaluate(  # type: ignore[no-any-return]
        """async () => {
            const out = {framesDecoded: 0, packetsLost: 0, nackCount: 0};
            (await window.pc.getStats()).forEach((s) => {
                if (s.type === "inbound-rtp" && s.kind === "video") {
                    out.framesDecoded = s.framesDecoded;
                    out.packetsLost = s.packetsLost;
                    out.nackCount = s.nackCount;
                }
            });
            return out;
        }"""
    )


async def test_medooze_whip_and_whep_clients_publish_and_play_through_the_relay(
    zhihui: ZhihuiProcess, browser: Browser, officer1: ApiClient, commander: ApiClient
) -> None:
    grant = officer1.http.post("/api/grants/publish", json={"device": "whip-whep-js"})
    assert grant.status_code == 200, grant.text
    publish = grant.json()
    contexts = [
        await browser.new_context(permissions=["camera", "microphone"]),
        await browser.new_context(),
    ]
    errors: list[str] = []
    try:
        publisher, viewer = [await context.new_page() for context in contexts]
        for page in (publisher, viewer):
            page.set_default_timeout(20000)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
        await _load_client(publisher, zhihui.base_url, "whip.js", "WHIPClient")
        whip_url = zhihui.base_url + publish["whip_url"]
        await publisher.evaluate(PUBLISH, {"url": whip_url, "token": publish["grant"]})
        await publisher.wait_for_function("window.pc.connectionState === 'connected'")

        view = commander.http.post("/api/grants/view", json={"stream_ids": [publish["stream_id"]]})
        assert view.status_code == 200, view.text
        body = view.json()
        await _load_client(viewer, zhihui.base_url, "whep.js", "WHEPClient")
        whep_url = zhihui.base_url + body["streams"][0]["whep_url"]
        await viewer.evaluate(VIEW, {"url": whep_url, "token": body["grant"]})
        await viewer.wait_for_function("window.pc.connectionState === 'connected'")

        # Frames keep being decoded, and the picture is the fake camera's (not black, not frozen).
        await viewer.wait_for_function(
            "document.getElementById('remote').getVideoPlaybackQuality().totalVideoFrames > 30", timeout=30000
        )
        first = await _inbound_video(viewer)
        await asyncio.sleep(2)
        later = await _inbound_video(viewer)
        assert later["framesDecoded"] - first["framesDecoded"] >= 30, (first, later)
        size = await viewer.evaluate("[remote.videoWidth, remote.videoHeight]")
        assert size == [640, 360], size

        # DELETE from each client ends each session on the relay.
        await viewer.evaluate("window.client.stop()")
        await publisher.evaluate("window.client.stop()")
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            stats = commander.http.get("/relay/stats").json()
            live = [s for s in stats["streams"] if s["stream_id"] == publish["stream_id"]]
            if not live:
                break
            assert asyncio.get_running_loop().time() < deadline, live
            await asyncio.sleep(0.2)
    finally:
        for context in contexts:
            await context.close()
    assert not errors, errors
    # What the browser sent was recorded as it came, and decodes.
    await asyncio.sleep(0.5)
    assert _decoded_video_frames(_stream_folder(zhihui, publish["stream_id"])) >= 60
