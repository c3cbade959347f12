"""A viewer's RTP out: the publisher's own packets, re-addressed and sent on at once.

Each complete frame the publisher's assembler releases carries the RTP payloads it came in. A
viewer gets those payloads as they are (nothing decoded, nothing repacketized) under its own
header: its payload type, its SSRC, its sequence numbers with no gaps, its timestamp origin.
This is the relay's hot path: per frame, the forwarder makes the header once, and the output
makes each packet, keeps it for retransmission, protects and sends it (in C, for a viewer's
socket: ``_datapath.c``; :func:`packetize` is the same in Python).

- A video viewer starts on a keyframe, and after any drop waits for the next one and asks for it.
- Before the viewer's connection is up, frames since the last keyframe wait in a bounded buffer;
  once it is up they are sent first, so the keyframe asked for on join is not lost to the DTLS
  handshake.
- Sending never waits. When the socket's own queue holds more than ``max_backlog`` bytes (a
  viewer that cannot keep up, on a link the kernel pushes back on), frames are dropped to the
  next keyframe: one slow viewer never slows the publisher, the recording or the other viewers.
- The last :data:`HISTORY` packets are kept to answer the viewer's NACKs, over RTX when the viewer
  negotiated it (RFC 4588).
"""

from __future__ import annotations

import random
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from media_relay.forwarding.frames import EncodedFrame, MediaKind

__all__ = ["HISTORY", "RtpForwarder", "RtpOutput", "RtpParameters", "packetize"]

HISTORY = 512
"""Packets kept per viewer for retransmission: about 3 s of 720p at 1.5 Mbit/s (some 600 kB)."""

_HEADER = struct.Struct("!BBHII")
_START = struct.Struct("!BBH")


@dataclass(frozen=True, slots=True)
class RtpParameters:
    """What the viewer's answer settled for one outgoing track."""

    payload_type: int
    ssrc: int
    rtx_payload_type: int | None
    rtx_ssrc: int
    extension: bytes
    """The header extension block sent on every packet (RFC 8285 one-byte form), or ``b""``."""


class RtpOutput(Protocol):
    """Where a forwarder's packets go: one sender of one viewer's peer connection."""

    parameters: RtpParameters

    def ready(self) -> bool:
        """Whether packets can be sent now (the connection is up)."""
        ...

    def backlog(self) -> int:
        """Bytes waiting in user space for the socket."""
        ...

    def send(self, packets: list[bytes]) -> None:
        """Protect and send RTP packets, in order, without waiting."""
        ...

    def send_frame(
        self,
        header: bytes,
        payloads: tuple[bytes, ...],
        sequence: int,
        marker: int,
        history: list[bytes | None],
    ) -> tuple[int, int]:
        """Send a frame's payloads as :func:`packetize` makes them (keeping each packet in
        ``history``), protected, in order, without waiting; return the next sequence number and
        the payload octets."""
        ...

    def sent(self, *, packets: int, octets: int, rtp_timestamp: int) -> None:
        """Note what was sent, for the sender reports."""
        ...


