"""Every use of aiortc and aioice internals, in one place, for the exact pinned versions.

The relay forwards encoded media without decoding it (DESIGN.md decision 1). aiortc has no public
hook for that, so this module:

- replaces a receiver's jitter buffer, NACK generator and receive statistics with the relay's own
  track (``forwarding/_track.c``, which rebuilds encoded frames and retries lost packets), and its
  decoder queue with a tap, so nothing is decoded;
- sends NACKs for lost packets on the relay's own retry timer;
- sends a picture loss indication (RTCP PLI) from a receiver to its publisher;
- hands a publisher's SRTP packets from the socket straight to its receivers
  (:func:`receive_directly`), instead of through aioice's queue and the DTLS transport's reading
  task: a task switch and a chain of coroutines less for every packet;
- sends a viewer pre-built RTP packets straight through its sender's SRTP session and ICE socket
  (:class:`SenderOutput`, a frame's packets in one system call where the kernel allows), past
  aiortc's encode-and-packetize loop, and hands the viewer's NACKs
  and keyframe requests to the relay;
- restricts the host addresses an ``RTCPeerConnection`` gathers ICE candidates on, per
  connection (never by patching aioice globally), so that a relay can announce chosen addresses.

:func:`check_versions` fails loudly when aiortc or aioice is not the version this was written for;
the test suite calls it, and so does the relay at start-up.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import ipaddress
import logging
import queue
import random
import socket
import time
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any

import aioice
import aioice.candidate
import aioice.ice
import aioice.turn
import aiortc
import pylibsrtp
import pylibsrtp._binding as srtp_binding
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc.clock import current_datetime
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rate import MIN_FRAME_PERIOD_HISTORY_LENGTH
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import StreamStatistics
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    clamp_packets_lost,
    is_rtcp,
    pack_remb_fci,
)

from media_relay.forwarding import _datapath
from media_relay.forwarding.frames import EncodedFrame, MediaKind
from media_relay.forwarding.rtp_out import RtpParameters, packetize
from media_relay.forwarding.udp_batch import UdpBatchSender

__all__ = [
    "AIOICE_VERSION",
    "AIORTC_VERSION",
    "PYLIBSRTP_VERSION",
    "FrameCallback",
    "IncompatibleAiortc",
    "LeanSrtp",
    "NoFreePort",
    "SenderOutput",
    "SilentTrack",
    "bind_statistics",
    "check_versions",
    "impair_outgoing_rtp",
    "install_receive_path",
    "pause_receiving",
    "receive_directly",
    "request_keyframe",
    "restrict_host_addresses",
    "send_nack",
    "tap_receiver",
    "tap_sender_reports",
]

logger = logging.getLogger(__name__)

AIORTC_VERSION = "1.16.0"
AIOICE_VERSION = "0.13.0"
PYLIBSRTP_VERSION = "1.0.0"

FrameCallback = Callable[[RTCRtpCodecParameters, JitterFrame], None]


class IncompatibleAiortc(RuntimeError):
    """The installed aiortc/aioice is not the one this module's hooks were written for."""


def check_versions() -> None:
    """Raise :class:`IncompatibleAiortc` unless the pinned versions and attributes are present."""
    if aiortc.__version__ != AIORTC_VERSION:
        raise IncompatibleAiortc(
            f"media_relay.aiortc_compat is written for aiortc {AIORTC_VERSION}, "
            f"found {aiortc.__version__}: re-check the hooks before changing the pin"
        )
    if aioice.__version__ != AIOICE_VERSION:
        raise IncompatibleAiortc(
            f"media_relay.aiortc_compat is written for aioice {AIOICE_VERSION}, found {aioice.__version__}"
        )
    if pylibsrtp.__version__ != PYLIBSRTP_VERSION:
        raise IncompatibleAiortc(
            f"media_relay.aiortc_compat is written for pylibsrtp {PYLIBSRTP_VERSION}, "
            f"found {pylibsrtp.__version__}"
        )
    missing = [
        name
        for owner, name in (
            (RTCRtpReceiver, "_handle_rtp_packet"),
            (RTCRtpReceiver, "_send_rtcp_pli"),
            (RTCRtpReceiver, "_send_rtcp_nack"),
            (RTCRtpReceiver, "_send_rtcp"),
            (RTCRtpReceiver, "_handle_rtcp_packet"),
            (RTCRtpSender, "_handle_rtcp_packet"),
            (aioice.ice.StunProtocol, "send_data"),
            (aioice.Connection, "data_received"),
            (aioice.Connection, "get_component_candidates"),
            (srtp_binding, "ffi"),
            (srtp_binding.lib, "srtp_protect"),
            (srtp_binding.lib, "srtp_unprotect"),
            (pylibsrtp, "_srtp_assert"),
        )
        if not hasattr(owner, name)
    ]
    statistics = StreamStatistics(90000)  # a Track goes on from one (bind_statistics)
    missing += [f"StreamStatistics.{name}" for name in _STATISTICS_FIELDS if not hasattr(statistics, name)]
    if missing:
        raise IncompatibleAiortc(f"aiortc/aioice internals missing: {', '.join(missing)}")
    for name in ("srtp_protect", "srtp_unprotect"):
        # forwarding/_datapath.c calls these through their addresses, as libsrtp 2 declares them.
        declared = srtp_binding.ffi.typeof(getattr(srtp_binding.lib, name)).cname
        if declared != _LIBSRTP2_CALL:
            raise IncompatibleAiortc(f"pylibsrtp's {name} is {declared}, not libsrtp 2's {_LIBSRTP2_CALL}")


