"""R2, issue 4: the recorder's own Matroska writer (media_relay.recording.matroska). Its segments
hold the frames exactly as received, are read by ffmpeg (through PyAV) as ffmpeg's own files are,
seek by their Cues, and stay readable when a crash cuts them short."""

from __future__ import annotations

import dataclasses
import itertools
import time
from pathlib import Path

import av
import pytest

from media_relay.forwarding.frames import EncodedFrame, MediaKind
from media_relay.recording import matroska
from media_relay.recording.matroska import (
    MatroskaWriter,
    avc_configuration,
    data_size,
    length_prefixed,
    matroska_duration,
    read_vint,
    void,
)
from media_relay.recording.recorder import StreamRecorder
from media_relay.recording.segment import SegmentWriter, TrackFormat
from tests.media_relay.recordings import FPS, h264_frames, interleaved, opus_frames, run_python, vp8_frames

MS = 0.0015


def _timed(frames: list[EncodedFrame], start: float = 20.0) -> list[tuple[EncodedFrame, float]]:
    """Each frame with its time on a stream's clock, starting well after 0 (as a later segment)."""
    return [(frame, start + frame.timestamp / frame.clock_rate) for frame in frames]


def _segment(
    path: Path, codec: str, frames: list[tuple[EncodedFrame, float]], *, close: bool = True
) -> SegmentWriter:
    video = TrackFormat(MediaKind.VIDEO, codec)
    first_key = next(frame for frame, _ in frames if frame.kind is MediaKind.VIDEO and frame.keyframe)
    assert video.learn_from_keyframe(first_key)
    writer = SegmentWriter(path, [video, TrackFormat(MediaKind.AUDIO, "opus")])
    for frame, seconds in frames:
        writer.write(frame, seconds)
    if close:
        writer.close()
    return writer


def _packets(path: Path) -> dict[str, list[av.Packet]]:
    found: dict[str, list[av.Packet]] = {"video": [], "audio": []}
    with av.open(str(path)) as container:
        for packet in container.demux():
            if packet.size:
                found[packet.stream.type].append(packet)
    return found


def _top_level(path: Path) -> list[tuple[int, int, int]]:
    """(id, position, size) of the EBML header, the Segment and each of the Segment's children."""
    data = path.read_bytes()
    found = []
    pos = 0
    while pos < len(data):
        start = pos
        element, pos = read_vint(data, pos, keep_marker=True)
        size, pos = read_vint(data, pos, keep_marker=False)
        found.append((element, start, size))
        if element != matroska.SEGMENT:
            pos += size
    return found


def test_vp8_and_opus_frames_are_stored_byte_for_byte_with_their_times(tmp_path: Path) -> None:
    frames = _timed(interleaved(vp8_frames(45), opus_frames(3)))
    path = tmp_path / "s.mkv"
    _segment(path, "vp8", frames)

    packets = _packets(path)
    video = [(frame, seconds) for frame, seconds in frames if frame.kind is MediaKind.VIDEO]
    audio = [(frame, seconds) for frame, seconds in frames if frame.kind is MediaKind.AUDIO]
    assert [bytes(p) for p in packets["video"]] == [frame.data for frame, _ in video]
    assert [bytes(p) for p in packets["audio"]] == [frame.data for frame, _ in audio]
    assert [p.is_keyframe for p in packets["video"]] == [frame.keyframe for frame, _ in video]
    for packet, (_, seconds) in zip(packets["video"] + packets["audio"], video + audio, strict=True):
        assert packet.pts is not None and packet.time_base is not None
        assert abs(float(packet.pts * packet.time_base) - seconds) <= MS
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.width, stream.codec_context.height) == (
            "vp8",
            320,
            240,
        )
        assert container.streams.audio[0].codec_context.name in ("opus", "libopus")
        assert bytes(container.streams.audio[0].codec_context.extradata or b"").startswith(b"OpusHead")
        # Each picture decodes.
        decoded = sum(1 for packet in container.demux(stream) for _ in packet.decode())
    assert decoded == len(video)
    first, last = frames[0][1], frames[-1][1]
    duration = matroska_duration(path)
    assert duration is not None and abs(duration - (last - first)) <= MS


def test_h264_is_stored_length_prefixed_with_an_avc_configuration_and_decodes(tmp_path: Path) -> None:
    frames = _timed(interleaved(h264_frames(30), opus_frames(2)))
    path = tmp_path / "h.mkv"
    _segment(path, "h264", frames)

    packets = _packets(path)
    video = [frame for frame, _ in frames if frame.kind is MediaKind.VIDEO]
    assert [bytes(p) for p in packets["video"]] == [length_prefixed(frame.data) for frame in video]
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (320, 240)
        extradata = bytes(stream.codec_context.extradata or b"")
        assert extradata[0] == 1 and extradata[4] == 0xFF  # avcC, 4-byte lengths
        decoded = sum(1 for packet in container.demux(stream) for _ in packet.decode())
    assert decoded == len(video)


