"""How late the relay's event loop runs: every packet of every stream waits behind the work in front
of it, so this lag is added to the relay's latency and is the first sign of overload.

A task asks to wake every :attr:`LoopLagMonitor.INTERVAL` and notes how much later it woke. The
counts go into fixed buckets (cumulative, for Prometheus and for anyone who wants the figures over
a window: take two snapshots and subtract), and the last minute is kept for exact percentiles.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections import deque

from pydantic import BaseModel, Field

__all__ = ["BUCKETS_MS", "LoopLag", "LoopLagMonitor"]

BUCKETS_MS = (1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 50.0, 100.0, 200.0, 500.0, 1000.0)
"""Upper bounds of the lag buckets; a last, unbounded one follows."""


class LoopLag(BaseModel):
    interval_ms: float = Field(description="How often the loop is sampled.")
    recent_p50_ms: float | None = Field(description="Over the last minute.")
    recent_p99_ms: float | None
    recent_max_ms: float | None
    buckets_ms: list[float] = Field(description="Upper bounds of the cumulative buckets below.")
    counts: list[int] = Field(
        description="Samples at most each bound (one more count at the end: all samples), since start."
    )
    total_ms: float = Field(description="Sum of every sample's lag, since start.")


class LoopLagMonitor:
    INTERVAL = 0.02

    def __init__(self) -> None:
        self._recent: deque[float] = deque(maxlen=int(60 / self.INTERVAL))
        self._counts = [0] * (len(BUCKETS_MS) + 1)
        self._total = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def note(self, lag_ms: float) -> None:
        self._recent.append(lag_ms)
        self._counts[bisect.bisect_left(BUCKETS_MS, lag_ms)] += 1
        self._total += lag_ms

    def snapshot(self) -> LoopLag:
        recent = sorted(self._recent)

        def at(q: float) -> float | None:
            return round(recent[min(len(recent) - 1, int(q * len(recent)))], 2) if recent else None

        cumulative = []
        running = 0
        for count in self._counts:
            running += count
            cumulative.append(running)
        return LoopLag(
            interval_ms=self.INTERVAL * 1000,
            recent_p50_ms=at(0.5),
            recent_p99_ms=at(0.99),
            recent_max_ms=round(recent[-1], 2) if recent else None,
            buckets_ms=list(BUCKETS_MS),
            counts=cumulative,
            total_ms=round(self._total, 3),
        )

    async def _run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(self.INTERVAL)
            self.note(max(0.0, (time.perf_counter() - before - self.INTERVAL) * 1000))
