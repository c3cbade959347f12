"""A viewer: one WHEP peer connection fed from a live stream's fanouts."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiortc import RTCRtpSender, RTCSessionDescription

from media_relay import aiortc_compat
from media_relay.forwarding.frames import MediaKind
from media_relay.forwarding.rtp_out import RtpForwarder
from media_relay.sessions.peer import PeerSession
from media_relay.sessions.rtc import answer
from media_relay.sessions.stream import LiveStream
from zhihui.grants import ViewGrant
from zhihui.settings import RelaySettings

__all__ = ["ViewerSession"]

logger = logging.getLogger(__name__)


class ViewerSession(PeerSession[ViewGrant]):
    kind = "viewer"

    def __init__(
        self,
        *,
        grant: ViewGrant,
        stream: LiveStream,
        settings: RelaySettings,
        on_closed: Callable[[ViewerSession], Awaitable[None]],
    ) -> None:
        super().__init__(grant=grant, settings=settings, on_closed=on_closed)
        self.stream = stream
        self.tracks: dict[MediaKind, RtpForwarder] = {}

    async def negotiate(self, offer_sdp: str) -> str:
        """Offer the stream's tracks in the publisher's codecs; return the answer.

        Raises ValueError when the offer is malformed or the viewer cannot take those codecs.
        """
        transceivers = {}
        for kind, codec in self.stream.codecs.items():
            transceiver = self._pc.addTransceiver(aiortc_compat.SilentTrack(kind.value), direction="sendonly")
            capabilities = RTCRtpSender.getCapabilities(kind.value)
            wanted = [c for c in capabilities.codecs if c.name.lower() == codec]
            rtx = [c for c in capabilities.codecs if c.name.lower() == "rtx"]
            transceiver.setCodecPreferences(wanted + rtx)
            transceivers[kind] = transceiver
        try:
            await self._pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except Exception as exc:
            raise ValueError(
                f"cannot serve this offer ({exc}); the stream is "
                + ", ".join(f"{k.value} {c}" for k, c in self.stream.codecs.items())
            ) from None
        answer_sdp = await answer(self._pc, self._settings)
        aiortc_compat.receive_directly(self._pc)  # its RTCP: reports, NACKs, PLIs
        request_keyframe = self.stream.keyframes.request
        for kind, transceiver in transceivers.items():
            try:
                output = aiortc_compat.SenderOutput(
                    transceiver,
                    on_nack=self._retransmitter(kind),
                    on_keyframe_request=request_keyframe,
                )
            except ValueError:  # the viewer's offer left this kind out
                continue
            forwarder = RtpForwarder(
                kind,
                output,
                on_keyframe_needed=request_keyframe,
                pending_frames=self._settings.viewer_queue_frames,
            )
            self.tracks[kind] = forwarder
            self.stream.fanouts[kind].attach(forwarder)
        self.stream.viewers.add(self)
        self.stream.keyframes.request()
        return answer_sdp

    def _retransmitter(self, kind: MediaKind) -> Callable[[list[int]], None]:
        def retransmit(sequence_numbers: list[int]) -> None:
            track = self.tracks.get(kind)
            if track is not None:
                track.retransmit(sequence_numbers)

        return retransmit

    async def sender_stats(self) -> dict[str, object]:
        """aiortc's statistics for this connection (RTT and loss from the viewer's reports)."""
        return dict(await self._pc.getStats())

    async def _release(self) -> None:
        for kind, track in self.tracks.items():
            self.stream.fanouts[kind].detach(track)
            track.stop()
        for transceiver in self._pc.getTransceivers():
            if transceiver.sender.track is not None:
                transceiver.sender.track.stop()
        self.stream.viewers.discard(self)
