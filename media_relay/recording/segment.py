"""One Matroska segment file, written by remuxing encoded frames with PyAV (no decoding)."""

from __future__ import annotations

import fractions
import io
import os
import struct
from pathlib import Path

import av

from media_relay.forwarding.frames import EncodedFrame, MediaKind, vp8_dimensions

__all__ = ["SegmentTemplate", "SegmentWriter", "TrackFormat", "matroska_duration", "set_length_as_duration"]

MUXER_OPTIONS = {
    # Write each cluster out as soon as it closes, and close one every half second: a segment cut
    # short by a crash stays readable up to its last half second (a cluster is held in memory
    # until it closes, so its length bounds what a crash of the relay loses).
    "flush_packets": "1",
    "cluster_time_limit": "500",
}
TIME_BASE = fractions.Fraction(1, 90000)
_AV_CODEC = {"vp8": "vp8", "h264": "h264", "opus": "libopus"}


# -- Matroska's Duration -------------------------------------------------------------------------------
#
# A segment keeps the stream's media clock: its first block is at, say, 20 s. ffmpeg's Matroska muxer
# writes as Duration the end of the last block on that clock (20 s + the segment's length), but
# Duration is the segment's length: players, ffprobe and ffmpeg's own concat demuxer read it so (end
# = start + Duration). So once a segment is closed its Duration is rewritten in place, as end minus
# start, reading just enough EBML to find it (EBML header, Segment, Info, Duration).

_EBML_HEADER = 0x1A45DFA3
_SEGMENT = 0x18538067
_INFO = 0x1549A966
_TIMESTAMP_SCALE = 0x2AD7B1
_DURATION = 0x4489
_CLUSTER = 0x1F43B675
_HEAD_BYTES = 256 * 1024
"""The Info element comes before the first cluster, well within this."""


def _vint(data: bytes, pos: int, *, keep_marker: bool) -> tuple[int, int]:
    """An EBML variable-length integer at ``pos``: its value and the position after it."""
    first = data[pos]
    length = 8 - first.bit_length() + 1
    if not 1 <= length <= 8 or pos + length > len(data):
        raise ValueError("not EBML")
    value = first if keep_marker else first & ((1 << (8 - length)) - 1)
    for byte in data[pos + 1 : pos + length]:
        value = (value << 8) | byte
    return value, pos + length


def _elements(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """(id, data start, data end) of each element between ``start`` and ``end``; stops at the first
    cluster or at an element of unknown size."""
    found = []
    pos = start
    while pos < min(end, len(data)):
        element, pos = _vint(data, pos, keep_marker=True)
        size_start = pos
        size, pos = _vint(data, pos, keep_marker=False)
        unknown = size == (1 << (7 * (pos - size_start))) - 1
        found.append((element, pos, len(data) if unknown else pos + size))
        if element == _CLUSTER or (unknown and element != _SEGMENT):
            break
        if element == _SEGMENT:
            continue  # its children follow
        pos += size
    return found


def _duration_field(data: bytes) -> tuple[int, int, int]:
    """Where the Duration float is (start, length in bytes) and the TimestampScale (ns per tick)."""
    top = _elements(data, 0, len(data))
    if not top or top[0][0] != _EBML_HEADER:
        raise ValueError("not a Matroska file")
    info = next(((start, end) for element, start, end in top if element == _INFO), None)
    if info is None:
        raise ValueError("no Info element before the first cluster")
    scale, duration = 1_000_000, None
    for element, start, end in _elements(data, *info):
        if element == _TIMESTAMP_SCALE:
            scale = int.from_bytes(data[start:end], "big")
        elif element == _DURATION and end - start in (4, 8):
            duration = (start, end - start)
    if duration is None:
        raise ValueError("no Duration in the Info element")
    return duration[0], duration[1], scale


def matroska_duration(path: Path) -> float | None:
    """The Duration a Matroska file's Info element states, in seconds; None when it has none."""
    with path.open("rb") as handle:
        data = handle.read(_HEAD_BYTES)
    try:
        start, length, scale = _duration_field(data)
    except (ValueError, IndexError):
        return None
    (ticks,) = struct.unpack(">d" if length == 8 else ">f", data[start : start + length])
    return float(ticks) * scale / 1e9


def set_length_as_duration(path: Path, start_seconds: float) -> float | None:
    """Rewrite the Duration ffmpeg wrote (the end, on the stream's clock) as the segment's length,
    end minus ``start_seconds`` (its first block's time). The new Duration in seconds; None when the
    file states none (it is left as it is)."""
    end = matroska_duration(path)
    if end is None:
        return None
    with path.open("rb") as handle:
        start, length, scale = _duration_field(handle.read(_HEAD_BYTES))
    start_ticks = round(start_seconds * 1e9 / scale)
    ticks = max(0.0, end * 1e9 / scale - start_ticks)
    with path.open("r+b") as handle:
        handle.seek(start)
        handle.write(struct.pack(">d" if length == 8 else ">f", ticks))
    return ticks * scale / 1e9


def _opus_head(channels: int = 2, pre_skip: int = 312, rate: int = 48000) -> bytes:
    """The Opus identification header (RFC 7845 5.1) Matroska keeps as CodecPrivate."""
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, pre_skip, rate, 0, 0)


