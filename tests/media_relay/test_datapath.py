"""The relay's per-packet work in C (``forwarding/_datapath.c``, R1, issue 3).

In: a publisher's SRTP datagram is unprotected and read as aiortc reads it; what does not
authenticate is dropped, and a header the fast path does not take goes back to aiortc plain.

Out: a viewer's frames leave as the same datagrams Python makes: the same RTP packets in the
history, the same SRTP bytes on the wire, in order, on every way out (one system call, a socket
refusing segmentation offload, a transport with a queue), and bad input refused before anything is
sent."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import struct
import sys
import tracemalloc
from typing import Any

import pylibsrtp
import pytest
from aiortc.codecs.vpx import vp8_depayload
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from media_relay import aiortc_compat
from media_relay.forwarding import _datapath
from media_relay.forwarding.rtp_out import HISTORY, packetize
from media_relay.forwarding.udp_batch import UdpBatchSender
from tests.media_relay.test_udp_batch import Collector

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="sendmmsg and UDP_SEGMENT are Linux's")

SO_NO_CHECK = 11
"""``asm-generic/socket.h``: no UDP checksums, with which Linux refuses segmentation offload."""

PROFILES = [pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM]
EXTENSION = b"\xbe\xde\x00\x01\x11v1\x00"  # the mid, "v1", as the relay sends it


def twin_sessions(profile: int) -> tuple[aiortc_compat.LeanSrtp, aiortc_compat.LeanSrtp, pylibsrtp.Session]:
    """Two outbound sessions on one key (C's and Python's: the same bytes) and an inbound one."""
    key = os.urandom(28 if profile == pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM else 30)

    def session(direction: int) -> pylibsrtp.Session:
        return pylibsrtp.Session(policy=pylibsrtp.Policy(key=key, ssrc_type=direction, srtp_profile=profile))

    outbound = pylibsrtp.Policy.SSRC_ANY_OUTBOUND
    return (
        aiortc_compat.LeanSrtp(session(outbound)),
        aiortc_compat.LeanSrtp(session(outbound)),
        session(pylibsrtp.Policy.SSRC_ANY_INBOUND),
    )


def header(timestamp: int, extension: bytes = EXTENSION) -> bytes:
    return struct.pack("!BBHII", 0x90 if extension else 0x80, 96, 0, timestamp, 0x1234ABCD) + extension


def payloads(sizes: list[int], seed: int = 0) -> tuple[bytes, ...]:
    return tuple(bytes([(seed + n) % 256]) * size for n, size in enumerate(sizes))


async def send_frames(
    frames: list[tuple[bytes, tuple[bytes, ...]]],
    srtp: aiortc_compat.LeanSrtp,
    *,
    sequence: int,
    no_checksums: bool = False,
    backlog: bool = False,
) -> tuple[list[bytes], list[bytes | None], UdpBatchSender]:
    """Send ``frames`` (header, payloads) through a real socket's UdpBatchSender; what arrived,
    the history, and the sender."""
    loop = asyncio.get_running_loop()
    receiving, collector = await loop.create_datagram_endpoint(Collector, local_addr=("127.0.0.1", 0))
    receiving.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sending, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    if no_checksums:
        sending.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
    if backlog:  # as if the socket had been full: the transport holds a queue
        sending.get_write_buffer_size = lambda: 1  # type: ignore[method-assign]
    collector.expected = sum(len(frame_payloads) for _, frame_payloads in frames)
    sender = UdpBatchSender(sending)
    history: list[bytes | None] = [None] * HISTORY
    try:
        for frame_header, frame_payloads in frames:
            sequence, octets = sender.send_frame(
                receiving.get_extra_info("sockname"),
                srtp,
                frame_header,
                frame_payloads,
                sequence,
                0x80,
                history,
            )
            assert octets == sum(map(len, frame_payloads))
        await asyncio.wait_for(collector.arrived.wait(), 5)
        await asyncio.sleep(0.05)  # nothing more comes
        return collector.datagrams, history, sender
    finally:
        receiving.close()
        sending.close()


def python_datagrams(
    frames: list[tuple[bytes, tuple[bytes, ...]]], srtp: aiortc_compat.LeanSrtp, sequence: int
) -> tuple[list[bytes], list[bytes], list[bytes | None]]:
    """What Python makes of the same frames: the protected datagrams, the plain packets, the history."""
    history: list[bytes | None] = [None] * HISTORY
    plain: list[bytes] = []
    for frame_header, frame_payloads in frames:
        packets, sequence, _ = packetize(frame_header, frame_payloads, sequence, 0x80, history)
        plain.extend(packets)
    return [srtp.protect(packet) for packet in plain], plain, history


@pytest.mark.parametrize("profile", PROFILES)
async def test_frames_leave_as_the_datagrams_python_makes(profile: int) -> None:
    c_srtp, python_srtp, inbound = twin_sessions(profile)
    frames = [
        (header(0), payloads([1180] * 9 + [517])),  # a video frame: one run, a shorter last
        (header(6000), payloads([1200, 1200, 800, 1200, 1200, 1200, 300, 300, 90, 1000], seed=7)),
        (header(12000, b""), payloads([160])),  # one packet, no header extension
        (header(18000), payloads([1100] * 300, seed=3)),  # a keyframe longer than one flush (128)
        (header(24000), ()),  # nothing to send
    ]
    sequence = 0xFFFF - 20  # the sequence number wraps within the frames
    received, history, sender = await send_frames(frames, c_srtp, sequence=sequence)
    expected, plain, python_history = python_datagrams(frames, python_srtp, sequence)
    assert received == expected  # same bytes, same order
    assert [inbound.unprotect(datagram) for datagram in received] == plain
    assert history == python_history
    # The marker ends each frame; sequence numbers run on without a gap across the wrap.
    assert [packet[1] >> 7 for packet in plain[:10]] == [0] * 9 + [1]
    assert [int.from_bytes(packet[2:4]) for packet in plain[:25]] == [
        (sequence + n) & 0xFFFF for n in range(25)
    ]
    assert sender.calls == 0  # ``calls`` counts the Python path's segmented sends: none were made


async def test_a_socket_refusing_segmentation_offload_still_delivers_every_datagram_in_order() -> None:
    c_srtp, python_srtp, _ = twin_sessions(PROFILES[0])
    frames = [(header(n * 6000), payloads([1000] * 8 + [333], seed=n)) for n in range(4)]
    received, _, sender = await send_frames(frames, c_srtp, sequence=100, no_checksums=True)
    assert received == python_datagrams(frames, python_srtp, 100)[0]
    assert sender._segmenting is False  # refused once: datagrams go one by one from then on


async def test_a_queue_in_the_transport_is_joined_not_overtaken() -> None:
    c_srtp, python_srtp, _ = twin_sessions(PROFILES[0])
    frames = [(header(n * 6000), payloads([900] * 5, seed=n)) for n in range(3)]
    received, _, _ = await send_frames(frames, c_srtp, sequence=7, backlog=True)
    assert received == python_datagrams(frames, python_srtp, 7)[0]


def test_bad_payloads_are_refused_before_anything_is_sent_or_kept() -> None:
    srtp = twin_sessions(PROFILES[0])[0]
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sending,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiving,
    ):
        receiving.bind(("127.0.0.1", 0))
        receiving.setblocking(False)
        history: list[bytes | None] = [None] * 8

        def send(frame_payloads: Any, frame_header: bytes = header(0)) -> Any:
            return _datapath.send_frame(
                sending.fileno(),
                socket.AF_INET,
                receiving.getsockname(),
                True,
                srtp.address,
                srtp.protect_address,
                frame_header,
                frame_payloads,
                1,
                0x80,
                history,
            )

        with pytest.raises(ValueError, match="too long"):
            send((b"x" * 100, b"x" * _datapath.MAX_PACKET))
        with pytest.raises(TypeError):
            send((b"x" * 100, "not bytes"))
        with pytest.raises(ValueError, match="bad header"):
            send((b"x",), frame_header=b"\x80" * 11)
        with pytest.raises(ValueError, match="not an IPv4 address"):
            _datapath.send_frame(
                sending.fileno(), socket.AF_INET, ("nowhere", 9), True, srtp.address,
                srtp.protect_address, header(0), (b"x",), 1, 0x80, history,
            )  # fmt: skip
        assert history == [None] * 8
        with pytest.raises(BlockingIOError):
            receiving.recv(2048)
        assert send((b"y" * 10,))[:2] == (2, 10)  # and the next frame goes
        assert receiving.recv(2048)


async def test_an_address_the_c_path_cannot_read_goes_the_python_way() -> None:
    """An IPv6 address with a zone (``fe80::1%lo``): the frame is sent as Python sends it."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("::1", 0))
    try:
        c_srtp = twin_sessions(PROFILES[0])[0]
        sender = UdpBatchSender(transport)
        frame = (header(0), payloads([700] * 3))
        history: list[bytes | None] = [None] * HISTORY
        assert sender.send_frame(("fe80::1%lo", 5004), c_srtp, *frame, 1, 0x80, history) == (4, 2100)
        assert sender.calls == 1  # Python's segmented send, not _datapath's
        expected: list[bytes | None] = [None] * HISTORY
        packetize(*frame, 1, 0x80, expected)
        assert history == expected
    finally:
        transport.close()


