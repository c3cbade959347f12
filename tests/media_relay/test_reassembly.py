"""The relay's frame assembler and NACK tracker, packet by packet with a controlled clock (R1)."""

from __future__ import annotations

from dataclasses import dataclass, field

from media_relay.forwarding.frames import EncodedFrame, MediaKind
from media_relay.forwarding.reassembly import CodecInfo, FrameAssembler, NackTracker, Unwrapper

VP8 = {96: CodecInfo("vp8", 90000)}
OPUS = {111: CodecInfo("opus", 48000)}
KEY = b"\x00\x00\x00\x9d\x01\x2a\x40\x01\xf0\x00"  # VP8 key frame header, 320x240
DELTA = b"\x01\x00\x00"


@dataclass
class Packet:
    sequence_number: int
    timestamp: int
    marker: int
    payload: bytes
    _data: bytes
    payload_type: int = 96
    ssrc: int = 1234


@dataclass
class Clock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    clock: Clock = field(default_factory=Clock)
    frames: list[EncodedFrame] = field(default_factory=list)
    keyframe_requests: int = 0
    skipped_through: list[int] = field(default_factory=list)

    def assembler(self, kind: MediaKind = MediaKind.VIDEO) -> FrameAssembler:
        def request() -> None:
            self.keyframe_requests += 1

        return FrameAssembler(
            kind=kind,
            codecs=VP8 if kind is MediaKind.VIDEO else OPUS,
            deliver=self.frames.append,
            request_keyframe=request,
            on_skip=self.skipped_through.append,
            max_wait=0.3,
            keyframe_after=0.15,
            clock=self.clock,
        )


def vp8_frame(seq: int, ts: int, packets: int, key: bool) -> list[Packet]:
    """A frame split in ``packets`` RTP packets, with the VP8 descriptor's S bit on the first."""
    out = []
    for i in range(packets):
        body = (KEY if key else DELTA) if i == 0 else bytes([i])
        descriptor = b"\x10" if i == 0 else b"\x00"
        out.append(Packet(seq + i, ts, int(i == packets - 1), descriptor + body, body))
    return out


def test_a_frame_is_released_on_its_marker_packet_not_when_the_next_one_starts() -> None:
    h = Harness()
    assembler = h.assembler()
    for packet in vp8_frame(1000, 9000, 3, key=True):
        assembler.add(packet)
    assert len(h.frames) == 1
    assert h.frames[0].keyframe and h.frames[0].timestamp == 0
    assert h.frames[0].data == KEY + b"\x01\x02"


def test_reordered_packets_are_put_back_in_order() -> None:
    h = Harness()
    assembler = h.assembler()
    key = vp8_frame(1000, 9000, 3, key=True)
    delta = vp8_frame(1003, 15000, 2, key=False)
    for packet in (key[0], key[2], key[1], delta[1], delta[0]):
        assembler.add(packet)
    assert [f.timestamp for f in h.frames] == [0, 6000]
    assert h.frames[1].data == DELTA + b"\x01"


def test_a_packet_reordered_before_the_first_one_still_starts_the_stream() -> None:
    h = Harness()
    assembler = h.assembler()
    key = vp8_frame(1000, 9000, 3, key=True)
    for packet in (key[1], key[0], key[2]):
        assembler.add(packet)
    assert len(h.frames) == 1 and h.frames[0].keyframe


def test_a_hole_that_is_filled_in_time_loses_nothing() -> None:
    h = Harness()
    assembler = h.assembler()
    frames = vp8_frame(1000, 9000, 2, key=True) + vp8_frame(1002, 15000, 2, key=False)
    for packet in frames[:2] + frames[3:]:
        assembler.add(packet)
    h.clock.now += 0.1
    assembler.add(frames[2])  # the retransmission
    assert len(h.frames) == 2 and h.keyframe_requests == 0


def test_a_lasting_hole_asks_for_a_keyframe_then_skips_and_waits_for_one() -> None:
    h = Harness()
    assembler = h.assembler()
    for packet in vp8_frame(1000, 0, 2, key=True):
        assembler.add(packet)
    lost = vp8_frame(1002, 6000, 2, key=False)
    assembler.add(lost[1])  # lost[0] never comes
    h.clock.now += 0.16
    for packet in vp8_frame(1004, 12000, 2, key=False):
        assembler.add(packet)
    assert h.keyframe_requests == 1 and len(h.frames) == 1
    h.clock.now += 0.2  # past max_wait
    for packet in vp8_frame(1006, 18000, 2, key=False):
        assembler.add(packet)
    # The delta frames after the hole are not forwarded: they would not decode.
    assert len(h.frames) == 1
    assert h.skipped_through and h.skipped_through[0] == 1003
    assert assembler.holes_skipped == 1
    for packet in vp8_frame(1008, 24000, 3, key=True):
        assembler.add(packet)
    assert len(h.frames) == 2 and h.frames[1].keyframe and h.frames[1].timestamp == 24000


def test_audio_holes_are_skipped_quickly_without_keyframes() -> None:
    h = Harness()
    assembler = h.assembler(MediaKind.AUDIO)
    assembler.max_wait = 0.06

    def opus(seq: int) -> Packet:
        return Packet(seq, seq * 960, 0, b"\xfc", b"\xfc", payload_type=111)

    assembler.add(opus(1))
    assembler.add(opus(3))
    assert len(h.frames) == 1
    h.clock.now += 0.07
    assembler.add(opus(4))
    assert [f.timestamp for f in h.frames] == [0, 1920, 2880]
    assert h.keyframe_requests == 0


def test_sequence_numbers_wrap_around() -> None:
    h = Harness()
    assembler = h.assembler()
    for packet in vp8_frame(65534, 9000, 4, key=True):
        packet.sequence_number &= 0xFFFF
        assembler.add(packet)
    assert len(h.frames) == 1


def test_nack_tracker_asks_again_until_the_packet_comes_or_is_too_old() -> None:
    clock = Clock()
    losses = []
    tracker = NackTracker(retry_interval=0.05, max_age=0.3, on_loss=lambda: losses.append(1), clock=clock)
    for seq in (10, 11, 14):
        found = tracker.add(Packet(seq, 0, 0, b"", b""))
    assert found and tracker.missing == [12, 13] and tracker.missing == []
    assert losses == [1]
    clock.now += 0.06
    assert tracker.due() == [12, 13]
    assert tracker.due() == []  # not again before the retry interval
    tracker.add(Packet(12, 0, 0, b"", b""))
    clock.now += 0.06
    assert tracker.due() == []  # backing off: the second retry waits twice as long
    clock.now += 0.06
    assert tracker.due() == [13]
    clock.now += 0.3
    assert tracker.due() == []
    assert tracker.outstanding == 0 and tracker.recovered == 1 and tracker.given_up == 1


def test_nack_tracker_forgets_what_the_assembler_skipped() -> None:
    tracker = NackTracker(clock=Clock())
    for seq in (65530, 65535, 3):
        tracker.add(Packet(seq, 0, 0, b"", b""))
    tracker.forget_through(65535)
    assert tracker.outstanding == 3  # 0, 1, 2 after the wrap are still wanted


def test_unwrapper_extends_across_wraps_and_keeps_late_values_in_place() -> None:
    u = Unwrapper(16)
    assert [u.unwrap(v) for v in (65534, 65535, 0, 65533, 1)] == [65534, 65535, 65536, 65533, 65537]
