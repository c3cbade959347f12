"""What the relay can tell about its streams and viewers, as JSON and as Prometheus metrics."""

from __future__ import annotations

import asyncio
import contextlib

from aiortc.stats import RTCRemoteInboundRtpStreamStats
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.exposition import generate_latest
from pydantic import BaseModel, Field

from media_relay.analysis.loop import LoopLag
from media_relay.forwarding.frames import MediaKind
from media_relay.sessions.stream import LiveStream
from media_relay.sessions.viewer import ViewerSession

__all__ = ["RelayStats", "StreamStats", "TrackStats", "ViewerStats", "collect", "prometheus_text"]


class TrackStats(BaseModel):
    codec: str | None
    frames: int = Field(description="Frames received from the publisher.")
    bytes: int
    fps: float = Field(description="Frames per second over the last 3 s.")
    bitrate_bps: float = Field(description="Bits per second over the last 3 s.")


class ViewerStats(BaseModel):
    session_id: str
    frames_sent: int
    frames_dropped: int = Field(description="Dropped for this viewer only: it fell behind or joined mid-GOP.")
    overflows: int = Field(description="Times its bounded buffer overflowed.")
    rtt_ms: float | None = Field(description="Round-trip time from its receiver reports.")
    packets_lost: int | None = Field(description="Packets it reported lost.")


class StreamStats(BaseModel):
    stream_id: str
    officer_id: str
    officer_name: str
    state: str
    started_at: str
    viewer_count: int
    health: list[str] = Field(description="Video health flags (R8): frozen, black, covered, no_video.")
    video: TrackStats | None
    audio: TrackStats | None
    packets_lost: int = Field(
        description="Packets found missing from the current publisher session (recovered or not)."
    )
    packets_recovered: int
    nacks_sent: int
    holes_skipped: int = Field(description="Losses given up on; the video resumed at the next keyframe.")
    keyframe_requests: int = Field(description="Keyframe requests made (viewers joining, loss, recording).")
    plis_sent: int = Field(description="PLIs actually sent to the publisher after coalescing.")
    viewers: list[ViewerStats]


class RelayStats(BaseModel):
    streams: list[StreamStats]
    event_loop_lag: LoopLag | None = Field(
        None, description="How late the relay's event loop wakes: what every packet waits on top."
    )


async def _viewer_stats(viewer: ViewerSession) -> ViewerStats:
    rtt: float | None = None
    lost: int | None = None
    track = viewer.tracks.get(MediaKind.VIDEO) or next(iter(viewer.tracks.values()), None)
    with contextlib.suppress(ConnectionError, RuntimeError):
        for report in (await viewer.sender_stats()).values():
            if isinstance(report, RTCRemoteInboundRtpStreamStats) and report.kind == "video":
                if report.roundTripTime is not None:
                    rtt = round(report.roundTripTime * 1000, 1)
                lost = report.packetsLost
    return ViewerStats(
        session_id=viewer.id,
        frames_sent=track.frames_sent if track else 0,
        frames_dropped=track.frames_dropped if track else 0,
        overflows=track.overflows if track else 0,
        rtt_ms=rtt,
        packets_lost=lost,
    )


def _track(stream: LiveStream, kind: MediaKind) -> TrackStats | None:
    if kind not in stream.codecs:
        return None
    fanout = stream.fanouts[kind]
    fps, bps = fanout.rate.rates()
    return TrackStats(
        codec=stream.codecs[kind], frames=fanout.frames, bytes=fanout.bytes, fps=fps, bitrate_bps=bps
    )


