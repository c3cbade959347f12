"""Load peers for ``relay_load.py``: paced pre-encoded publishers and counting viewers.

Runs in worker processes, never in the relay's. Nothing is encoded or decoded here:

- :class:`ClipTrack` sends the clip's VP8 packets as ``av.Packet`` objects, which aiortc's sender
  packetizes without encoding, paced at the clip's frame rate, looping, and honouring keyframe
  requests (PLI) by jumping to the clip's next keyframe, as a camera's encoder would answer them.
- :class:`CountingViewer` is a WHEP client whose receiver is tapped with
  ``media_relay.aiortc_compat.tap_receiver``: complete encoded frames are counted, never decoded.

Frame identity. Frame ``i`` of a publisher is sent with pts ``i * 6000 + BITS[i]`` (90 kHz): a
one-tick wobble (11 microseconds) following a fixed pseudo-random bit sequence. A relay that keeps
media timestamps (Zhihui's passthrough, and aiortc's decode/re-encode path alike) delivers RTP
timestamps ``unknown offset + pts``; the multiples of 6000 give each received frame's index
relative to the viewer's first frame, and the bit pattern pins that first frame's absolute index
(see :func:`match_frames`). The relay-added latency of a frame is then the viewer's arrival time of
its last RTP packet minus the publisher's send time of the same frame, both ``time.monotonic()`` on
this machine.
"""

from __future__ import annotations

import asyncio
import fractions
import multiprocessing.queues
import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import av
import httpx
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from field_client.whip import SignaledPeer, WhipError
from media_relay import aiortc_compat
from media_relay.forwarding import _datapath
from media_relay.forwarding.frames import EncodedFrame, MediaKind
from media_relay.sessions.publisher import negotiated_codecs

LOOPBACK = "127.0.0.1"
CLOCK_RATE = 90000
TICKS_PER_FRAME = 6000  # 90 kHz / 15 fps
PATTERN_SEED = 20240603
PATTERN_LENGTH = 200_000  # frames: 3.7 hours at 15 fps
_RNG = random.Random(PATTERN_SEED)
BITS = bytes(_RNG.getrandbits(1) for _ in range(PATTERN_LENGTH))
TIME_BASE = fractions.Fraction(1, CLOCK_RATE)


# -- the clip ------------------------------------------------------------------------------------


@dataclass
class Clip:
    frames: list[bytes]
    keyframes: list[bool]
    fps: float

    @classmethod
    def load(cls, path: str) -> Clip:
        """Demux (never decode) every video packet of the file into memory."""
        frames: list[bytes] = []
        keyframes: list[bool] = []
        with av.open(path) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or 15)
            for packet in container.demux(stream):
                if packet.size:
                    frames.append(bytes(packet))
                    keyframes.append(bool(packet.is_keyframe))
        if not frames or not keyframes[0]:
            raise ValueError(f"{path}: no video packets, or the first one is not a keyframe")
        return cls(frames=frames, keyframes=keyframes, fps=fps)

    def next_keyframe(self, position: int) -> int:
        for step in range(len(self.frames)):
            candidate = (position + step) % len(self.frames)
            if self.keyframes[candidate]:
                return candidate
        return 0


class ClipTrack(MediaStreamTrack):
    """A video track of the clip's encoded packets, paced in real time, looping forever."""

    kind = "video"

    def __init__(self, clip: Clip, *, honour_keyframe_requests: bool = True) -> None:
        super().__init__()
        self._clip = clip
        self._honour = honour_keyframe_requests
        self._index = 0
        self._position = 0
        self._start: float | None = None
        self._keyframe_wanted = False
        self.sent: list[float] = []
        """Send time (monotonic) of frame ``i``: when the sender got it to packetize and send."""
        self.keyframe_requests: list[float] = []

    def request_keyframe(self) -> None:
        self.keyframe_requests.append(time.monotonic())
        if self._honour:
            self._keyframe_wanted = True

    async def recv(self) -> av.Packet:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + self._index / self._clip.fps - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if self._keyframe_wanted:
            self._keyframe_wanted = False
            self._position = self._clip.next_keyframe(self._position)
        index = self._index % PATTERN_LENGTH
        packet = av.Packet(self._clip.frames[self._position])
        packet.pts = packet.dts = self._index * TICKS_PER_FRAME + BITS[index]
        packet.time_base = TIME_BASE
        packet.is_keyframe = self._clip.keyframes[self._position]
        self.sent.append(time.monotonic())
        self._index += 1
        self._position = (self._position + 1) % len(self._clip.frames)
        return packet


