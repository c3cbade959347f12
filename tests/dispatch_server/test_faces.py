"""Face redaction's file work (R2, R17; issue 4): a derived copy of recorded segments with the faces
blurred by OpenCV's shipped cascades, decoded and encoded with PyAV; the segments are only read.

Real parts: segments written by the real recorder from VP8 and Opus frames, the Haar cascades in
OpenCV's wheel, a photographed face (see ``tests/faces_support.py``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import pytest

from dispatch_server.archive.faces import FaceDetector, SourceSegment, redact_segments
from media_relay.forwarding.frames import MediaKind
from media_relay.recording.manifest import sha256_file
from media_relay.recording.recorder import StreamRecorder
from tests.faces_support import AWAY, FPS, decoded, face_box, picture, sharpness, vp8_face_frames
from tests.media_relay.recordings import h264_frames, interleaved, opus_frames, record

PICTURES = 2 * FPS  # two segments of one second each


@pytest.fixture(scope="module")
def segments(tmp_path_factory: pytest.TempPathFactory) -> list[SourceSegment]:
    """Two seconds of the face, with audio, recorded into two segments; their start times are as a
    real-time recording would have them (one second apart)."""
    root = tmp_path_factory.mktemp("faces")
    recorder = record(root, "face", interleaved(vp8_face_frames(PICTURES), opus_frames(PICTURES / FPS)))
    entries = [json.loads(line) for line in (recorder.directory / "manifest.jsonl").read_text().splitlines()]
    start = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
    found = [
        SourceSegment(
            sequence=entry["sequence"],
            path=recorder.directory / entry["file"],
            sha256=entry["sha256"],
            started_at=start + timedelta(seconds=entry["media_start"]),
            media_start=entry["media_start"],
            video_frames=entry["frames"]["video"],
        )
        for entry in entries
        if entry["type"] == "segment"
    ]
    assert [segment.video_frames for segment in found] == [FPS, FPS]
    return found


def test_the_shipped_cascades_find_the_photographed_face() -> None:
    (x, y, w, _), *others = FaceDetector().detect(picture(0))
    fx, fy, fw, fh = face_box(0)
    assert not others
    assert abs(x - fx) < fw / 4 and abs(y - fy) < fh / 4 and 0.7 < w / fw < 1.4


def test_faces_are_blurred_the_rest_keeps_its_detail_and_the_originals_never_change(
    segments: list[SourceSegment], tmp_path: Path
) -> None:
    """R2: the derived copy blurs the face in every picture; the wall around it stays as sharp as
    in the recording; the audio is kept; the segments are byte for byte what their manifest says."""
    before = {segment.path: sha256_file(segment.path) for segment in segments}
    assert before == {segment.path: segment.sha256 for segment in segments}
    target = tmp_path / "redacted.webm"
    fractions: list[float] = []
    result = redact_segments(segments, target, video_codec="vp8", progress=fractions.append)

    assert {segment.path: sha256_file(segment.path) for segment in segments} == before
    assert (result.container, result.video_codec, result.frames) == ("webm", "vp8", PICTURES)
    assert result.frames_with_faces == PICTURES
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    with av.open(str(target)) as container:
        assert [(s.type, s.codec_context.name) for s in container.streams] == [
            ("video", "vp8"),
            ("audio", "opus"),
        ]
        assert sum(1 for _ in container.demux(audio=0)) >= result.audio_packets > 0.9 * PICTURES / FPS * 50

    source = [image for segment in segments for image in decoded(segment.path)]
    redacted = decoded(target)
    assert len(source) == len(redacted) == PICTURES
    for index, (original, copy) in enumerate(zip(source, redacted, strict=True)):
        face = face_box(index)
        assert sharpness(copy, face) < 0.1 * sharpness(original, face), f"picture {index}: face not blurred"
        assert sharpness(copy, AWAY) > 0.6 * sharpness(original, AWAY), f"picture {index}: wall blurred"


def test_a_time_range_takes_only_its_pictures(segments: list[SourceSegment], tmp_path: Path) -> None:
    second = segments[1]
    result = redact_segments(
        segments,
        tmp_path / "second.webm",
        video_codec="vp8",
        since=second.started_at,
        until=second.started_at + timedelta(seconds=0.999),
    )
    assert result.frames == FPS
    assert len(decoded(tmp_path / "second.webm")) == FPS


def test_a_range_with_no_pictures_is_refused_and_leaves_no_file(
    segments: list[SourceSegment], tmp_path: Path
) -> None:
    target = tmp_path / "nothing.webm"
    later = segments[-1].started_at + timedelta(hours=1)
    with pytest.raises(ValueError, match="no picture"):
        redact_segments(segments, target, video_codec="vp8", since=later, until=later + timedelta(hours=1))
    assert not target.exists()


def test_an_h264_recording_becomes_an_mp4_with_its_audio(tmp_path: Path) -> None:
    """H.264 sources give an MP4 (H.264 encoded again, the Opus audio copied), every picture kept."""
    recorder = StreamRecorder(
        root=tmp_path,
        stream_id="h264",
        tracks={MediaKind.VIDEO: "h264", MediaKind.AUDIO: "opus"},
        segment_seconds=0,
    )
    start = time.monotonic()
    frames = interleaved(h264_frames(PICTURES), opus_frames(PICTURES / FPS))
    for frame in frames:
        recorder.write(dataclasses.replace(frame, received_at=start + frame.timestamp / frame.clock_rate))
    recorder.close()
    found = [
        SourceSegment(
            sequence=entry["sequence"],
            path=recorder.directory / entry["file"],
            sha256=entry["sha256"],
            started_at=datetime.fromisoformat(entry["started_at"]),
            media_start=entry["media_start"],
            video_frames=entry["frames"]["video"],
        )
        for entry in recorder.manifest.entries()
        if entry["type"] == "segment"
    ]
    target = tmp_path / "redacted.mp4"
    result = redact_segments(found, target, video_codec="h264")
    assert (result.container, result.video_codec, result.frames) == ("mp4", "h264", PICTURES)
    with av.open(str(target)) as container:
        assert [(s.type, s.codec_context.name) for s in container.streams] == [
            ("video", "h264"),
            ("audio", "opus"),
        ]
        assert sum(1 for _ in container.decode(video=0)) == PICTURES
