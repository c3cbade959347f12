"""A viewer's frames leave through the C send path (``forwarding/_rtpsend.c``) as the same datagrams
Python makes: the same RTP packets in the history, the same SRTP bytes on the wire, in order, on
every way out (one system call, a socket refusing segmentation offload, a transport with a queue),
and bad input refused before anything is sent (R1, issue 3)."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import sys
from typing import Any

import pylibsrtp
import pytest

from media_relay import aiortc_compat
from media_relay.forwarding import _rtpsend
from media_relay.forwarding.rtp_out import HISTORY, packetize
from media_relay.forwarding.udp_batch import UdpBatchSender

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="sendmmsg and UDP_SEGMENT are Linux's")

SO_NO_CHECK = 11
"""``asm-generic/socket.h``: no UDP checksums, with which Linux refuses segmentation offload."""

PROFILES = [pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM]
EXTENSION = b"\xbe\xde\x00\x01\x11v1\x00"  # the mid, "v1", as the relay sends it


class Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.datagrams: list[bytes] = []
        self.arrived = asyncio.Event()
        self.expected = 0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.datagrams.append(data)
        if len(self.datagrams) >= self.expected:
            self.arrived.set()


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
            return _rtpsend.send_frame(
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
            send((b"x" * 100, b"x" * _rtpsend.MAX_PACKET))
        with pytest.raises(TypeError):
            send((b"x" * 100, "not bytes"))
        with pytest.raises(ValueError, match="bad header"):
            send((b"x",), frame_header=b"\x80" * 11)
        with pytest.raises(ValueError, match="not an IPv4 address"):
            _rtpsend.send_frame(
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
        assert sender.calls == 1  # Python's segmented send, not _rtpsend's
        expected: list[bytes | None] = [None] * HISTORY
        packetize(*frame, 1, 0x80, expected)
        assert history == expected
    finally:
        transport.close()
