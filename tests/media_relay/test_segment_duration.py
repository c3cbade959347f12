"""R2, issue 4: a sealed segment's Matroska Duration is its media length (its last block's end minus
its first block's time), not its end on the stream's clock, for the recorder's segments and for the
copies crash recovery makes; the manifest's media start and end agree with it. (How long the last
block lasts is not recorded: the length is from the first block's time to the last one's, plus at
most one video frame.)"""

from __future__ import annotations

from pathlib import Path

import av

from media_relay.recording.matroska import matroska_duration
from media_relay.recording.recovery import copy_readable_packets
from tests.media_relay.recordings import FPS, interleaved, opus_frames, record, vp8_frames

MS = 0.0015  # Matroska keeps milliseconds here: a rounding each side


def _span(path: Path) -> tuple[float, float]:
    """The first block's time and the last block's time, from the packets themselves."""
    times = []
    with av.open(str(path)) as container:
        for packet in container.demux():
            if packet.pts is not None and packet.time_base is not None and packet.size:
                times.append(float(packet.pts * packet.time_base))
    return min(times), max(times)


def _is_length(duration: float | None, start: float, last: float) -> bool:
    return duration is not None and last - start - MS <= duration <= last - start + 1 / FPS + MS


def test_each_segments_duration_is_its_length_not_its_end_on_the_streams_clock(tmp_path: Path) -> None:
    recorder = record(tmp_path / "recordings", "s1", interleaved(vp8_frames(60), opus_frames(4)))
    segments = [e for e in recorder.manifest.entries() if e["type"] == "segment"]
    assert len(segments) == 4
    for entry in segments:
        path = recorder.directory / entry["file"]
        start, last = _span(path)
        duration = matroska_duration(path)
        assert _is_length(duration, start, last), (entry["sequence"], duration, start, last)
        # What players read: they start at the first block and last Duration.
        with av.open(str(path)) as container:
            assert container.start_time is not None and container.duration is not None
            assert container.duration / av.time_base == duration
            assert abs(container.start_time / av.time_base - start) <= MS
        # The manifest's media times are those of the first and the last frame.
        assert abs(entry["media_start"] - start) <= MS and abs(entry["media_end"] - last) <= MS
    later = segments[-1]
    assert later["media_start"] > 2.5  # a segment well into the stream: the case the end got wrong


def test_a_recovered_copy_states_its_length_too(tmp_path: Path) -> None:
    recorder = record(tmp_path / "recordings", "s2", interleaved(vp8_frames(45), opus_frames(3)))
    entry = [e for e in recorder.manifest.entries() if e["type"] == "segment"][-1]
    damaged = tmp_path / "damaged.mkv"
    whole = (recorder.directory / entry["file"]).read_bytes()
    damaged.write_bytes(whole[: len(whole) - 300])  # a crash in the middle of the last cluster

    copy = tmp_path / "copy.mkv"
    frames = copy_readable_packets(damaged, copy)
    assert frames["video"] > 0
    start, last = _span(copy)
    assert start > 1.5
    assert _is_length(matroska_duration(copy), start, last)
