"""A live Matroska writer: the recorder's segments, written as the frames come.

The file is laid out as ffmpeg's Matroska muxer lays out a live recording, and ffmpeg, PyAV and
the archive's tools read it as theirs (tests/media_relay/test_matroska.py):

    EBML header
    Segment (size unknown until the close)
      SeekHead     reserved room; at the close it points at Info, Tracks and Cues
      Info         TimestampScale 1 ms; Duration, in room reserved for it, at the close
      Tracks       one TrackEntry per track
      Cluster...   a Timestamp and SimpleBlocks, each cluster written whole once it closes
      Cues         at the close: one cue point per cluster that holds a keyframe

A crash leaves the header and every cluster written before it, with the Segment's size unknown:
readers read such a file to its end (RFC 9559 6.2), and crash recovery seals it.

Why not PyAV's muxer, as DESIGN.md 2 first said: making and filling an ``av.Packet`` from Python
for each frame, then ffmpeg's interleaving queue and cluster buffer, were about 60% of the
recorder's CPU (bench/recording.py, issue 4), most of it for 20 ms Opus frames. Here a frame is
appended to a list, and a cluster's blocks are framed in one pass when it closes. Element and
field IDs are those of RFC 9559 (Matroska) and RFC 8794 (EBML).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "CLUSTER_MS",
    "ClusterLost",
    "MatroskaWriter",
    "audio_track",
    "avc_configuration",
    "length_prefixed",
    "matroska_duration",
    "read_vint",
    "set_length_as_duration",
    "video_track",
]

CLUSTER_MS = 500
"""A cluster closes (and is written out) once it spans this long, and at each video keyframe: a
crash of the relay loses at most the cluster it held in memory (R2)."""
CLUSTER_BYTES = 4 * 1024 * 1024
"""Nor may a cluster hold more than this."""
_SPAN_MS = 30_000
"""A block's time within its cluster is a signed 16-bit count of milliseconds: a cluster closes well
before its blocks' times spread wider than that."""

# Element IDs (RFC 8794, RFC 9559).
EBML = 0x1A45DFA3
EBML_VERSION = 0x4286
EBML_READ_VERSION = 0x42F7
EBML_MAX_ID_LENGTH = 0x42F2
EBML_MAX_SIZE_LENGTH = 0x42F3
DOC_TYPE = 0x4282
DOC_TYPE_VERSION = 0x4287
DOC_TYPE_READ_VERSION = 0x4285
VOID = 0xEC
SEGMENT = 0x18538067
SEEK_HEAD = 0x114D9B74
SEEK = 0x4DBB
SEEK_ID = 0x53AB
SEEK_POSITION = 0x53AC
INFO = 0x1549A966
TIMESTAMP_SCALE = 0x2AD7B1
DURATION = 0x4489
MUXING_APP = 0x4D80
WRITING_APP = 0x5741
SEGMENT_UUID = 0x73A4
TRACKS = 0x1654AE6B
TRACK_ENTRY = 0xAE
TRACK_NUMBER = 0xD7
TRACK_UID = 0x73C5
TRACK_TYPE = 0x83
FLAG_LACING = 0x9C
LANGUAGE = 0x22B59C
CODEC_ID = 0x86
CODEC_PRIVATE = 0x63A2
CODEC_DELAY = 0x56AA
SEEK_PRE_ROLL = 0x56BB
VIDEO = 0xE0
PIXEL_WIDTH = 0xB0
PIXEL_HEIGHT = 0xBA
AUDIO = 0xE1
SAMPLING_FREQUENCY = 0xB5
CHANNELS = 0x9F
CLUSTER = 0x1F43B675
TIMESTAMP = 0xE7
SIMPLE_BLOCK = 0xA3
CUES = 0x1C53BB6B
CUE_POINT = 0xBB
CUE_TIME = 0xB3
CUE_TRACK_POSITIONS = 0xB7
CUE_TRACK = 0xF7
CUE_CLUSTER_POSITION = 0xF1

TRACK_TYPE_VIDEO = 1
TRACK_TYPE_AUDIO = 2
APP = "Zhihui recorder"
UNKNOWN_SIZE = b"\x01\xff\xff\xff\xff\xff\xff\xff"
_SEEK_HEAD_ROOM = 96
"""Bytes kept after the Segment's start for the SeekHead (three entries take at most 68)."""
_DURATION_ROOM = 11
"""Bytes kept in Info for the Duration: its 2-byte ID, a 1-byte size and an 8-byte float."""
_BLOCK_HEAD = struct.Struct(">BhB")
"""A SimpleBlock's track number (a 1-byte EBML integer), time within its cluster, and flags."""
_KEYFRAME = 0x80
_ONE_BYTE_SIZES = tuple(bytes([0x80 | size]) for size in range(0x7F))


