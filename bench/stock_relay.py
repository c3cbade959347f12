"""aiortc's stock relay, for comparison: every publisher decoded once, re-encoded for each viewer.

A FastAPI app on uvicorn with WHIP/WHEP-shaped endpoints, so that ``relay_load.py`` drives it
with the same peers as Zhihui's relay:

- ``POST /whip/{stream_id}`` (SDP offer) → 201, answer, ``Location: /session/<id>``;
- ``POST /whep/{stream_id}`` (recvonly offer) → 201, answer, ``Location: /session/<id>``;
- ``DELETE /session/{id}``; ``GET /streams``; ``GET /health``.

Bearer tokens are accepted and ignored. Each viewer gets ``MediaRelay.subscribe(track,
buffered=False)`` (only the newest decoded frame is kept per viewer: the stock default,
``buffered=True``, is an unbounded queue). Nothing is recorded: aiortc's ``MediaRecorder`` would
encode again on the event loop, so this relay is *cheaper* than a stock relay with recording.
ICE is on 127.0.0.1 only, with no STUN/TURN.

Run: ``python bench/stock_relay.py --port 8100`` (``relay_load.py`` starts it itself).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import uvicorn  # noqa: E402
from aiortc import (  # noqa: E402
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay  # noqa: E402
from aiortc.mediastreams import MediaStreamError  # noqa: E402
from fastapi import FastAPI, Request, Response  # noqa: E402

from media_relay import aiortc_compat  # noqa: E402

LOOPBACK = "127.0.0.1"


class StockRelay:
    def __init__(self) -> None:
        self.relay = MediaRelay()
        self.sources: dict[str, MediaStreamTrack] = {}
        self.source_ready: dict[str, asyncio.Event] = {}
        self.sessions: dict[str, tuple[str, RTCPeerConnection]] = {}
        self.viewers: dict[str, int] = {}
        self._drains: set[asyncio.Task[None]] = set()

    def _pc(self) -> RTCPeerConnection:
        return RTCPeerConnection(RTCConfiguration(iceServers=[]))

    async def _answer(self, pc: RTCPeerConnection) -> str:
        aiortc_compat.restrict_host_addresses(pc, [LOOPBACK])
        await pc.setLocalDescription(await pc.createAnswer())
        return str(pc.localDescription.sdp)

    def _ready(self, stream_id: str) -> asyncio.Event:
        return self.source_ready.setdefault(stream_id, asyncio.Event())

    async def publish(self, stream_id: str, offer: str) -> tuple[str, str]:
        pc = self._pc()
        session_id = uuid.uuid4().hex

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind != "video":
                return
            self.sources[stream_id] = track
            self._ready(stream_id).set()
            # Keep the source read when no viewer is there (its decoded frames queue up otherwise).
            task = asyncio.ensure_future(self._drain(self.relay.subscribe(track, buffered=False)))
            self._drains.add(task)
            task.add_done_callback(self._drains.discard)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self.close(session_id)

        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        answer = await self._answer(pc)
        self.sessions[session_id] = (stream_id, pc)
        return session_id, answer

    async def _drain(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()

    async def view(self, stream_id: str, offer: str) -> tuple[str, str]:
        event = self._ready(stream_id)
        await asyncio.wait_for(event.wait(), 10)
        pc = self._pc()
        session_id = uuid.uuid4().hex

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self.close(session_id)

        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        pc.addTrack(self.relay.subscribe(self.sources[stream_id], buffered=False))
        answer = await self._answer(pc)
        self.sessions[session_id] = (f"viewer:{stream_id}", pc)
        self.viewers[stream_id] = self.viewers.get(stream_id, 0) + 1
        return session_id, answer

    async def close(self, session_id: str) -> bool:
        entry = self.sessions.pop(session_id, None)
        if entry is None:
            return False
        name, pc = entry
        if name.startswith("viewer:"):
            stream_id = name.removeprefix("viewer:")
            self.viewers[stream_id] = max(0, self.viewers.get(stream_id, 1) - 1)
        else:
            self.sources.pop(name, None)
            self.source_ready.pop(name, None)
        await pc.close()
        return True


def create_app() -> FastAPI:
    relay = StockRelay()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        for session_id in list(relay.sessions):
            await relay.close(session_id)

    app = FastAPI(title="aiortc stock MediaRelay (benchmark)", lifespan=lifespan)

    def created(session_id: str, answer: str) -> Response:
        return Response(
            content=answer,
            status_code=201,
            media_type="application/sdp",
            headers={"Location": f"/session/{session_id}"},
        )

    @app.post("/whip/{stream_id}")
    async def whip(stream_id: str, request: Request) -> Response:
        session_id, answer = await relay.publish(stream_id, (await request.body()).decode())
        return created(session_id, answer)

    @app.post("/whep/{stream_id}")
    async def whep(stream_id: str, request: Request) -> Response:
        try:
            session_id, answer = await relay.view(stream_id, (await request.body()).decode())
        except TimeoutError:
            return Response(status_code=404)
        return created(session_id, answer)

    @app.delete("/session/{session_id}")
    async def end(session_id: str) -> Response:
        return Response(status_code=200 if await relay.close(session_id) else 404)

    @app.get("/streams")
    async def streams() -> list[dict[str, object]]:
        return [{"stream_id": s, "viewers": relay.viewers.get(s, 0)} for s in relay.sources]

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args()
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
