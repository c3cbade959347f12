"""Evidence packages (issue 4): what an export writes, from a plan of streams and segments.

A package is a folder (zipped for download)::

    SUMMARY.txt                      who asked, what, when; per stream: officer, times, segments
                                     with their hashes, gaps with their reasons, the archive check
    SHA256SUMS                       every other file's SHA-256 (``sha256sum -c`` reads it)
    streams/<stream>.webm|.mp4       the stream's selected segments joined, stream copy (ffmpeg)
    segments/<stream>/<segment>.mkv  the original segments, byte for byte
    manifests/<stream>.manifest.jsonl  the stream's manifest, its hash chain

Segments are included whole (a time range takes every segment that overlaps it), so each one's
hash matches its manifest entry. Everything here is plain file work, run in a thread; ``progress``
gets a fraction from 0 to 1 and ``cancelled`` is checked between steps.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from dispatch_server.archive.remux import concat_list, container_for, remux_args, segment_length
from media_relay.recording.manifest import sha256_file
from media_relay.recording.recorder import MANIFEST_NAME
from media_relay.recording.verify import verify_stream

__all__ = [
    "ExportCancelled",
    "ExportPlan",
    "GapPlan",
    "SegmentPlan",
    "StreamPlan",
    "build_package",
    "zip_package",
]

Progress = Callable[[float], None]


class ExportCancelled(Exception):
    pass


@dataclass(frozen=True, slots=True)
class SegmentPlan:
    sequence: int
    path: Path
    """The segment file on disk."""
    started_at: datetime
    ended_at: datetime
    bytes: int
    sha256: str
    """As the catalog (the manifest entry) records it."""
    recovered: bool = False
    playable: bool = True
    """False for a segment with no frames (a crash left only its header)."""


@dataclass(frozen=True, slots=True)
class GapPlan:
    started_at: datetime | None
    ended_at: datetime
    reason: str


@dataclass(slots=True)
class StreamPlan:
    stream_id: str
    officer: str
    """Display name and username."""
    device: str
    video_codec: str | None
    audio_codec: str | None
    directory: Path
    """The stream's folder in the archive (its manifest is there)."""
    segments: list[SegmentPlan] = field(default_factory=list)
    gaps: list[GapPlan] = field(default_factory=list)


@dataclass(slots=True)
class ExportPlan:
    requested_by: str
    """Who: name, username, role."""
    requested_at: datetime
    selection: str
    """What was asked for, in words."""
    streams: list[StreamPlan] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(segment.bytes for stream in self.streams for segment in stream.segments)


def _time(moment: datetime | None) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds") if moment else "(unknown)"


class _Meter:
    """Progress over the whole package: copying each byte once and remuxing it once."""

    def __init__(self, total: int, progress: Progress | None, cancelled: threading.Event | None) -> None:
        self.total = max(1, 2 * total)
        self.done = 0
        self._progress = progress
        self._cancelled = cancelled

    def check(self) -> None:
        if self._cancelled is not None and self._cancelled.is_set():
            raise ExportCancelled("the export was cancelled")

    def report(self, extra: float = 0.0) -> None:
        if self._progress is not None:
            self._progress(min(1.0, (self.done + extra) / self.total))


def build_package(
    plan: ExportPlan,
    out: Path,
    *,
    progress: Progress | None = None,
    cancelled: threading.Event | None = None,
) -> list[Path]:
    """Write the package into ``out`` (created; must not hold a package already). Returns its files."""
    out.mkdir(parents=True, exist_ok=True)
    if (out / "SUMMARY.txt").exists():
        raise FileExistsError(f"{out} already holds a package")
    meter = _Meter(plan.total_bytes, progress, cancelled)
    checks: dict[str, str] = {}
    containers: dict[str, str] = {}
    for stream in plan.streams:
        meter.check()
        checks[stream.stream_id] = _check_archive(stream)
        target = out / "segments" / stream.stream_id
        target.mkdir(parents=True, exist_ok=True)
        for segment in stream.segments:
            meter.check()
            shutil.copy2(segment.path, target / segment.path.name)
            meter.done += segment.bytes
            meter.report()
        manifests = out / "manifests"
        manifests.mkdir(exist_ok=True)
        shutil.copy2(stream.directory / MANIFEST_NAME, manifests / f"{stream.stream_id}.manifest.jsonl")
        containers[stream.stream_id] = _remux(stream, out / "streams", meter)
    (out / "SUMMARY.txt").write_text(_summary(plan, checks, containers), encoding="utf-8")
    files = sorted(path for path in out.rglob("*") if path.is_file() and path.name != "SHA256SUMS")
    sums = "".join(f"{sha256_file(path)}  {path.relative_to(out).as_posix()}\n" for path in files)
    (out / "SHA256SUMS").write_text(sums, encoding="utf-8")
    if progress is not None:
        progress(1.0)
    return [*files, out / "SHA256SUMS"]


def _check_archive(stream: StreamPlan) -> str:
    report = verify_stream(stream.directory)
    if report.ok:
        return f"intact: {report.segments} segment(s), {report.gaps} gap(s), chain head {report.head}"
    lines = [f"{len(report.problems)} problem(s) found by the archive check:"]
    for problem in report.problems:
        where = f"manifest line {problem.line}" if problem.line else (problem.file or "")
        lines.append(f"    {where}: {problem.kind.value}")
        lines.append(f"        expected {problem.expected}; found {problem.found}")
    return "\n".join(lines)


def _remux(stream: StreamPlan, folder: Path, meter: _Meter) -> str:
    container = container_for(stream.video_codec)
    folder.mkdir(parents=True, exist_ok=True)
    playable = [segment for segment in stream.segments if segment.playable]
    stream_bytes = sum(segment.bytes for segment in stream.segments)
    if not playable:
        meter.done += stream_bytes
        return "(nothing playable)"
    concat = folder / f".{stream.stream_id}.ffconcat"
    concat.write_text(concat_list([segment.path for segment in playable]), encoding="utf-8")
    length = sum(segment_length(segment.path) or 0.0 for segment in playable) or 1.0
    target = folder / f"{stream.stream_id}.{container}"
    args = remux_args(concat, str(target), container, streaming=False, progress=True)
    process = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        for line in process.stdout:
            meter.check()
            key, _, value = line.strip().partition("=")
            if key == "out_time_us" and value.lstrip("-").isdigit():
                meter.report(stream_bytes * min(1.0, max(0, int(value)) / 1e6 / length))
        errors = process.stderr.read()
        if process.wait() != 0:
            raise RuntimeError(f"ffmpeg could not join stream {stream.stream_id}: {errors.strip()[-500:]}")
    finally:
        _stop(process)
        concat.unlink(missing_ok=True)
    meter.done += stream_bytes
    meter.report()
    return target.name


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _summary(plan: ExportPlan, checks: dict[str, str], containers: dict[str, str]) -> str:
    lines = [
        "Zhihui evidence package 证据包",
        "=" * 40,
        f"Exported by   {plan.requested_by}",
        f"Exported at   {_time(plan.requested_at)}",
        f"Selection     {plan.selection}",
        f"Streams       {len(plan.streams)}",
        "",
        "Every segment is included whole and unchanged; its SHA-256 below is the one its manifest",
        "entry records. SHA256SUMS lists every file of this package; check it with `sha256sum -c`.",
        "The manifests chain their entries by hash; `zhihui verify` checks a folder of them.",
        "",
    ]
    for stream in plan.streams:
        first = min((segment.started_at for segment in stream.segments), default=None)
        last = max((segment.ended_at for segment in stream.segments), default=None)
        lines += [
            f"Stream {stream.stream_id}",
            "-" * 40,
            f"  Officer     {stream.officer}",
            f"  Device      {stream.device}",
            f"  Codecs      video {stream.video_codec or '-'}, audio {stream.audio_codec or '-'}",
            f"  From        {_time(first)}",
            f"  To          {_time(last)}",
            f"  Playable    streams/{containers.get(stream.stream_id, '')}",
            f"  Archive     {checks.get(stream.stream_id, '')}",
            f"  Segments    {len(stream.segments)}",
        ]
        for segment in stream.segments:
            lines.append(
                f"    #{segment.sequence:05d}  {_time(segment.started_at)} .. {_time(segment.ended_at)}  "
                f"{segment.bytes:>10} B  sha256 {segment.sha256}"
                + ("  (sealed after a crash)" if segment.recovered else "")
            )
        lines.append(f"  Gaps        {len(stream.gaps) or 'none'}")
        for gap in stream.gaps:
            lines.append(f"    {_time(gap.started_at)} .. {_time(gap.ended_at)}  {gap.reason}")
        lines.append("")
    return "\n".join(lines)


def zip_package(folder: Path, target: Path) -> tuple[int, str]:
    """Zip a package (stored, not compressed: video does not shrink); its size and SHA-256."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, f"{folder.name}/{path.relative_to(folder).as_posix()}")
    digest = hashlib.sha256()
    with target.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return target.stat().st_size, digest.hexdigest()
