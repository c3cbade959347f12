"""A viewer's RTP out: the publisher's own packets, re-addressed and sent on at once.

Each complete frame the publisher's assembler releases carries the RTP payloads it came in. A
viewer gets those payloads as they are (nothing decoded, nothing repacketized) under its own
header: its payload type, its SSRC, its sequence numbers with no gaps, its timestamp origin.
This is the relay's hot path, so it does little per packet: one ``struct`` pack, two
concatenations, and the output's protect-and-send.

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

__all__ = ["HISTORY", "RtpForwarder", "RtpOutput", "RtpParameters"]

HISTORY = 512
"""Packets kept per viewer for retransmission: about 3 s of 720p at 1.5 Mbit/s (some 600 kB)."""

_HEADER = struct.Struct("!BBHII")


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
        first = 0x90 if params.extension else 0x80
        timestamp = (self._ts_origin + frame.timestamp) & 0xFFFFFFFF
        payloads = frame.payloads
        last = len(payloads) - 1
        # Video: the marker ends a frame (RFC 7741, RFC 6184). Audio: no talkspurts are signalled.
        marker_last = 0x80 if self.kind is MediaKind.VIDEO else 0
        pack = _HEADER.pack
        extension = params.extension
        payload_type = params.payload_type
        ssrc = params.ssrc
        history = self._history
        seq = self._seq
        packets = []
        octets = 0
        for i, payload in enumerate(payloads):
            marker = marker_last if i == last else 0
            data = pack(first, marker | payload_type, seq, timestamp, ssrc) + extension + payload
            history[seq % HISTORY] = data
            packets.append(data)
            octets += len(payload)
            seq = (seq + 1) & 0xFFFF
        self._seq = seq
        self._output.send(packets)
        self._output.sent(packets=len(packets), octets=octets, rtp_timestamp=timestamp)
        self.packets_sent += len(packets)
        self.frames_sent += 1