class TrackFormat:
    """What the muxer must know of a track before the file's header is written."""

    def __init__(self, kind: MediaKind, codec: str) -> None:
        self.kind = kind
        self.codec = codec
        self.width = 0
        self.height = 0
        self.extradata: bytes | None = None

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
        # Parameter sets stay in Annex-B; the Matroska muxer turns them into avcC itself.
        decoder = av.CodecContext.create("h264", "r")
        try:
            decoder.decode(av.Packet(data))
        except av.FFmpegError:
            pass
        if decoder.width and decoder.height:
            self.width, self.height = decoder.width, decoder.height
        self.extradata = _h264_parameter_sets(data) or None


def _h264_parameter_sets(data: bytes) -> bytes:
    out = bytearray()
    for nal in data.split(b"\x00\x00\x01"):
        nal = nal.rstrip(b"\x00")
        if nal and nal[0] & 0x1F in (7, 8):
            out += b"\x00\x00\x00\x01" + nal
    return bytes(out)


class SegmentTemplate:
    """A stream's tracks as the muxer knows them, ready to copy into each of its segments.

    A track set up from a codec name (``add_stream``) opens an encoder when the file's header is
    written: about 10 ms of the event loop and 24 MB of memory for 720p VP8, for every segment,
    though nothing is ever encoded. So once per stream a one-frame Matroska file is made that way
    in memory and read back; each segment copies its tracks from there
    (``add_stream_from_template``), which takes a tenth of a millisecond and no encoder.
    """

    def __init__(self, tracks: list[TrackFormat], sample: EncodedFrame) -> None:
        self._tracks = {track.kind: track for track in tracks}
        buffer = io.BytesIO()
        with av.open(buffer, "w", format="matroska") as scratch:
            streams = {track.kind: _encoder_stream(scratch, track) for track in tracks}
            packet = av.Packet(sample.data)
            packet.pts = packet.dts = 0
            packet.time_base = TIME_BASE
            packet.stream = streams[sample.kind]
            packet.is_keyframe = sample.keyframe
            scratch.mux(packet)
        buffer.seek(0)
        self._container = av.open(buffer, "r", format="matroska")
        by_type = {stream.type: stream for stream in self._container.streams}
        self._streams = {kind: by_type[kind.value] for kind in self._tracks}

    def add_to(self, container: av.container.OutputContainer) -> dict[MediaKind, av.stream.Stream]:
        added: dict[MediaKind, av.stream.Stream] = {}
        for kind, template in self._streams.items():
            stream = container.add_stream_from_template(template)
            stream.time_base = TIME_BASE
            # The scratch file's encoder wrote codec headers of its own: put the stream's back.
            extradata = _opus_head() if kind is MediaKind.AUDIO else self._tracks[kind].extradata
            if extradata:
                stream.codec_context.extradata = extradata
            added[kind] = stream
        return added

    def close(self) -> None:
        self._container.close()


def _encoder_stream(container: av.container.OutputContainer, track: TrackFormat) -> av.stream.Stream:
    if track.kind is MediaKind.VIDEO:
        stream = container.add_stream(_AV_CODEC[track.codec], rate=30)
        assert isinstance(stream, av.VideoStream)
        stream.width = track.width
        stream.height = track.height
        if track.extradata:
            stream.codec_context.extradata = track.extradata
    else:
        stream = container.add_stream(_AV_CODEC[track.codec], rate=48000)
        stream.codec_context.extradata = _opus_head()
    stream.time_base = TIME_BASE
    return stream


class SegmentWriter:
    """Writes one segment; ``close`` finishes the file so it is complete and seekable."""

    def __init__(self, path: Path, template: SegmentTemplate) -> None:
        self.path = path
        self.frames = {MediaKind.VIDEO: 0, MediaKind.AUDIO: 0}
        self.first_pts: float | None = None
        """The earliest frame's time (audio held for the first keyframe may be earlier than it)."""
        self.last_pts: float | None = None
        """The latest frame's time."""
        self.duration: float | None = None
        """The Duration written into the file once it is closed: its length, end minus start."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(path), "w", format="matroska", options=MUXER_OPTIONS)
        self._streams = template.add_to(self._container)
        self._fd: int | None = None  # opened once the muxer has created the file

    def write(self, frame: EncodedFrame, pts_seconds: float) -> None:
        stream = self._streams.get(frame.kind)
        if stream is None:
            return
        packet = av.Packet(frame.data)
        pts = round(pts_seconds * 90000)
        packet.pts = packet.dts = pts
        packet.time_base = TIME_BASE
        packet.stream = stream
        packet.is_keyframe = frame.keyframe
        self._container.mux(packet)
        self.frames[frame.kind] += 1
        seconds = pts / 90000
        self.first_pts = seconds if self.first_pts is None else min(self.first_pts, seconds)
        self.last_pts = seconds if self.last_pts is None else max(self.last_pts, seconds)

    def sync(self) -> None:
        """Force what is written so far onto the disk."""
        if self._fd is None:
            if not self.path.exists():
                return
            self._fd = os.open(self.path, os.O_RDONLY)
        os.fsync(self._fd)

    def close(self) -> int:
        """Finish the file (its Duration its length); return its size in bytes."""
        try:
            self._container.close()
            if self.first_pts is not None:
                self.duration = set_length_as_duration(self.path, self.first_pts)
            self.sync()
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        return self.path.stat().st_size