# -- peers ---------------------------------------------------------------------------------------


PeerError = WhipError
"""A relay refused a peer (or aiortc changed under the bench)."""


class Publisher(SignaledPeer):
    """A WHIP publisher of one :class:`ClipTrack`."""

    def __init__(self, http: httpx.AsyncClient, url: str, token: str, track: ClipTrack) -> None:
        super().__init__(url, token, host_addresses=[LOOPBACK], http=http)
        self.track = track

    async def start(self) -> None:
        transceiver = self.pc.addTransceiver(self.track, direction="sendonly")
        # aiortc's sender ignores a PLI when it sends av.Packets (it only sets an encoder flag):
        # hand the request to the track instead, which jumps to the clip's next keyframe.
        sender = transceiver.sender
        if not hasattr(sender, "_send_keyframe"):
            raise PeerError("aiortc's RTCRtpSender has no _send_keyframe: update bench/peers.py")
        sender._send_keyframe = self.track.request_keyframe  # type: ignore[method-assign]
        await self._negotiate()


class CountingViewer(SignaledPeer):
    """A WHEP viewer that records, per complete encoded frame, its RTP timestamp and arrival time.

    It receives as the relay does (``aiortc_compat.receive_directly`` and the relay's own
    track, ``_datapath.Track``, nothing decoded), so that 64 viewers on the same two cores as the
    relay cost less than aiortc's own receive path would. A frame is complete, and its arrival
    time is noted, when its last RTP packet (the marker) reaches the viewer.
    """

    def __init__(self, http: httpx.AsyncClient, url: str, token: str) -> None:
        super().__init__(url, token, host_addresses=[LOOPBACK], http=http)
        self.frames: list[tuple[int, float, float]] = []
        """Per complete frame: RTP timestamp (from the first frame's), arrival of its last packet,
        and the time it was counted (the same, now that frames are counted as they complete)."""
        self.first_frame = asyncio.Event()
        self.arrival_unknown = 0
        """Frames whose last packet's arrival was not noted (none, since frames are counted as
        their last packet arrives; kept for the benchmark line's key)."""

    async def start(self) -> None:
        transceiver = self.pc.addTransceiver("video", direction="recvonly")
        await self._negotiate()
        # Before the connection starts (it starts in a task scheduled by setRemoteDescription).
        codecs = negotiated_codecs(self.pc.remoteDescription.sdp).get(MediaKind.VIDEO)
        if not codecs:
            raise PeerError("the relay's answer has no video")
        receiver = transceiver.receiver
        pending: set[asyncio.Task[bool]] = set()

        def request_keyframe() -> None:
            # As a browser would after losing a frame: a PLI (the relay coalesces them).
            task = asyncio.ensure_future(aiortc_compat.request_keyframe(receiver))
            pending.add(task)
            task.add_done_callback(pending.discard)

        track = _datapath.Track(True, {pt: (c.name, c.clock_rate) for pt, c in codecs.items()}, nack=True)
        aiortc_compat.install_receive_path(
            receiver, track, deliver=self._on_frame, request_keyframe=request_keyframe
        )
        aiortc_compat.receive_directly(self.pc)

    def _on_frame(self, frame: EncodedFrame) -> None:
        self.frames.append((frame.timestamp, frame.received_at, time.monotonic()))
        self.first_frame.set()


# -- matching frames -----------------------------------------------------------------------------