def test_clusters_start_at_keyframes_last_at_most_half_a_second_and_the_cues_find_them(
    tmp_path: Path,
) -> None:
    frames = _timed(interleaved(vp8_frames(75, keyframe_every=30), opus_frames(5)))
    path = tmp_path / "c.mkv"
    _segment(path, "vp8", frames)

    elements = _top_level(path)
    ids = [element for element, _, _ in elements]
    assert ids[:5] == [matroska.EBML, matroska.SEGMENT, matroska.SEEK_HEAD, matroska.VOID, matroska.INFO]
    assert ids[5] == matroska.TRACKS and ids[-1] == matroska.CUES
    clusters = [position for element, position, _ in elements if element == matroska.CLUSTER]
    assert len(clusters) >= 10  # 5 s, at most 0.5 s each

    # The Segment's size is known, and the SeekHead points at Info, Tracks and Cues.
    segment_start = next(position for element, position, _ in elements if element == matroska.SEEK_HEAD)
    size = next(size for element, _, size in elements if element == matroska.SEGMENT)
    assert segment_start + size == path.stat().st_size

    packets = _packets(path)
    # Every video keyframe begins a cluster: the cluster's first video block is a keyframe.
    keyframes = [p for p in packets["video"] if p.is_keyframe]
    assert len(keyframes) == 3
    for packet in keyframes:
        assert packet.pos is not None
        cluster = max(position for position in clusters if position < packet.pos)
        before = [p for p in packets["video"] if p.pos is not None and cluster < p.pos < packet.pos]
        assert before == []
    # Spans: no cluster's blocks lie further apart than the cluster limit (plus the Opus delay).
    spans: dict[int, list[float]] = {}
    for packet in packets["video"] + packets["audio"]:
        assert packet.pos is not None and packet.pts is not None and packet.time_base is not None
        cluster = max(position for position in clusters if position < packet.pos)
        spans.setdefault(cluster, []).append(float(packet.pts * packet.time_base))
    assert max(max(times) - min(times) for times in spans.values()) <= (matroska.CLUSTER_MS + 10) / 1000

    # Seeking lands on the keyframe at or before the target, through the Cues.
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.time_base is not None
        container.seek(round(24.5 / stream.time_base), stream=stream, backward=True)
        packet = next(p for p in container.demux(stream) if p.size)
        assert packet.is_keyframe and packet.pts is not None
        assert abs(float(packet.pts * stream.time_base) - 24.0) <= MS


def test_a_segment_cut_short_by_a_crash_reads_up_to_its_last_written_cluster(tmp_path: Path) -> None:
    frames = _timed(interleaved(vp8_frames(45), opus_frames(3)))
    path = tmp_path / "crash.mkv"
    writer = _segment(path, "vp8", frames, close=False)  # as a SIGKILL leaves it: never closed
    written = path.read_bytes()

    packets = _packets(path)
    count = len(packets["video"]) + len(packets["audio"])
    assert count >= len(frames) - (matroska.CLUSTER_MS / 1000 + 0.1) * (FPS + 50)
    for packet in packets["video"]:
        assert bytes(packet) in {frame.data for frame, _ in frames}
    assert matroska_duration(path) is None  # not stated until the close

    # Torn in the middle of a cluster: everything before the tear still reads.
    torn = tmp_path / "torn.mkv"
    torn.write_bytes(written[: len(written) - 700])
    assert 0 < len(_packets(torn)["video"]) <= len(packets["video"])
    writer.close()


def test_frames_within_a_cluster_are_written_in_time_order(tmp_path: Path) -> None:
    video = vp8_frames(15)
    audio = opus_frames(1)
    # Audio arrives late, after the video it goes with (as over a jittery link).
    late = [(frame, 20 + frame.timestamp / frame.clock_rate) for frame in video] + _timed(audio)
    path = tmp_path / "o.mkv"
    _segment(path, "vp8", late)
    times = []
    with av.open(str(path)) as container:
        for packet in container.demux():
            if packet.size and packet.pts is not None and packet.time_base is not None:
                times.append(float(packet.pts * packet.time_base))
    # Only a cluster's boundaries may step back (at most a cluster's span); audio's 7 ms delay aside.
    assert all(later >= earlier - matroska.CLUSTER_MS / 1000 for earlier, later in itertools.pairwise(times))
    assert sum(1 for earlier, later in itertools.pairwise(times) if later < earlier - 0.01) <= 3