# -- in ------------------------------------------------------------------------------------------


def inbound_pair(profile: int) -> tuple[pylibsrtp.Session, aiortc_compat.LeanSrtp]:
    """An outbound session and the relay's inbound one, on one key."""
    key = os.urandom(28 if profile == pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM else 30)
    return tuple(  # type: ignore[return-value]
        make(pylibsrtp.Session(policy=pylibsrtp.Policy(key=key, ssrc_type=direction, srtp_profile=profile)))
        for make, direction in (
            (lambda session: session, pylibsrtp.Policy.SSRC_ANY_OUTBOUND),
            (aiortc_compat.LeanSrtp, pylibsrtp.Policy.SSRC_ANY_INBOUND),
        )
    )


def receive(srtp: aiortc_compat.LeanSrtp, datagram: bytes) -> Any:
    return _datapath.receive(srtp.address, aiortc_compat.LeanSrtp.unprotect_address, datagram)


def rtp_packet(
    sequence: int, *, marker: int = 0, extensions: bool = True, csrcs: int = 0, padding: int = 0
) -> bytes:
    packet = RtpPacket(
        payload_type=96,
        marker=marker,
        sequence_number=sequence,
        timestamp=sequence * 3000 + 7,
        ssrc=0xCAFE0001,
    )
    packet.csrc = [0x1000 + n for n in range(csrcs)]
    if extensions:
        packet.extensions.abs_send_time = 0x123456
        packet.extensions.mid = "v1"
    packet.payload = b"\x90\x80\x05" + os.urandom(200)
    packet.padding_size = padding
    return packet.serialize(EXTENSIONS)


