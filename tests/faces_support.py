"""Pictures with a real face in them, for the redaction tests.

OpenCV's cascades find photographed faces, not drawn ones, so the face is scikit-image's
``astronaut.png`` (Eileen Collins, shipped in its wheel: nothing is downloaded), her head cut out
and laid on a brick wall, moving right by 2 pixels a picture. The brick wall is texture everywhere,
so "the rest of the picture keeps its detail" can be measured anywhere away from the face.
"""

from __future__ import annotations

import fractions
import importlib.resources

import av
import cv2
import numpy as np

from media_relay.forwarding.frames import EncodedFrame, MediaKind

FPS = 15
WIDTH, HEIGHT = 480, 360
HEAD_CROP = (110, 10, 200, 220)
"""x, y, width, height of the head in astronaut.png."""
FACE_IN_PHOTO = (177, 66, 95, 95)
"""Where her face (brows to chin) is in astronaut.png."""
HEAD_SCALE = 0.55
HEAD_AT = (60, 80)
"""Where the head is in the first picture; it moves right by :data:`STEP` a picture."""
STEP = 2
AWAY = (300, 250, 160, 90)
"""A stretch of wall the face never comes near."""


def _image(name: str) -> np.ndarray:
    path = importlib.resources.files("skimage") / "data" / name
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, f"scikit-image's {name} could not be read"
    return image


def _head() -> np.ndarray:
    x, y, w, h = HEAD_CROP
    crop = _image("astronaut.png")[y : y + h, x : x + w]
    return cv2.resize(crop, (round(w * HEAD_SCALE), round(h * HEAD_SCALE)), interpolation=cv2.INTER_AREA)


def face_box(index: int) -> tuple[int, int, int, int]:
    """Where the face is in picture ``index``."""
    fx, fy, fw, fh = FACE_IN_PHOTO
    cx, cy = HEAD_CROP[:2]
    return (
        HEAD_AT[0] + index * STEP + round((fx - cx) * HEAD_SCALE),
        HEAD_AT[1] + round((fy - cy) * HEAD_SCALE),
        round(fw * HEAD_SCALE),
        round(fh * HEAD_SCALE),
    )


def picture(index: int, *, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """Picture ``index`` (BGR): the head on a brick wall."""
    wall = cv2.resize(_image("brick.png"), (width, height), interpolation=cv2.INTER_AREA)
    head = _head()
    x, y = HEAD_AT[0] + index * STEP, HEAD_AT[1]
    wall[y : y + head.shape[0], x : x + head.shape[1]] = head
    return wall


def sharpness(image: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Variance of the Laplacian over a box: high for detail, near zero for a blur."""
    x, y, w, h = box
    gray = cv2.cvtColor(image[y : y + h, x : x + w], cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def vp8_face_frames(count: int, *, keyframe_every: int = FPS) -> list[EncodedFrame]:
    """``count`` VP8 frames of :func:`picture` at 15 fps, a keyframe every ``keyframe_every``."""
    encoder = av.CodecContext.create("libvpx", "w")
    assert isinstance(encoder, av.VideoCodecContext)
    encoder.width, encoder.height, encoder.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    encoder.time_base = fractions.Fraction(1, FPS)
    encoder.framerate = fractions.Fraction(FPS)
    encoder.gop_size = keyframe_every
    encoder.bit_rate = 1_500_000
    encoder.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    packets: list[av.Packet] = []
    for index in range(count):
        frame = av.VideoFrame.from_ndarray(picture(index), format="bgr24").reformat(format="yuv420p")
        frame.pts = index
        if index % keyframe_every == 0:
            frame.pict_type = av.video.frame.PictureType.I
        packets.extend(encoder.encode(frame))
    packets.extend(encoder.encode(None))
    return [
        EncodedFrame(
            kind=MediaKind.VIDEO,
            codec="vp8",
            data=bytes(packet),
            timestamp=index * 90000 // FPS,
            clock_rate=90000,
            keyframe=packet.is_keyframe,
            received_at=0.0,
        )
        for index, packet in enumerate(packets)
    ]


def decoded(path: object) -> list[np.ndarray]:
    """Every picture of a media file, as BGR arrays."""
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]
