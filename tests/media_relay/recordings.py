"""Real encoded media for recorder tests: VP8 and Opus made with PyAV, fed to a StreamRecorder."""

from __future__ import annotations

import dataclasses
import fractions
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np

from media_relay.forwarding.frames import EncodedFrame, MediaKind
from media_relay.recording.recorder import StreamRecorder

FPS = 15
AUDIO_RATE = 48000
OPUS_SAMPLES = 960  # 20 ms


def vp8_frames(
    count: int, *, width: int = 320, height: int = 240, keyframe_every: int = FPS, seed: int = 7
) -> list[EncodedFrame]:
    """``count`` VP8 frames of moving noise at 15 fps, a keyframe every ``keyframe_every``."""
    options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    return _encoded_noise("libvpx", "vp8", options, count, width, height, keyframe_every, seed, 400_000)


def h264_frames(count: int, *, width: int = 320, height: int = 240, seed: int = 3) -> list[EncodedFrame]:
    """``count`` H.264 (Annex-B) frames of moving noise at 15 fps, a keyframe every second."""
    options = {"preset": "ultrafast", "tune": "zerolatency", "bf": "0"}
    return _encoded_noise("libx264", "h264", options, count, width, height, FPS, seed, None)


def _encoded_noise(
    encoder_name: str,
    codec: str,
    options: dict[str, str],
    count: int,
    width: int,
    height: int,
    keyframe_every: int,
    seed: int,
    bit_rate: int | None,
) -> list[EncodedFrame]:
    encoder = av.CodecContext.create(encoder_name, "w")
    assert isinstance(encoder, av.VideoCodecContext)
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base = fractions.Fraction(1, FPS)
    encoder.framerate = fractions.Fraction(FPS)
    encoder.gop_size = keyframe_every
    if bit_rate is not None:
        encoder.bit_rate = bit_rate
    encoder.options = options
    rng = np.random.default_rng(seed)
    packets: list[av.Packet] = []
    for index in range(count):
        image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = index
        if index % keyframe_every == 0:
            frame.pict_type = av.video.frame.PictureType.I
        packets.extend(encoder.encode(frame))
    packets.extend(encoder.encode(None))
    return [
        EncodedFrame(
            kind=MediaKind.VIDEO,
            codec=codec,
            data=bytes(packet),
            timestamp=index * 90000 // FPS,
            clock_rate=90000,
            keyframe=packet.is_keyframe,
            received_at=0.0,
        )
        for index, packet in enumerate(packets)
    ]


def opus_frames(seconds: float) -> list[EncodedFrame]:
    """Opus packets of a quiet tone, 20 ms each."""
    encoder = av.CodecContext.create("libopus", "w")
    assert isinstance(encoder, av.AudioCodecContext)
    encoder.sample_rate = AUDIO_RATE
    encoder.layout = "mono"
    encoder.format = "s16"
    encoder.bit_rate = 32000
    frames: list[EncodedFrame] = []
    for index in range(round(seconds * AUDIO_RATE / OPUS_SAMPLES)):
        t = (np.arange(OPUS_SAMPLES) + index * OPUS_SAMPLES) / AUDIO_RATE
        samples = (np.sin(2 * np.pi * 440 * t) * 3000).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = index * OPUS_SAMPLES
        for packet in encoder.encode(frame):
            frames.append(
                EncodedFrame(
                    kind=MediaKind.AUDIO,
                    codec="opus",
                    data=bytes(packet),
                    timestamp=len(frames) * OPUS_SAMPLES,
                    clock_rate=AUDIO_RATE,
                    keyframe=True,
                    received_at=0.0,
                )
            )
    return frames


def interleaved(video: list[EncodedFrame], audio: list[EncodedFrame]) -> list[EncodedFrame]:
    """Both kinds in media-time order, as a publisher would deliver them."""
    return sorted(video + audio, key=lambda frame: frame.timestamp / frame.clock_rate)


def record(root: Path, stream_id: str, frames: list[EncodedFrame]) -> StreamRecorder:
    """Record frames as one publisher session: a new segment at every video keyframe."""
    recorder = StreamRecorder(
        root=root,
        stream_id=stream_id,
        tracks={MediaKind.VIDEO: "vp8", MediaKind.AUDIO: "opus"},
        segment_seconds=0.0,
    )
    base = time.monotonic()
    for frame in frames:
        at = base + frame.timestamp / frame.clock_rate
        recorder.write(dataclasses.replace(frame, received_at=at))
    recorder.close()
    return recorder


def run_python(script: str, *args: str) -> str:
    """Run ``script`` in a Python process of its own, from the project's root (for a recorder under
    limits set on that process only, such as a file-size limit that plays a full disk); its stdout,
    once it has exited cleanly."""
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout
