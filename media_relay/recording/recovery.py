"""Sealing what a crash left open (R2): run when the relay starts, before anything records.

A segment the recorder had open when the relay died has no manifest entry. Matroska cut short
stays readable up to its last written cluster, so each such file is read packet by packet (no
decoding). When it ends cleanly after its last packet it is kept as it is; when its tail is
damaged (a cluster half written), its readable packets are copied into a new, finished file
``<name>.recovered.mkv`` and the original stays beside it, untouched and named in the entry.
Either way the segment is hashed and appended to the manifest marked ``"recovered": true``.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import av

from media_relay.forwarding.frames import MediaKind
from media_relay.recording.manifest import Manifest, sha256_file, utc_iso
from media_relay.recording.matroska import set_length_as_duration
from media_relay.recording.recorder import MANIFEST_NAME
from media_relay.recording.verify import find_streams, segment_file_name

__all__ = ["RecoveredSegment", "SegmentProbe", "probe_segment", "recover_archive", "recover_stream"]

logger = logging.getLogger(__name__)

_SEGMENT_NAME = re.compile(r"^(?P<stream>.+)-(?P<sequence>\d{5,})\.mkv$")
BLOCK_HEADER_BYTES = 4
"""A Matroska SimpleBlock's header (track number, timecode, flags) before the packet it holds:
a file whose last cluster was written whole ends exactly this far past its last packet's data."""


@dataclass(slots=True)
class SegmentProbe:
    """What reading a segment's packets (without decoding them) showed."""

    readable: bool = False
    """The container opened: its header and track list are there."""
    frames: dict[str, int] = field(default_factory=lambda: {kind.value: 0 for kind in MediaKind})
    """Complete packets per kind (``video``, ``audio``)."""
    media_start: float | None = None
    """First packet's time, seconds, on the recorder's media clock."""
    media_end: float | None = None
    """Last packet's time, seconds."""
    damaged: bool = False
    """Bytes after the last complete packet, or a read error: only a copy ends cleanly."""


@dataclass(frozen=True, slots=True)
class RecoveredSegment:
    """A segment sealed after a crash."""

    stream_id: str
    file: str
    """The file the manifest entry lists."""
    original: str | None
    """The crash-left file, when its readable part was copied into ``file``."""
    frames: dict[str, int]
    bytes: int


def probe_segment(path: Path) -> SegmentProbe:
    """Read every packet of a segment, decoding nothing."""
    probe = SegmentProbe()
    try:
        container = av.open(str(path))
    except (av.FFmpegError, EOFError, OSError):
        return probe
    probe.readable = True
    end_of_data = 0
    with container:
        try:
            for packet in container.demux():
                if packet.size == 0 or packet.pts is None or packet.time_base is None:
                    continue
                if packet.is_corrupt:
                    probe.damaged = True
                    continue
                probe.frames[packet.stream.type] = probe.frames.get(packet.stream.type, 0) + 1
                seconds = float(packet.pts * packet.time_base)
                probe.media_start = seconds if probe.media_start is None else min(probe.media_start, seconds)
                probe.media_end = seconds if probe.media_end is None else max(probe.media_end, seconds)
                if packet.pos is not None and packet.pos >= 0:
                    end_of_data = max(end_of_data, packet.pos + packet.size)
        except (av.FFmpegError, EOFError):
            probe.damaged = True
    if end_of_data and path.stat().st_size > end_of_data + BLOCK_HEADER_BYTES:
        probe.damaged = True
    return probe


