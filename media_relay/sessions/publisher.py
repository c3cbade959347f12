"""A publisher: one WHIP peer connection whose tracks feed a live stream."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from aiortc import RTCRtpReceiver, RTCSessionDescription
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.sdp import SessionDescription

from media_relay import aiortc_compat
from media_relay.forwarding.frames import EncodedFrame, MediaKind, is_keyframe
from media_relay.sessions.rtc import answer, new_peer_connection
from media_relay.sessions.stream import LiveStream
from zhihui.grants import PublishGrant
from zhihui.settings import RelaySettings

__all__ = ["PublisherSession", "negotiated_codecs"]

logger = logging.getLogger(__name__)


def negotiated_codecs(sdp: str) -> dict[MediaKind, str]:
    """The codec each audio and video section of a local answer settled on."""
    codecs: dict[MediaKind, str] = {}
    for media in SessionDescription.parse(sdp).media:
        if media.kind in ("audio", "video") and media.rtp.codecs and media.port != 0:
            codecs[MediaKind(media.kind)] = media.rtp.codecs[0].name.lower()
    return codecs


class PublisherSession:
    def __init__(
        self,
        *,
        grant: PublishGrant,
        settings: RelaySettings,
        on_closed: Callable[[PublisherSession], Awaitable[None]],
    ) -> None:
        self.id = uuid.uuid4().hex
        self.grant = grant
        self.stream: LiveStream | None = None
        self._settings = settings
        self._on_closed = on_closed
        self._pc = new_peer_connection(settings)
        self._video_receiver: RTCRtpReceiver | None = None
        self._closed = False
        self._close_task: asyncio.Task[None] | None = None
        self.codecs: dict[MediaKind, str] = {}

        @self._pc.on("connectionstatechange")
        def _on_state() -> None:
            if self._pc.connectionState in ("failed", "closed") and self._close_task is None:
                self._close_task = asyncio.ensure_future(self.close())

    async def negotiate(self, offer_sdp: str) -> str:
        """Apply the publisher's offer and return the answer. Raises ValueError on a bad offer."""
        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        for transceiver in self._pc.getTransceivers():
            kind = MediaKind(transceiver.kind)
            aiortc_compat.tap_receiver(transceiver.receiver, self._frame_handler(kind))
            if kind is MediaKind.VIDEO:
                self._video_receiver = transceiver.receiver
        answer_sdp = await answer(self._pc, self._settings)
        self.codecs = negotiated_codecs(answer_sdp)
        if not self.codecs:
            raise ValueError("the offer has no audio or video the relay can receive")
        return answer_sdp

    def bind(self, stream: LiveStream) -> None:
        self.stream = stream

    def _frame_handler(self, kind: MediaKind) -> Callable[[RTCRtpCodecParameters, JitterFrame], None]:
        def on_frame(codec: RTCRtpCodecParameters, frame: JitterFrame) -> None:
            stream = self.stream
            if stream is None:
                return
            name = codec.name.lower()
            stream.fanouts[kind].deliver(
                EncodedFrame(
                    kind=kind,
                    codec=name,
                    data=frame.data,
                    timestamp=frame.timestamp,
                    clock_rate=codec.clockRate,
                    keyframe=is_keyframe(name, frame.data),
                    received_at=time.monotonic(),
                )
            )

        return on_frame

    async def request_keyframe(self) -> None:
        if self._video_receiver is not None and not self._closed:
            await aiortc_compat.request_keyframe(self._video_receiver)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._pc.close()
        try:
            await self._on_closed(self)
        except Exception:
            logger.exception("publisher session %s: close handler failed", self.id)
