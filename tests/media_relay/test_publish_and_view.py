"""R1, R2, R3: an officer publishes over WHIP, a viewer watches over WHEP, everything is recorded.

Real parts only: the ``zhihui up`` process, aiortc peers on loopback, PyAV reading the archive.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import av
import httpx

from field_client.dispatch import DispatchClient
from field_client.sources import TestPatternTrack, ToneTrack
from field_client.whip import WhipPublisher
from media_relay.recording.manifest import GENESIS_HASH, line_hash, sha256_file
from tests.conftest import ApiClient
from tests.media import publishing, watching
from tests.support import LOOPBACK, ZhihuiProcess

LOOP = [LOOPBACK]


async def _wait_for(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def _stream_folder(zhihui: ZhihuiProcess, stream_id: str) -> Path:
    folders = list(zhihui.recordings.glob(f"*/*/*/{stream_id}"))
    assert len(folders) == 1, folders
    return folders[0]


def _decoded_video_frames(folder: Path) -> int:
    total = 0
    for segment in sorted(folder.glob("*.mkv")):
        with av.open(str(segment)) as container:
            total += sum(1 for _ in container.decode(video=0))
    return total


async def test_published_stream_is_listed_viewed_without_transcoding_and_recorded(
    zhihui: ZhihuiProcess, commander: ApiClient
) -> None:
    async with publishing(zhihui, "officer1") as live:
        stream_id = live.stream_id

        def listed() -> list[dict[str, Any]]:
            return [s for s in commander.http.get("/api/streams").json() if s["stream_id"] == stream_id]

        await _wait_for(lambda: bool(listed()))
        (stream,) = listed()
        assert stream["officer"]["username"] == "officer1"
        assert stream["video_codec"] == "vp8" and stream["audio_codec"] == "opus"

        async with watching(zhihui, commander, stream_id) as viewer:
            await asyncio.wait_for(viewer.first_video_frame.wait(), 10)
            await asyncio.sleep(3)
            # 3 s at 15 fps after the first frame; allow for start-up on a busy machine.
            assert viewer.frames["video"] >= 30, viewer.frames
            assert viewer.frames["audio"] > 50
            assert viewer.last_video_frame is not None
            picture = viewer.last_video_frame.to_ndarray(format="rgb24")
            assert picture.shape == (240, 320, 3)
            assert picture.std() > 20  # colour bars, not a blank picture
            relay = {s["stream_id"]: s for s in httpx.get(zhihui.base_url + "/relay/streams").json()}
            assert relay[stream_id]["viewers"] == 1
    sent = live.video.frames_sent

    # The stream goes down on the wall ...
    await _wait_for(lambda: not listed())
    # ... and its recording holds every frame that was sent, within a few at the edges (R2).
    folder = _stream_folder(zhihui, stream_id)
    await _wait_for(lambda: (folder / "manifest.jsonl").exists())
    recorded = _decoded_video_frames(folder)
    assert sent - 5 <= recorded <= sent, (sent, recorded)

    lines = (folder / "manifest.jsonl").read_bytes().splitlines()
    previous = GENESIS_HASH
    for line in lines:
        entry = json.loads(line)
        assert entry["prev"] == previous
        previous = line_hash(line)
        if entry["type"] == "segment":
            assert sha256_file(folder / entry["file"]) == entry["sha256"]
    assert sum(json.loads(line)["frames"]["video"] for line in lines if b'"segment"' in line) == recorded
    # Audio and video were timed by the publisher's sender reports (A/V sync), not by arrival.
    last_segment = [json.loads(line) for line in lines if b'"segment"' in line][-1]
    assert last_segment["clock"] == {"video": "sender-report", "audio": "sender-report"}, last_segment


async def test_new_viewer_starts_on_a_keyframe_requested_from_the_publisher(
    zhihui: ZhihuiProcess, commander: ApiClient
) -> None:
    async with publishing(zhihui, "officer1") as live:
        await asyncio.sleep(2.5)  # well past the publisher's first keyframe
        started = asyncio.get_running_loop().time()
        async with watching(zhihui, commander, live.stream_id) as viewer:
            await asyncio.wait_for(viewer.first_video_frame.wait(), 5)
            # aiortc's publisher sends a keyframe only when asked: a prompt first frame proves the PLI.
            assert asyncio.get_running_loop().time() - started < 3
            assert viewer.last_video_frame is not None
            assert viewer.last_video_frame.to_ndarray(format="rgb24").std() > 20


async def test_publisher_reconnecting_with_the_same_grant_continues_the_stream_with_a_gap(
    zhihui: ZhihuiProcess,
) -> None:
    client = DispatchClient(zhihui.base_url)
    await client.login("officer2", zhihui.credentials["officer2"])
    grant = await client.publish_grant("phone")
    try:
        for _ in range(2):
            publisher = WhipPublisher(grant.whip_url, grant.grant, host_addresses=LOOP)
            await publisher.start(TestPatternTrack(width=320, height=240), ToneTrack())
            await asyncio.sleep(2)
            await publisher.stop()
            await asyncio.sleep(0.5)
    finally:
        await client.close()
    folder = _stream_folder(zhihui, grant.stream_id)
    entries = [json.loads(line) for line in (folder / "manifest.jsonl").read_bytes().splitlines()]
    assert [e["type"] for e in entries] == ["segment", "gap", "segment"]
    assert entries[1]["reason"] == "publisher reconnected"
    assert entries[1]["started_at"] <= entries[1]["ended_at"]


async def test_a_dropped_publisher_that_comes_back_continues_the_same_stream_for_its_viewers(
    zhihui: ZhihuiProcess, commander: ApiClient
) -> None:
    async with publishing(zhihui, "officer2", device="phone") as live:
        async with watching(zhihui, commander, live.stream_id) as viewer:
            await asyncio.wait_for(viewer.first_video_frame.wait(), 10)
            # The network drops: the connection goes, with no WHIP DELETE.
            await live.publisher.pc.close()
            await _wait_for(lambda: _relay_state(zhihui, live.stream_id) == "reconnecting")
            before = viewer.frames["video"]
            assert any(s["stream_id"] == live.stream_id for s in commander.http.get("/api/streams").json())

            again = WhipPublisher(live.grant.whip_url, live.grant.grant, host_addresses=[LOOPBACK])
            await again.start(TestPatternTrack(width=320, height=240), ToneTrack())
            try:
                await _wait_for(lambda: _relay_state(zhihui, live.stream_id) == "live")
                await _wait_for(lambda: viewer.frames["video"] > before + 15)
            finally:
                await again.stop()
    folder = _stream_folder(zhihui, live.stream_id)
    entries = [json.loads(line) for line in (folder / "manifest.jsonl").read_bytes().splitlines()]
    assert [e["type"] for e in entries] == ["segment", "gap", "segment"]
    assert entries[1]["reason"] == "publisher reconnected"


async def test_a_delete_after_the_connection_closed_ends_the_stream_at_once(zhihui: ZhihuiProcess) -> None:
    """R1: some WHIP clients (whip-whep-js among them) close the connection, then send DELETE. The
    stream must end then, not wait out the reconnect grace as if the network had dropped."""
    async with publishing(zhihui, "officer2", device="bodycam-delete") as live:
        await _wait_for(lambda: live.publisher.pc.connectionState == "connected")
        await live.publisher.pc.close()
        await _wait_for(lambda: _relay_state(zhihui, live.stream_id) == "reconnecting")
        session_url = live.publisher.session_url
        assert session_url is not None
        forged = httpx.delete(session_url, headers={"Authorization": "Bearer nonsense"})
        assert forged.status_code == 401, forged.text
        owner = {"Authorization": f"Bearer {live.grant.grant}"}
        deleted = httpx.delete(session_url, headers=owner)
        assert deleted.status_code == 200, deleted.text
        assert _relay_state(zhihui, live.stream_id) is None
        assert httpx.delete(session_url, headers=owner).status_code == 404


def _relay_state(zhihui: ZhihuiProcess, stream_id: str) -> str | None:
    streams = httpx.get(zhihui.base_url + "/relay/streams").json()
    return next((s["state"] for s in streams if s["stream_id"] == stream_id), None)
