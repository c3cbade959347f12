"""R2: what a crash leaves open is sealed on the next start, readable, hashed, and never written over.

The crash is real: a recorder process killed with SIGKILL in the middle of a segment.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import pytest
from pydantic import ValidationError

from media_relay.recording.manifest import sha256_file
from media_relay.recording.recovery import recover_archive
from media_relay.recording.verify import find_streams, verify_stream
from tests.media_relay.recordings import interleaved, opus_frames, record, vp8_frames
from zhihui.settings import load_settings

STREAM = "officer2-bodycam-5e6f7a8b"
REPO = Path(__file__).resolve().parents[2]

# Records one sealed session, then a second one that is killed 4 s into its (only) segment.
KILLED_RECORDER = f"""
import dataclasses, os, signal, sys, time
from pathlib import Path
from media_relay.forwarding.frames import MediaKind
from media_relay.recording.recorder import StreamRecorder
from tests.media_relay.recordings import interleaved, opus_frames, record, vp8_frames

root = Path(sys.argv[1])
record(root, {STREAM!r}, interleaved(vp8_frames(30), opus_frames(2)))
recorder = StreamRecorder(
    root=root, stream_id={STREAM!r}, tracks={{MediaKind.VIDEO: "vp8", MediaKind.AUDIO: "opus"}},
    segment_seconds=3600,
)
base = time.monotonic()
for frame in interleaved(vp8_frames(60, seed=3), opus_frames(4)):
    recorder.write(dataclasses.replace(frame, received_at=base + frame.timestamp / frame.clock_rate))
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.fixture
def crashed(tmp_path: Path) -> Path:
    """A stream folder with two sealed segments and one a SIGKILL left open."""
    root = tmp_path / "recordings"
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_RECORDER, str(root)], cwd=REPO, capture_output=True, timeout=60
    )
    assert killed.returncode == -9, killed.stderr
    return find_streams(root)[STREAM]


def _entries(folder: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_bytes().splitlines()]


def _decoded(path: Path) -> dict[str, int]:
    counts = {"video": 0, "audio": 0}
    with av.open(str(path)) as container:
        for frame in container.decode(*container.streams):
            counts["video" if isinstance(frame, av.VideoFrame) else "audio"] += 1
    return counts


def test_a_segment_left_open_by_a_crash_is_unlisted_until_sealed(crashed: Path) -> None:
    problems = verify_stream(crashed).problems
    assert [(p.kind.value, p.file) for p in problems] == [("file not in manifest", f"{STREAM}-00003.mkv")]


def test_a_segment_left_open_is_sealed_as_it_is_when_it_ends_cleanly(crashed: Path) -> None:
    left_open = crashed / f"{STREAM}-00003.mkv"
    before = sha256_file(left_open)

    recovered = recover_archive(crashed.parents[3])

    assert [(r.file, r.original) for r in recovered] == [(left_open.name, None)]
    entry = _entries(crashed)[-1]
    assert entry["recovered"] is True and entry["sequence"] == 3 and entry["file"] == left_open.name
    assert entry["sha256"] == before == sha256_file(left_open)  # kept as it was, byte for byte
    assert entry["frames"] == _decoded(left_open)
    # 4 s were written, clusters close every second: at most the last second is lost.
    assert entry["frames"]["video"] >= 45  # type: ignore[index]
    assert verify_stream(crashed).ok
    assert recover_archive(crashed.parents[3]) == []  # sealing twice does nothing


def test_a_damaged_tail_is_copied_into_a_finished_file_and_the_original_kept(crashed: Path) -> None:
    left_open = crashed / f"{STREAM}-00003.mkv"
    with left_open.open("r+b") as handle:  # a cluster half written when the power went
        handle.truncate(left_open.stat().st_size - 100)
    damaged = sha256_file(left_open)
    complete_before = _decoded(left_open)

    recovered = recover_archive(crashed.parents[3])

    copy = crashed / f"{STREAM}-00003.recovered.mkv"
    assert [(r.file, r.original) for r in recovered] == [(copy.name, left_open.name)]
    entry = _entries(crashed)[-1]
    assert entry["file"] == copy.name and entry["sha256"] == sha256_file(copy)
    assert entry["original"] == {"file": left_open.name, "bytes": left_open.stat().st_size, "sha256": damaged}
    assert sha256_file(left_open) == damaged  # the original is never changed
    assert _decoded(copy) == entry["frames"] == complete_before  # every complete packet, no more
    with av.open(str(copy)) as container:
        assert container.duration and container.duration > 2_000_000  # finished: it knows its length
    assert verify_stream(crashed).ok


def test_an_unreadable_leftover_is_listed_not_deleted(crashed: Path) -> None:
    junk = crashed / f"{STREAM}-00004.mkv"
    junk.write_bytes(b"")  # the process died between creating the file and writing its header
    recover_archive(crashed.parents[3])
    entry = _entries(crashed)[-1]
    assert (entry["file"], entry["readable"], entry["bytes"]) == (junk.name, False, 0)
    assert junk.exists()
    assert verify_stream(crashed).ok


def test_the_recorder_never_writes_over_a_segment_it_does_not_know(crashed: Path) -> None:
    left_open = crashed / f"{STREAM}-00003.mkv"
    before = sha256_file(left_open)
    record(crashed.parents[3], STREAM, interleaved(vp8_frames(15), opus_frames(1)))
    assert sha256_file(left_open) == before
    assert _entries(crashed)[-1]["file"] == f"{STREAM}-00004.mkv"


def test_fsync_cadence_is_a_setting_defaulting_to_one_second(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZHIHUI_RECORDING__FSYNC_SECONDS", raising=False)
    monkeypatch.setenv("ZHIHUI_CONFIG", "/nonexistent/zhihui.toml")
    assert load_settings().recording.fsync_seconds == 1.0
    monkeypatch.setenv("ZHIHUI_RECORDING__FSYNC_SECONDS", "0.25")
    assert load_settings().recording.fsync_seconds == 0.25
    with pytest.raises(ValidationError):
        load_settings(recording={"fsync_seconds": -1})
