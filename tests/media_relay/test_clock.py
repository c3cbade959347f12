"""A/V sync (R2; issue 4): a stream's audio and video are timed on the sender's clock through RTCP
sender reports, not by arrival; before the first report, by arrival; across publisher sessions the
timeline keeps running.

Real parts: the recorder and its segments (PyAV reads them back); the clock itself has no I/O.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import av
import pytest

from media_relay.forwarding.frames import MediaKind
from media_relay.recording.clock import ClockSource, StreamClock, ntp_seconds, rtp_difference
from media_relay.recording.recorder import StreamRecorder
from tests.media_relay.recordings import FPS, opus_frames, vp8_frames

VIDEO, AUDIO = MediaKind.VIDEO, MediaKind.AUDIO
NTP_AT_START = 3_960_000_000.0
"""The sender's wall clock (NTP seconds) when both tracks' timestamp 0 was sampled."""
VIDEO_RTP0, AUDIO_RTP0 = 0xFFFF0000, 12345
"""Random RTP starts, as RFC 3550 wants them; the video's wraps around within a second."""


def test_rtp_differences_survive_wrap_around() -> None:
    assert rtp_difference(5, 0xFFFFFFFB) == 10
    assert rtp_difference(0xFFFFFFFB, 5) == -10
    assert ntp_seconds((7 << 32) | (1 << 31)) == 7.5


def test_before_any_report_frames_are_placed_by_arrival() -> None:
    clock = StreamClock(epoch=100.0)
    assert clock.media_time(VIDEO, VIDEO_RTP0, 90000, received_at=100.5) == 0.5
    # The RTP clock decides the spacing, even across the 32-bit wrap.
    assert clock.media_time(VIDEO, (VIDEO_RTP0 + 90000) % 2**32, 90000, received_at=101.9) == 1.5
    assert clock.source(VIDEO) is ClockSource.ARRIVAL


def test_sender_reports_put_audio_and_video_on_one_clock_whatever_their_arrival() -> None:
    """Video arrives 300 ms late (a slow path); the reports tell the truth and audio is moved onto
    video's timeline: a frame of each taken at the same instant gets the same time."""
    clock = StreamClock(epoch=0.0)
    video_at = clock.media_time(VIDEO, VIDEO_RTP0, 90000, received_at=10.3)
    audio_at = clock.media_time(AUDIO, AUDIO_RTP0, 48000, received_at=10.0)
    assert video_at - audio_at == pytest.approx(0.3)  # by arrival: 300 ms out of sync

    clock.on_sender_report(VIDEO, NTP_AT_START + 1.0, (VIDEO_RTP0 + 90000) % 2**32)
    clock.on_sender_report(AUDIO, NTP_AT_START + 1.0, AUDIO_RTP0 + 48000)
    assert clock.source(VIDEO) is clock.source(AUDIO) is ClockSource.SENDER_REPORT
    for second in (2, 3, 60):
        video = clock.media_time(VIDEO, (VIDEO_RTP0 + second * 90000) % 2**32, 90000, received_at=0)
        audio = clock.media_time(AUDIO, AUDIO_RTP0 + second * 48000, 48000, received_at=0)
        assert video == pytest.approx(audio, abs=1e-6)
        # The first report kept the video where arrival had put it: no jump for that track.
        assert video == pytest.approx(10.3 + second, abs=1e-6)


def test_a_report_before_the_first_frame_is_used_from_that_frame() -> None:
    clock = StreamClock(epoch=0.0)
    clock.on_sender_report(AUDIO, NTP_AT_START, AUDIO_RTP0)
    assert clock.media_time(AUDIO, AUDIO_RTP0 + 960, 48000, received_at=5.0) == pytest.approx(5.0)
    assert clock.media_time(AUDIO, AUDIO_RTP0 + 48960, 48000, received_at=99.0) == pytest.approx(6.0)
    assert clock.source(AUDIO) is ClockSource.SENDER_REPORT


def test_a_sender_clock_running_fast_is_followed_report_by_report() -> None:
    """Between reports the RTP clock counts; each report corrects the drift against the wall."""
    clock = StreamClock(epoch=0.0)
    clock.media_time(VIDEO, 0, 90000, received_at=1.0)
    clock.on_sender_report(VIDEO, 1000.0, 0)
    # 10 s of RTP ticks later the sender's wall clock says 10.01 s went by.
    clock.on_sender_report(VIDEO, 1010.01, 900000)
    assert clock.media_time(VIDEO, 900000, 90000, received_at=0) == pytest.approx(11.01)


