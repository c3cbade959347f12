"""A publisher's track received in C (``forwarding/_track.c``, R1, issue 3).

The contract is the Python it replaces: packet by packet, the C track must give the same frames,
keyframe requests, NACKs and counts as ``reassembly.FrameAssembler`` and ``NackTracker`` wired as a
publisher wires them, the same payload bytes as aiortc's depayloaders, and the same statistics as
aiortc's ``StreamStatistics``. Random streams over a lossy, reordering, duplicating link with
stalls, restarts and wrapping counters are fed to both, with one controlled clock."""

from __future__ import annotations

import gc
import random
import struct
import tracemalloc
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiortc.codecs import depayload
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import RtpPacket

from media_relay import aiortc_compat
from media_relay.forwarding import _datapath
from media_relay.forwarding.frames import EncodedFrame, MediaKind
from media_relay.forwarding.reassembly import CodecInfo, FrameAssembler, NackTracker
from tests.media_relay.test_datapath import PROFILES, inbound_pair

VP8 = {96: CodecInfo("vp8", 90000)}
H264 = {102: CodecInfo("h264", 90000)}
OPUS = {111: CodecInfo("opus", 48000)}
SETTINGS = {"max_wait": 0.3, "keyframe_after": 0.15}
NACK_SETTINGS = {"retry_interval": 0.05, "max_tries": 5, "max_age": 0.5}
AIORTC_CODECS = {
    "vp8": RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96),
    "h264": RTCRtpCodecParameters(mimeType="video/H264", clockRate=90000, payloadType=102),
    "opus": RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111),
}


@dataclass
class Packet:
    sequence_number: int
    timestamp: int
    marker: int
    payload: bytes
    payload_type: int
    _data: bytes = b""
    ssrc: int = 0xCAFE0001


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def native_track(kind: MediaKind, codecs: dict[int, CodecInfo]) -> _datapath.Track:
    video = kind is MediaKind.VIDEO
    return _datapath.Track(
        video,
        {pt: (c.name, c.clock_rate) for pt, c in codecs.items()},
        **SETTINGS,
        nack=video,
        **NACK_SETTINGS,
    )


@dataclass
class Reference:
    """The Python objects, wired as the publisher wired them before the C track."""

    kind: MediaKind
    codecs: dict[int, CodecInfo]
    clock: Clock
    frames: list[EncodedFrame] = field(default_factory=list)
    keyframes: int = 0

    def __post_init__(self) -> None:
        video = self.kind is MediaKind.VIDEO
        self.nacks = NackTracker(clock=self.clock, **NACK_SETTINGS) if video else None

        def request() -> None:
            self.keyframes += 1

        self.assembler = FrameAssembler(
            kind=self.kind,
            codecs=self.codecs,
            deliver=self.frames.append,
            request_keyframe=request,
            on_skip=self.nacks.forget_through if self.nacks else None,
            clock=self.clock,
            **SETTINGS,
        )

    def add(self, packet: Packet) -> tuple[list[EncodedFrame], list[int], int]:
        missing = self.nacks.missing if self.nacks is not None and self.nacks.add(packet) else []
        self.assembler.add(packet)
        frames, keyframes, self.keyframes = self.frames[:], self.keyframes, 0
        self.frames.clear()
        return frames, missing, keyframes

    def counts(self) -> dict[str, Any]:
        a, n = self.assembler, self.nacks
        out = {"frames": a.frames, "frames_skipped": a.frames_skipped, "holes_skipped": a.holes_skipped}
        out["packets_late"] = a.packets_late
        if n is not None:
            out |= {
                "lost": n.lost,
                "recovered": n.recovered,
                "given_up": n.given_up,
                "nacks_sent": n.nacks_sent,
            }
            out["outstanding"] = n.outstanding
        return out


def unpack(kind: MediaKind, events: Any) -> tuple[list[EncodedFrame], list[int], int, Any]:
    if events is None:
        return [], [], 0, None
    frames, lost, keyframes, frame_end = events
    return [EncodedFrame(kind, *f) for f in frames or ()], lost or [], keyframes, frame_end


