"""R3: viewers come and go and stall without disturbing the publisher, the recording or the
other viewers; no viewer can grow the relay's memory without bound."""

from __future__ import annotations

import asyncio

from media_relay import aiortc_compat
from media_relay.forwarding.fanout import ForwardTrack, TrackFanout
from media_relay.forwarding.frames import EncodedFrame, MediaKind
from tests.conftest import ApiClient
from tests.media import publishing, watching
from tests.media_relay.test_publish_and_view import _decoded_video_frames, _stream_folder
from tests.support import ZhihuiProcess


def _frame(n: int, keyframe: bool) -> EncodedFrame:
    return EncodedFrame(MediaKind.VIDEO, "vp8", bytes([n % 256]) * 100, n * 6000, 90000, keyframe, 0.0)


async def test_a_viewer_that_stops_reading_loses_its_backlog_not_the_others_frames() -> None:
    requests: list[str] = []
    fanout = TrackFanout(MediaKind.VIDEO)
    stalled = ForwardTrack(MediaKind.VIDEO, 8, lambda: requests.append("stalled"))
    healthy = ForwardTrack(MediaKind.VIDEO, 8, lambda: requests.append("healthy"))
    fanout.attach(stalled)
    fanout.attach(healthy)
    received = []
    for n in range(100):
        fanout.deliver(_frame(n, keyframe=n % 30 == 0))
        received.append(await healthy.recv())  # the healthy viewer keeps up; the stalled one never reads
    assert len(received) == 100 and requests.count("healthy") == 0
    assert stalled._queue.qsize() <= 8  # bounded, however long it stalls
    assert stalled.overflows >= 1 and requests.count("stalled") >= 1
    # Once it reads again it restarts on a keyframe, never on a frame it cannot decode.
    while not stalled._queue.empty():
        stalled._queue.get_nowait()
    fanout.deliver(_frame(100, keyframe=False))
    fanout.deliver(_frame(120, keyframe=True))
    packet = await stalled.recv()
    assert packet.is_keyframe and packet.pts == 120 * 6000


async def test_a_stalled_viewer_does_not_slow_the_other_viewer_or_the_recording(
    zhihui: ZhihuiProcess, commander: ApiClient
) -> None:
    async with publishing(zhihui, "officer1") as live:
        async with watching(zhihui, commander, live.stream_id) as stalled:
            async with watching(zhihui, commander, live.stream_id) as healthy:
                for viewer in (stalled, healthy):
                    await asyncio.wait_for(viewer.first_video_frame.wait(), 10)
                aiortc_compat.pause_receiving(stalled.pc)
                stalled_before = stalled.frames["video"]
                healthy_before = healthy.frames["video"]
                sent_before = live.video.frames_sent
                await asyncio.sleep(4)
                sent = live.video.frames_sent - sent_before
                assert healthy.frames["video"] - healthy_before >= sent - 3, (healthy.frames, sent)
                assert stalled.frames["video"] - stalled_before <= 3
                assert healthy.longest_freeze() < 0.5
    await asyncio.sleep(0.5)
    recorded = _decoded_video_frames(_stream_folder(zhihui, live.stream_id))
    assert recorded >= live.video.frames_sent - 5, (recorded, live.video.frames_sent)
