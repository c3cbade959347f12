"""Face redaction (issue 4): a derived copy of recorded segments with every face found blurred.

The one place in the archive that transcodes, because the result is a new work and not evidence:
the segments are decoded with PyAV, each picture is searched for faces with OpenCV's shipped Haar
cascades (frontal, and profile both ways: the profile cascade only knows faces turned one way, so
it also runs on the mirrored picture), the faces are pixelated and blurred, and the pictures are
encoded again (VP8 into WebM, or H.264 into MP4, after the source's codec). Audio is copied as it
was recorded. The segments are only read.

A face the detector misses on one picture is still covered when it was found within the last
:data:`HOLD_SECONDS`, and each box is grown by :data:`MARGIN` on every side: a detector flickers,
and a redaction that leaks a face for a frame has failed.
"""

from __future__ import annotations

import fractions
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import av
import cv2
import numpy as np

from dispatch_server.archive.remux import Container, container_for, segment_length

__all__ = [
    "CASCADES",
    "Box",
    "FaceDetector",
    "RedactionCancelled",
    "RedactionResult",
    "SourceSegment",
    "blur_boxes",
    "redact_segments",
]

CASCADES = ("haarcascade_frontalface_default.xml", "haarcascade_profileface.xml")
DETECT_WIDTH = 480
"""Pictures wider than this are searched at this width (boxes are scaled back). The search costs
about 0.1 to 0.2 s of one core per picture at this width; halving it costs a face's smallest size
doubling."""
MIN_FACE = 24
"""The smallest face searched for, in pixels of the searched picture: 64 pixels of a 1280-wide one."""
HOLD_SECONDS = 0.5
MARGIN = 0.3
PIXEL_BLOCKS = 8
"""A face is reduced to about this many blocks across before it is blurred."""
OUTPUT_TIME_BASE = fractions.Fraction(1, 1000)
SLACK = timedelta(milliseconds=1)
"""Matroska keeps times to the millisecond: a picture that far outside a range's end is inside."""
GOP_SECONDS = 2

Box = tuple[int, int, int, int]
"""x, y, width, height in pixels."""
Progress = Callable[[float], None]


class RedactionCancelled(Exception):
    pass


@dataclass(frozen=True, slots=True)
class SourceSegment:
    """A sealed segment to read, as its manifest entry (and the catalog) describe it."""

    sequence: int
    path: Path
    sha256: str
    started_at: datetime
    """Wall-clock time of its first frame."""
    media_start: float
    """Its first frame's time on the stream's media clock, in seconds."""
    video_frames: int


@dataclass(frozen=True, slots=True)
class RedactionResult:
    container: str
    """webm or mp4."""
    video_codec: str
    width: int
    height: int
    frames: int
    """Pictures written."""
    frames_with_faces: int
    """Pictures in which at least one area was blurred."""
    detections: int
    """Faces found, over all pictures (a face seen in 10 pictures counts 10)."""
    audio_packets: int
    seconds: float
    """From the first picture written to the last."""


class FaceDetector:
    """OpenCV's shipped frontal and profile face cascades; no model is downloaded."""

    def __init__(self, *, detect_width: int = DETECT_WIDTH, min_face: int = MIN_FACE) -> None:
        folder = Path(cv2.data.haarcascades)  # type: ignore[attr-defined]
        self._cascades = []
        for name in CASCADES:
            cascade = cv2.CascadeClassifier(str(folder / name))
            if cascade.empty():
                raise RuntimeError(f"OpenCV's face cascade {name} is not installed in {folder}")
            self._cascades.append(cascade)
        self.detect_width = detect_width
        self.min_face = min_face

    def detect(self, image: np.ndarray) -> list[Box]:
        """Faces in a BGR picture: frontal, and profile turned either way."""
        height, width = image.shape[:2]
        scale = min(1.0, self.detect_width / width)
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        if scale < 1.0:
            gray = cv2.resize(
                gray, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA
            )
        gray = cv2.equalizeHist(gray)
        frontal, profile = self._cascades
        side = self.min_face
        found = _detect(frontal, gray, side) + _detect(profile, gray, side)
        mirrored = cv2.flip(gray, 1)
        found += [(gray.shape[1] - x - w, y, w, h) for x, y, w, h in _detect(profile, mirrored, side)]
        return [
            (round(x / scale), round(y / scale), round(w / scale), round(h / scale)) for x, y, w, h in found
        ]


