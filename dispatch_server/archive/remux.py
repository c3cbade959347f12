"""ffmpeg, through ffmpeg-python, for the archive (DESIGN.md 8): segments concatenated and remuxed
into a container a browser plays, stream copy only (no transcoding).

VP8 (+ Opus) goes into WebM; H.264 into MP4, fragmented when it is streamed to a browser. The
binary is the system's ``ffmpeg`` when there is one, else the one in the ``imageio-ffmpeg`` wheel.
Processes start in a session of their own and are stopped with terminate, wait, kill.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
from collections.abc import AsyncIterator, Sequence
from functools import cache
from pathlib import Path

import anyio
import av
import ffmpeg

__all__ = [
    "MEDIA_TYPES",
    "Container",
    "concat_list",
    "container_for",
    "ffmpeg_exe",
    "remux_args",
    "segment_length",
    "stop_process",
    "stream_remux",
]

logger = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024
STOP_SECONDS = 5.0


class Container:
    WEBM = "webm"
    MP4 = "mp4"


MEDIA_TYPES = {Container.WEBM: "video/webm", Container.MP4: "video/mp4"}


@cache
def ffmpeg_exe() -> str:
    """The system's ffmpeg, else imageio-ffmpeg's."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


def container_for(video_codec: str | None) -> str:
    """WebM for VP8 (and audio only), MP4 for H.264."""
    return Container.MP4 if (video_codec or "").lower() == "h264" else Container.WEBM


def _quote(path: Path) -> str:
    return "'" + str(path.resolve()).replace("'", "'\\''") + "'"


def segment_length(path: Path) -> float | None:
    """Seconds from a segment's first to its last timestamp's end: its Matroska Duration, which the
    recorder writes as that length (see :mod:`media_relay.recording.matroska`;
    the segments keep the stream's clock, so they start later than zero). The concat demuxer is
    told it, so that it leaves no hole and no overlap between files."""
    try:
        with av.open(str(path)) as container:
            if container.duration is None:
                return None
            return max(0.0, container.duration / av.time_base)
    except (av.FFmpegError, OSError):
        return None


def concat_list(paths: Sequence[Path]) -> str:
    """An ffconcat file naming ``paths`` in order, each with its length."""
    lines = ["ffconcat version 1.0"]
    for path in paths:
        lines.append(f"file {_quote(path)}")
        length = segment_length(path)
        if length is not None:
            lines.append(f"duration {length:.6f}")
    return "\n".join(lines) + "\n"


def remux_args(
    concat_file: Path,
    output: str,
    container: str,
    *,
    start_seconds: float = 0.0,
    streaming: bool,
    progress: bool = False,
) -> list[str]:
    """The ffmpeg command: concat demuxer in, stream copy out. ``streaming`` makes an MP4 fragmented
    (it can be played while it is written, and needs no seeking back in the output)."""
    seek = {"ss": f"{start_seconds:.3f}"} if start_seconds > 0 else {}
    source = ffmpeg.input(str(concat_file), f="concat", safe=0, **seek)
    options: dict[str, object] = {"c": "copy", "f": container, "map": "0"}
    if container == Container.MP4:
        options["movflags"] = "frag_keyframe+empty_moov+default_base_moof" if streaming else "+faststart"
    if progress:
        options["progress"] = "pipe:1"
        options["nostats"] = None
    # Global options go first (ffmpeg-python would put them after the output, where ffmpeg ignores them).
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    args: list[str] = ffmpeg.output(source, output, **options).compile(cmd=command)
    return args


async def stop_process(process: asyncio.subprocess.Process) -> None:
    """terminate, wait, kill (Frigate's way); never hangs."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), STOP_SECONDS)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGKILL)
        await process.wait()


async def stream_remux(args: list[str], *, cleanup: Sequence[Path] = ()) -> AsyncIterator[bytes]:
    """Run ffmpeg writing to its stdout and yield what it writes. When the consumer stops early
    (the browser went away) ffmpeg is stopped; ``cleanup`` files are removed either way."""
    process = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    assert process.stdout is not None and process.stderr is not None
    errors = asyncio.get_running_loop().create_task(process.stderr.read(64 * 1024))
    try:
        while chunk := await process.stdout.read(CHUNK_BYTES):
            yield chunk
        code = await process.wait()
        if code != 0:
            logger.error("ffmpeg exited with %d: %s", code, (await errors).decode(errors="replace").strip())
    finally:
        # Shielded: when the client goes away the response is cancelled, and the stop must still run.
        with anyio.CancelScope(shield=True):
            await stop_process(process)
            errors.cancel()
            for path in cleanup:
                path.unlink(missing_ok=True)
