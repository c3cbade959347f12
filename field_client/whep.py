"""A WHEP client on aiortc: watch a relay stream. Used by tests, benchmarks and monitoring."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time

import av
import httpx
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from field_client.whip import WhipError, _detail
from media_relay import aiortc_compat

__all__ = ["WhepViewer"]


class WhepViewer:
    """Receives a stream and counts (and keeps the last of) its decoded frames."""

    def __init__(
        self,
        whep_url: str,
        grant: str,
        *,
        host_addresses: list[str] | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.whep_url = whep_url
        self._grant = grant
        self._host_addresses = host_addresses or []
        self._http = http or httpx.AsyncClient(timeout=15)
        self._owns_http = http is None
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.session_url: str | None = None
        self.frames = {"video": 0, "audio": 0}
        self.last_video_frame: av.VideoFrame | None = None
        self.video_arrivals: list[float] = []  # time.monotonic() of each decoded video frame
        self.first_video_frame = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

        @self.pc.on("track")
        def _on_track(track: MediaStreamTrack) -> None:
            self._tasks.append(asyncio.ensure_future(self._consume(track)))

    async def start(self) -> None:
        self.pc.addTransceiver("video", direction="recvonly")
        self.pc.addTransceiver("audio", direction="recvonly")
        aiortc_compat.restrict_host_addresses(self.pc, self._host_addresses)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        response = await self._http.post(
            self.whep_url,
            content=self.pc.localDescription.sdp,
            headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {self._grant}"},
        )
        if response.status_code != 201:
            raise WhipError(f"relay answered {response.status_code}: {_detail(response)}")
        self.session_url = str(httpx.URL(self.whep_url).join(response.headers["location"]))
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=response.text, type="answer"))

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
        if self.session_url is not None:
            with contextlib.suppress(httpx.HTTPError):
                await self._http.delete(self.session_url, headers={"Authorization": f"Bearer {self._grant}"})
            self.session_url = None
        await self.pc.close()
        for task in self._tasks:
            task.cancel()
        if self._owns_http:
            await self._http.aclose()
