"""The relay's live streams and sessions: the one object signaling talks to."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from media_relay.analysis.health import CheckBudget, HealthFlag, VideoHealthMonitor
from media_relay.analysis.loop import LoopLagMonitor
from media_relay.events import AnyRelayEvent, EventSink, StorageAlert, StreamDown, StreamHealth, StreamUp
from media_relay.forwarding.frames import MediaKind
from media_relay.recording.catalog import catalog_event
from media_relay.recording.recorder import EntryListener, StreamRecorder
from media_relay.recording.storage import StorageLevel, StorageWatch
from media_relay.sessions.outbox import EventOutbox
from media_relay.sessions.publisher import PublisherSession
from media_relay.sessions.stream import LiveStream, StreamState
from media_relay.sessions.viewer import ViewerSession
from zhihui.grants import PublishGrant, ViewGrant
from zhihui.settings import RecordingSettings, RelaySettings

__all__ = ["SessionNotFound", "StreamNotLive", "StreamRegistry"]

logger = logging.getLogger(__name__)


class StreamNotLive(LookupError):
    pass


class SessionNotFound(LookupError):
    pass


class StreamRegistry:
    def __init__(
        self, *, relay: RelaySettings, recording: RecordingSettings, events: EventSink | None = None
    ) -> None:
        self._relay = relay
        self._recording = recording
        self._events = events
        self.streams: dict[str, LiveStream] = {}
        self.publishers: dict[str, PublisherSession] = {}
        self.viewers: dict[str, ViewerSession] = {}
        self._recorded_here: set[str] = set()  # streams this relay process has recorded
        self._lock = asyncio.Lock()
        self._grace: dict[str, asyncio.Task[None]] = {}
        self.dropped: dict[str, PublisherSession] = {}
        """Publisher sessions whose connection closed while their stream waits for them: a DELETE
        may still come (clients that close the connection first, then DELETE, as whip-whep-js
        does), and ends the stream at once."""
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outbox = EventOutbox(events)
        self._storage: StorageWatch | None = None
        self._health_budget = CheckBudget(relay.health_checks_per_second)
        self.loop_lag = LoopLagMonitor()

    @property
    def recordings_root(self) -> Path:
        return self._recording.root

    # -- publishing ------------------------------------------------------------------------------

    async def publish(self, grant: PublishGrant, offer_sdp: str) -> tuple[PublisherSession, str]:
        self._loop = asyncio.get_running_loop()
        session = PublisherSession(grant=grant, settings=self._relay, on_closed=self._publisher_closed)
        try:
            answer_sdp = await session.negotiate(offer_sdp)
        except BaseException:
            await session.close()
            raise
        async with self._lock:
            stream = self.streams.get(grant.stream)
            if stream is not None and stream.codecs != session.codecs:
                ended, stream = stream, None  # a recording cannot change codec midway: start anew
            else:
                ended = None
            previous = stream.publisher if stream is not None else None
            if stream is None:
                stream = LiveStream(
                    stream_id=grant.stream,
                    officer_id=grant.sub,
                    officer_name=grant.name,
                    keyframe_interval=self._relay.keyframe_request_interval_ms / 1000,
                )
                stream.codecs = dict(session.codecs)
                stream.attach_recorder(
                    StreamRecorder(
                        root=self._recording.root,
                        stream_id=stream.stream_id,
                        tracks=stream.codecs,
                        segment_seconds=self._recording.segment_seconds,
                        fsync_seconds=self._recording.fsync_seconds,
                        gap_reason=(
                            "publisher reconnected"
                            if stream.stream_id in self._recorded_here
                            else "relay restart"
                        ),
                        on_entry=self._catalog_reporter(grant.sub),
                        on_write_error=self._write_error_reporter(grant.stream),
                    )
                )
                self._recorded_here.add(stream.stream_id)
                self.streams[stream.stream_id] = stream
                if MediaKind.VIDEO in stream.codecs:
                    stream.attach_health(
                        VideoHealthMonitor(
                            on_change=self._health_reporter(stream),
                            request_keyframe=stream.keyframes.request,
                            budget=self._health_budget,
                        )
                    )
                started = True
            else:
                self._cancel_grace(stream.stream_id)
                for fanout in stream.fanouts.values():
                    fanout.source_restarted()
                if stream.recorder is not None:
                    stream.recorder.resume("publisher reconnected")
                stream.state = StreamState.LIVE
                started = False
            stream.publisher = session
            session.bind(stream)
            self.publishers[session.id] = session
        if previous is not None:
            previous.stream = None
            await previous.close()
        if ended is not None:
            await self._end_stream(ended, reason="publisher reconnected with other codecs")
        if started:
            await self._emit(
                StreamUp(
                    stream_id=stream.stream_id,
                    officer_id=stream.officer_id,
                    started_at=stream.started_at,
                    video_codec=stream.codecs.get(MediaKind.VIDEO),
                    audio_codec=stream.codecs.get(MediaKind.AUDIO),
                )
            )
        return session, answer_sdp

    async def _publisher_closed(self, session: PublisherSession) -> None:
        """The publisher left or dropped: hold the stream for the grace period (R1, R2, R9)."""
        self.publishers.pop(session.id, None)
        stream = session.stream
        if stream is None or stream.publisher is not session:
            return
        stream.publisher = None
        if session.ended_by_client or self._stopping or self._relay.reconnect_grace_seconds <= 0:
            await self._end_stream(stream, reason="publisher left")
            return
        stream.state = StreamState.RECONNECTING
        if stream.recorder is not None:
            stream.recorder.pause()
        self.dropped[session.id] = session
        self._grace[stream.stream_id] = asyncio.get_running_loop().create_task(self._grace_expires(stream))

    async def _grace_expires(self, stream: LiveStream) -> None:
        await asyncio.sleep(self._relay.reconnect_grace_seconds)
        self._grace.pop(stream.stream_id, None)
        if stream.publisher is None:
            await self._end_stream(stream, reason="publisher left")

    def _cancel_grace(self, stream_id: str) -> None:
        task = self._grace.pop(stream_id, None)
        if task is not None:
            task.cancel()
        for session_id, session in list(self.dropped.items()):
            if session.grant.stream == stream_id:
                del self.dropped[session_id]

    async def _end_stream(self, stream: LiveStream, *, reason: str) -> None:
        self._cancel_grace(stream.stream_id)
        async with self._lock:
            if self.streams.get(stream.stream_id) is not stream:
                return
            del self.streams[stream.stream_id]
        stream.state = StreamState.ENDED
        stream.publisher = None
        stream.keyframes.stop()
        if stream.health is not None:
            await stream.health.stop()
        for fanout in stream.fanouts.values():
            fanout.end()
        if stream.recorder is not None:
            await stream.recorder.aclose()
        for viewer in tuple(stream.viewers):
            await viewer.close()
        await self._emit(
            StreamDown(
                stream_id=stream.stream_id,
                officer_id=stream.officer_id,
                ended_at=datetime.now(UTC),
                reason=reason,
            )
        )

    # -- viewing ---------------------------------------------------------------------------------

    async def view(self, grant: ViewGrant, stream_id: str, offer_sdp: str) -> tuple[ViewerSession, str]:
        stream = self.streams.get(stream_id)
        if stream is None:
            raise StreamNotLive(f"stream {stream_id!r} is not live")
        session = ViewerSession(
            grant=grant, stream=stream, settings=self._relay, on_closed=self._viewer_closed
        )
        try:
            answer_sdp = await session.negotiate(offer_sdp)
        except BaseException:
            await session.close()
            raise
        self.viewers[session.id] = session
        return session, answer_sdp

    async def _viewer_closed(self, session: ViewerSession) -> None:
        self.viewers.pop(session.id, None)

    # -- common ----------------------------------------------------------------------------------

    async def close_session(self, session_id: str) -> None:
        publisher = self.publishers.get(session_id)
        if publisher is not None:
            publisher.ended_by_client = True  # a deliberate end: no grace period
            await publisher.close()
            return
        dropped = self.dropped.pop(session_id, None)
        if dropped is not None:
            if dropped.stream is not None and dropped.stream.publisher is None:
                await self._end_stream(dropped.stream, reason="publisher left")
            return
        viewer = self.viewers.get(session_id)
        if viewer is None:
            raise SessionNotFound(f"no session {session_id!r}")
        await viewer.close()

    def start(self) -> None:
        """Start watching the archive's disk (an alert before it is full) and the event loop's lag."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.loop_lag.start()

        def changed(level: StorageLevel, free: int, total: int) -> None:
            message = f"recordings disk: {free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB" + (
                " — free space now, or recording will stop" if level is StorageLevel.LOW else ""
            )
            alert = StorageAlert(
                level=level.value, message=message, at=datetime.now(UTC), free_bytes=free, total_bytes=total
            )
            loop.call_soon_threadsafe(self._outbox.post, alert)

        if self._storage is None:
            self._storage = StorageWatch(
                self._recording.root,
                min_free_bytes=int(self._recording.min_free_gib * 2**30),
                on_change=changed,
            )
            self._storage.start()

    def _write_error_reporter(self, stream_id: str) -> Callable[[str], None]:
        def report(error: str) -> None:
            alert = StorageAlert(
                level=StorageLevel.WRITE_FAILED.value,
                message=f"recording of {stream_id} failed to write: {error}",
                at=datetime.now(UTC),
                stream_id=stream_id,
            )
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._outbox.post, alert)

        return report

    async def stop(self) -> None:
        """End every session and seal every recording."""
        self._stopping = True
        await self.loop_lag.stop()
        if self._storage is not None:
            await self._storage.stop()
            self._storage = None
        for stream_id in list(self._grace):
            self._cancel_grace(stream_id)
        for viewer in tuple(self.viewers.values()):
            await viewer.close()
        for publisher in tuple(self.publishers.values()):
            await publisher.close()
        for stream in tuple(self.streams.values()):
            await self._end_stream(stream, reason="relay stopped")
        await asyncio.sleep(0)  # the last segments' events: scheduled by the recorders just closed
        await self._outbox.drain()

    def _health_reporter(self, stream: LiveStream) -> Callable[[frozenset[HealthFlag]], Awaitable[None]]:
        async def report(flags: frozenset[HealthFlag]) -> None:
            logger.info("stream %s health: %s", stream.stream_id, ", ".join(sorted(flags)) or "ok")
            await self._emit(
                StreamHealth(
                    stream_id=stream.stream_id,
                    officer_id=stream.officer_id,
                    at=datetime.now(UTC),
                    flags=sorted(flags),
                )
            )

        return report

    def _catalog_reporter(self, officer_id: str) -> EntryListener:
        """Report each segment the recorder seals, and each gap it notes (R2), as a relay event."""

        def report(entry: dict[str, Any], entry_hash: str, directory: Path) -> None:
            event = catalog_event(
                entry,
                entry_hash=entry_hash,
                directory=directory,
                root=self._recording.root,
                officer_id=officer_id,
            )
            if event is not None and self._loop is not None:
                self._loop.call_soon_threadsafe(self._outbox.post, event)

        return report

    async def _emit(self, event: AnyRelayEvent) -> None:
        await self._outbox.send(event)