EXTENSIONS = HeaderExtensionsMap()
EXTENSIONS.configure(
    RTCRtpParameters(
        headerExtensions=[
            RTCRtpHeaderExtensionParameters(id=1, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
            RTCRtpHeaderExtensionParameters(
                id=3, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
            ),
        ]
    )
)


@pytest.mark.parametrize("profile", PROFILES)
def test_a_datagram_in_is_read_as_aiortc_reads_it(profile: int) -> None:
    outbound, inbound = inbound_pair(profile)
    cases = [
        {},
        {"marker": 1},
        {"marker": 1, "extensions": False},
        {"csrcs": 2, "marker": 1},
        {"padding": 17, "marker": 1},
        {"padding": 1},
    ]
    for sequence, case in enumerate(cases, start=40):
        plain = rtp_packet(sequence, **case)
        read = receive(inbound, outbound.protect(plain))
        assert isinstance(read, tuple), case
        theirs = RtpPacket.parse(plain, EXTENSIONS)
        (
            got_plain,
            payload_type,
            marker,
            sequence_number,
            timestamp,
            ssrc,
            extension,
            payload,
            padding,
            skip,
        ) = read
        assert got_plain == plain
        assert (payload_type, marker, sequence_number, timestamp, ssrc, payload, padding) == (
            theirs.payload_type,
            theirs.marker,
            theirs.sequence_number,
            theirs.timestamp,
            theirs.ssrc,
            theirs.payload,
            theirs.padding_size,
        ), case
        assert skip == 3  # the VP8 descriptor in front of the payload
        if marker and case.get("extensions", True):
            assert EXTENSIONS.get(*extension).abs_send_time == 0x123456
        else:
            assert extension is None  # read for a frame's last packet only


def test_what_does_not_authenticate_or_cannot_be_srtp_is_dropped() -> None:
    outbound, inbound = inbound_pair(PROFILES[0])
    protected = outbound.protect(rtp_packet(1))
    assert receive(inbound, protected[:-1] + bytes([protected[-1] ^ 1])) is None  # tampered
    assert isinstance(receive(inbound, protected), tuple)
    assert receive(inbound, protected) is None  # replayed
    assert receive(inbound, b"\x80" * 11) is None  # too short for a header
    assert receive(inbound, b"\x80" * 4000) is None  # too long for any link


def test_a_header_the_fast_path_does_not_take_comes_back_plain() -> None:
    """Malformed or unusual headers go to aiortc's own path, as the plain packet."""
    outbound, inbound = inbound_pair(PROFILES[0])
    good = rtp_packet(9, extensions=False)
    too_much_padding = bytes([good[0] | 0x20]) + good[1:-1] + b"\xff"
    zero_padding = bytes([good[0] | 0x20]) + good[1:-1] + b"\x00"
    version_1 = bytes([(good[0] & 0x3F) | 0x40]) + good[1:]
    # (An extension longer than the packet: libsrtp refuses to protect or unprotect it.)
    for sequence, plain in enumerate([too_much_padding, zero_padding, version_1], start=10):
        plain = plain[:2] + sequence.to_bytes(2) + plain[4:]
        assert receive(inbound, outbound.protect(plain)) == plain


def test_vp8_descriptors_are_measured_as_aiortcs_depayloader_reads_them() -> None:
    """Every descriptor of up to 5 bytes whose flag bits matter, with and without a payload after."""
    outbound, inbound = inbound_pair(PROFILES[0])
    firsts = [0x00, 0x10, 0x80, 0x90]
    extendeds = [0x00, 0x10, 0x20, 0x40, 0x80, 0xF0, 0xC0]
    descriptors = {bytes([first]) for first in firsts}
    for first in firsts:
        for extended in extendeds:
            for picture_id in (b"", b"\x05", b"\x81", b"\x81\x23"):
                for tail in (b"", b"\x07", b"\x07\x40"):
                    descriptors.add((bytes([first, extended]) + picture_id + tail)[:5])
    base = rtp_packet(1, extensions=False)[:12]
    sequence = 100
    for descriptor in sorted(descriptors):
        for payload in (descriptor, descriptor + b"frame"):
            plain = base[:2] + sequence.to_bytes(2) + base[4:] + payload
            sequence += 1
            read = receive(inbound, outbound.protect(plain))
            assert isinstance(read, tuple)
            try:
                expected = vp8_depayload(payload)
            except ValueError:
                assert read[9] == -1, payload
            else:
                assert payload[read[9] :] == expected, payload


def test_sending_and_receiving_keep_no_memory() -> None:
    """A reference the C code forgot to drop would keep a packet per call: thousands here."""
    srtp = twin_sessions(PROFILES[0])[0]
    outbound, inbound = inbound_pair(PROFILES[0])
    datagrams = [outbound.protect(rtp_packet(sequence, marker=sequence % 2)) for sequence in range(1, 6001)]
    history: list[bytes | None] = [None] * 8
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sending,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiving,
    ):
        receiving.bind(("127.0.0.1", 0))

        def send(frames: int, sequence: int) -> int:
            for n in range(frames):
                sequence = _datapath.send_frame(
                    sending.fileno(), socket.AF_INET, receiving.getsockname(), True, srtp.address,
                    srtp.protect_address, header(n), payloads([1000] * 4 + [300]), sequence, 0x80, history,
                )[0]  # fmt: skip
            return sequence

        sequence = send(100, 1)
        for datagram in datagrams[:100]:
            assert isinstance(receive(inbound, datagram), tuple)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            send(3000, sequence)
            for datagram in datagrams[100:]:
                assert isinstance(receive(inbound, datagram), tuple)
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
    assert grown < 64 * 1024, grown  # 15,000 packets sent and 5,900 received: a leak would be megabytes
