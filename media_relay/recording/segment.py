"""One Matroska segment file, written by remuxing encoded frames with PyAV (no decoding)."""

from __future__ import annotations

import fractions
import io
import os
import struct
from pathlib import Path

import av

from media_relay.forwarding.frames import EncodedFrame, MediaKind, vp8_dimensions

__all__ = ["SegmentTemplate", "SegmentWriter", "TrackFormat"]

MUXER_OPTIONS = {
    # Write each cluster out as soon as it closes, and close one every half second: a segment cut
    # short by a crash stays readable up to its last half second (a cluster is held in memory
    # until it closes, so its length bounds what a crash of the relay loses).
    "flush_packets": "1",
    "cluster_time_limit": "500",
}
TIME_BASE = fractions.Fraction(1, 90000)
_AV_CODEC = {"vp8": "vp8", "h264": "h264", "opus": "libopus"}


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
        self.last_pts: float | None = None
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
        if self.first_pts is None:
            self.first_pts = pts_seconds
        self.last_pts = pts_seconds

    def sync(self) -> None:
        """Force what is written so far onto the disk."""
        if self._fd is None:
            if not self.path.exists():
                return
            self._fd = os.open(self.path, os.O_RDONLY)
        os.fsync(self._fd)

    def close(self) -> int:
        """Finish the file; return its size in bytes."""
        try:
            self._container.close()
            self.sync()
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        return self.path.stat().st_size
