"""Recording benchmark (issue 4): what the recorder costs per stream, what it writes, and how fast
an export and a verification go over what it wrote. Prints one JSON line.

The real recorder (``media_relay.recording.recorder.StreamRecorder``) is fed pre-encoded frames in
real time, so that its segment cuts and fsync cadence (both on the wall clock) happen as in the
relay, and no encoding is counted: the video is the bodycam clip's VP8 packets (demuxed once, not
decoded), the audio Opus packets encoded once before anything is measured. N streams are fed from
one loop in this process; the process's CPU time (all threads: the recorder's disk thread too) over
the window, less that of the same loop feeding nothing, is the recorder's.

Examples::

    .venv/bin/python bench/recording.py                      # 8 streams, 5 + 30 s per pass (~2 min)
    .venv/bin/python bench/recording.py --streams 16 --seconds 60
    .venv/bin/python bench/recording.py --quick              # 2 streams, 5 s

See ``bench/README.md`` for what each figure means.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import av  # noqa: E402

from bench.machine import python_speed_ms  # noqa: E402
from bench.relay_load import CLIP, relay_tree  # noqa: E402
from dispatch_server.archive.package import ExportPlan, SegmentPlan, StreamPlan, build_package  # noqa: E402
from media_relay.forwarding.frames import EncodedFrame, MediaKind  # noqa: E402
from media_relay.recording.manifest import Manifest  # noqa: E402
from media_relay.recording.recorder import MANIFEST_NAME, StreamRecorder  # noqa: E402
from media_relay.recording.verify import verify_stream  # noqa: E402
from tests.media_relay.recordings import opus_frames  # noqa: E402

TARGET_CPU_S_PER_STREAM_MINUTE = 0.05


def log(message: str) -> None:
    print(f"[recording {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- media -------------------------------------------------------------------------------------------


def clip_frames(clip: Path) -> tuple[list[EncodedFrame], float]:
    """The clip's VP8 packets as frames (90 kHz timestamps from 0), and its length in seconds."""
    frames: list[EncodedFrame] = []
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        first: int | None = None
        for packet in container.demux(stream):
            if packet.pts is None or not packet.size:
                continue
            first = packet.pts if first is None else first
            assert packet.time_base is not None
            frames.append(
                EncodedFrame(
                    kind=MediaKind.VIDEO,
                    codec="vp8",
                    data=bytes(packet),
                    timestamp=round((packet.pts - first) * packet.time_base * 90000),
                    clock_rate=90000,
                    keyframe=packet.is_keyframe,
                    received_at=0.0,
                )
            )
    length = frames[-1].timestamp / 90000 + 1 / 15
    return frames, length


class Feed:
    """One stream's media, looped forever: (media seconds, frame) in media-time order."""

    def __init__(self, video: list[EncodedFrame], audio: list[EncodedFrame], length: float) -> None:
        self._items = sorted(
            [
                (frame.timestamp / frame.clock_rate, frame)
                for frame in video + audio
                if frame.timestamp / frame.clock_rate < length
            ],
            key=lambda item: item[0],
        )
        self._length = length
        self._index = 0
        self._loop = 0

    def schedule(self, seconds: float, base: float) -> list[tuple[float, EncodedFrame]]:
        """(when, frame) for the frames of the first ``seconds``, and one more; each frame arrives
        (``received_at``) at ``base`` plus its time."""
        frames: list[tuple[float, EncodedFrame]] = []
        while not frames or frames[-1][0] < seconds:
            at = self.next_at()
            frames.append((at, self.take(base + at)))
        return frames

    def next_at(self) -> float:
        return self._loop * self._length + self._items[self._index][0]

    def take(self, received_at: float) -> EncodedFrame:
        _, frame = self._items[self._index]
        loop = self._loop
        self._index += 1
        if self._index == len(self._items):
            self._index, self._loop = 0, self._loop + 1
        ticks = round(loop * self._length * frame.clock_rate)
        return dataclasses.replace(frame, timestamp=frame.timestamp + ticks, received_at=received_at)


# -- passes ------------------------------------------------------------------------------------------