async def collect(streams: list[LiveStream], loop_lag: LoopLag | None = None) -> RelayStats:
    out = []
    for stream in streams:
        publisher = stream.publisher
        video = publisher.tracks.get(MediaKind.VIDEO) if publisher else None
        viewers = await asyncio.gather(*(_viewer_stats(v) for v in list(stream.viewers)))
        out.append(
            StreamStats(
                stream_id=stream.stream_id,
                officer_id=stream.officer_id,
                officer_name=stream.officer_name,
                state=stream.state.value,
                started_at=stream.started_at.isoformat(),
                viewer_count=len(stream.viewers),
                health=sorted(stream.health.flags) if stream.health else [],
                video=_track(stream, MediaKind.VIDEO),
                audio=_track(stream, MediaKind.AUDIO),
                packets_lost=video.lost if video else 0,
                packets_recovered=video.recovered if video else 0,
                nacks_sent=video.nacks_sent if video else 0,
                holes_skipped=video.holes_skipped if video else 0,
                keyframe_requests=stream.keyframes.requested,
                plis_sent=stream.keyframes.sent,
                viewers=list(viewers),
            )
        )
    return RelayStats(streams=out, event_loop_lag=loop_lag)


def prometheus_text(stats: RelayStats) -> bytes:
    """The stats in Prometheus' text format (prometheus_client renders it)."""
    registry = CollectorRegistry(auto_describe=False)

    class _Snapshot:
        def collect(self):  # type: ignore[no-untyped-def]
            streams = GaugeMetricFamily("zhihui_relay_streams", "Live streams on this relay")
            streams.add_metric([], len(stats.streams))
            yield streams
            labels = ["stream", "officer"]
            viewers = GaugeMetricFamily("zhihui_relay_viewers", "Viewers per stream", labels=labels)
            fps = GaugeMetricFamily(
                "zhihui_relay_fps", "Frames per second received", labels=[*labels, "kind"]
            )
            bitrate = GaugeMetricFamily(
                "zhihui_relay_bitrate_bps", "Bits per second received", labels=[*labels, "kind"]
            )
            frames = CounterMetricFamily("zhihui_relay_frames", "Frames received", labels=[*labels, "kind"])
            lost = CounterMetricFamily(
                "zhihui_relay_packets_lost", "Packets missing from the publisher", labels=labels
            )
            nacks = CounterMetricFamily("zhihui_relay_nacks", "NACKs sent to the publisher", labels=labels)
            plis = CounterMetricFamily(
                "zhihui_relay_plis", "Keyframe requests sent to the publisher", labels=labels
            )
            dropped = CounterMetricFamily(
                "zhihui_relay_viewer_frames_dropped",
                "Frames dropped for one viewer",
                labels=[*labels, "viewer"],
            )
            rtt = GaugeMetricFamily(
                "zhihui_relay_viewer_rtt_seconds", "Viewer round-trip time", labels=[*labels, "viewer"]
            )
            for s in stats.streams:
                key = [s.stream_id, s.officer_id]
                viewers.add_metric(key, s.viewer_count)
                for kind, track in (("video", s.video), ("audio", s.audio)):
                    if track is not None:
                        fps.add_metric([*key, kind], track.fps)
                        bitrate.add_metric([*key, kind], track.bitrate_bps)
                        frames.add_metric([*key, kind], track.frames)
                lost.add_metric(key, s.packets_lost)
                nacks.add_metric(key, s.nacks_sent)
                plis.add_metric(key, s.plis_sent)
                for v in s.viewers:
                    dropped.add_metric([*key, v.session_id], v.frames_dropped)
                    if v.rtt_ms is not None:
                        rtt.add_metric([*key, v.session_id], v.rtt_ms / 1000)
            yield from (viewers, fps, bitrate, frames, lost, nacks, plis, dropped, rtt)
            lag = stats.event_loop_lag
            if lag is not None:
                bounds = [*(str(b / 1000) for b in lag.buckets_ms), "+Inf"]
                yield HistogramMetricFamily(
                    "zhihui_relay_event_loop_lag_seconds",
                    "How late the relay's event loop woke",
                    buckets=list(zip(bounds, lag.counts, strict=True)),
                    sum_value=lag.total_ms / 1000,
                )

    registry.register(_Snapshot())  # type: ignore[arg-type]
    return generate_latest(registry)
