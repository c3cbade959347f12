"""ffmpeg for the archive: segments join without holes (Matroska's Duration is an end time, not a
length); H.264 plays as fragmented MP4; a remux whose reader goes away is stopped and leaves no
process behind."""

from __future__ import annotations

import dataclasses
import io
import itertools
import os
import subprocess
import time
from pathlib import Path

import av

from dispatch_server.archive.remux import concat_list, container_for, ffmpeg_exe, remux_args, stream_remux
from media_relay.forwarding.frames import MediaKind
from media_relay.recording.recorder import StreamRecorder
from tests.media_relay.recordings import h264_frames, interleaved, opus_frames, record, vp8_frames


def test_joined_segments_play_on_without_a_hole_between_them(tmp_path: Path) -> None:
    recorder = record(tmp_path, "joined", interleaved(vp8_frames(60), opus_frames(4)))
    segments = sorted(recorder.directory.glob("*.mkv"))
    assert len(segments) == 4
    listing = tmp_path / "list.ffconcat"
    listing.write_text(concat_list(segments))
    out = tmp_path / "joined.webm"
    subprocess.run(remux_args(listing, str(out), "webm", streaming=False), check=True, capture_output=True)
    with av.open(str(out)) as container:
        times = [float(p.pts * p.time_base) for p in container.demux(video=0) if p.pts is not None]
    assert len(times) == 60
    steps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert max(steps) < 0.1, f"a hole of {max(steps):.3f} s between segments"


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


async def test_a_remux_is_stopped_when_its_reader_goes_away(tmp_path: Path) -> None:
    # An endless source: only the reader going away can end it.
    args = [
        ffmpeg_exe(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-re",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=160x120:rate=15",
        "-c:v",
        "libvpx",
        "-f",
        "webm",
        "pipe:1",
    ]
    leftover = tmp_path / "list.ffconcat"
    leftover.write_text("")
    before = set(_children())
    chunks = stream_remux(args, cleanup=[leftover])
    received = 0
    async for chunk in chunks:
        received += len(chunk)
        if received > 1000:
            break
    started = set(_children()) - before
    assert started, "ffmpeg was not running"
    await chunks.aclose()  # what Starlette does when the client disconnects
    assert not any(_running(pid) for pid in started)
    assert not leftover.exists()


def _children() -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[1]) == os.getpid() and fields[0] != "Z":
                found.append(int(entry))
    return found


def test_h264_segments_play_as_fragmented_mp4_by_stream_copy(tmp_path: Path) -> None:
    recorder = StreamRecorder(
        root=tmp_path,
        stream_id="h264",
        tracks={MediaKind.VIDEO: "h264", MediaKind.AUDIO: "opus"},
        segment_seconds=0.0,
    )
    base = time.monotonic()
    for frame in interleaved(h264_frames(45), opus_frames(3)):
        recorder.write(dataclasses.replace(frame, received_at=base + frame.timestamp / frame.clock_rate))
    recorder.close()
    segments = sorted(recorder.directory.glob("*.mkv"))
    assert container_for("h264") == "mp4" and len(segments) == 3
    listing = tmp_path / "list.ffconcat"
    listing.write_text(concat_list(segments))
    played = subprocess.run(
        remux_args(listing, "pipe:1", "mp4", streaming=True), check=True, capture_output=True
    ).stdout
    assert played[4:8] == b"ftyp" and b"moof" in played  # fragmented: playable while it is written
    with av.open(io.BytesIO(played)) as container:
        assert {s.codec_context.name for s in container.streams} == {"h264", "opus"}
        assert sum(1 for _ in container.decode(video=0)) == 45