_STATISTICS_FIELDS = (
    "_clockrate", "base_seq", "max_seq", "cycles", "packets_received", "_jitter_q4", "_last_arrival",
    "_last_timestamp", "_expected_prior", "_received_prior",
)  # fmt: skip
_LIBSRTP2_CALL = "srtp_err_status_t(*)(struct srtp_ctx_t_ *, void *, int *)"


class _FrameTap:
    """Stands in for the receiver's decoder queue.

    ``put`` is called on the event loop by ``RTCRtpReceiver._handle_rtp_packet`` with
    ``(codec, JitterFrame)`` for each complete encoded frame, and with ``None`` when the receiver
    stops. Frames go to the callback; only the ``None`` reaches the (idle) decoder thread, which
    then ends and ends the receiver's track.
    """

    def __init__(self, callback: FrameCallback) -> None:
        self._callback = callback
        self._control: queue.Queue[Any] = queue.Queue()

    def put(self, item: tuple[RTCRtpCodecParameters, JitterFrame] | None) -> None:
        if item is None:
            self._control.put(None)
            return
        codec, frame = item
        self._callback(codec, frame)

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return self._control.get(*args, **kwargs)


def tap_receiver(receiver: RTCRtpReceiver, callback: FrameCallback) -> None:
    """Deliver ``receiver``'s encoded frames to ``callback`` instead of decoding them.

    Call it after ``setRemoteDescription`` and before the connection starts receiving.
    """
    receiver._RTCRtpReceiver__decoder_queue = _FrameTap(callback)  # type: ignore[attr-defined]


def install_receive_path(
    receiver: RTCRtpReceiver,
    track: _datapath.Track,
    *,
    deliver: Callable[[EncodedFrame], None],
    request_keyframe: Callable[[], None],
    on_loss: Callable[[], None] | None = None,
) -> None:
    """Make ``track`` (C: statistics, loss tracking, depayloading, assembly) receive ``receiver``'s
    media, handing ``deliver`` whole encoded frames; nothing reaches aiortc's decoder.

    ``track`` stands in for the receiver's jitter buffer and NACK generator: it NACKs what it finds
    lost at once (and calls ``on_loss``; the caller retries with ``track.due()``), and asks
    ``request_keyframe`` when a hole lasts. Call it after ``setRemoteDescription`` and before the
    connection starts receiving; :func:`receive_directly` then routes the packets.
    """
    estimator = receiver._RTCRtpReceiver__remote_bitrate_estimator  # type: ignore[attr-defined]
    if estimator is not None:
        estimator = _ThrottledRemb(estimator)
        receiver._RTCRtpReceiver__remote_bitrate_estimator = estimator  # type: ignore[attr-defined]
    path = _TrackReceive(receiver, track, estimator, deliver, request_keyframe, on_loss)
    receiver._RTCRtpReceiver__jitter_buffer = path  # type: ignore[attr-defined]
    receiver._RTCRtpReceiver__nack_generator = None  # type: ignore[attr-defined]
    tap_receiver(receiver, _never_decode)
    setattr(receiver, "_zhihui_fast", path)  # noqa: B010


MID_EXTENSION = "urn:ietf:params:rtp-hdrext:sdes:mid"