def native_counts(track: _datapath.Track, kind: MediaKind) -> dict[str, Any]:
    names = ["frames", "frames_skipped", "holes_skipped", "packets_late"]
    if kind is MediaKind.VIDEO:
        names += ["lost", "recovered", "given_up", "nacks_sent", "outstanding"]
    return {name: getattr(track, name) for name in names}


# -- streams -------------------------------------------------------------------------------------


def h264_payloads(rng: random.Random, key: bool, packets: int) -> list[bytes]:
    """A frame's H.264 RTP payloads (RFC 6184): a STAP-A of SPS and PPS before a key frame's IDR
    slice, then single NAL units or FU-A fragments."""
    nal = bytes([0x65 if key else 0x41]) + rng.randbytes(rng.randrange(1, 200) * packets)
    out = []
    if key:
        sps, pps = b"\x67\x42\xc0\x1f" + rng.randbytes(6), b"\x68\xce\x3c\x80"
        out.append(b"\x78" + struct.pack("!H", len(sps)) + sps + struct.pack("!H", len(pps)) + pps)
    if packets == 1:
        return [*out, nal]
    body = nal[1:]
    step = -(-len(body) // packets)
    pieces = [body[i : i + step] for i in range(0, len(body), step)]
    for n, piece in enumerate(pieces):
        fu_header = (0x80 if n == 0 else 0) | (0x40 if n == len(pieces) - 1 else 0) | (nal[0] & 0x1F)
        out.append(bytes([(nal[0] & 0xE0) | 28, fu_header]) + piece)
    return out


def vp8_payloads(rng: random.Random, key: bool, packets: int) -> list[bytes]:
    """A frame's VP8 RTP payloads (RFC 7741) with assorted descriptors; S on the first."""
    body = (b"\x00" if key else b"\x01") + rng.randbytes(rng.randrange(2, 300) * packets)
    step = -(-len(body) // packets)
    out = []
    for n, start in enumerate(range(0, len(body), step)):
        descriptor = rng.choice([b"\x00", b"\x80\x80\x15", b"\x80\xc0\x81\x02\x03", b"\x80\x20\x40"])
        descriptor = bytes([descriptor[0] | (0x10 if n == 0 else 0)]) + descriptor[1:]
        out.append(descriptor + body[start : start + step])
    return out


def stream(rng: random.Random, codec: str, frames: int, *, restarts: bool = True) -> list[Packet]:
    """A publisher's packets, in order: frames of 1-6 packets, a key frame now and then, and (with
    ``restarts``) its counters starting again from new random values now and then."""
    pt = {"vp8": 96, "h264": 102, "opus": 111}[codec]
    seq, ts = rng.randrange(1 << 16), rng.randrange(1 << 32)
    if rng.random() < 0.3:
        seq = 65535 - rng.randrange(40)  # wrapping within the stream
    out = []
    for n in range(frames):
        key = n % 40 == 0 or rng.random() < 0.05
        if codec == "opus":
            parts = [rng.randbytes(rng.randrange(1, 120))]
        elif codec == "vp8":
            parts = vp8_payloads(rng, key, rng.randrange(1, 7))
        else:
            parts = h264_payloads(rng, key, rng.randrange(1, 7))
        for i, payload in enumerate(parts):
            data = depayload(AIORTC_CODECS[codec], payload) if payload else b""
            out.append(Packet(seq, ts, int(i == len(parts) - 1), payload, pt, data))
            seq = (seq + 1) & 0xFFFF
        ts = (ts + (960 if codec == "opus" else 3000 * rng.randrange(1, 3))) & 0xFFFFFFFF
        if restarts and rng.random() < 0.004:
            seq, ts = rng.randrange(1 << 16), rng.randrange(1 << 32)
    return out


def link(rng: random.Random, packets: list[Packet]) -> list[tuple[str, Any]]:
    """What arrives over a bad link, with the time between arrivals and retry timer ticks."""
    loss, reorder, duplicate = rng.choice([0.0, 0.01, 0.05, 0.15]), rng.random() * 0.1, rng.random() * 0.03
    late: list[tuple[int, Packet]] = []
    steps: list[tuple[str, Any]] = []
    for n, packet in enumerate(packets):
        if rng.random() < loss:
            if rng.random() < 0.6:  # retransmitted later
                late.append((n + rng.randrange(1, 40), packet))
        else:
            steps.append(("packet", packet))
            if rng.random() < duplicate:
                steps.append(("packet", packet))
        if len(steps) > 1 and rng.random() < reorder:
            steps[-1], steps[-2] = steps[-2], steps[-1]
        for due in [item for item in late if item[0] <= n]:
            late.remove(due)
            steps.append(("packet", due[1]))
        steps.append(("tick", rng.choice([0.0, 0.001, 0.004, 0.01, 0.03])))
        if rng.random() < 0.005:
            steps.append(("tick", rng.uniform(0.1, 0.8)))  # a stall
        if rng.random() < 0.2:
            steps.append(("due", None))
    return steps


# -- the contract --------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["vp8", "h264", "opus"])
def test_the_c_track_does_what_the_python_assembler_and_nack_tracker_do(codec: str) -> None:
    kind = MediaKind.AUDIO if codec == "opus" else MediaKind.VIDEO
    codecs = {"vp8": VP8, "h264": H264, "opus": OPUS}[codec]
    totals: dict[str, int] = {}
    for seed in range(40):
        rng = random.Random(f"{codec}-{seed}")
        clock = Clock()
        reference = Reference(kind, codecs, clock)
        track = native_track(kind, codecs)
        for step, (what, value) in enumerate(link(rng, stream(rng, codec, 300))):
            where = f"seed {seed}, step {step}"
            if what == "tick":
                clock.now += value
            elif what == "due":
                if reference.nacks is not None:
                    assert track.due(clock.now) == reference.nacks.due(), where
            else:
                frames, lost, keyframes, _ = unpack(kind, track.add(value, clock.now))
                assert (frames, lost, keyframes) == reference.add(value), where
                assert native_counts(track, kind) == reference.counts(), where
        for rtp_timestamp in (0, 123456789, 0xFFFFFFFF):
            assert track.frame_timestamp(rtp_timestamp) == reference.assembler.frame_timestamp(rtp_timestamp)
        for name, value in reference.counts().items():
            totals[name] = totals.get(name, 0) + value
    # The streams went through every way a frame can end: whole, waited for, given up on.
    assert totals["frames"] > 1000 and totals["holes_skipped"] > 0 and totals["packets_late"] > 0
    if kind is MediaKind.VIDEO:
        assert totals["frames_skipped"] > 0 and totals["recovered"] > 0 and totals["given_up"] > 0


def test_a_lasting_hole_is_given_up_and_its_losses_forgotten() -> None:
    """The assembler skipping a hole tells the NACK tracker to stop asking for it."""
    clock = Clock()
    track = native_track(MediaKind.VIDEO, VP8)
    assert (
        len(unpack(MediaKind.VIDEO, track.add(Packet(100, 0, 1, b"\x10\x00", 96, b"\x00"), clock.now))[0])
        == 1
    )
    _, lost, _, _ = unpack(
        MediaKind.VIDEO, track.add(Packet(103, 6000, 1, b"\x10\x01", 96, b"\x01"), clock.now)
    )
    assert lost == [101, 102] and track.outstanding == 2
    clock.now += 0.31
    frames, _, keyframes, _ = unpack(
        MediaKind.VIDEO, track.add(Packet(104, 9000, 1, b"\x10\x01", 96, b"\x01"), clock.now)
    )
    assert track.holes_skipped == 1 and track.outstanding == 0 and keyframes >= 1 and frames == []
    assert track.frames_skipped == 2  # the delta frames after the hole: they would not decode


def test_bad_input_is_refused_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match="payload type"):
        _datapath.Track(True, {200: ("vp8", 90000)})
    with pytest.raises(ValueError, match="capacity"):
        _datapath.Track(True, {96: ("vp8", 90000)}, capacity=10)
    track = native_track(MediaKind.VIDEO, VP8)
    with pytest.raises(ValueError, match="not an RTP packet"):
        track.add(Packet(70000, 0, 1, b"\x10", 96, b""))
    with pytest.raises(AttributeError):
        track.add(object())
    with pytest.raises(ValueError, match="unbound"):
        track.count(1, 2)
    assert track.frames == 0 and track.outstanding == 0


# -- in from the wire ----------------------------------------------------------------------------


def bound_track(codec: str) -> _datapath.Track:
    kind = MediaKind.AUDIO if codec == "opus" else MediaKind.VIDEO
    track = native_track(kind, {"vp8": VP8, "h264": H264, "opus": OPUS}[codec])
    track.bind(0xCAFE0001, 90000, -1, -1, 0, 0, 0, -1, -1)
    return track


def serialize(packet: Packet, *, extension: bytes = b"") -> bytes:
    first = 0x90 if extension else 0x80
    header = struct.pack(
        "!BBHII",
        first,
        packet.marker << 7 | packet.payload_type,
        packet.sequence_number,
        packet.timestamp,
        packet.ssrc,
    )
    return header + extension + packet.payload


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("codec", ["vp8", "h264", "opus"])
def test_datagrams_in_become_the_frames_aiortc_would_have_assembled(codec: str, profile: int) -> None:
    """From SRTP on the wire: unprotected, depayloaded in C as aiortc does in Python, assembled."""
    kind = MediaKind.AUDIO if codec == "opus" else MediaKind.VIDEO
    outbound, inbound = inbound_pair(profile)
    rng = random.Random(codec)
    clock = Clock()
    reference = Reference(kind, {"vp8": VP8, "h264": H264, "opus": OPUS}[codec], clock)
    track = bound_track(codec)
    extension = b"\xbe\xde\x00\x01\x32\x12\x34\x56"  # abs-send-time, as id 3
    packets = stream(rng, codec, 200, restarts=False)  # SRTP's packet index would start again too
    datagrams = {id(p): outbound.protect(serialize(p, extension=extension)) for p in packets}  # as sent
    arrived: set[int] = set()
    frame_bytes = 0
    for step, (what, packet) in enumerate(link(rng, packets)):
        if what == "tick":
            clock.now += packet
            continue
        if what == "due":
            continue
        events = track.receive(
            inbound.address, aiortc_compat.LeanSrtp.unprotect_address, datagrams[id(packet)], clock.now
        )
        if id(packet) in arrived:
            assert events is None  # a copy: SRTP's replay protection drops it
            continue
        arrived.add(id(packet))
        frames, lost, keyframes, frame_end = unpack(kind, events)
        parsed = RtpPacket.parse(serialize(packet, extension=extension))
        parsed._data = depayload(AIORTC_CODECS[codec], parsed.payload) if parsed.payload else b""  # type: ignore[attr-defined]
        assert (frames, lost, keyframes) == reference.add(parsed), f"step {step}"  # type: ignore[arg-type]
        frame_bytes += len(packet.payload)
        if kind is MediaKind.VIDEO and packet.marker:
            assert frame_end[:3] == (frame_bytes, 0xBEDE, extension[4:])
            frame_bytes = 0
        else:
            assert frame_end is None
    assert track.packets == track.packets_received > 100
    assert track.frames == reference.assembler.frames > 10


def test_what_the_track_does_not_take_goes_aiortcs_way_plain() -> None:
    outbound, inbound = inbound_pair(PROFILES[0])
    track = native_track(MediaKind.VIDEO, VP8)

    def receive(packet: bytes) -> Any:
        return track.receive(
            inbound.address, aiortc_compat.LeanSrtp.unprotect_address, outbound.protect(packet)
        )

    media = Packet(1, 0, 1, b"\x10\x00", 96)
    assert receive(serialize(media)) == serialize(media)  # not bound yet
    track.bind(media.ssrc, 90000, -1, -1, 0, 0, 0, -1, -1)
    rtx = Packet(2, 0, 1, b"\x00\x01\x10\x00", 97)
    assert receive(serialize(rtx)) == serialize(rtx)  # a payload type it was not given
    other = Packet(3, 0, 1, b"\x10\x00", 96, ssrc=7)
    assert receive(serialize(other)) == serialize(other)
    version_1 = b"\x40" + serialize(Packet(4, 0, 1, b"\x10\x00", 96))[1:]
    assert receive(version_1) == version_1
    assert track.receive(inbound.address, aiortc_compat.LeanSrtp.unprotect_address, b"\x80" * 40) is None
    assert track.packets == 0


def test_depayloading_drops_what_aiortc_refuses() -> None:
    """H.264 payloads aiortc's depayloader raises on (and a VP8 descriptor cut short) are dropped;
    the loss tracking still sees the packet."""
    for codec, payload in [
        ("h264", b"\x7c"),  # shorter than a NAL unit header
        ("h264", b"\x78\x00\x05\x67"),  # a STAP-A unit longer than the payload
        ("h264", b"\x78\x00"),  # a STAP-A length field cut short
        ("h264", b"\x7e\x00\x00"),  # NAL unit type 30
        ("vp8", b"\x90\x80"),  # a picture id that is not there
    ]:
        outbound, inbound = inbound_pair(PROFILES[0])
        track = bound_track(codec)
        pt = 102 if codec == "h264" else 96
        with pytest.raises(ValueError):
            depayload(AIORTC_CODECS[codec], payload)
        datagram = outbound.protect(serialize(Packet(10, 0, 1, payload, pt)))
        assert track.receive(inbound.address, aiortc_compat.LeanSrtp.unprotect_address, datagram) is None
        assert track.packets == 1 and track.frames == 0 and track.frames_skipped == 0


def test_the_statistics_are_aiortcs() -> None:
    """Counted in C as aiortc's StreamStatistics counts, and read back through the view aiortc's
    RTCP loop reads."""
    rng = random.Random(5)
    statistics = StreamStatistics(90000)
    track = native_track(MediaKind.VIDEO, VP8)
    first = Packet(65000, 1000, 0, b"", 96)
    statistics.add(first)  # aiortc counts a source's first packet, then the track takes over
    aiortc_compat.bind_statistics(track, first.ssrc, statistics, 90000)
    view = aiortc_compat._TrackStatistics(track, statistics)
    reference = StreamStatistics(90000)
    reference.add(first)
    for n in range(3000):
        if rng.random() < 0.05:
            continue
        sequence = (65000 + n + (rng.randrange(-3, 4) if rng.random() < 0.05 else 0)) & 0xFFFF
        packet = Packet(sequence, (1000 + n // 4 * 3000) & 0xFFFFFFFF, 0, b"", 96)
        reference.add(packet)
        view.add(packet)
        if n % 500 == 0:
            assert view.fraction_lost == reference.fraction_lost
    for name in ("base_seq", "max_seq", "cycles", "packets_received", "packets_expected", "packets_lost"):
        assert getattr(view, name) == getattr(reference, name), name
    assert view.fraction_lost == reference.fraction_lost
    assert abs(view.jitter - reference.jitter) <= 2  # arrival times are read from the clock, apart


def test_a_track_keeps_no_memory_per_packet() -> None:
    """A reference the C code forgot to drop would keep a packet or a frame per call."""
    outbound, inbound = inbound_pair(PROFILES[0])
    track = bound_track("vp8")
    datagrams = [
        outbound.protect(serialize(p)) for p in stream(random.Random(9), "vp8", 1500, restarts=False)
    ]

    def run(datagrams: list[bytes]) -> None:
        for datagram in datagrams:
            track.receive(inbound.address, aiortc_compat.LeanSrtp.unprotect_address, datagram)
            track.due()

    run(datagrams[:500])
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        run(datagrams[500:])
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert track.frames > 500
    assert grown < 256 * 1024, grown  # what a stalled frame holds; a leak would be megabytes