def test_ebml_sizes_voids_and_h264_helpers() -> None:
    assert data_size(0) == b"\x80" and data_size(126) == b"\xfe"
    assert data_size(127) == b"\x40\x7f"  # 0xFF would mean "unknown size"
    assert data_size(0x3FFE) == b"\x7f\xfe" and data_size(0x3FFF) == b"\x20\x3f\xff"
    with pytest.raises(ValueError):
        data_size(1 << 56)
    for length in (2, 3, 50, 128, 129, 130, 400):
        assert len(void(length)) == length and void(length)[0] == matroska.VOID
    with pytest.raises(ValueError):
        void(1)

    sps, pps, idr = b"\x67\x42\xc0\x1e\xaa\xbb", b"\x68\xce\x3c\x80", b"\x65\x88\x84\x00\x01"
    annex_b = b"\x00\x00\x00\x01" + sps + b"\x00\x00\x01" + pps + b"\x00\x00\x00\x01" + idr + b"\x00\x00"
    assert length_prefixed(annex_b) == b"".join(
        len(unit).to_bytes(4, "big") + unit for unit in (sps, pps, idr)
    )
    config = avc_configuration(annex_b)
    assert config == bytes([1, 0x42, 0xC0, 0x1E, 0xFF, 0xE1, 0, 6]) + sps + bytes([1, 0, 4]) + pps
    assert avc_configuration(b"\x00\x00\x01" + idr) is None


def test_a_segment_is_never_written_over(tmp_path: Path) -> None:
    path = tmp_path / "x.mkv"
    path.write_bytes(b"evidence")
    with pytest.raises(FileExistsError):
        MatroskaWriter(path, [], cue_track=1, cluster_on_keyframes=True)
    assert path.read_bytes() == b"evidence"


def test_frames_are_not_shifted_below_zero(tmp_path: Path) -> None:
    frames = [(frame, -0.004) for frame in vp8_frames(1)]
    path = tmp_path / "z.mkv"
    _segment(path, "vp8", frames)
    (packet,) = _packets(path)["video"]
    assert packet.pts == 0


FILL_THE_DISK = """
import dataclasses, resource, signal, sys, time
from pathlib import Path
from media_relay.forwarding.frames import MediaKind
from media_relay.recording.recorder import StreamRecorder
from tests.media_relay.recordings import interleaved, opus_frames, vp8_frames

# A disk that fills up: files may not grow past argv[2] bytes (the kernel answers EFBIG, as for ENOSPC).
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
errors = []
recorder = StreamRecorder(
    root=Path(sys.argv[1]), stream_id="s1", tracks={MediaKind.VIDEO: "vp8", MediaKind.AUDIO: "opus"},
    segment_seconds=600, on_write_error=errors.append,
)
frames = interleaved(vp8_frames(90), opus_frames(6))
base = time.monotonic()
for frame in frames:
    recorder.write(dataclasses.replace(frame, received_at=base + frame.timestamp / frame.clock_rate))
recorder.close()
print(len(errors), len(frames), recorder.frames_written, recorder.frames_dropped)
"""


def test_a_full_disk_leaves_the_segment_whole_up_to_its_last_cluster_and_counts_what_was_lost(
    tmp_path: Path,
) -> None:
    from media_relay.recording.recovery import probe_segment

    errors, fed, written, dropped = map(int, run_python(FILL_THE_DISK, str(tmp_path), "150000").split())
    assert errors == 1  # reported (once in 10 s)
    assert written + dropped == fed and dropped > 10 and written > 10  # a cluster and more went

    (segment,) = tmp_path.rglob("*.mkv")
    assert segment.stat().st_size <= 150_000
    probe = probe_segment(segment)  # what crash recovery reads: no torn cluster at its end
    assert probe.readable and not probe.damaged
    # Every frame in the file was counted written; the last clusters, given but never written
    # (the close could not write them either), are not in it.
    assert 0 < sum(probe.frames.values()) <= written


def test_a_segment_that_cannot_even_start_leaves_no_file_and_the_recorder_goes_on(tmp_path: Path) -> None:
    errors, fed, written, dropped = map(int, run_python(FILL_THE_DISK, str(tmp_path), "100").split())
    assert errors == 1  # reported (once in 10 s), not raised into the relay
    assert (written, dropped) == (0, fed)  # every frame counted, none silently
    assert list(tmp_path.rglob("*.mkv")) == []  # no file that is not even a header


def test_a_file_in_the_way_is_never_written_over(tmp_path: Path) -> None:
    errors: list[str] = []
    recorder = StreamRecorder(
        root=tmp_path,
        stream_id="s1",
        tracks={MediaKind.VIDEO: "vp8", MediaKind.AUDIO: "opus"},
        segment_seconds=600,
        on_write_error=errors.append,
    )
    stray = recorder.directory / "s1-00001.mkv"
    stray.write_bytes(b"not ours")
    base = time.monotonic()
    frames = interleaved(vp8_frames(45), opus_frames(3))
    for frame in frames:
        recorder.write(dataclasses.replace(frame, received_at=base + frame.timestamp / frame.clock_rate))
    recorder.close()

    assert stray.read_bytes() == b"not ours"
    assert len(errors) == 1 and "FileExistsError" in errors[0]
    (entry,) = [e for e in recorder.manifest.entries() if e["type"] == "segment"]
    assert entry["file"] == "s1-00002.mkv"
    # The keyframe that found the name taken was dropped; from the next keyframe on, all is there.
    assert recorder.frames_written + recorder.frames_dropped == len(frames)
    assert recorder.frames_written == sum(entry["frames"].values()) > len(frames) // 2
