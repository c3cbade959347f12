"""R3: viewers come and go and stall without disturbing the publisher, the recording or the
other viewers; no viewer can grow the relay's memory without bound."""

from __future__ import annotations

import asyncio
import itertools

from media_relay import aiortc_compat
from media_relay.forwarding.fanout import TrackFanout
from media_relay.forwarding.frames import EncodedFrame, MediaKind
from media_relay.forwarding.rtp_out import RtpForwarder, RtpParameters, packetize
from tests.conftest import ApiClient
from tests.media import publishing, watching
from tests.media_relay.test_publish_and_view import _decoded_video_frames, _stream_folder
from tests.support import ZhihuiProcess


def _frame(n: int, keyframe: bool) -> EncodedFrame:
    payloads = (bytes([n % 256]) * 1000, bytes([n % 256]) * 500)
    return EncodedFrame(
        MediaKind.VIDEO, "vp8", b"".join(payloads), n * 6000, 90000, keyframe, 0.0, payloads=payloads
    )


class SocketQueue:
    """An output whose socket queue the test fills and empties: what a viewer on a congested link
    looks like to the relay (the kernel pushes back and asyncio queues the rest)."""

    def __init__(self) -> None:
        self.parameters = RtpParameters(
            payload_type=96, ssrc=1234, rtx_payload_type=97, rtx_ssrc=5678, extension=b""
        )
        self.connected = True
        self.queued = 0
        self.packets: list[bytes] = []

    def ready(self) -> bool:
        return self.connected

    def backlog(self) -> int:
        return self.queued

    def send(self, packets: list[bytes]) -> None:
        self.packets.extend(packets)

    def send_frame(
        self,
        header: bytes,
        payloads: tuple[bytes, ...],
        sequence: int,
        marker: int,
        history: list[bytes | None],
    ) -> tuple[int, int]:
        packets, sequence, octets = packetize(header, payloads, sequence, marker, history)
        self.send(packets)
        return sequence, octets

    def sent(self, *, packets: int, octets: int, rtp_timestamp: int) -> None:
        pass


def test_a_viewer_whose_socket_backs_up_loses_frames_to_a_keyframe_not_the_others() -> None:
    requests: list[str] = []
    fanout = TrackFanout(MediaKind.VIDEO)
    congested_out, healthy_out = SocketQueue(), SocketQueue()
    congested = RtpForwarder(
        MediaKind.VIDEO, congested_out, on_keyframe_needed=lambda: requests.append("congested")
    )
    healthy = RtpForwarder(
        MediaKind.VIDEO, healthy_out, on_keyframe_needed=lambda: requests.append("healthy")
    )
    fanout.attach(congested)
    fanout.attach(healthy)
    for n in range(100):
        congested_out.queued = 10**6 if 20 <= n < 40 else 0
        fanout.deliver(_frame(n, keyframe=n % 30 == 0))
    assert healthy.frames_sent == 100 and requests.count("healthy") == 0
    # Dropped from frame 20 until the keyframe at 60: the one at 30 came while it was still backed
    # up, was dropped too, and another was asked for.
    assert congested.overflows == 2 and requests.count("congested") == 2
    assert congested.frames_sent == 100 - 40 and congested.frames_dropped == 40
    sequence = [int.from_bytes(p[2:4]) for p in congested_out.packets]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(sequence))  # no gaps
    restart = congested_out.packets[2 * 20]
    assert int.from_bytes(restart[4:8]) - int.from_bytes(congested_out.packets[0][4:8]) == 60 * 6000


def test_frames_wait_for_the_connection_and_nacks_are_answered_over_rtx() -> None:
    out = SocketQueue()
    out.connected = False
    forwarder = RtpForwarder(MediaKind.VIDEO, out, on_keyframe_needed=lambda: None, pending_frames=8)
    for n in range(5):
        forwarder.offer(_frame(n, keyframe=n == 0))
    assert out.packets == [] and forwarder.pending == 5
    out.connected = True
    forwarder.offer(_frame(5, keyframe=False))
    assert forwarder.frames_sent == 6 and len(out.packets) == 12
    first = out.packets[0]
    assert first[1] & 0x7F == 96 and int.from_bytes(first[8:12]) == 1234 and first[12:] == b"\x00" * 1000
    assert out.packets[1][1] & 0x80  # the marker on a frame's last packet
    lost = int.from_bytes(out.packets[3][2:4])
    forwarder.retransmit([lost])
    rtx = out.packets[-1]
    assert rtx[1] & 0x7F == 97 and int.from_bytes(rtx[8:12]) == 5678
    assert int.from_bytes(rtx[12:14]) == lost and rtx[14:] == out.packets[3][12:]


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


def test_a_viewer_whose_output_fails_is_dropped_and_the_others_go_on() -> None:
    """R3: one viewer's broken output (socket gone, SRTP failing) never stops the others."""

    class Broken(SocketQueue):
        def send(self, packets: list[bytes]) -> None:
            raise OSError("socket closed")

    fanout = TrackFanout(MediaKind.VIDEO)
    broken = RtpForwarder(MediaKind.VIDEO, Broken(), on_keyframe_needed=lambda: None)
    healthy_out = SocketQueue()
    healthy = RtpForwarder(MediaKind.VIDEO, healthy_out, on_keyframe_needed=lambda: None)
    fanout.attach(broken)
    fanout.attach(healthy)
    for n in range(10):
        fanout.deliver(_frame(n, keyframe=n == 0))
    assert healthy.frames_sent == 10 and fanout.viewer_count == 1