def copy_readable_packets(source: Path, target: Path) -> dict[str, int]:
    """Remux every complete packet of ``source`` into a finished file (stream copy, no decoding),
    whose Duration is its length."""
    frames = {kind.value: 0 for kind in MediaKind}
    start: float | None = None
    with av.open(str(source)) as reader, av.open(str(target), "w", format="matroska") as writer:
        streams = {}
        for stream in reader.streams:
            if stream.type in ("video", "audio"):
                streams[stream.index] = writer.add_stream_from_template(stream)
        try:
            for packet in reader.demux():
                out = streams.get(packet.stream.index)
                if out is None or packet.size == 0 or packet.pts is None or packet.is_corrupt:
                    continue
                if packet.time_base is not None:
                    seconds = float(packet.pts * packet.time_base)
                    start = seconds if start is None else min(start, seconds)
                packet.stream = out
                writer.mux(packet)
                frames[out.type] = frames.get(out.type, 0) + 1
        except (av.FFmpegError, EOFError):
            pass  # the damaged tail: everything before it is copied
    if start is not None:
        set_length_as_duration(target, start)
    fd = os.open(target, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return frames


def unsealed_segments(directory: Path, entries: list[dict[str, Any]]) -> list[tuple[int, Path]]:
    """Segment files of this stream that no manifest entry lists, by sequence."""
    listed: set[str] = set()
    for entry in entries:
        if entry.get("type") == "segment":
            listed.add(str(entry.get("file")))
            original = entry.get("original")
            if isinstance(original, dict):
                listed.add(str(original.get("file")))
    found = []
    for path in directory.glob("*.mkv"):
        match = _SEGMENT_NAME.match(path.name)
        if match and match["stream"] == directory.name and path.name not in listed:
            found.append((int(match["sequence"]), path))
    return sorted(found)


def recover_stream(directory: Path) -> list[RecoveredSegment]:
    """Seal every segment of one stream's folder that a crash left open."""
    manifest = Manifest(directory / MANIFEST_NAME)
    recovered = []
    for sequence, path in unsealed_segments(directory, manifest.entries()):
        recovered.append(_seal(manifest, directory.name, sequence, path))
    return recovered


def recover_archive(root: Path) -> list[RecoveredSegment]:
    """Seal every segment under an archive root that a crash left open. A folder that fails is
    logged and skipped, so one bad folder does not keep the relay from starting."""
    recovered: list[RecoveredSegment] = []
    if not root.exists():
        return recovered
    for stream_id, directory in find_streams(root).items():
        try:
            recovered.extend(recover_stream(directory))
        except Exception:
            logger.exception("stream %s: the segments a crash left open could not be sealed", stream_id)
    return recovered


def _seal(manifest: Manifest, stream_id: str, sequence: int, path: Path) -> RecoveredSegment:
    probe = probe_segment(path)
    last_write = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    kept = path
    original: dict[str, Any] | None = None
    frames = probe.frames
    if probe.readable and probe.damaged:
        kept = path.with_name(segment_file_name(stream_id, sequence, recovered=True))
        frames = copy_readable_packets(path, kept)
        original = {"file": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)}
    duration = (probe.media_end or 0.0) - (probe.media_start or 0.0)
    size = kept.stat().st_size
    entry: dict[str, Any] = {
        "type": "segment",
        "stream_id": stream_id,
        "sequence": sequence,
        "file": kept.name,
        "started_at": utc_iso(last_write - timedelta(seconds=duration)),
        "ended_at": utc_iso(last_write),
        "media_start": round(probe.media_start or 0.0, 6),
        "media_end": round(probe.media_end or 0.0, 6),
        "frames": frames,
        "bytes": size,
        "sha256": sha256_file(kept),
        "recovered": True,
        "recovered_at": utc_iso(),
    }
    if original is not None:
        entry["original"] = original
    if not probe.readable:
        entry["readable"] = False
    manifest.append(entry)
    logger.warning(
        "stream %s: sealed %s left open by a crash (%d video, %d audio frames%s)",
        stream_id,
        kept.name,
        frames.get("video", 0),
        frames.get("audio", 0),
        f", copied from {path.name}" if original else "",
    )
    return RecoveredSegment(
        stream_id=stream_id,
        file=kept.name,
        original=original["file"] if original else None,
        frames=frames,
        bytes=size,
    )