def _detect(cascade: cv2.CascadeClassifier, gray: np.ndarray, side: int) -> list[Box]:
    # minNeighbors 3: a false alarm blurs a patch of wall, a miss shows a face; err towards the wall.
    boxes = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=3, minSize=(side, side))
    return [(int(x), int(y), int(w), int(h)) for x, y, w, h in boxes]


def blur_boxes(image: np.ndarray, boxes: Sequence[Box], *, margin: float = MARGIN) -> np.ndarray:
    """Pixelate then blur each box (grown by ``margin``) of a BGR picture, in place; returns it.
    Pixelating first throws the detail away: a Gaussian blur alone can be partly undone."""
    height, width = image.shape[:2]
    for x, y, w, h in boxes:
        grow_x, grow_y = round(w * margin), round(h * margin)
        x0, y0 = max(0, x - grow_x), max(0, y - grow_y)
        x1, y1 = min(width, x + w + grow_x), min(height, y + h + grow_y)
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        region = image[y0:y1, x0:x1]
        block = max(2, max(x1 - x0, y1 - y0) // PIXEL_BLOCKS)
        small = cv2.resize(
            region,
            (max(1, (x1 - x0) // block), max(1, (y1 - y0) // block)),
            interpolation=cv2.INTER_AREA,
        )
        coarse = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
        kernel = max(3, (block * 2) | 1)
        image[y0:y1, x0:x1] = cv2.GaussianBlur(coarse, (kernel, kernel), 0)
    return image


class _Held:
    """Boxes found in the last ``hold`` seconds (wall clock)."""

    def __init__(self, hold: float) -> None:
        self.hold = hold
        self._seen: deque[tuple[float, list[Box]]] = deque()

    def add(self, at: float, boxes: list[Box]) -> list[Box]:
        if boxes:
            self._seen.append((at, boxes))
        while self._seen and at - self._seen[0][0] > self.hold:
            self._seen.popleft()
        return [box for _, seen in self._seen for box in seen]


class _Writer:
    """The output file, opened at the first picture (its size is the output's size)."""

    def __init__(
        self,
        target: Path,
        container: str,
        bit_rate: int,
        first: av.VideoFrame,
        audio: av.stream.Stream | None,
    ) -> None:
        self.container_name = container
        self.codec = "vp8" if container == Container.WEBM else "h264"
        self.width, self.height = first.width - first.width % 2, first.height - first.height % 2
        self.output = av.open(str(target), "w", format=container)
        encoder = "libvpx" if self.codec == "vp8" else "libx264"
        video = self.output.add_stream(encoder, rate=30)
        assert isinstance(video, av.VideoStream)
        video.width, video.height, video.pix_fmt = self.width, self.height, "yuv420p"
        video.time_base = OUTPUT_TIME_BASE
        video.codec_context.time_base = OUTPUT_TIME_BASE
        video.codec_context.gop_size = 30 * GOP_SECONDS
        if self.codec == "vp8":
            video.bit_rate = bit_rate
            video.options = {"deadline": "good", "cpu-used": "5", "auto-alt-ref": "0"}
        else:
            video.options = {"preset": "veryfast", "crf": "21"}
        self.video = video
        self.audio = self.output.add_stream_from_template(audio) if audio is not None else None
        self.last_pts = -1
        self.last_audio_pts = -1
        self.frames = 0
        self.audio_packets = 0

    def picture(self, image: np.ndarray, seconds: float) -> None:
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        if (frame.width, frame.height) != (self.width, self.height):
            frame = frame.reformat(width=self.width, height=self.height)
        frame = frame.reformat(format="yuv420p")
        pts = max(self.last_pts + 1, round(seconds / OUTPUT_TIME_BASE))
        frame.pts, frame.time_base = pts, OUTPUT_TIME_BASE
        self.last_pts = pts
        for packet in self.video.encode(frame):
            self.output.mux(packet)
        self.frames += 1

    def sound(self, packet: av.Packet, seconds: float) -> None:
        """An audio packet, ``seconds`` after the first picture; one that would not come after the
        last one written (segments of two sessions can overlap by a few milliseconds) is left out."""
        if self.audio is None or packet.time_base is None or seconds < 0:
            return
        pts = round(seconds / packet.time_base)
        if pts <= self.last_audio_pts:
            return
        packet.pts = packet.dts = self.last_audio_pts = pts
        packet.stream = self.audio
        self.output.mux(packet)
        self.audio_packets += 1

    def close(self) -> None:
        for packet in self.video.encode(None):
            self.output.mux(packet)
        self.output.close()


def _wall(segment: SourceSegment, media_seconds: float) -> datetime:
    return segment.started_at + timedelta(seconds=media_seconds - segment.media_start)


def redact_segments(
    segments: Sequence[SourceSegment],
    target: Path,
    *,
    video_codec: str | None,
    since: datetime | None = None,
    until: datetime | None = None,
    detector: FaceDetector | None = None,
    progress: Progress | None = None,
    cancelled: threading.Event | None = None,
) -> RedactionResult:
    """Write ``target`` (a WebM for VP8 sources, an MP4 for H.264): the segments' pictures between
    ``since`` and ``until`` (wall clock; unbounded when None) with faces blurred, and their audio.
    Raises ValueError when the window holds no picture; ``target`` is then not left behind."""
    detector = detector or FaceDetector()
    container = container_for(video_codec)
    total = max(1, sum(segment.video_frames for segment in segments))
    # The source's own rate (its audio included, which is small), within reason.
    seconds = sum(segment_length(segment.path) or 0.0 for segment in segments) or 1.0
    bit_rate = int(min(8e6, max(4e5, 8 * sum(s.path.stat().st_size for s in segments) / seconds)))
    held = _Held(HOLD_SECONDS)
    writer: _Writer | None = None
    origin: datetime | None = None
    """The wall-clock time of the first picture written. Pictures and sound are placed by their wall
    clock time from there: a segment's media time may start again at 0 (a new recorder)."""
    last_seconds = 0.0
    decoded = 0
    with_faces = 0
    detections = 0
    try:
        for segment in segments:
            with av.open(str(segment.path)) as source:
                video_in = next(iter(source.streams.video), None)
                audio_in = next(iter(source.streams.audio), None)
                if video_in is None:
                    continue
                for packet in source.demux(*(s for s in (video_in, audio_in) if s is not None)):
                    if cancelled is not None and cancelled.is_set():
                        raise RedactionCancelled("the redaction was cancelled")
                    if packet.pts is None or packet.time_base is None:
                        continue
                    at = float(packet.pts * packet.time_base)
                    wall = _wall(segment, at)
                    inside = (since is None or wall >= since - SLACK) and (
                        until is None or wall <= until + SLACK
                    )
                    if packet.stream.type == "audio":
                        if writer is not None and inside:
                            assert origin is not None
                            writer.sound(packet, (wall - origin).total_seconds())
                        continue
                    for frame in packet.decode():
                        assert isinstance(frame, av.VideoFrame)
                        decoded += 1
                        if progress is not None and decoded % 5 == 0:
                            progress(min(0.99, decoded / total))
                        if not inside:
                            continue
                        image = frame.to_ndarray(format="bgr24")
                        found = detector.detect(image)
                        detections += len(found)
                        boxes = held.add(wall.timestamp(), found)
                        if boxes:
                            with_faces += 1
                            blur_boxes(image, boxes)
                        if writer is None:
                            writer = _Writer(target, container, bit_rate, frame, audio_in)
                            origin = wall
                        assert origin is not None
                        last_seconds = (wall - origin).total_seconds()
                        writer.picture(image, last_seconds)
        if writer is None:
            raise ValueError("no picture was recorded in the chosen time range")
        writer.close()
    except BaseException:
        if writer is not None:
            try:
                writer.output.close()
            except Exception:  # the file is removed anyway
                pass
        target.unlink(missing_ok=True)
        raise
    if progress is not None:
        progress(1.0)
    return RedactionResult(
        container=container,
        video_codec=writer.codec,
        width=writer.width,
        height=writer.height,
        frames=writer.frames,
        frames_with_faces=with_faces,
        detections=detections,
        audio_packets=writer.audio_packets,
        seconds=round(last_seconds, 3),
    )