def feed_pass(
    root: Path | None,
    streams: int,
    seconds: float,
    video: list[EncodedFrame],
    audio: list[EncodedFrame],
    length: float,
    fsync_seconds: float,
    segment_seconds: float,
    warmup: float,
) -> dict[str, Any]:
    """Feed ``streams`` recorders (none when ``root`` is None: the loop alone) in real time for
    ``warmup`` then ``seconds``; the process CPU over those ``seconds`` (steady state: each stream's
    first segment's set-up falls in the warm-up), and the frames fed. The frames are made before
    the pass starts, so the loop alone costs little and its share, taken off, adds little noise."""
    feeds = [Feed(video, audio, length) for _ in range(streams)]
    # Every frame the pass will feed, made before it starts (arriving when it is due): in the
    # window, taking one is an index.
    base = time.monotonic()
    schedules = [feed.schedule(warmup + seconds, base) for feed in feeds]
    positions = [0] * streams
    recorders = (
        [
            StreamRecorder(
                root=root,
                stream_id=f"bench-{index:03d}",
                tracks={MediaKind.VIDEO: "vp8", MediaKind.AUDIO: "opus"},
                segment_seconds=segment_seconds,
                fsync_seconds=fsync_seconds,
            )
            for index in range(streams)
        ]
        if root is not None
        else []
    )
    fed = 0
    total = warmup + seconds
    cpu0, start = time.process_time(), base
    window_cpu0: float | None = None
    window_times0 = os.times()
    while True:
        now = time.monotonic() - start
        if window_cpu0 is None and now >= warmup:
            window_cpu0, window_times0 = time.process_time(), os.times()
        if now >= total:
            break
        for index, schedule in enumerate(schedules):
            position = positions[index]
            while position < len(schedule) and schedule[position][0] <= now:
                frame = schedule[position][1]
                if recorders:
                    recorders[index].write(frame)
                position += 1
                fed += 1
            positions[index] = position
        due = min(schedule[position][0] for schedule, position in zip(schedules, positions, strict=True))
        next_mark = warmup if window_cpu0 is None else total
        time.sleep(max(0.0, min(due, next_mark) - (time.monotonic() - start)))
    assert window_cpu0 is not None
    window_end, window_times = time.process_time(), os.times()
    for recorder in recorders:
        recorder.close()
    return {
        "cpu_s": window_end - window_cpu0,
        "user_s": window_times.user - window_times0.user,
        "system_s": window_times.system - window_times0.system,
        "warmup_cpu_s": window_cpu0 - cpu0,
        "close_cpu_s": time.process_time() - window_end,
        "fed_s": total,
        "frames": fed,
        "recorders": recorders,
    }


def export_pass(root: Path, out: Path) -> dict[str, Any]:
    """Export every recorded stream (as ``zhihui export`` does, from the manifests): wall time."""
    plan = ExportPlan(requested_by="bench", requested_at=datetime.now(UTC), selection="bench")
    media_seconds = 0.0
    for manifest_path in sorted(root.glob(f"*/*/*/*/{MANIFEST_NAME}")):
        directory = manifest_path.parent
        entries = [entry for entry in Manifest(manifest_path).entries() if entry.get("type") == "segment"]
        media_seconds += sum(float(e["media_end"]) - float(e["media_start"]) for e in entries)
        plan.streams.append(
            StreamPlan(
                stream_id=directory.name,
                officer="bench",
                device="bench",
                video_codec="vp8",
                audio_codec="opus",
                directory=directory,
                segments=[
                    SegmentPlan(
                        sequence=int(e["sequence"]),
                        path=directory / e["file"],
                        started_at=datetime.fromisoformat(e["started_at"]),
                        ended_at=datetime.fromisoformat(e["ended_at"]),
                        bytes=int(e["bytes"]),
                        sha256=str(e["sha256"]),
                    )
                    for e in entries
                ],
            )
        )
    cpu0, start = time.process_time(), time.monotonic()
    build_package(plan, out)
    wall = time.monotonic() - start
    return {
        "wall_s": round(wall, 3),
        "media_s": round(media_seconds, 1),
        "bytes": plan.total_bytes,
        "times_real_time": round(media_seconds / wall, 1),
        "this_process_cpu_s": round(time.process_time() - cpu0, 3),
    }


def verify_pass(root: Path) -> dict[str, Any]:
    directories = [path.parent for path in sorted(root.glob(f"*/*/*/*/{MANIFEST_NAME}"))]
    size = sum(path.stat().st_size for directory in directories for path in directory.glob("*.mkv"))
    start = time.monotonic()
    reports = [verify_stream(directory) for directory in directories]
    wall = time.monotonic() - start
    return {
        "wall_s": round(wall, 3),
        "bytes": size,
        "gb_per_s": round(size / 1e9 / wall, 2),
        "ok": all(report.ok for report in reports),
    }


def written(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file())


# -- main --------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    video, length = clip_frames(args.clip)
    audio = opus_frames(math.ceil(length))
    log(f"{len(video)} video frames ({length:.1f} s loop), {len(audio)} Opus frames, encoded once")
    workdir = Path(tempfile.mkdtemp(prefix="bench-recording-"))
    stream_minutes = args.streams * args.seconds / 60
    try:
        log(f"the feeding loop alone: {args.streams} stream(s), {args.seconds:.0f} s")
        idle = feed_pass(
            None, args.streams, args.seconds, video, audio, length, 1.0, args.segment_seconds, args.warmup
        )
        passes: dict[str, Any] = {}
        for name, fsync_seconds in (("fsync", args.fsync_seconds), ("no_fsync", math.inf)):
            root = workdir / name
            log(f"recording, {name}: {args.streams} stream(s), {args.seconds:.0f} s")
            result = feed_pass(
                root,
                args.streams,
                args.seconds,
                video,
                audio,
                length,
                fsync_seconds,
                args.segment_seconds,
                args.warmup,
            )
            recorders = result["recorders"]
            cpu = result["cpu_s"] - idle["cpu_s"]
            size = written(root)
            passes[name] = {
                "cpu_s_per_stream_minute": round(cpu / stream_minutes, 4),
                "user_s_per_stream_minute": round((result["user_s"] - idle["user_s"]) / stream_minutes, 4),
                "system_s_per_stream_minute": round(
                    (result["system_s"] - idle["system_s"]) / stream_minutes, 4
                ),
                "window_process_cpu_s": round(result["cpu_s"], 3),
                "warmup_cpu_s": round(result["warmup_cpu_s"], 3),
                "close_cpu_s": round(result["close_cpu_s"], 3),
                "frames_fed": result["frames"],
                "frames_written": sum(r.frames_written for r in recorders),
                "frames_dropped": sum(r.frames_dropped for r in recorders),
                "segments": sum(
                    1 for r in recorders for e in r.manifest.entries() if e.get("type") == "segment"
                ),
                "bytes_written": size,
                "bytes_per_s_per_stream": round(size / result["fed_s"] / args.streams),
                "bytes_per_s_total": round(size / result["fed_s"]),
            }
        log("export (package with stream-copy remux) of the fsync pass's recordings")
        exported = export_pass(workdir / "fsync", workdir / "export")
        log("verify of the fsync pass's recordings")
        verified = verify_pass(workdir / "fsync")
    finally:
        if args.keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    with_fsync = passes["fsync"]["cpu_s_per_stream_minute"]
    return {
        "bench": "recording",
        "config": {
            "streams": args.streams,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "segment_seconds": args.segment_seconds,
            "fsync_seconds": args.fsync_seconds,
            "clip": args.clip.name,
        },
        "recorder_cpu_s_per_stream_minute": {
            "fsync": with_fsync,
            "no_fsync": passes["no_fsync"]["cpu_s_per_stream_minute"],
            "target": TARGET_CPU_S_PER_STREAM_MINUTE,
            "meets_target": with_fsync <= TARGET_CPU_S_PER_STREAM_MINUTE,
        },
        "bytes_written_per_s": {
            "per_stream": passes["fsync"]["bytes_per_s_per_stream"],
            "total": passes["fsync"]["bytes_per_s_total"],
        },
        "export_times_real_time": exported["times_real_time"],
        "verify_gb_per_s": verified["gb_per_s"],
        "passes": passes,
        "feeding_loop_alone_cpu_s": round(idle["cpu_s"], 3),
        "export": exported,
        "verify": {**verified, "page_cache": "warm (just written)"},
        "tree": relay_tree(),
        "machine_python_ms": python_speed_ms(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Recording benchmark: one JSON line.")
    parser.add_argument("--streams", type=int, default=8, help="streams recorded at once (8)")
    parser.add_argument("--seconds", type=float, default=30.0, help="real-time seconds per pass (30)")
    parser.add_argument("--warmup", type=float, default=5.0, help="s fed before the CPU window (5)")
    parser.add_argument(
        "--segment-seconds", type=float, default=10.0, help="segment length (10, the default)"
    )
    parser.add_argument(
        "--fsync-seconds", type=float, default=1.0, help="fsync cadence of the fsync pass (1)"
    )
    parser.add_argument("--clip", type=Path, default=CLIP, help="VP8 clip whose packets are recorded")
    parser.add_argument("--quick", action="store_true", help="2 streams, 5 s: a smoke run")
    parser.add_argument("--keep", action="store_true", help="keep the recordings and the export")
    args = parser.parse_args()
    if args.quick:
        args.streams, args.seconds, args.warmup = 2, 5.0, 2.0
    if not args.clip.exists():
        parser.error(f"no clip at {args.clip}")
    print(json.dumps(run(args)), flush=True)


if __name__ == "__main__":
    main()
