"""Every use of aiortc and aioice internals, in one place, for the exact pinned versions.

The relay forwards encoded media without decoding it (DESIGN.md decision 1). aiortc has no public
hook for that, so this module:

- replaces a receiver's jitter buffer and NACK generator with the relay's own (which rebuild
  encoded frames and retry lost packets), and its decoder queue with a tap, so nothing is decoded;
- sends NACKs for lost packets on the relay's own retry timer;
- sends a picture loss indication (RTCP PLI) from a receiver to its publisher;
- restricts the host addresses an ``RTCPeerConnection`` gathers ICE candidates on, per
  connection (never by patching aioice globally), so that a relay can announce chosen addresses.

:func:`check_versions` fails loudly when aiortc or aioice is not the version this was written for;
the test suite calls it, and so does the relay at start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import random
from collections.abc import Callable
from typing import Any

import aioice
import aiortc
from aiortc import RTCPeerConnection, RTCRtpReceiver
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import is_rtcp

__all__ = [
    "AIOICE_VERSION",
    "AIORTC_VERSION",
    "FrameCallback",
    "IncompatibleAiortc",
    "check_versions",
    "impair_outgoing_rtp",
    "install_receive_path",
    "pause_receiving",
    "request_keyframe",
    "restrict_host_addresses",
    "send_nack",
    "tap_receiver",
]

AIORTC_VERSION = "1.16.0"
AIOICE_VERSION = "0.13.0"

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
    missing = [
        name
        for owner, name in (
            (RTCRtpReceiver, "_handle_rtp_packet"),
            (RTCRtpReceiver, "_send_rtcp_pli"),
            (RTCRtpReceiver, "_send_rtcp_nack"),
            (aioice.Connection, "get_component_candidates"),
        )
        if not hasattr(owner, name)
    ]
    if missing:
        raise IncompatibleAiortc(f"aiortc/aioice internals missing: {', '.join(missing)}")


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


def install_receive_path(receiver: RTCRtpReceiver, *, assembler: Any, nacks: Any | None) -> None:
    """Make ``receiver`` hand RTP packets to ``assembler`` (for ``JitterBuffer``) and report loss
    to ``nacks`` (for ``NackGenerator``; video only). Frames then never reach aiortc's decoder.

    ``assembler.add(packet)`` must return ``(pli_flag, None)``; ``nacks.add(packet)`` returns
    True when packets were found lost, and ``nacks.missing`` lists them.
    """
    receiver._RTCRtpReceiver__jitter_buffer = assembler  # type: ignore[attr-defined]
    if nacks is not None and receiver._RTCRtpReceiver__nack_generator is not None:  # type: ignore[attr-defined]
        receiver._RTCRtpReceiver__nack_generator = nacks  # type: ignore[attr-defined]
    tap_receiver(receiver, _never_decode)


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


def restrict_host_addresses(pc: RTCPeerConnection, addresses: list[str]) -> None:
    """Gather ICE host candidates of ``pc`` on ``addresses`` only (loopback allowed).

    Call after the transceivers exist (``addTransceiver`` or ``setRemoteDescription``) and before
    ``setLocalDescription``. An empty list keeps aioice's default: every interface but loopback.
    """
    if not addresses:
        return
    for transceiver in pc.getTransceivers():
        for transport in (transceiver.sender.transport, transceiver.receiver.transport):
            connection = transport.transport.iceGatherer._connection
            if getattr(connection, "_zhihui_restricted", False):
                continue
            # Per-instance attributes: other connections keep aioice's own gathering.
            setattr(connection, "gather_candidates", _gather_on(connection, list(addresses)))  # noqa: B010
            setattr(connection, "_zhihui_restricted", True)  # noqa: B010


def _gather_on(connection: aioice.Connection, addresses: list[str]) -> Callable[[], Any]:
    async def gather_candidates() -> None:
        if connection._local_candidates_start:
            return
        connection._local_candidates_start = True
        for component in connection._components:
            connection._local_candidates += await connection.get_component_candidates(
                component=component, addresses=addresses
            )
        connection._local_candidates_end = True

    return gather_candidates
