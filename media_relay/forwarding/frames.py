"""Encoded media frames as the relay passes them around, and codec facts read from their bytes."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["EncodedFrame", "MediaKind", "is_keyframe", "vp8_dimensions"]


class MediaKind(enum.StrEnum):
    AUDIO = "audio"
    VIDEO = "video"


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One complete encoded frame, as reassembled from RTP by the publisher's receiver."""

    kind: MediaKind
    """Audio or video."""
    codec: str
    """Lower-case codec name as in SDP: ``vp8``, ``h264`` or ``opus``."""
    data: bytes
    """The frame's bitstream: VP8 frame, H.264 Annex-B access unit, or one Opus packet."""
    timestamp: int
    """Media time in ``clock_rate`` ticks, counting from the publisher session's first frame."""
    clock_rate: int
    """RTP clock rate: 90000 for video, 48000 for Opus."""
    keyframe: bool
    """True when a decoder can start at this frame (always True for audio)."""
    received_at: float
    """``time.monotonic()`` when the relay completed the frame."""
    payloads: tuple[bytes, ...] = ()
    """The RTP payloads it came in, in order, as viewers are sent them; empty for a frame that
    did not come over RTP (and so cannot be forwarded, only recorded)."""


def is_keyframe(codec: str, data: bytes) -> bool:
    """Whether a decoder can start at this encoded frame."""
    if codec == "vp8":
        # RFC 6386 9.1: bit 0 of the frame tag is 0 for a key frame.
        return bool(data) and data[0] & 0x01 == 0
    if codec == "h264":
        return any(nal_type in (5, 7) for nal_type in _h264_nal_types(data))
    return True


def vp8_dimensions(data: bytes) -> tuple[int, int] | None:
    """Width and height from a VP8 key frame header (RFC 6386 9.1), or None."""
    if len(data) < 10 or data[0] & 0x01 or data[3:6] != b"\x9d\x01\x2a":
        return None
    width = int.from_bytes(data[6:8], "little") & 0x3FFF
    height = int.from_bytes(data[8:10], "little") & 0x3FFF
    return width, height


def _h264_nal_types(data: bytes) -> list[int]:
    types: list[int] = []
    i = 0
    n = len(data)
    while True:
        i = data.find(b"\x00\x00\x01", i)
        if i < 0 or i + 3 >= n:
            return types
        types.append(data[i + 3] & 0x1F)
        i += 3
