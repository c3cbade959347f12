"""One Matroska segment file of encoded frames as they were received (no decoding), written with
:mod:`media_relay.recording.matroska`."""

from __future__ import annotations

import struct
from pathlib import Path

import av

from media_relay.forwarding.frames import EncodedFrame, MediaKind, vp8_dimensions
from media_relay.recording.matroska import (
    MatroskaWriter,
    audio_track,
    avc_configuration,
    length_prefixed,
    video_track,
)

__all__ = ["SegmentWriter", "TrackFormat"]

OPUS_RATE = 48000
OPUS_CHANNELS = 2
OPUS_PRE_SKIP = 312
OPUS_SEEK_PRE_ROLL_NS = 80_000_000
"""Opus needs 80 ms decoded before a seek target to converge (the Matroska codec mappings)."""
OPUS_DELAY_MS = (OPUS_PRE_SKIP * 1000 + OPUS_RATE // 2) // OPUS_RATE
"""The pre-skip in whole milliseconds, rounded as ffmpeg rounds it: an Opus block's time is its
frame's time plus this, and readers (ffmpeg) take it off again (its CodecDelay)."""


def _opus_head() -> bytes:
    """The Opus identification header (RFC 7845 5.1) Matroska keeps as CodecPrivate."""
    return b"OpusHead" + struct.pack("<BBHIhB", 1, OPUS_CHANNELS, OPUS_PRE_SKIP, OPUS_RATE, 0, 0)


class TrackFormat:
    """What the muxer must know of a track before the file's header is written."""

    def __init__(self, kind: MediaKind, codec: str) -> None:
        self.kind = kind
        self.codec = codec
        self.width = 0
        self.height = 0
        self.avc_configuration: bytes | None = None
        """H.264's SPS and PPS as Matroska's CodecPrivate keeps them (avcC)."""

    def learn_from_keyframe(self, frame: EncodedFrame) -> bool:
        """Read the picture size (and H.264 parameter sets) from a keyframe. True when known."""
        if self.codec == "vp8":
            size = vp8_dimensions(frame.data)
            if size:
                self.width, self.height = size
        elif self.codec == "h264":
            self._learn_h264(frame.data)
        return self.ready

    @property
    def ready(self) -> bool:
        return self.kind is MediaKind.AUDIO or (self.width > 0 and self.height > 0)

    def _learn_h264(self, data: bytes) -> None:
        decoder = av.CodecContext.create("h264", "r")
        try:
            decoder.decode(av.Packet(data))
        except av.FFmpegError:
            pass
        if decoder.width and decoder.height:
            self.width, self.height = decoder.width, decoder.height
        self.avc_configuration = avc_configuration(data)


class SegmentWriter:
    """Writes one segment; ``close`` finishes the file so it is complete and seekable."""

    def __init__(self, path: Path, tracks: list[TrackFormat]) -> None:
        self.path = path
        self._added = {MediaKind.VIDEO: 0, MediaKind.AUDIO: 0}
        self.first_pts: float | None = None
        """The earliest frame's time (audio held for the first keyframe may be earlier than it)."""
        self.last_pts: float | None = None
        """The latest frame's time."""
        self.duration: float | None = None
        """The Duration written into the file once it is closed: its length, end minus start."""
        numbers = {track.kind: number for number, track in enumerate(tracks, start=1)}
        self._tracks = {
            track.kind: (
                numbers[track.kind],
                OPUS_DELAY_MS if track.kind is MediaKind.AUDIO else 0,
                track.kind is MediaKind.VIDEO and track.codec == "h264",
            )
            for track in tracks
        }
        """Per kind: the track's number, what is added to a frame's time for its block's, and
        whether its frames are Annex-B H.264 (stored length-prefixed)."""
        video = numbers.get(MediaKind.VIDEO)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = MatroskaWriter(
            path,
            [_track_entry(numbers[track.kind], track) for track in tracks],
            cue_track=video or numbers[MediaKind.AUDIO],
            cluster_on_keyframes=video is not None,
        )
        self._add = self._file.add

    def write(self, frame: EncodedFrame, pts_seconds: float) -> None:
        kind = frame.kind
        track = self._tracks.get(kind)
        if track is None:
            return
        number, offset, h264 = track
        ms = round(pts_seconds * 1000) + offset
        self._add(
            number, ms if ms > 0 else 0, length_prefixed(frame.data) if h264 else frame.data, frame.keyframe
        )
        self._added[kind] += 1
        if self.first_pts is None or pts_seconds < self.first_pts:
            self.first_pts = pts_seconds
        if self.last_pts is None or pts_seconds > self.last_pts:
            self.last_pts = pts_seconds

    @property
    def frames(self) -> dict[MediaKind, int]:
        """Frames written per kind (given, less those of clusters a write error lost)."""
        lost = self._file.lost
        return {
            kind: count - (lost.get(self._tracks[kind][0], 0) if kind in self._tracks else 0)
            for kind, count in self._added.items()
        }

    def sync(self) -> None:
        """Force what is written so far onto the disk."""
        self._file.fsync()

    def close(self) -> int:
        """Finish the file (its Duration its length); return its size in bytes."""
        first, last = self.first_pts or 0.0, self.last_pts or 0.0
        length_ms = max(0, round(last * 1000) - round(first * 1000))
        self._file.close(length_ms, sync=True)
        self.duration = length_ms / 1000
        return self.path.stat().st_size


def _track_entry(number: int, track: TrackFormat) -> bytes:
    if track.kind is MediaKind.AUDIO:
        return audio_track(
            number,
            "A_OPUS",
            rate=OPUS_RATE,
            channels=OPUS_CHANNELS,
            private=_opus_head(),
            codec_delay_ns=OPUS_PRE_SKIP * 1_000_000_000 // OPUS_RATE,
            seek_pre_roll_ns=OPUS_SEEK_PRE_ROLL_NS,
        )
    if track.codec == "h264":
        return video_track(number, "V_MPEG4/ISO/AVC", track.width, track.height, track.avc_configuration)
    return video_track(number, "V_VP8", track.width, track.height)