class SilentTrack(MediaStreamTrack):
    """The track a viewer's transceiver is negotiated with. It yields nothing: its packets go out
    through :class:`SenderOutput`, so aiortc's send loop waits on it, idle, until it stops."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._ended = asyncio.Event()

    async def recv(self) -> Any:
        await self._ended.wait()
        raise MediaStreamError

    def stop(self) -> None:
        self._ended.set()
        super().stop()


_FFI = srtp_binding.ffi


class LeanSrtp:
    """``srtp_protect`` and ``srtp_unprotect`` on a pylibsrtp ``Session``'s own libsrtp context,
    without the allocations pylibsrtp makes on every call (an ``int *`` from cffi, the function
    looked up on its library object): 2.4 us a 1.2 kB packet instead of 3.9 here. The output is
    the same bytes (tests/media_relay/test_aiortc_compat.py). Use it on the event loop's thread
    only, as the session itself is."""

    __slots__ = ("_buffer", "_cdata", "_context", "_length", "address", "session")

    BUFFER_BYTES = 2048
    """Room for any datagram the relay takes in (a link's MTU is 1500) and its SRTP trailer."""

    def __init__(self, session: pylibsrtp.Session) -> None:
        self.session = session
        """The session whose context this uses: kept, so that the context lives as long."""
        self._context = session._srtp[0]
        self.address = int(srtp_binding.ffi.cast("uintptr_t", self._context))
        """Where the libsrtp context is, for C that protects with it (``forwarding/_datapath.c``)."""
        self._cdata = srtp_binding.ffi.new("char[]", self.BUFFER_BYTES)
        self._buffer = srtp_binding.ffi.buffer(self._cdata)
        self._length = srtp_binding.ffi.new("int *")

    protect_address = int(_FFI.cast("uintptr_t", _FFI.addressof(srtp_binding.lib, "srtp_protect")))
    """Where pylibsrtp's libsrtp keeps ``srtp_protect``: C calls the library that made the context."""
    unprotect_address = int(_FFI.cast("uintptr_t", _FFI.addressof(srtp_binding.lib, "srtp_unprotect")))
    """And ``srtp_unprotect``."""

    def protect(self, packet: bytes, _protect: Any = srtp_binding.lib.srtp_protect) -> bytes:
        return self._process(packet, _protect, pylibsrtp.SRTP_MAX_TRAILER_LEN)

    def unprotect(self, packet: bytes, _unprotect: Any = srtp_binding.lib.srtp_unprotect) -> bytes:
        """Raises ``pylibsrtp.Error`` for a packet that does not authenticate (or cannot be one)."""
        return self._process(packet, _unprotect, 0)

    def _process(self, packet: bytes, function: Any, trailer: int) -> bytes:
        size = len(packet)
        if size + trailer > self.BUFFER_BYTES:
            raise pylibsrtp.Error(f"an SRTP packet of {size} bytes is too long")
        buffer = self._buffer
        buffer[0:size] = packet
        length = self._length
        length[0] = size
        status = function(self._context, self._cdata, length)
        if status:
            pylibsrtp._srtp_assert(status)  # raises the error pylibsrtp raises
        return buffer[0 : length[0]]


class SenderOutput:
    """Sends pre-built RTP packets as ``transceiver``'s sender would, without its send loop.

    Create it once the answer is set (the payload types, header extensions and mid are settled).
    Packets are SRTP-protected with the sender's session and written to the nominated ICE pair's
    socket at once; the sender's sender-report counters are kept, so its RTCP loop goes on
    reporting. The viewer's NACKs go to ``on_nack`` and its PLIs and FIRs to ``on_keyframe_request``
    (aiortc would otherwise only set a flag for an encoder there is not); receiver reports and
    REMB still reach the sender.
    """

    def __init__(
        self,
        transceiver: RTCRtpTransceiver,
        *,
        on_nack: Callable[[list[int]], None],
        on_keyframe_request: Callable[[], None],
    ) -> None:
        codecs = transceiver._codecs
        payload_type = codecs[0].payloadType if codecs else None
        if payload_type is None:
            raise ValueError("the transceiver has no negotiated codec")
        rtx = next(
            (c for c in codecs if c.name.lower() == "rtx" and c.parameters.get("apt") == payload_type), None
        )
        sender = transceiver.sender
        self._sender = sender
        self._dtls = sender.transport
        self._in_flight: set[asyncio.Future[None]] = set()
        self._batches: UdpBatchSender | None = None
        self._srtp: LeanSrtp | None = None
        self.parameters = RtpParameters(
            payload_type=payload_type,
            ssrc=sender._ssrc,
            rtx_payload_type=rtx.payloadType if rtx is not None else None,
            rtx_ssrc=sender._rtx_ssrc,
            extension=_mid_extension(transceiver),
        )
        handle = sender._handle_rtcp_packet

        async def handle_rtcp(packet: Any) -> None:
            if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
                on_nack(list(packet.lost))
            elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                on_keyframe_request()
            else:
                await handle(packet)

        setattr(sender, "_handle_rtcp_packet", handle_rtcp)  # noqa: B010

    def _pair(self) -> Any:
        if self._dtls._state is not DtlsState.CONNECTED:
            return None
        return self._dtls.transport._connection._nominated.get(1)

    def ready(self) -> bool:
        return self._pair() is not None

    def backlog(self) -> int:
        pair = self._pair()
        transport = getattr(pair.protocol, "transport", None) if pair is not None else None
        return transport.get_write_buffer_size() if transport is not None else 0

    def send(self, packets: list[bytes]) -> None:
        pair = self._pair()
        if pair is None:
            return
        protect = self._lean_srtp().protect
        datagrams = [protect(data) for data in packets]
        batches = self._batches_for(pair)
        if batches is not None:
            batches.send(datagrams, pair.remote_addr)
        else:
            self._relay(datagrams, pair)

    def send_frame(
        self,
        header: bytes,
        payloads: tuple[bytes, ...],
        sequence: int,
        marker: int,
        history: list[bytes | None],
    ) -> tuple[int, int]:
        pair = self._pair()
        batches = self._batches_for(pair) if pair is not None else None
        if batches is not None:
            return batches.send_frame(
                pair.remote_addr, self._lean_srtp(), header, payloads, sequence, marker, history
            )
        packets, sequence, octets = packetize(header, payloads, sequence, marker, history)
        self.send(packets)
        return sequence, octets

    def _lean_srtp(self) -> LeanSrtp:
        srtp = self._srtp
        if srtp is None or srtp.session is not self._dtls._tx_srtp:
            srtp = self._srtp = LeanSrtp(self._dtls._tx_srtp)  # or a new session: a DTLS restart
        return srtp

    def _batches_for(self, pair: Any) -> UdpBatchSender | None:
        """The batching sender on the pair's own socket; None for a TURN allocation."""
        protocol = pair.protocol
        if type(protocol) is not aioice.ice.StunProtocol or protocol.transport is None:
            return None
        batches = self._batches
        if batches is None or batches.transport is not protocol.transport:
            batches = self._batches = UdpBatchSender(protocol.transport)
        return batches

    def _relay(self, datagrams: list[bytes], pair: Any) -> None:
        """Through a TURN allocation: its own (ordered) coroutine per datagram."""
        for data in datagrams:
            task = asyncio.ensure_future(pair.protocol.send_data(data, pair.remote_addr))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    def sent(self, *, packets: int, octets: int, rtp_timestamp: int) -> None:
        sender = self._sender
        sender._RTCRtpSender__ntp_timestamp = ntp_now()  # type: ignore[attr-defined]
        sender._RTCRtpSender__rtp_timestamp = rtp_timestamp  # type: ignore[attr-defined]
        sender._RTCRtpSender__octet_count += octets  # type: ignore[attr-defined]
        sender._RTCRtpSender__packet_count += packets  # type: ignore[attr-defined]


def _mid_extension(transceiver: RTCRtpTransceiver) -> bytes:
    """The RFC 8285 one-byte header extension block carrying the mid, if it was negotiated."""
    mid = (transceiver.mid or "").encode()
    ext_id = next((e.id for e in transceiver._headerExtensions if e.uri == MID_EXTENSION), None)
    if ext_id is None or not mid or len(mid) > 16 or not 1 <= ext_id <= 14:
        return b""
    element = bytes([ext_id << 4 | (len(mid) - 1)]) + mid
    element += b"\x00" * (-len(element) % 4)
    return b"\xbe\xde" + (len(element) // 4).to_bytes(2) + element


class _ThrottledRemb:
    """aiortc's receive-side bandwidth estimator, answering with a REMB at most every
    :attr:`INTERVAL_MS` (as libwebrtc does) instead of on every packet while it sees overuse.

    Unthrottled, a relay that falls behind sees its own queueing as overuse and then spends a
    tenth of its time sending REMBs, which puts it further behind.
    """

    INTERVAL_MS = 200

    def __init__(self, estimator: Any) -> None:
        self._estimator = estimator
        self._last_sent_ms: int | None = None
        estimator.incoming_bitrate = _RateCounter(1000, 8000)
        overuse = estimator.estimator
        overuse.update_min_frame_period = functools.partial(_update_min_frame_period, overuse.ts_delta_hist)

    def add(self, *, arrival_time_ms: int, **kwargs: Any) -> Any:
        remb = self._estimator.add(arrival_time_ms=arrival_time_ms, **kwargs)
        if remb is None:
            return None
        if self._last_sent_ms is not None and arrival_time_ms - self._last_sent_ms < self.INTERVAL_MS:
            return None
        self._last_sent_ms = arrival_time_ms
        return remb


def _update_min_frame_period(history: list[float], ts_delta: float) -> float:
    """aiortc's ``OveruseEstimator.update_min_frame_period`` (the smallest of the last 60 frame
    periods and this one), with one ``min`` over the history instead of one call per entry: it
    was a third of the estimator's time."""
    if len(history) >= MIN_FRAME_PERIOD_HISTORY_LENGTH:
        del history[0]
    smallest = min(history, default=ts_delta)
    history.append(ts_delta)
    return smallest if smallest < ts_delta else ts_delta


class _RateCounter:
    """aiortc's ``RateCounter`` (bytes over a sliding window of ``window_size`` ms, scaled), with
    the same results at a constant cost per packet: aiortc's keeps one bucket per millisecond and
    visits every elapsed millisecond on each packet, and remakes all 1000 buckets on a reset."""

    def __init__(self, window_size: int, scale: int = 8000) -> None:
        self._window_size = window_size
        self._scale = scale
        self._samples: collections.deque[tuple[int, int]] = collections.deque()
        self._origin_ms: int | None = None
        self._total = 0

    def add(self, value: int, now_ms: int) -> None:
        if self._origin_ms is None:
            self._origin_ms = now_ms
        else:
            self._erase_old(now_ms)
        self._samples.append((now_ms, value))
        self._total += value

    def rate(self, now_ms: int) -> int | None:
        if self._origin_ms is not None:
            self._erase_old(now_ms)
            active_window_size = now_ms - self._origin_ms + 1
            if self._samples and active_window_size > 1:
                return round(self._scale * self._total / active_window_size)
        return None

    def reset(self) -> None:
        self._samples.clear()
        self._origin_ms = None
        self._total = 0

    def _erase_old(self, now_ms: int) -> None:
        assert self._origin_ms is not None
        new_origin_ms = now_ms - self._window_size + 1
        if self._origin_ms < new_origin_ms:
            self._origin_ms = new_origin_ms
        samples = self._samples
        while samples and samples[0][0] < self._origin_ms:
            self._total -= samples.popleft()[1]


def receive_directly(pc: RTCPeerConnection) -> None:
    """Handle ``pc``'s SRTP and SRTCP as each datagram arrives, in the socket's ``datagram_received``.

    aiortc queues every datagram in aioice, and a task per DTLS transport takes it from the queue
    and awaits it through the handlers. Here, a datagram whose first byte says RTP or RTCP (RFC 7983
    section 7) is unprotected at once; a media packet of a receiver set up by
    :func:`install_receive_path` goes into that receiver's track (C, :class:`_TrackReceive`), and
    anything else through aiortc's handlers, started like an eager task (:func:`_run_eagerly`).
    DTLS and STUN keep aiortc's path. Call after the transceivers exist and the local description
    is set (the sockets are open then); it applies to each connection once.
    """
    for transceiver in pc.getTransceivers():
        dtls = transceiver.receiver.transport
        connection = dtls.transport.iceGatherer._connection
        if getattr(connection, "_zhihui_direct", False):
            continue
        queued = connection.data_received
        direct = _direct_receiver(dtls, queued)
        setattr(connection, "data_received", direct)  # noqa: B010
        setattr(connection, "_zhihui_direct", True)  # noqa: B010
        for protocol in connection._protocols:
            if type(protocol) is aioice.ice.StunProtocol and protocol.local_candidate is not None:
                setattr(protocol, "datagram_received", _demultiplexer(protocol, direct))  # noqa: B010


def _demultiplexer(
    protocol: aioice.ice.StunProtocol, direct: Callable[[bytes, int], None]
) -> Callable[[bytes, tuple[Any, ...]], None]:
    """A host socket's ``datagram_received`` that hands RTP and RTCP (first byte 128-191, RFC 7983)
    to ``direct`` without aioice trying to parse each one as STUN first (and failing)."""
    stun = protocol.datagram_received
    component = protocol.local_candidate.component

    def datagram_received(data: bytes, addr: tuple[Any, ...]) -> None:
        if data and 127 < data[0] < 192:
            direct(data, component)
        else:
            stun(data, addr)

    return datagram_received


def _direct_receiver(dtls: Any, queued: Callable[[bytes, int], None]) -> Callable[[bytes, int], None]:
    now_ms = ntp_ms
    lean: LeanSrtp | None = None
    unprotect = LeanSrtp.unprotect_address
    ssrc_table = dtls._rtp_router.ssrc_table

    def data_received(data: bytes, component: int) -> None:
        nonlocal lean
        srtp = dtls._rx_srtp
        if srtp is None or not data or not 127 < data[0] < 192:
            queued(data, component)
            return
        dtls._RTCDtlsTransport__rx_bytes += len(data)
        dtls._RTCDtlsTransport__rx_packets += 1
        if is_rtcp(data):
            try:
                _run_eagerly(dtls._handle_rtcp_data(srtp.unprotect_rtcp(data)))
            except (pylibsrtp.Error, ValueError):
                pass  # as aiortc does: a packet that does not authenticate is dropped
            return
        if lean is None or lean.session is not srtp:
            lean = LeanSrtp(srtp)  # the first packet, or a new session after a DTLS restart
        # The SSRC is in the clear (RFC 3711 3.1): the receiver is known before unprotecting.
        ssrc = int.from_bytes(data[8:12])
        receiver = ssrc_table.get(ssrc) if len(data) >= 12 else None
        fast: _TrackReceive | None = getattr(receiver, "_zhihui_fast", None)
        if fast is not None:
            if not fast.receiver._enabled:
                return
            events = fast.track.receive(lean.address, unprotect, data)
            if events is None:
                return  # nothing more to do, or it did not authenticate (dropped, as aiortc does)
            if isinstance(events, tuple):
                fast.handle(events, ssrc)
                return
            plain = events  # for aiortc's path: see _datapath.Track.receive
            arrival_time_ms = now_ms()
        else:
            try:
                plain = lean.unprotect(data)
            except (pylibsrtp.Error, ValueError):
                return
            arrival_time_ms = now_ms()
        _run_eagerly(dtls._handle_rtp_data(plain, arrival_time_ms=arrival_time_ms))

    return data_received


class _TrackReceive:
    """A receiver's media path over a :class:`_datapath.Track`: what Python does with what the
    track found (frames to deliver, losses to NACK, keyframes to ask for, the bandwidth estimate).

    :func:`receive_directly` hands the track each media datagram of the source it is bound to. What
    comes aiortc's way (the first packet of a source, retransmissions, payload types the track was
    not given) reaches :meth:`add`, which aiortc calls as its jitter buffer's: the first binds the
    track to its source, and the track's statistics replace aiortc's for it (:class:`_TrackStatistics`).
    """

    def __init__(
        self,
        receiver: RTCRtpReceiver,
        track: _datapath.Track,
        estimator: _ThrottledRemb | None,
        deliver: Callable[[EncodedFrame], None],
        request_keyframe: Callable[[], None],
        on_loss: Callable[[], None] | None,
    ) -> None:
        self.track = track
        self.receiver = receiver
        self._estimator = estimator
        self._deliver = deliver
        self._request_keyframe = request_keyframe
        self._on_loss = on_loss
        self._kind = MediaKind.VIDEO if track.video else MediaKind.AUDIO
        self._active_noted_at = 0.0

    def add(self, packet: Any) -> tuple[bool, None]:
        """``JitterBuffer.add`` for aiortc's path (``packet._data`` depayloaded by aiortc)."""
        if packet.ssrc != self.track.ssrc:
            self._bind(packet)
        self.handle(self.track.add(packet), packet.ssrc)
        return False, None

    def _bind(self, packet: Any) -> None:
        """Take ``packet``'s source from aiortc: a publisher's new source replaces the old one."""
        receiver = self.receiver
        streams = receiver._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined]
        previous = self.track.ssrc
        statistics = streams.get(packet.ssrc)
        codec = receiver._RTCRtpReceiver__codecs.get(packet.payload_type)  # type: ignore[attr-defined]
        clock_rate = statistics._clockrate if statistics is not None else codec.clockRate if codec else 90000
        bind_statistics(self.track, packet.ssrc, statistics, clock_rate)
        streams[packet.ssrc] = _TrackStatistics(self.track, statistics)
        if previous is not None:
            streams.pop(previous, None)

    def handle(self, events: tuple[Any, ...] | None, ssrc: int) -> None:
        """Act on what ``Track.receive`` or ``Track.add`` returned."""
        if events is None:
            return
        frames, lost, keyframes, frame_end = events
        receiver = self.receiver
        if frame_end is not None and self._estimator is not None:
            self._end_of_frame(ssrc, *frame_end)
        if lost:
            if self._on_loss is not None:
                self._on_loss()
            _run_eagerly(receiver._send_rtcp_nack(ssrc, sorted(lost)))
        if keyframes:
            self._request_keyframe()
        if frames:
            kind = self._kind
            deliver = self._deliver
            for frame in frames:
                try:
                    deliver(EncodedFrame(kind, *frame))
                except Exception:
                    logger.exception("delivering a frame failed")
            received_at = frames[-1][5]
            if received_at - self._active_noted_at >= 1:
                # getSynchronizationSources() lists the sources heard from in the last 10 s.
                self._active_noted_at = received_at
                receiver._RTCRtpReceiver__active_ssrc[ssrc] = current_datetime()  # type: ignore[attr-defined]

    def _end_of_frame(
        self, ssrc: int, size: int, profile: int, extension: bytes, arrival_time_ms: int
    ) -> None:
        """Feed the bandwidth estimator (REMB) once per video frame, with the frame's bytes, when
        its last packet arrives: it groups packets sent together anyway (aiortc's ``InterArrival``,
        5 ms groups), and a frame's packets are sent together."""
        receiver = self.receiver
        abs_send_time = receiver.transport._rtp_header_extensions_map.get(profile, extension).abs_send_time
        if abs_send_time is None:
            return
        assert self._estimator is not None
        remb = self._estimator.add(
            abs_send_time=abs_send_time, arrival_time_ms=arrival_time_ms, payload_size=size, ssrc=ssrc
        )
        rtcp_ssrc = receiver._RTCRtpReceiver__rtcp_ssrc  # type: ignore[attr-defined]
        if remb is not None and rtcp_ssrc is not None:
            rtcp = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=pack_remb_fci(*remb))
            _run_eagerly(receiver._send_rtcp(rtcp))


