"""A WHEP client on aiortc: watch a relay stream. Used by tests, benchmarks and monitoring."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time

import av
import httpx
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from field_client.whip import SignaledPeer

__all__ = ["WhepViewer"]


class WhepViewer(SignaledPeer):
    """Receives a stream and counts (and keeps the last of) its decoded frames."""

    def __init__(
        self,
        whep_url: str,
        grant: str,
        *,
        host_addresses: list[str] | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(whep_url, grant, host_addresses=host_addresses, http=http)
        self.frames = {"video": 0, "audio": 0}
        self.last_video_frame: av.VideoFrame | None = None
        self.video_arrivals: list[float] = []  # time.monotonic() of each decoded video frame
        self.first_video_frame = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

        @self.pc.on("track")
        def _on_track(track: MediaStreamTrack) -> None:
            self._tasks.append(asyncio.ensure_future(self._consume(track)))

    @property
    def whep_url(self) -> str:
        return self.url

    async def start(self) -> None:
        self.pc.addTransceiver("video", direction="recvonly")
        self.pc.addTransceiver("audio", direction="recvonly")
        await self._negotiate()

    async def _consume(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                self.frames[track.kind] += 1
                if isinstance(frame, av.VideoFrame):
                    self.video_arrivals.append(time.monotonic())
                    self.last_video_frame = frame
                    self.first_video_frame.set()

    def longest_freeze(self) -> float:
        """The longest wait between two decoded video frames, in seconds."""
        times = self.video_arrivals
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    async def stop(self) -> None:
        await super().stop()
        for task in self._tasks:
            task.cancel()