class RtpForwarder:
    """One viewer's outgoing track: frames in, RTP out (see the module's docstring)."""

    def __init__(
        self,
        kind: MediaKind,
        output: RtpOutput,
        *,
        on_keyframe_needed: Callable[[], None],
        pending_frames: int = 90,
        max_backlog: int = 256 * 1024,
    ) -> None:
        self.kind = kind
        self._output = output
        self._on_keyframe_needed = on_keyframe_needed
        self._pending: deque[EncodedFrame] = deque()
        self._pending_frames = pending_frames
        self._max_backlog = max_backlog
        self._waiting_for_keyframe = kind is MediaKind.VIDEO
        self._stopped = False
        self._seq = random.getrandbits(15)  # below 2^15, as browsers do, so SRTP never sees a wrap early
        self._rtx_seq = random.getrandbits(15)
        self._ts_origin = random.getrandbits(32)
        self._history: list[bytes | None] = [None] * HISTORY
        self.frames_sent = 0
        self.frames_dropped = 0
        """Dropped for this viewer only: it fell behind, or joined between keyframes."""
        self.overflows = 0
        self.packets_sent = 0
        self.retransmitted = 0
        self.not_in_history = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    def offer(self, frame: EncodedFrame) -> None:
        """Send a frame to this viewer now, or keep it until the connection is up, or drop it."""
        if self._stopped:
            return
        if self._waiting_for_keyframe:
            if not frame.keyframe:
                self.frames_dropped += 1
                return
            self._waiting_for_keyframe = False
        if not self._output.ready():
            if len(self._pending) >= self._pending_frames:
                self._overflow(frame)
                return
            self._pending.append(frame)
            return
        if self._output.backlog() > self._max_backlog:
            self._overflow(frame)
            return
        while self._pending:
            self._send(self._pending.popleft())
        self._send(frame)

    def retransmit(self, sequence_numbers: list[int]) -> None:
        """Answer a NACK from the viewer with what is still in the history; a packet gone from
        it is answered with a keyframe request instead."""
        params = self._output.parameters
        out = []
        missed = False
        for seq in sequence_numbers:
            data = self._history[seq % HISTORY]
            if data is None or (data[2] << 8 | data[3]) != seq:
                missed = True
                continue
            if params.rtx_payload_type is None:
                out.append(data)
                continue
            header_end = 12 + len(params.extension)
            out.append(
                _HEADER.pack(
                    data[0],
                    (data[1] & 0x80) | params.rtx_payload_type,
                    self._rtx_seq,
                    int.from_bytes(data[4:8]),
                    params.rtx_ssrc,
                )
                + data[12:header_end]
                + data[2:4]  # RFC 4588 4: the original sequence number first
                + data[header_end:]
            )
            self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
        if out and self._output.ready():
            self._output.send(out)
            self.retransmitted += len(out)
        if missed:
            self.not_in_history += 1
            if self.kind is MediaKind.VIDEO:
                self._on_keyframe_needed()

    def stop(self) -> None:
        """Forward nothing more."""
        self._stopped = True
        self._pending.clear()

    end = stop  # the source is gone

    # -- internals -----------------------------------------------------------------------------

    def _overflow(self, frame: EncodedFrame) -> None:
        self.overflows += 1
        self.frames_dropped += len(self._pending) + 1
        self._pending.clear()
        if self.kind is MediaKind.VIDEO:
            self._waiting_for_keyframe = True
            self._on_keyframe_needed()

    def _send(self, frame: EncodedFrame) -> None:
        params = self._output.parameters
        timestamp = (self._ts_origin + frame.timestamp) & 0xFFFFFFFF
        header = (
            _HEADER.pack(0x90 if params.extension else 0x80, params.payload_type, 0, timestamp, params.ssrc)
            + params.extension
        )
        # Video: the marker ends a frame (RFC 7741, RFC 6184). Audio: no talkspurts are signalled.
        marker = 0x80 if self.kind is MediaKind.VIDEO else 0
        payloads = frame.payloads
        self._seq, octets = self._output.send_frame(header, payloads, self._seq, marker, self._history)
        self._output.sent(packets=len(payloads), octets=octets, rtp_timestamp=timestamp)
        self.packets_sent += len(payloads)
        self.frames_sent += 1


def packetize(
    header: bytes, payloads: tuple[bytes, ...], sequence: int, marker: int, history: list[bytes | None]
) -> tuple[list[bytes], int, int]:
    """A frame's RTP packets: ``header`` (sequence number and marker 0, see
    :meth:`RtpOutput.send_frame`) before each payload, with the next sequence number from
    ``sequence`` and ``marker`` on the last; each kept in ``history`` at its sequence number modulo
    the history's length. Returns the packets, the next sequence number and the payload octets."""
    first, second = header[0], header[1] & 0x7F
    rest = header[4:]
    size = len(history)
    last = len(payloads) - 1
    packets = []
    octets = 0
    for i, payload in enumerate(payloads):
        data = _START.pack(first, second | marker if i == last else second, sequence) + rest + payload
        history[sequence % size] = data
        packets.append(data)
        octets += len(payload)
        sequence = (sequence + 1) & 0xFFFF
    return packets, sequence, octets