def bind_statistics(
    track: _datapath.Track, ssrc: int, statistics: StreamStatistics | None, clock_rate: int
) -> None:
    """Bind ``track`` to ``ssrc``, going on from what aiortc's ``statistics`` counted (if any)."""

    def field(value: int | None) -> int:
        return -1 if value is None else value

    if statistics is None:
        track.bind(ssrc, clock_rate, -1, -1, 0, 0, 0, -1, -1)
        return
    track.bind(
        ssrc,
        statistics._clockrate,
        field(statistics.base_seq),
        field(statistics.max_seq),
        statistics.cycles,
        statistics.packets_received,
        statistics._jitter_q4,
        field(statistics._last_arrival),
        field(statistics._last_timestamp),
    )


class _TrackStatistics:
    """aiortc's ``StreamStatistics`` for the source a track is bound to: counted in C, read here by
    aiortc's RTCP loop (receiver reports) and ``getStats``, and counted through :meth:`add` for
    that source's packets that come aiortc's way."""

    def __init__(self, track: _datapath.Track, statistics: StreamStatistics | None) -> None:
        self._track = track
        self._expected_prior = statistics._expected_prior if statistics is not None else 0
        self._received_prior = statistics._received_prior if statistics is not None else 0

    def add(self, packet: Any) -> None:
        self._track.count(packet.sequence_number, packet.timestamp)

    @property
    def base_seq(self) -> int | None:
        return self._track.base_seq

    @property
    def max_seq(self) -> int | None:
        return self._track.max_seq

    @property
    def cycles(self) -> int:
        return self._track.cycles

    @property
    def packets_received(self) -> int:
        return self._track.packets_received

    @property
    def fraction_lost(self) -> int:
        expected_interval = self.packets_expected - self._expected_prior
        self._expected_prior = self.packets_expected
        received_interval = self.packets_received - self._received_prior
        self._received_prior = self.packets_received
        lost_interval = expected_interval - received_interval
        if expected_interval == 0 or lost_interval <= 0:
            return 0
        return (lost_interval << 8) // expected_interval

    @property
    def jitter(self) -> int:
        return self._track.jitter_q4 >> 4

    @property
    def packets_expected(self) -> int:
        track = self._track
        return track.cycles + track.max_seq - track.base_seq + 1  # type: ignore[operator]

    @property
    def packets_lost(self) -> int:
        return clamp_packets_lost(self.packets_expected - self.packets_received)