def match_frames(frames: list[tuple[int, float, float]], sent: list[float]) -> tuple[list[int | None], str]:
    """The publisher frame index of each received ``(rtp_timestamp, arrival)``, or None.

    Multiples of 6000 ticks between a frame and the viewer's first give relative indices. The first
    frame's absolute index is the candidate (sent at most 10 s before it arrived, and not after)
    whose stretch of the bit pattern correlates best with the received one-tick wobbles; a
    passthrough relay keeps the wobbles exactly, aiortc's decode/re-encode path with a tick of
    rounding noise, which correlation tolerates. Returns the indices and a status: ``ok``,
    ``ambiguous`` (a runner-up scored over half the best) or ``unmatched``.
    """
    if not frames or not sent:
        return [None] * len(frames), "unmatched"
    ts0, first_arrival = frames[0][0], frames[0][1]
    relative: list[int | None] = []
    pairs: list[tuple[int, int]] = []
    for ts, *_ in frames:
        delta = (ts - ts0) % (1 << 32)
        rel = round(delta / TICKS_PER_FRAME)
        rest = delta - rel * TICKS_PER_FRAME
        if abs(rest) > TICKS_PER_FRAME // 60:
            relative.append(None)
            continue
        relative.append(rel)
        if len(pairs) < 400:
            pairs.append((rel, rest))
    if len(pairs) < 16:
        return [None] * len(frames), "unmatched"
    average = sum(rest for _, rest in pairs) / len(pairs)
    centred = [(rel, rest - average) for rel, rest in pairs]
    scores: list[tuple[float, int]] = []
    for start in range(len(sent)):
        if sent[start] > first_arrival:
            break  # a frame cannot arrive before it was sent
        if sent[start] < first_arrival - 10:
            continue
        score = 0.0
        for rel, rest in centred:
            i = start + rel
            if i < len(sent):
                score += rest * (BITS[i % PATTERN_LENGTH] - 0.5)
        scores.append((score, start))
    if not scores:
        return [None] * len(frames), "unmatched"
    scores.sort(reverse=True)
    best, start = scores[0]
    if best <= 0:
        return [None] * len(frames), "unmatched"
    status = "ok" if len(scores) == 1 or scores[1][0] < best / 2 else "ambiguous"
    return [None if rel is None else start + rel for rel in relative], status


# -- the worker process --------------------------------------------------------------------------


@dataclass
class WorkerSpec:
    worker: int
    clip_path: str
    publishers: list[dict[str, Any]]
    """Each: ``{"index", "whip_url", "whip_token", "whep_url", "whep_token"}``."""
    viewers_per_publisher: int
    honour_keyframe_requests: bool = True
    ready_timeout: float = 90.0
    extra: dict[str, Any] = field(default_factory=dict)


def worker_main(
    spec: WorkerSpec, commands: multiprocessing.queues.Queue[Any], results: multiprocessing.queues.Queue[Any]
) -> None:
    """Entry point of a load worker process: one asyncio loop for its publishers and viewers."""
    try:
        asyncio.run(_worker(spec, commands, results))
    except Exception as exc:  # report, then let the parent decide
        results.put(("error", spec.worker, f"{type(exc).__name__}: {exc}"))


async def _loop_lag(samples: list[tuple[float, float]], interval: float = 0.05) -> None:
    while True:
        before = time.monotonic()
        await asyncio.sleep(interval)
        after = time.monotonic()
        samples.append((after, max(0.0, after - before - interval)))


