"""Relay events leave one at a time, in the order they happened.

Streams going up, their health, their sealed segments and gaps, and streams going down are
reported by different tasks and threads; the dispatch server must see them in order (a stream's
health after it went up, its last segment before it went down) and one at a time, so that two
reports about one stream never race each other into SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from media_relay.events import AnyRelayEvent, EventSink

__all__ = ["EventOutbox"]

logger = logging.getLogger(__name__)

CAPACITY = 10_000
"""Events waiting at most. Past it an event is dropped and logged: the dispatch server rebuilds
the catalog from the manifests when it starts, and streams re-report their state."""


class EventOutbox:
    def __init__(self, sink: EventSink | None) -> None:
        self._sink = sink
        self._queue: asyncio.Queue[tuple[AnyRelayEvent, asyncio.Future[None] | None]] = asyncio.Queue(
            maxsize=CAPACITY
        )
        self._task: asyncio.Task[None] | None = None

    def post(self, event: AnyRelayEvent) -> asyncio.Future[None] | None:
        """Queue an event; the returned future is done once the sink has taken it."""
        if self._sink is None:
            return None
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run())
        done: asyncio.Future[None] = loop.create_future()
        try:
            self._queue.put_nowait((event, done))
        except asyncio.QueueFull:
            logger.error("relay event %s for %s dropped: %d waiting", event.type, event.stream_id, CAPACITY)
            done.set_result(None)
        return done

    async def send(self, event: AnyRelayEvent) -> None:
        """Queue an event and wait until the sink has taken it."""
        done = self.post(event)
        if done is not None:
            await done

    async def drain(self, timeout: float = 10) -> None:
        """Wait until every queued event has been delivered, then stop."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        assert self._sink is not None
        while True:
            event, done = await self._queue.get()
            try:
                await self._sink(event)
            except Exception:
                logger.exception("relay event %s for %s was not delivered", event.type, event.stream_id)
            finally:
                if done is not None and not done.done():
                    done.set_result(None)
                self._queue.task_done()