def ntp_ms() -> int:
    """aiortc's ``clock.current_ms`` (milliseconds since 1900, as its receivers time arrivals),
    without making two datetimes for every packet."""
    return int((time.time() + _NTP_EPOCH_OFFSET) * 1000)


def ntp_now() -> int:
    """aiortc's ``clock.current_ntp_time`` (64-bit NTP: seconds since 1900, and a 32-bit
    fraction), as its senders note each frame's send time, without the datetimes."""
    now = time.time() + _NTP_EPOCH_OFFSET
    seconds = int(now)
    return seconds << 32 | int((now - seconds) * (1 << 32))


_NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01 (RFC 5905)


def _run_eagerly(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run ``coroutine`` now, up to its first real wait; a task takes it from there."""
    try:
        waiting_on = coroutine.send(None)
    except StopIteration:
        return
    except Exception:
        logger.exception("handling a media packet failed")
        return
    task = asyncio.ensure_future(_continue(coroutine, waiting_on))
    _continuing.add(task)
    task.add_done_callback(_continuing.discard)


_continuing: set[asyncio.Future[Any]] = set()


@types.coroutine
def _continue(coroutine: Coroutine[Any, Any, None], waiting_on: Any) -> Generator[Any, Any, None]:
    """Hands the futures ``coroutine`` waits on to the task running this, and the results back."""
    while True:
        try:
            result = yield waiting_on
        except BaseException as exc:  # cancelled, or the future failed
            try:
                waiting_on = coroutine.throw(exc)
            except StopIteration:
                return
        else:
            try:
                waiting_on = coroutine.send(result)
            except StopIteration:
                return


def tap_sender_reports(receiver: RTCRtpReceiver, callback: Callable[[int, int], None]) -> None:
    """Call ``callback(ntp_timestamp, rtp_timestamp)`` for each RTCP sender report the publisher
    sends about this receiver's media (not its retransmissions), before aiortc handles it."""
    handle = receiver._handle_rtcp_packet
    rtx_ssrcs = receiver._RTCRtpReceiver__rtx_ssrc  # type: ignore[attr-defined]

    async def handle_rtcp_packet(packet: Any) -> None:
        if isinstance(packet, RtcpSrPacket) and packet.ssrc not in rtx_ssrcs:
            try:
                callback(packet.sender_info.ntp_timestamp, packet.sender_info.rtp_timestamp)
            except Exception:
                logger.exception("a sender report could not be used")
        await handle(packet)

    setattr(receiver, "_handle_rtcp_packet", handle_rtcp_packet)  # noqa: B010


def _never_decode(codec: RTCRtpCodecParameters, frame: JitterFrame) -> None:
    raise AssertionError("the relay's assembler delivers frames; none may reach the decoder")


async def send_nack(receiver: RTCRtpReceiver, media_ssrc: int, sequence_numbers: list[int]) -> None:
    """Ask the publisher again for packets still missing (RTCP generic NACK)."""
    await receiver._send_rtcp_nack(media_ssrc, sequence_numbers)


async def request_keyframe(receiver: RTCRtpReceiver) -> bool:
    """Send an RTCP PLI for every SSRC the receiver has heard from. False if none yet."""
    active: dict[int, Any] = receiver._RTCRtpReceiver__active_ssrc  # type: ignore[attr-defined]
    rtx_ssrcs = set(receiver._RTCRtpReceiver__rtx_ssrc)  # type: ignore[attr-defined]
    sent = False
    for ssrc in list(active):
        if ssrc in rtx_ssrcs:
            continue
        await receiver._send_rtcp_pli(ssrc)
        sent = True
    return sent


def impair_outgoing_rtp(pc: RTCPeerConnection, *, loss: float, jitter: float, seed: int = 0) -> None:
    """Make ``pc`` lose a share ``loss`` of the RTP packets it sends and delay each by up to
    ``jitter`` seconds (so some arrive out of order): a 4G uplink for tests and benchmarks,
    where the kernel's netem is not available. RTCP and DTLS pass untouched.
    """
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()
    for transceiver in pc.getTransceivers():
        dtls = transceiver.sender.transport
        if getattr(dtls, "_zhihui_impaired", False):
            continue
        send = dtls._send_rtp

        async def impaired(data: bytes, send: Callable[[bytes], Any] = send) -> None:
            if is_rtcp(data):
                await send(data)
                return
            if rng.random() < loss:
                return
            delay = rng.uniform(0, jitter)
            if delay <= 0:
                await send(data)
                return

            def later() -> None:
                task = loop.create_task(_send_quietly(send, data))
                pending.add(task)
                task.add_done_callback(pending.discard)

            loop.call_later(delay, later)

        setattr(dtls, "_send_rtp", impaired)  # noqa: B010
        setattr(dtls, "_zhihui_impaired", True)  # noqa: B010


def pause_receiving(pc: RTCPeerConnection) -> None:
    """Stop reading ``pc``'s sockets, as a stalled or vanished viewer would: what is sent to it
    piles up in the kernel and is then dropped. For tests and benchmarks."""
    for transceiver in pc.getTransceivers():
        for protocol in transceiver.receiver.transport.transport.iceGatherer._connection._protocols:
            transport = getattr(protocol, "transport", None)
            if transport is not None:
                transport.pause_reading()


async def _send_quietly(send: Callable[[bytes], Any], data: bytes) -> None:
    with contextlib.suppress(ConnectionError):
        await send(data)


class NoFreePort(OSError):
    """Every UDP port of the configured range is taken on an address the relay must listen on."""


def restrict_host_addresses(
    pc: RTCPeerConnection, addresses: list[str], ports: tuple[int, int] | None = None
) -> None:
    """Gather ICE host candidates of ``pc`` on ``addresses`` only (loopback allowed), on UDP ports
    in ``ports`` (first, last; inclusive) when given, per connection: never by patching aioice for
    the whole process.

    Call after the transceivers exist (``addTransceiver`` or ``setRemoteDescription``) and before
    ``setLocalDescription``. An empty list keeps aioice's choice of addresses (every interface but
    loopback); ``ports=None`` keeps its choice of ports (any the kernel gives). Gathering raises
    :class:`NoFreePort` when the range is full.
    """
    if not addresses and ports is None:
        return
    for transceiver in pc.getTransceivers():
        for transport in (transceiver.sender.transport, transceiver.receiver.transport):
            connection = transport.transport.iceGatherer._connection
            if getattr(connection, "_zhihui_restricted", False):
                continue
            # Per-instance attributes: other connections keep aioice's own gathering.
            gather = _gather_on(connection, list(addresses), ports)
            setattr(connection, "gather_candidates", gather)  # noqa: B010
            setattr(connection, "_zhihui_restricted", True)  # noqa: B010


def _gather_on(
    connection: aioice.Connection, addresses: list[str], ports: tuple[int, int] | None
) -> Callable[[], Any]:
    async def gather_candidates() -> None:
        if connection._local_candidates_start:
            return
        connection._local_candidates_start = True
        chosen = addresses or aioice.ice.get_host_addresses(
            use_ipv4=connection._use_ipv4, use_ipv6=connection._use_ipv6
        )
        for component in connection._components:
            if ports is None:
                connection._local_candidates += await connection.get_component_candidates(
                    component=component, addresses=chosen
                )
            else:
                gathered = await _candidates_in_range(connection, component, chosen, ports)
                connection._local_candidates += gathered
        connection._local_candidates_end = True

    return gather_candidates


async def _candidates_in_range(
    connection: aioice.Connection, component: int, addresses: list[str], ports: tuple[int, int]
) -> list[aioice.Candidate]:
    """aioice's ``get_component_candidates`` with host sockets bound in ``ports``: host
    candidates here, server-reflexive ones from the STUN server on them, and then aioice's own
    gathering with no host addresses for the TURN allocation."""
    loop = asyncio.get_running_loop()
    first, last = ports
    candidates: list[aioice.Candidate] = []
    protocols: list[aioice.ice.StunProtocol] = []
    for address in addresses:
        offset = random.randrange(last - first + 1)
        for i in range(last - first + 1):
            port = first + (offset + i) % (last - first + 1)
            try:
                transport, protocol = await loop.create_datagram_endpoint(
                    lambda: aioice.ice.StunProtocol(connection), local_addr=(address, port)
                )
                break
            except OSError:
                continue
        else:
            for protocol in protocols:
                protocol.transport.close()
            raise NoFreePort(f"no free UDP port in {first}-{last} on {address}")
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, aioice.turn.UDP_SOCKET_BUFFER_SIZE)
        host, bound_port = transport.get_extra_info("sockname")[:2]
        protocol.local_candidate = aioice.Candidate(
            foundation=aioice.candidate.candidate_foundation("host", "udp", host),
            component=component,
            transport="udp",
            priority=aioice.candidate.candidate_priority(component, "host"),
            host=host,
            port=bound_port,
            type="host",
        )
        candidates.append(protocol.local_candidate)
        protocols.append(protocol)
    connection._protocols += protocols
    if connection.stun_server:
        tasks = [
            asyncio.create_task(aioice.ice.server_reflexive_candidate(protocol, connection.stun_server))
            for protocol in protocols
            if ipaddress.ip_address(protocol.local_candidate.host).version == 4
        ]
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=5)
            for task in pending:
                task.cancel()
            candidates += [task.result()[0] for task in done if task.exception() is None]
    if connection.turn_server:
        candidates += await connection.get_component_candidates(component=component, addresses=[])
    return candidates