# -- EBML ---------------------------------------------------------------------------------------------


def data_size(size: int) -> bytes:
    """An element's data size as the shortest EBML variable-length integer (all ones is reserved
    for "unknown"). Called for every block written: the one- and two-byte sizes come first."""
    if size < 0x7F:
        return _ONE_BYTE_SIZES[size]
    if size < 0x3FFF:
        return (0x4000 | size).to_bytes(2, "big")
    for length in range(3, 9):
        if size < (1 << (7 * length)) - 1:
            return ((1 << (7 * length)) | size).to_bytes(length, "big")
    raise ValueError(f"an element of {size} bytes is too large for Matroska")


def element(element_id: int, payload: bytes) -> bytes:
    return element_id.to_bytes((element_id.bit_length() + 7) // 8, "big") + data_size(len(payload)) + payload


def uint_element(element_id: int, value: int) -> bytes:
    return element(element_id, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def float_element(element_id: int, value: float) -> bytes:
    return element(element_id, struct.pack(">d", value))


def string_element(element_id: int, value: str) -> bytes:
    return element(element_id, value.encode())


def void(length: int) -> bytes:
    """A Void element exactly ``length`` bytes long (at least 2): room kept for a later element."""
    if length < 2:
        raise ValueError("a Void element takes at least 2 bytes")
    size = length - 2 if length - 2 < 127 else length - 9
    head = b"\xec" + (bytes([0x80 | size]) if length - 2 < 127 else (1 << 56 | size).to_bytes(8, "big"))
    return head + bytes(size)


# -- tracks -------------------------------------------------------------------------------------------


def video_track(number: int, codec_id: str, width: int, height: int, private: bytes | None = None) -> bytes:
    """A video TrackEntry: ``codec_id`` as Matroska names it (``V_VP8``, ``V_MPEG4/ISO/AVC``)."""
    return _track(
        number,
        TRACK_TYPE_VIDEO,
        codec_id,
        private,
        element(VIDEO, uint_element(PIXEL_WIDTH, width) + uint_element(PIXEL_HEIGHT, height)),
    )


def audio_track(
    number: int,
    codec_id: str,
    *,
    rate: int,
    channels: int,
    private: bytes | None = None,
    codec_delay_ns: int = 0,
    seek_pre_roll_ns: int = 0,
) -> bytes:
    """An audio TrackEntry (``A_OPUS``: with the OpusHead as ``private`` and its pre-skip as the
    codec delay, RFC 9559 and the Matroska codec mappings)."""
    extra = element(AUDIO, float_element(SAMPLING_FREQUENCY, float(rate)) + uint_element(CHANNELS, channels))
    if codec_delay_ns:
        extra += uint_element(CODEC_DELAY, codec_delay_ns)
    if seek_pre_roll_ns:
        extra += uint_element(SEEK_PRE_ROLL, seek_pre_roll_ns)
    return _track(number, TRACK_TYPE_AUDIO, codec_id, private, extra)


def _track(number: int, track_type: int, codec_id: str, private: bytes | None, extra: bytes) -> bytes:
    if not 1 <= number <= 126:
        raise ValueError("track numbers here are 1 to 126")
    body = (
        uint_element(TRACK_NUMBER, number)
        + uint_element(TRACK_UID, int.from_bytes(os.urandom(7), "big") | 1)
        + uint_element(TRACK_TYPE, track_type)
        + uint_element(FLAG_LACING, 0)
        + string_element(LANGUAGE, "und")
        + string_element(CODEC_ID, codec_id)
        + (element(CODEC_PRIVATE, private) if private else b"")
        + extra
    )
    return element(TRACK_ENTRY, body)


# -- H.264 --------------------------------------------------------------------------------------------


def _nal_units(annex_b: bytes) -> list[bytes]:
    """The NAL units of an Annex-B stream (start codes and trailing zero bytes removed)."""
    units = []
    for unit in annex_b.split(b"\x00\x00\x01"):
        unit = unit.rstrip(b"\x00")
        if unit:
            units.append(unit)
    return units


def length_prefixed(annex_b: bytes) -> bytes:
    """An H.264 access unit as Matroska (and MP4) store it: each NAL unit after its 4-byte length."""
    return b"".join(len(unit).to_bytes(4, "big") + unit for unit in _nal_units(annex_b))


def avc_configuration(parameter_sets: bytes) -> bytes | None:
    """The AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1) for the SPS and PPS found in an
    Annex-B stream: V_MPEG4/ISO/AVC's CodecPrivate. None without an SPS and a PPS."""
    units = _nal_units(parameter_sets)
    sps = [unit for unit in units if unit[0] & 0x1F == 7 and len(unit) >= 4]
    pps = [unit for unit in units if unit[0] & 0x1F == 8]
    if not sps or not pps:
        return None
    out = bytearray([1, sps[0][1], sps[0][2], sps[0][3], 0xFF, 0xE0 | len(sps)])
    for unit in sps:
        out += len(unit).to_bytes(2, "big") + unit
    out.append(len(pps))
    for unit in pps:
        out += len(unit).to_bytes(2, "big") + unit
    return bytes(out)


# -- the writer ---------------------------------------------------------------------------------------


class ClusterLost(OSError):
    """A cluster could not be written (a full or failing disk): its ``frames`` are lost, and the
    file was cut back to the cluster before it."""

    def __init__(self, frames: int, error: OSError) -> None:
        super().__init__(error.errno, f"a cluster of {frames} frames could not be written: {error.strerror}")
        self.frames = frames


class MatroskaWriter:
    """Writes one Matroska file from frames given in arrival order; :meth:`close` finishes it.

    Frames are held until their cluster closes, then written in time order within it. The Cues
    point at each cluster holding a keyframe of ``cue_track`` (the video track; the audio track when
    there is none). With ``cluster_on_keyframes``, each keyframe of ``cue_track`` starts a cluster.
    """

    def __init__(
        self, path: Path, tracks: Sequence[bytes], *, cue_track: int, cluster_on_keyframes: bool
    ) -> None:
        self.path = path
        self._cue_track = cue_track
        self._cluster_on_keyframes = cluster_on_keyframes
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        self._blocks: list[tuple[int, int, bool, bytes]] = []
        """The open cluster's (time in ms, track, keyframe, data), in arrival order."""
        self._cluster_first = 0
        self._cluster_bytes = 0
        self._cues: list[tuple[int, int]] = []
        """(time in ms, cluster position) of each cue point."""
        self.lost: dict[int, int] = {}
        """Per track, the frames of clusters that could not be written (a full disk)."""

        ebml = element(
            EBML,
            uint_element(EBML_VERSION, 1)
            + uint_element(EBML_READ_VERSION, 1)
            + uint_element(EBML_MAX_ID_LENGTH, 4)
            + uint_element(EBML_MAX_SIZE_LENGTH, 8)
            + string_element(DOC_TYPE, "matroska")
            + uint_element(DOC_TYPE_VERSION, 4)
            + uint_element(DOC_TYPE_READ_VERSION, 2),
        )
        info = element(
            INFO,
            uint_element(TIMESTAMP_SCALE, 1_000_000)
            + string_element(MUXING_APP, APP)
            + string_element(WRITING_APP, APP)
            + element(SEGMENT_UUID, os.urandom(16))
            + void(_DURATION_ROOM),
        )
        tracks_element = element(TRACKS, b"".join(tracks))
        self._segment_size_at = len(ebml) + 4
        self._segment_start = self._segment_size_at + len(UNKNOWN_SIZE)
        """Where the Segment's data starts: positions in SeekHead and Cues count from here."""
        self._info_at = _SEEK_HEAD_ROOM
        self._tracks_at = self._info_at + len(info)
        self._duration_at = self._segment_start + self._tracks_at - _DURATION_ROOM
        self._seek_head = [(INFO, self._info_at), (TRACKS, self._tracks_at)]
        head = (
            ebml + SEGMENT.to_bytes(4, "big") + UNKNOWN_SIZE + self._seek_head_room() + info + tracks_element
        )
        self._written = 0
        try:
            self._write(head)
        except OSError:
            # No frame is in it yet: a file that is not even a header is not left behind.
            os.close(self._fd)
            self._fd = None
            path.unlink(missing_ok=True)
            raise

    def add(self, track: int, ms: int, data: bytes, keyframe: bool) -> None:
        """A frame of ``track`` at ``ms`` milliseconds on the file's clock (never negative)."""
        if self._blocks and (
            ms - self._cluster_first > CLUSTER_MS
            or (keyframe and track == self._cue_track and self._cluster_on_keyframes)
            or abs(ms - self._cluster_first) > _SPAN_MS
            or self._cluster_bytes > CLUSTER_BYTES
        ):
            self._write_cluster()
        if not self._blocks:
            self._cluster_first = ms
        self._blocks.append((ms, track, keyframe, data))
        self._cluster_bytes += len(data)

    def flush(self) -> None:
        """Close the open cluster now and write it."""
        if self._blocks:
            self._write_cluster()

    def fsync(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)

    def close(self, length_ms: int, *, sync: bool = True) -> None:
        """Write the last cluster and the Cues, then the Segment's size, the Duration (``length_ms``:
        the segment's length, its last frame's time minus its first) and the SeekHead; then, with
        ``sync``, force the file onto the disk."""
        if self._fd is None:
            return
        try:
            self.flush()
            if self._cues:
                self._seek_head.append((CUES, self._written - self._segment_start))
                self._write(self._cues_element())
            fd = self._fd
            os.pwrite(
                fd, (1 << 56 | self._written - self._segment_start).to_bytes(8, "big"), self._segment_size_at
            )
            os.pwrite(fd, self._seek_head_room(), self._segment_start)
            os.pwrite(fd, float_element(DURATION, float(length_ms)), self._duration_at)
            if sync:
                os.fsync(fd)
        finally:
            fd, self._fd = self._fd, None
            if fd is not None:
                os.close(fd)

    # -- inside --------------------------------------------------------------------------------------

    def _write_cluster(self) -> None:
        blocks, self._blocks = self._blocks, []
        self._cluster_bytes = 0
        blocks.sort(key=_time)  # stable: a track's frames keep their order
        base = blocks[0][0]
        pack = _BLOCK_HEAD.pack
        parts = [b"", uint_element(TIMESTAMP, base)]
        cue: int | None = None
        for ms, track, keyframe, data in blocks:
            parts.append(b"\xa3" + data_size(len(data) + 4))
            parts.append(pack(0x80 | track, ms - base, _KEYFRAME if keyframe else 0))
            parts.append(data)
            if cue is None and keyframe and track == self._cue_track:
                cue = ms
        body = sum(map(len, parts))
        parts[0] = CLUSTER.to_bytes(4, "big") + data_size(body)
        start = self._written
        try:
            self._write(b"".join(parts))
        except OSError as error:
            # The disk is full (or failing): the file ends at the last whole cluster again, so that
            # what is written stays readable, and later clusters follow it, not a torn one.
            for _, track, _, _ in blocks:
                self.lost[track] = self.lost.get(track, 0) + 1
            self._cut_back(start)
            raise ClusterLost(len(blocks), error) from error
        if cue is not None:
            self._cues.append((cue, start - self._segment_start))

    def _cues_element(self) -> bytes:
        points = []
        for ms, position in self._cues:
            where = uint_element(CUE_TRACK, self._cue_track) + uint_element(CUE_CLUSTER_POSITION, position)
            points.append(
                element(CUE_POINT, uint_element(CUE_TIME, ms) + element(CUE_TRACK_POSITIONS, where))
            )
        return element(CUES, b"".join(points))

    def _seek_head_room(self) -> bytes:
        entries = b"".join(
            element(SEEK, element(SEEK_ID, target.to_bytes(4, "big")) + uint_element(SEEK_POSITION, position))
            for target, position in self._seek_head
        )
        seek_head = element(SEEK_HEAD, entries)
        return seek_head + void(_SEEK_HEAD_ROOM - len(seek_head))

    def _cut_back(self, size: int) -> None:
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, size)
            os.lseek(self._fd, size, os.SEEK_SET)
            self._written = size
        except OSError:
            pass  # nothing more can be done; crash recovery keeps what reads

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
            self._written += written


def _time(block: tuple[int, int, bool, bytes]) -> int:
    return block[0]


# -- reading the Duration -----------------------------------------------------------------------------
#
# A segment keeps the stream's media clock: its first block is at, say, 20 s. Its Duration is its
# length, not its end on that clock: players, ffprobe and ffmpeg's own concat demuxer read it so
# (end = start + Duration). The writer above writes it so; ffmpeg's Matroska muxer (crash recovery
# copies through it) writes the end of the last block, and set_length_as_duration rewrites that in
# place, reading just enough EBML to find it (EBML header, Segment, Info, Duration).

_HEAD_BYTES = 256 * 1024
"""The Info element comes before the first cluster, well within this."""


def read_vint(data: bytes, pos: int, *, keep_marker: bool) -> tuple[int, int]:
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
        element, pos = read_vint(data, pos, keep_marker=True)
        size_start = pos
        size, pos = read_vint(data, pos, keep_marker=False)
        unknown = size == (1 << (7 * (pos - size_start))) - 1
        found.append((element, pos, len(data) if unknown else pos + size))
        if element == CLUSTER or (unknown and element != SEGMENT):
            break
        if element == SEGMENT:
            continue  # its children follow
        pos += size
    return found


def _duration_field(data: bytes) -> tuple[int, int, int]:
    """Where the Duration float is (start, length in bytes) and the TimestampScale (ns per tick)."""
    top = _elements(data, 0, len(data))
    if not top or top[0][0] != EBML:
        raise ValueError("not a Matroska file")
    info = next(((start, end) for element, start, end in top if element == INFO), None)
    if info is None:
        raise ValueError("no Info element before the first cluster")
    scale, duration = 1_000_000, None
    for element, start, end in _elements(data, *info):
        if element == TIMESTAMP_SCALE:
            scale = int.from_bytes(data[start:end], "big")
        elif element == DURATION and end - start in (4, 8):
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
