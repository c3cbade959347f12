"""A publisher: one WHIP peer connection whose tracks feed a live stream."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiortc import RTCRtpReceiver, RTCSessionDescription
from aiortc.sdp import SessionDescription

from media_relay import aiortc_compat
from media_relay.forwarding import _datapath
from media_relay.forwarding.frames import EncodedFrame, MediaKind
from media_relay.forwarding.reassembly import CodecInfo
from media_relay.sessions.peer import PeerSession
from media_relay.sessions.rtc import answer
from media_relay.sessions.stream import LiveStream
from zhihui.grants import PublishGrant
from zhihui.settings import RelaySettings

__all__ = ["PublisherSession", "negotiated_codecs"]

logger = logging.getLogger(__name__)


def negotiated_codecs(sdp: str) -> dict[MediaKind, dict[int, CodecInfo]]:
    """Per media kind, the payload types a local answer accepted, first (preferred) first."""
    codecs: dict[MediaKind, dict[int, CodecInfo]] = {}
    for media in SessionDescription.parse(sdp).media:
        if media.kind in ("audio", "video") and media.rtp.codecs and media.port != 0:
            codecs[MediaKind(media.kind)] = {
                codec.payloadType: CodecInfo(codec.name.lower(), codec.clockRate)
                for codec in media.rtp.codecs
                if codec.name.lower() != "rtx" and codec.payloadType is not None
            }
    return codecs


class PublisherSession(PeerSession[PublishGrant]):
    kind = "publisher"

    def __init__(
        self,
        *,
        grant: PublishGrant,
        settings: RelaySettings,
        on_closed: Callable[[PublisherSession], Awaitable[None]],
    ) -> None:
        super().__init__(grant=grant, settings=settings, on_closed=on_closed)
        self.stream: LiveStream | None = None
        self._video_receiver: RTCRtpReceiver | None = None
        self.ended_by_client = False
        self._retry_task: asyncio.Task[None] | None = None
        self._loss = asyncio.Event()
        self.codecs: dict[MediaKind, str] = {}
        self.tracks: dict[MediaKind, _datapath.Track] = {}
        """Per media kind, the track receiving it: frames, losses and counts (forwarding/_track.c)."""

    async def negotiate(self, offer_sdp: str) -> str:
        """Apply the publisher's offer and return the answer. Raises ValueError on a bad offer."""
        await self._pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        answer_sdp = await answer(self._pc, self._settings)
        payload_types = negotiated_codecs(answer_sdp)
        if not payload_types:
            raise ValueError("the offer has no audio or video the relay can receive")
        for transceiver in self._pc.getTransceivers():
            kind = MediaKind(transceiver.kind)
            if kind not in payload_types:
                continue
            video = kind is MediaKind.VIDEO
            track = _datapath.Track(
                video,
                {pt: (codec.name, codec.clock_rate) for pt, codec in payload_types[kind].items()},
                max_wait=(self._settings.max_wait_ms if video else 60) / 1000,
                keyframe_after=self._settings.keyframe_after_ms / 1000,
                nack=video,
                retry_interval=self._settings.nack_retry_ms / 1000,
                max_age=self._settings.max_wait_ms / 1000 + 0.2,
            )
            self.tracks[kind] = track
            aiortc_compat.install_receive_path(
                transceiver.receiver,
                track,
                deliver=self._deliver,
                request_keyframe=self._request_keyframe_for_stream,
                on_loss=self._loss.set if video else None,
            )
            aiortc_compat.tap_sender_reports(transceiver.receiver, self._sender_reporter(kind))
            if kind is MediaKind.VIDEO:
                self._video_receiver = transceiver.receiver
        self.codecs = {kind: next(iter(codecs.values())).name for kind, codecs in payload_types.items()}
        aiortc_compat.receive_directly(self._pc)
        self._retry_task = asyncio.ensure_future(self._retry_lost())
        return answer_sdp

    def bind(self, stream: LiveStream) -> None:
        self.stream = stream

    def _deliver(self, frame: EncodedFrame) -> None:
        if self.stream is not None:
            self.stream.fanouts[frame.kind].deliver(frame)

    def _sender_reporter(self, kind: MediaKind) -> Callable[[int, int], None]:
        """Hands the publisher's sender reports to the recorder, in its frames' timestamps, so
        that audio and video are placed on the publisher's own clock (A/V sync, R2)."""

        def on_report(ntp: int, rtp_timestamp: int) -> None:
            stream = self.stream
            timestamp = self.tracks[kind].frame_timestamp(rtp_timestamp)
            if stream is None or stream.recorder is None or timestamp is None:
                return
            offset = stream.fanouts[kind].offset
            stream.recorder.on_sender_report(kind, ntp, (timestamp + offset) % (1 << 32))

        return on_report

    def _request_keyframe_for_stream(self) -> None:
        if self.stream is not None:
            self.stream.keyframes.request()

    async def _retry_lost(self) -> None:
        """Ask again for video packets still lost, every retry interval, while any are."""
        track = self.tracks.get(MediaKind.VIDEO)
        if track is None:
            return
        interval = track.retry_interval / 2
        while not self._closed:
            await self._loss.wait()
            self._loss.clear()
            while track.outstanding and not self._closed:
                await asyncio.sleep(interval)
                due = track.due()
                if due and self._video_receiver is not None and track.ssrc is not None:
                    await aiortc_compat.send_nack(self._video_receiver, track.ssrc, due)

    async def request_keyframe(self) -> None:
        if self._video_receiver is not None and not self._closed:
            await aiortc_compat.request_keyframe(self._video_receiver)

    async def _release(self) -> None:
        if self._retry_task is not None:
            self._retry_task.cancel()