def test_a_new_publisher_session_continues_the_timeline_from_its_arrival() -> None:
    clock = StreamClock(epoch=0.0)
    clock.media_time(VIDEO, VIDEO_RTP0, 90000, received_at=1.0)
    clock.on_sender_report(VIDEO, NTP_AT_START, VIDEO_RTP0)
    clock.restart()
    assert clock.source(VIDEO) is ClockSource.ARRIVAL
    # New RTP clock, new sender wall clock: placed by arrival, 30 s on.
    assert clock.media_time(VIDEO, 777, 90000, received_at=31.0) == 31.0
    clock.on_sender_report(VIDEO, 5.0, 777 + 9000)
    assert clock.media_time(VIDEO, 777 + 9000, 90000, received_at=0) == pytest.approx(31.1)


def _packet_times(directory: Path, entries: list[dict[str, object]]) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"video": [], "audio": []}
    for entry in entries:
        with av.open(str(directory / str(entry["file"]))) as container:
            for packet in container.demux():
                if packet.pts is not None and packet.time_base is not None:
                    times[packet.stream.type].append(float(packet.pts * packet.time_base))
    return times


@pytest.mark.parametrize("reports", [True, False], ids=["sender-reports", "arrival-only"])
def test_the_recorder_times_frames_by_sender_reports_not_by_arrival(tmp_path: Path, reports: bool) -> None:
    """Video and audio sampled at the same instants, the video arriving 400 ms after its audio.
    With sender reports, the video frame and the audio frame of the same instant get the same time
    in the segments, and the manifest says so; by arrival alone they would be 400 ms apart."""
    late = 0.4
    recorder = StreamRecorder(
        root=tmp_path, stream_id="sync", tracks={VIDEO: "vp8", AUDIO: "opus"}, segment_seconds=0.0
    )
    start = time.monotonic()
    if reports:
        recorder.on_sender_report(VIDEO, int(NTP_AT_START * 2**32), VIDEO_RTP0)
        recorder.on_sender_report(AUDIO, int(NTP_AT_START * 2**32), AUDIO_RTP0)
    video = [
        dataclasses.replace(
            frame,
            timestamp=(VIDEO_RTP0 + frame.timestamp) % 2**32,
            received_at=start + late + frame.timestamp / 90000,
        )
        for frame in vp8_frames(3 * FPS)
    ]
    audio = [
        dataclasses.replace(
            frame, timestamp=AUDIO_RTP0 + frame.timestamp, received_at=start + frame.timestamp / 48000
        )
        for frame in opus_frames(3.0)
    ]
    for frame in sorted(video + audio, key=lambda frame: frame.received_at):
        recorder.write(frame)
    recorder.close()

    entries = [json.loads(line) for line in (recorder.directory / "manifest.jsonl").read_text().splitlines()]
    segments = [entry for entry in entries if entry["type"] == "segment"]
    source = "sender-report" if reports else "arrival"
    assert [entry["clock"] for entry in segments] == [{"video": source, "audio": source}] * len(segments)
    times = _packet_times(recorder.directory, segments)
    # Video frame 15 and audio frame 50 were both sampled 1 s after the start; so were 30 and 100.
    for video_index, audio_index in ((15, 50), (30, 100)):
        skew = times["video"][video_index] - times["audio"][audio_index]
        assert skew == pytest.approx(0.0 if reports else late, abs=0.002), skew


def test_a_stream_recorded_again_continues_its_timeline(tmp_path: Path) -> None:
    """A new recorder for a stream that has segments (the publisher came back after its grace, the
    relay restarted) starts its media time after the last segment's end, not at 0 again."""
    frames = sorted(vp8_frames(FPS) + opus_frames(1.0), key=lambda frame: frame.timestamp / frame.clock_rate)
    ends = []
    for _ in range(2):
        recorder = StreamRecorder(
            root=tmp_path, stream_id="again", tracks={VIDEO: "vp8", AUDIO: "opus"}, segment_seconds=60
        )
        start = time.monotonic()
        for frame in frames:
            recorder.write(dataclasses.replace(frame, received_at=start + frame.timestamp / frame.clock_rate))
        recorder.close()
        entries = [e for e in recorder.manifest.entries() if e["type"] == "segment"]
        ends.append((entries[-1]["media_start"], entries[-1]["media_end"]))
    (_, first_end), (second_start, _) = ends
    assert second_start > first_end