async def _probe(http: httpx.AsyncClient, entry: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """A fresh viewer joins: time from the offer POST to its first complete frame."""
    viewer = CountingViewer(http, entry["whep_url"], entry["whep_token"])
    created = time.monotonic()
    try:
        await viewer.start()
        await asyncio.wait_for(viewer.first_frame.wait(), timeout)
        assert viewer.posted_at is not None and viewer.answered_at is not None
        first_arrival = viewer.frames[0][1]
        result = {
            "publisher": entry["index"],
            "ttff_ms": (first_arrival - viewer.posted_at) * 1000,
            "answer_ms": (viewer.answered_at - viewer.posted_at) * 1000,
            "with_offer_ms": (first_arrival - created) * 1000,
        }
        await asyncio.sleep(0.5)
        return result
    except (TimeoutError, PeerError, httpx.HTTPError) as exc:
        return {"publisher": entry["index"], "error": f"{type(exc).__name__}: {exc}"}
    finally:
        await viewer.stop()


async def _churn(http: httpx.AsyncClient, entry: dict[str, Any], cycles: int) -> dict[str, Any]:
    """Viewers join, get their first frame, and leave, one after the other."""
    ok = 0
    failed: list[str] = []
    started = time.monotonic()
    for _ in range(cycles):
        viewer = CountingViewer(http, entry["whep_url"], entry["whep_token"])
        try:
            await viewer.start()
            await asyncio.wait_for(viewer.first_frame.wait(), 10)
            ok += 1
        except (TimeoutError, PeerError, httpx.HTTPError) as exc:
            failed.append(f"{type(exc).__name__}: {exc}")
        finally:
            await viewer.stop()
    return {"cycles": cycles, "ok": ok, "failed": failed[:5], "seconds": time.monotonic() - started}


async def _worker(
    spec: WorkerSpec, commands: multiprocessing.queues.Queue[Any], results: multiprocessing.queues.Queue[Any]
) -> None:
    loop = asyncio.get_running_loop()
    clip = Clip.load(spec.clip_path)
    lag: list[tuple[float, float]] = []
    lag_task = asyncio.ensure_future(_loop_lag(lag))
    errors: list[str] = []
    publishers: list[Publisher] = []
    viewers: list[tuple[int, CountingViewer]] = []
    limits = httpx.Limits(max_connections=8)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        for entry in spec.publishers:
            track = ClipTrack(clip, honour_keyframe_requests=spec.honour_keyframe_requests)
            publisher = Publisher(http, entry["whip_url"], entry["whip_token"], track)
            try:
                await publisher.start()
            except (PeerError, httpx.HTTPError) as exc:
                errors.append(f"publisher {entry['index']}: {type(exc).__name__}: {exc}")
            publishers.append(publisher)
        for entry in spec.publishers:
            for _ in range(spec.viewers_per_publisher):
                viewer = CountingViewer(http, entry["whep_url"], entry["whep_token"])
                try:
                    await viewer.start()
                except (PeerError, httpx.HTTPError) as exc:
                    errors.append(f"viewer of {entry['index']}: {type(exc).__name__}: {exc}")
                viewers.append((entry["index"], viewer))
        waiting = [v.first_frame.wait() for _, v in viewers]
        try:
            await asyncio.wait_for(asyncio.gather(*waiting), spec.ready_timeout)
        except TimeoutError:
            late = sum(1 for _, v in viewers if not v.first_frame.is_set())
            errors.append(f"{late} viewers had no frame after {spec.ready_timeout} s")
        results.put(("ready", spec.worker, {"errors": list(errors), "at": time.monotonic()}))

        by_index = {entry["index"]: entry for entry in spec.publishers}
        while True:
            command = await loop.run_in_executor(None, commands.get)
            if command[0] == "probe":
                results.put(("probe", spec.worker, await _probe(http, by_index[command[1]])))
            elif command[0] == "churn":
                results.put(("churn", spec.worker, await _churn(http, by_index[command[1]], command[2])))
            elif command[0] == "stop":
                break

        for _, viewer in viewers:
            await viewer.stop()
        for publisher in publishers:
            await publisher.stop()
    lag_task.cancel()
    results.put(
        (
            "result",
            spec.worker,
            {
                "publishers": [
                    {
                        "index": entry["index"],
                        "sent": p.track.sent,
                        "keyframe_requests": p.track.keyframe_requests,
                    }
                    for entry, p in zip(spec.publishers, publishers, strict=True)
                ],
                "viewers": [
                    {"publisher": index, "frames": v.frames, "arrival_unknown": v.arrival_unknown}
                    for index, v in viewers
                ],
                "loop_lag": lag,
                "errors": errors,
            },
        )
    )


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None
