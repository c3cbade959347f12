"""A stream's media clock (issue 4, A/V sync): one timeline for its audio and its video.

Each RTP stream counts time in ticks of its own clock (90 kHz video, 48 kHz Opus) from a random
start, so the two tracks' timestamps say nothing about each other. The sender's RTCP sender
reports (RFC 3550 6.4.1) pair, for each track, an RTP timestamp with the sender's wall clock (NTP)
at the same instant: through them both tracks land on the sender's one clock, and are in sync
however differently their packets travelled.

Until a track's first report arrives (browsers send one within the first second or two), its frames
are placed by their arrival, as before: the first frame's arrival plus the RTP time since. When the
first report comes, the timeline's origin is set so that this track's time does not jump; every
later report, of either track, maps onto the same origin, so the other track moves onto the common
clock too (a one-off step of the size of its arrival error, typically tens of milliseconds). A new
publisher session (:meth:`StreamClock.restart`) starts the mapping again, from arrival, so the
timeline keeps running across gaps.

Timestamps here only have to agree with the reports' RTP timestamps modulo 2**32: raw RTP
timestamps, or timestamps counted from a session's first frame, as long as both are counted the
same way. Differences are taken as signed 32-bit values, good for 6.6 hours at 90 kHz either side
of the last report.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from media_relay.forwarding.frames import MediaKind

__all__ = ["ClockSource", "SenderReport", "StreamClock", "ntp_seconds", "rtp_difference"]

NTP_FRACTION = 1 << 32


class ClockSource(enum.StrEnum):
    ARRIVAL = "arrival"
    """Placed by arrival: no sender report yet for this track in this session."""
    SENDER_REPORT = "sender-report"
    """Placed on the sender's clock through its RTCP sender reports."""


def ntp_seconds(ntp: int) -> float:
    """A 64-bit NTP timestamp (32.32 fixed point, as in a sender report) in seconds."""
    return ntp / NTP_FRACTION


def rtp_difference(later: int, earlier: int) -> int:
    """``later - earlier`` in RTP ticks, as a signed 32-bit difference (wrap-around safe)."""
    return (later - earlier + (1 << 31)) % (1 << 32) - (1 << 31)


@dataclass(frozen=True, slots=True)
class SenderReport:
    """One track's RTCP sender report: the sender's wall clock and the RTP time at one instant."""

    ntp: float
    """Seconds, on the sender's wall clock."""
    rtp_timestamp: int
    """The track's RTP time at that instant, counted as the frames' timestamps are."""


@dataclass(slots=True)
class _Track:
    report: SenderReport | None = None
    clock_rate: int | None = None
    arrival_at: float | None = None
    """Where the session's first frame arrived on the timeline, for placing by arrival."""
    last_timestamp: int = 0
    ticks: int = 0
    """Ticks from the first frame to the last one, counted past any wrap-around."""

    def ticks_to(self, timestamp: int) -> int:
        """Ticks from the session's first frame to ``timestamp`` (a frame at or after the last)."""
        return self.ticks + rtp_difference(timestamp, self.last_timestamp)


class StreamClock:
    """Maps a stream's frames to seconds on one timeline shared by its audio and video.

    ``epoch`` is the monotonic time that is 0 on the timeline (the recorder's start).
    """

    def __init__(self, epoch: float) -> None:
        self.epoch = epoch
        self._tracks: dict[MediaKind, _Track] = {}
        self._origin: float | None = None
        """Sender wall-clock seconds at timeline 0, once a report has set it."""

    def source(self, kind: MediaKind) -> ClockSource:
        track = self._tracks.get(kind)
        synced = track is not None and track.report is not None and self._origin is not None
        return ClockSource.SENDER_REPORT if synced else ClockSource.ARRIVAL

    def restart(self) -> None:
        """A new publisher session: new RTP clocks and new reports; the timeline goes on."""
        self._tracks.clear()
        self._origin = None

    def on_sender_report(self, kind: MediaKind, ntp: float, rtp_timestamp: int) -> None:
        """Note a sender report for ``kind``: ``ntp`` in seconds (see :func:`ntp_seconds`)."""
        track = self._tracks.setdefault(kind, _Track())
        report = SenderReport(ntp, rtp_timestamp)
        if track.clock_rate is None or track.arrival_at is None:
            track.report = report  # no frame yet: nothing to keep continuous
            return
        if self._origin is None:
            # The first report of the session: the timeline stays where arrival had this track.
            now = track.arrival_at + track.ticks_to(rtp_timestamp) / track.clock_rate
            self._origin = ntp - now
        track.report = report

    def media_time(self, kind: MediaKind, timestamp: int, clock_rate: int, received_at: float) -> float:
        """Seconds on the stream's timeline for a frame of ``kind``; ``received_at`` is its arrival
        (``time.monotonic()``), used until the track has a sender report."""
        track = self._tracks.get(kind)
        if track is None:
            track = self._tracks[kind] = _Track()
        track.clock_rate = clock_rate
        if track.arrival_at is None:
            track.arrival_at = received_at - self.epoch
            track.last_timestamp = timestamp
            if track.report is not None and self._origin is None:
                self.on_sender_report(kind, track.report.ntp, track.report.rtp_timestamp)
        track.ticks = track.ticks_to(timestamp)
        track.last_timestamp = timestamp
        if track.report is not None and self._origin is not None:
            offset = rtp_difference(timestamp, track.report.rtp_timestamp) / clock_rate
            return track.report.ntp + offset - self._origin
        return track.arrival_at + track.ticks / clock_rate
