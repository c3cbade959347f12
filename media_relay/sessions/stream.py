"""A live stream: one publisher's tracks, fanned out to viewers and to the recorder."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from media_relay.analysis.health import VideoHealthMonitor
from media_relay.forwarding.fanout import TrackFanout
from media_relay.forwarding.frames import MediaKind
from media_relay.forwarding.keyframes import KeyframeRequester
from media_relay.recording.recorder import StreamRecorder

if TYPE_CHECKING:
    from media_relay.sessions.publisher import PublisherSession
    from media_relay.sessions.viewer import ViewerSession

__all__ = ["LiveStream", "StreamState"]


class StreamState(enum.StrEnum):
    LIVE = "live"
    RECONNECTING = "reconnecting"
    """The publisher dropped; viewers and the recording wait for it to come back."""
    ENDED = "ended"


class LiveStream:
    def __init__(
        self, *, stream_id: str, officer_id: str, officer_name: str, keyframe_interval: float
    ) -> None:
        self.stream_id = stream_id
        self.officer_id = officer_id
        self.officer_name = officer_name
        self.started_at = datetime.now(UTC)
        self.state = StreamState.LIVE
        self.fanouts = {kind: TrackFanout(kind) for kind in MediaKind}
        self.codecs: dict[MediaKind, str] = {}
        self.publisher: PublisherSession | None = None
        self.viewers: set[ViewerSession] = set()
        self.recorder: StreamRecorder | None = None
        self.health: VideoHealthMonitor | None = None
        self.keyframes = KeyframeRequester(self._request_keyframe, keyframe_interval)

    async def _request_keyframe(self) -> None:
        if self.publisher is not None:
            await self.publisher.request_keyframe()

    def attach_recorder(self, recorder: StreamRecorder) -> None:
        self.recorder = recorder
        for fanout in self.fanouts.values():
            fanout.add_sink(recorder.write)

    def attach_health(self, monitor: VideoHealthMonitor) -> None:
        self.health = monitor
        self.fanouts[MediaKind.VIDEO].add_sink(monitor)
        monitor.start()

    def describe(self) -> dict[str, object]:
        return {
            "stream_id": self.stream_id,
            "officer_id": self.officer_id,
            "officer_name": self.officer_name,
            "started_at": self.started_at.isoformat(),
            "state": self.state.value,
            "video_codec": self.codecs.get(MediaKind.VIDEO),
            "audio_codec": self.codecs.get(MediaKind.AUDIO),
            "viewers": len(self.viewers),
            "frames": {kind.value: fanout.frames for kind, fanout in self.fanouts.items()},
            "recording": None if self.recorder is None else str(self.recorder.directory),
            "health": sorted(self.health.flags) if self.health else [],
        }
