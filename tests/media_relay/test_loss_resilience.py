"""R1, R2 on a 4G uplink: with packet loss and jitter on the publisher's link, neither a viewer
nor the recording freezes for more than 500 ms (issue 3's loss resilience).

The loss is made on the publisher's side of a real aiortc connection (this machine's kernel has
no netem): each outgoing RTP packet, retransmissions included, is lost with the given
probability and delayed by up to 100 ms, so some arrive out of order.
"""

from __future__ import annotations

import asyncio
import json

import av
import pytest

from field_client.dispatch import DispatchClient
from field_client.sources import TestPatternTrack, ToneTrack
from field_client.whep import WhepViewer
from field_client.whip import WhipPublisher
from media_relay import aiortc_compat
from tests.conftest import ApiClient
from tests.support import LOOPBACK, ZhihuiProcess

FREEZE_LIMIT = 0.5
JITTER = 0.1


def _recorded_pts(zhihui: ZhihuiProcess, stream_id: str) -> list[float]:
    folder = next(zhihui.recordings.glob(f"*/*/*/{stream_id}"))
    entries = [json.loads(line) for line in (folder / "manifest.jsonl").read_bytes().splitlines()]
    times: list[float] = []
    for entry in entries:
        if entry["type"] != "segment":
            continue
        with av.open(str(folder / entry["file"])) as container:
            stream = container.streams.video[0]
            times += [float(p.pts * stream.time_base) for p in container.demux(stream) if p.pts is not None]
    return sorted(times)


@pytest.mark.parametrize("loss", [0.01, 0.05])
async def test_no_freeze_over_500_ms_with_loss_and_jitter_on_the_uplink(
    zhihui: ZhihuiProcess, commander: ApiClient, loss: float
) -> None:
    client = DispatchClient(zhihui.base_url)
    await client.login("officer1", zhihui.credentials["officer1"])
    grant = await client.publish_grant("bodycam")
    video = TestPatternTrack(width=640, height=480, fps=15)
    publisher = WhipPublisher(grant.whip_url, grant.grant, host_addresses=[LOOPBACK])
    await publisher.start(video, ToneTrack())
    aiortc_compat.impair_outgoing_rtp(publisher.pc, loss=loss, jitter=JITTER, seed=int(loss * 1000))
    try:
        view = commander.http.post("/api/grants/view", json={"stream_ids": [grant.stream_id]}).json()
        viewer = WhepViewer(zhihui.base_url + view["streams"][0]["whep_url"], view["grant"], host_addresses=[LOOPBACK])
        await viewer.start()
        await asyncio.wait_for(viewer.first_video_frame.wait(), 10)
        await asyncio.sleep(8)
        await viewer.stop()
    finally:
        await publisher.stop()
        await client.close()

    assert len(viewer.video_arrivals) >= 8 * 15 * 0.8, len(viewer.video_arrivals)
    assert viewer.longest_freeze() <= FREEZE_LIMIT, f"viewer froze for {viewer.longest_freeze():.3f} s"

    await asyncio.sleep(0.5)
    recorded = _recorded_pts(zhihui, grant.stream_id)
    assert len(recorded) >= video.frames_sent * 0.8, (len(recorded), video.frames_sent)
    longest = max(b - a for a, b in zip(recorded, recorded[1:], strict=False))
    assert longest <= FREEZE_LIMIT, f"the recording froze for {longest:.3f} s"
