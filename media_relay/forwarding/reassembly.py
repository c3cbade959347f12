"""Encoded frames rebuilt from RTP, with bounded waits and persistent loss recovery.

aiortc's own receive path was made for decoding, not relaying, and froze for seconds at 1% loss:
its NACK generator asks for a lost packet only once (when the gap appears), and its jitter buffer
releases a frame only when the next one starts and waits for a hole with no time bound. Here:

- :class:`NackTracker` remembers every lost packet and asks again, ``retry_interval`` after the
  first request and twice as long each time after, until it arrives or is too old;
- :class:`FrameAssembler` releases a frame as soon as its last packet (RTP marker) is in, asks for
  a keyframe when a hole lasts ``keyframe_after``, and after ``max_wait`` gives the hole up, skips
  to the next frame and forwards nothing but a keyframe until one comes, so a viewer or the
  recording never waits on a packet that will not come.

Both are plain objects with no I/O; the session owns the timers and the sockets.

The relay runs them in C: ``_datapath.Track`` (``_track.c``) does per packet what these do, with the
receive statistics and depayloading, so that Python sees whole frames only. These stay as the
readable reference it is tested against, packet by packet (tests/media_relay/test_track.py), and
for tools that assemble frames outside the relay.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from media_relay.forwarding.frames import EncodedFrame, MediaKind, is_keyframe

__all__ = ["CodecInfo", "FrameAssembler", "NackTracker", "RtpLike", "Unwrapper"]

Clock = Callable[[], float]


class RtpLike(Protocol):
    """What is used of an RTP packet (aiortc's ``RtpPacket`` after depayloading)."""

    sequence_number: int
    timestamp: int
    marker: int
    payload: bytes
    payload_type: int
    _data: bytes


@dataclass(frozen=True, slots=True)
class CodecInfo:
    name: str
    clock_rate: int


class Unwrapper:
    """Extends a wrapping counter (16-bit sequence numbers, 32-bit timestamps) to an int."""

    def __init__(self, bits: int) -> None:
        self._modulus = 1 << bits
        self._half = self._modulus >> 1
        self._last: int | None = None

    def unwrap(self, value: int) -> int:
        if self._last is None:
            self._last = value
            return value
        delta = (value - self._last) % self._modulus
        if delta >= self._half:
            delta -= self._modulus
        extended = self._last + delta
        if delta > 0:
            self._last = extended
        return extended

    def reset(self) -> None:
        self._last = None


class NackTracker:
    """Lost packets, asked for again and again until they come or are no use any more.

    It stands in for aiortc's ``NackGenerator``: the receiver calls :meth:`add` for each packet
    and, when that returns True, sends a NACK for :attr:`missing` (the newly lost ones). The
    session calls :meth:`due` on a timer for the retries.
    """

    MAX_GAP = 512  # a larger jump is a restart, not loss

    def __init__(
        self,
        *,
        retry_interval: float = 0.05,
        max_tries: int = 5,
        max_age: float = 0.6,
        on_loss: Callable[[], None] | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.retry_interval = retry_interval
        self.max_tries = max_tries
        self.max_age = max_age
        self.ssrc: int | None = None
        self.nacks_sent = 0
        self.lost = 0
        self.recovered = 0
        self.given_up = 0
        self._on_loss = on_loss
        self._clock = clock
        self._seq = Unwrapper(16)
        self._highest: int | None = None
        self._lost: dict[int, list[float]] = {}  # seq -> [first_lost, last_asked, tries]
        self._new: list[int] = []

    @property
    def missing(self) -> list[int]:
        """The packets found lost by the last :meth:`add`; reading them marks them asked for."""
        new, self._new = self._new, []
        self.nacks_sent += len(new)
        return new

    @property
    def outstanding(self) -> int:
        return len(self._lost)

    def add(self, packet: RtpLike) -> bool:
        self.ssrc = getattr(packet, "ssrc", self.ssrc)
        ext = self._seq.unwrap(packet.sequence_number)
        if self._highest is None or ext - self._highest > self.MAX_GAP or self._highest - ext > self.MAX_GAP:
            self._highest = ext
            self._lost.clear()
            return False
        if ext <= self._highest:
            if self._lost.pop(ext, None) is not None:
                self.recovered += 1
            return False
        now = self._clock()
        for seq in range(self._highest + 1, ext):
            self.lost += 1
            self._lost[seq] = [now, now, 1]
            self._new.append(seq & 0xFFFF)
        self._highest = ext
        if self._new and self._on_loss is not None:
            self._on_loss()
        return bool(self._new)

    def due(self) -> list[int]:
        """Sequence numbers to ask for again now; forgets the hopeless ones."""
        now = self._clock()
        out = []
        for seq, entry in list(self._lost.items()):
            first, last, tries = entry
            if now - first > self.max_age or tries >= self.max_tries:
                del self._lost[seq]
                self.given_up += 1
            elif now - last >= self.retry_interval * 2 ** (tries - 1):
                # Backing off: when loss comes from an overloaded relay, asking again and again
                # for every packet would only add to the load that lost them.
                entry[1] = now
                entry[2] = tries + 1
                out.append(seq & 0xFFFF)
        self.nacks_sent += len(out)
        return out

    def forget_through(self, sequence_number: int) -> None:
        """Stop asking for packets up to this one (16-bit): the assembler has moved past them."""
        if self._highest is None:
            return
        ext = self._highest - ((self._highest - sequence_number) & 0xFFFF)
        for seq in [s for s in self._lost if s <= ext]:
            del self._lost[seq]


class FrameAssembler:
    """Stands in for aiortc's ``JitterBuffer``: packets in, complete encoded frames out.

    ``add`` keeps aiortc's signature (``(pli_flag, frame)``) but hands frames to ``deliver``
    itself, since one packet can complete several frames, and always answers "no PLI": keyframe
    requests go through ``request_keyframe``, which the stream coalesces.
    """

    MAX_REORDER = 64  # how far before the first packet a late one may still start the stream

    def __init__(
        self,
        *,
        kind: MediaKind,
        codecs: dict[int, CodecInfo],
        deliver: Callable[[EncodedFrame], None],
        request_keyframe: Callable[[], None],
        on_skip: Callable[[int], None] | None = None,
        max_wait: float = 0.3,
        keyframe_after: float = 0.15,
        capacity: int = 2048,
        clock: Clock = time.monotonic,
    ) -> None:
        self.kind = kind
        self._codecs = codecs
        self._deliver = deliver
        self._request_keyframe = request_keyframe
        self._on_skip = on_skip
        self.max_wait = max_wait
        self.keyframe_after = keyframe_after
        self.capacity = capacity
        self._clock = clock
        self._seq = Unwrapper(16)
        self._ts = Unwrapper(32)
        self._slots: dict[int, tuple[Any, float]] = {}
        self._next: int | None = None
        self._highest = -1
        self._ts_origin: int | None = None
        self._blocked_since: float | None = None
        self._removed_ts: int | None = None  # timestamp of the last packet taken out
        self._asked_keyframe = False
        self._emitted_since_restart = False
        self._waiting_keyframe = kind is MediaKind.VIDEO
        self._video = kind is MediaKind.VIDEO
        self.frames = 0
        self.frames_skipped = 0
        self.holes_skipped = 0
        self.packets_late = 0

    def frame_timestamp(self, rtp_timestamp: int) -> int | None:
        """An RTP timestamp of this track counted as its frames' timestamps are (modulo 2**32), or
        None before the first frame."""
        return None if self._ts_origin is None else (rtp_timestamp - self._ts_origin) % (1 << 32)

    def add(self, packet: RtpLike) -> tuple[bool, None]:
        now = self._clock()
        ext = self._seq.unwrap(packet.sequence_number)
        if self._next is None or ext - self._next >= self.capacity or self._next - ext > self.capacity:
            self._restart(ext)
        if ext < self._next:  # type: ignore[operator]
            if self._emitted_since_restart or self._next - ext > self.MAX_REORDER:  # type: ignore[operator]
                self.packets_late += 1
                return False, None
            self._next = ext  # reordered ahead of the very first packet: start earlier
        self._slots[ext] = (packet, now)
        if ext == self._highest + 1 and not packet.marker and self._video and self._blocked_since is None:
            # The next packet of a video frame still coming in, with no hole before it: no frame
            # can be complete yet (the one at the head ends with a marker), so nothing to drain.
            self._highest = ext
            return False, None
        if ext > self._highest:
            self._highest = ext
        self._drain(now)
        return False, None

    # -- internals -----------------------------------------------------------------------------

    def _restart(self, ext: int) -> None:
        self._emitted_since_restart = False
        self._slots.clear()
        self._next = ext
        self._highest = ext - 1
        self._blocked_since = None
        if self.kind is MediaKind.VIDEO:
            self._waiting_keyframe = True

    def _drain(self, now: float) -> None:
        while self._slots:
            packets = self._frame_at_head()
            if packets is not None:
                self._emit(packets)
                continue
            assert self._next is not None
            if len(self._slots) == self._highest - self._next + 1 and self._is_frame_start(self._next):
                self._blocked_since = None  # a frame still coming in, with no hole: wait for it
                return
            if self._blocked_since is None:
                self._blocked_since = now
                self._asked_keyframe = False
            waited = now - self._blocked_since
            if self.kind is MediaKind.VIDEO and waited >= self.keyframe_after and not self._asked_keyframe:
                self._asked_keyframe = True
                self._request_keyframe()
            if waited < self.max_wait:
                return
            self._skip_hole()

    def _frame_at_head(self) -> list[Any] | None:
        assert self._next is not None
        if self._next not in self._slots or not self._is_frame_start(self._next):
            return None
        if self.kind is MediaKind.AUDIO:
            return [self._slots[self._next][0]]
        packets = []
        timestamp = self._slots[self._next][0].timestamp
        seq = self._next
        while (slot := self._slots.get(seq)) is not None:
            packet = slot[0]
            if packet.timestamp != timestamp:
                return None  # the frame's last packet (marker) was lost
            packets.append(packet)
            if packet.marker:
                return packets
            seq += 1
        return None

    def _is_frame_start(self, seq: int) -> bool:
        if self.kind is MediaKind.AUDIO:
            return True
        packet = self._slots[seq][0]
        codec = self._codecs.get(packet.payload_type)
        if codec is not None and codec.name == "vp8":
            # RFC 7741 4.2: the S bit set and partition index 0 on a frame's first packet.
            return bool(packet.payload) and packet.payload[0] & 0x17 == 0x10
        # Other codecs: a frame's packets share a timestamp, so a new timestamp starts a frame.
        previous = self._slots.get(seq - 1)
        before = previous[0].timestamp if previous is not None else self._removed_ts
        return before is None or before != packet.timestamp

    def _emit(self, packets: list[Any]) -> None:
        first = packets[0]
        for _ in packets:
            self._slots.pop(self._next, None)  # type: ignore[arg-type]
            self._next += 1  # type: ignore[operator]
        self._removed_ts = first.timestamp
        self._emitted_since_restart = True
        self._blocked_since = None
        codec = self._codecs.get(first.payload_type)
        if codec is None:
            return
        data = b"".join(p._data for p in packets) if len(packets) > 1 else first._data
        keyframe = is_keyframe(codec.name, data)
        if self._waiting_keyframe:
            if not keyframe:
                self.frames_skipped += 1
                self._request_keyframe()
                return
            self._waiting_keyframe = False
        timestamp = self._ts.unwrap(first.timestamp)
        if self._ts_origin is None:
            self._ts_origin = timestamp
        self.frames += 1
        self._deliver(
            EncodedFrame(
                kind=self.kind,
                codec=codec.name,
                data=data,
                timestamp=timestamp - self._ts_origin,
                clock_rate=codec.clock_rate,
                keyframe=keyframe,
                received_at=self._clock(),
                payloads=tuple(p.payload for p in packets),
            )
        )

    def _skip_hole(self) -> None:
        """Give up on the hole at the head: jump to the next frame start past it."""
        assert self._next is not None
        self.holes_skipped += 1
        if self._next in self._slots:
            self._removed_ts = self._slots[self._next][0].timestamp
        target = next(
            (seq for seq in sorted(self._slots) if seq > self._next and self._is_frame_start(seq)),
            self._highest + 1,
        )
        for seq in sorted(s for s in self._slots if s < target):
            self._removed_ts = self._slots.pop(seq)[0].timestamp  # ends as the last one's before target
        self._next = target
        self._blocked_since = None
        if self._on_skip is not None:
            self._on_skip((target - 1) & 0xFFFF)
        if self.kind is MediaKind.VIDEO:
            self._waiting_keyframe = True
            self._request_keyframe()
