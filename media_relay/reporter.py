"""A relay run apart reports its events to the dispatch server over HTTP (R18).

The registry's outbox hands events over one at a time, in order; the reporter keeps them in a
bounded queue and posts them, still in order, to ``POST /api/relay/events``. While the dispatch
server cannot be reached it retries the oldest with growing waits, so the relay itself never waits
for it: publishing and viewing go on. Past the bound the oldest event is dropped, logged and counted,
never silently; the streams it was about are reported again, from their manifests, when the node
next starts (:class:`LiveStreamsFile`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

import httpx

from media_relay.events import AnyRelayEvent, RelayReport, RelayStarted, StreamDown, StreamUp

__all__ = ["SECRET_HEADER", "HttpReporter", "LiveStreamsFile"]

logger = logging.getLogger(__name__)

SECRET_HEADER = "X-Zhihui-Relay-Secret"
"""The header a relay proves itself with: the shared ``relay_node.secret``."""
FIRST_RETRY_SECONDS = 0.2


class LiveStreamsFile:
    """The streams of this node whose end the dispatch server may not have heard of, in a small JSON
    file: from the moment a stream goes up until its ``stream_down`` is delivered (after all its
    other reports, which go in order), and, once a report about it was dropped, until the next run.

    After a crash (or a stop with reports undelivered) the next run names them in ``relay_started``:
    the dispatch server ends those still live, and the node reports their manifests again.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._open: set[str] = set()
        self._damaged: set[str] = set()
        self._carried: set[str] = set()

    def take_previous(self) -> list[str]:
        """What the previous run left open. They stay in the file until :meth:`settled`: until
        their reports (``relay_started``, their manifests again) are delivered."""
        try:
            previous = [str(stream) for stream in json.loads(self.path.read_text())["live"]]
        except FileNotFoundError:
            previous = []
        except (OSError, ValueError, KeyError, TypeError) as error:
            logger.error("cannot read %s (%r): streams a crash left live are not ended", self.path, error)
            previous = []
        self._open.clear()
        self._damaged.clear()
        self._carried = set(previous)
        self._write()
        return previous

    def settled(self) -> None:
        """Everything queued so far was delivered: what the previous run left is made good."""
        if self._carried:
            self._carried.clear()
            self._write()

    def queued(self, event: AnyRelayEvent | RelayStarted) -> None:
        if isinstance(event, StreamUp) and event.stream_id not in self._open:
            self._open.add(event.stream_id)
            self._write()

    def delivered(self, event: AnyRelayEvent | RelayStarted) -> None:
        if isinstance(event, StreamDown) and event.stream_id in self._open - self._damaged:
            self._open.discard(event.stream_id)
            self._write()

    def dropped(self, event: AnyRelayEvent | RelayStarted) -> None:
        stream_id = getattr(event, "stream_id", "")
        if stream_id:
            self._damaged.add(stream_id)
            if stream_id not in self._open:
                self._open.add(stream_id)
                self._write()

    def _write(self) -> None:
        """Atomically (a new file renamed over the old one), and on the disk before it returns."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            new = self.path.with_name(self.path.name + ".new")
            with new.open("w") as file:
                json.dump({"live": sorted(self._open | self._carried)}, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(new, self.path)
        except OSError:
            logger.exception("cannot write %s: after a crash its streams may stay live", self.path)


class HttpReporter:
    """The relay's :data:`~media_relay.events.EventSink` when it runs apart from the dispatch server.

    ``start()`` queues :class:`RelayStarted` first, naming what the node's previous run left open
    (from ``live_file``), so that the dispatch server ends those streams before it hears of anything
    new; ``stop()`` tries to deliver what is left.
    """

    def __init__(
        self,
        *,
        dispatch_url: str,
        secret: str,
        node: str,
        live_file: LiveStreamsFile | None = None,
        max_pending: int = 10_000,
        retry_max_seconds: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._url = dispatch_url.rstrip("/") + "/api/relay/events"
        self._node = node
        self._live_file = live_file
        self._pending: collections.deque[AnyRelayEvent | RelayStarted] = collections.deque()
        self._max_pending = max_pending
        self._retry_max = retry_max_seconds
        self._client = httpx.AsyncClient(headers={SECRET_HEADER: secret}, timeout=10, transport=transport)
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0
        self.dropped = 0
        """Events given up: the oldest when the queue was full, and any the dispatch server refused
        as malformed (each logged)."""

    @property
    def pending(self) -> int:
        return len(self._pending)

    def start(self, replay: Callable[[list[str]], Iterable[AnyRelayEvent]] | None = None) -> list[str]:
        """Queue ``relay_started``, then what ``replay`` gives for the streams the previous run left
        open (their manifests), and start posting; return those streams."""
        left_live = self._live_file.take_previous() if self._live_file is not None else []
        self._enqueue(RelayStarted(at=datetime.now(UTC), left_live=left_live))
        if replay is not None and left_live:
            for event in replay(left_live):
                self._enqueue(event)
        self._task = asyncio.get_running_loop().create_task(self._run())
        return left_live

    async def __call__(self, event: AnyRelayEvent) -> None:
        self._enqueue(event)

    async def stop(self, timeout: float = 5.0) -> None:
        """Deliver what is waiting (for at most ``timeout`` seconds), then stop; log what is left."""
        if self._task is not None:
            if self._pending and not self._task.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._idle.wait(), timeout)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._pending:
            logger.error(
                "relay stopped with %d event(s) not delivered to %s (their streams are reported again "
                "when this node starts)",
                len(self._pending),
                self._url,
            )
        await self._client.aclose()

    def _enqueue(self, event: AnyRelayEvent | RelayStarted) -> None:
        if len(self._pending) >= self._max_pending:
            # The oldest goes, unless it is 'relay_started': the one that ends the crashed streams.
            first = self._pending.popleft()
            oldest = self._pending.popleft() if isinstance(first, RelayStarted) and self._pending else first
            if oldest is not first:
                self._pending.appendleft(first)
            self._dropped(oldest)
            logger.error(
                "relay event %s dropped: %d waiting for the dispatch server (%d dropped so far)",
                oldest.type,
                self._max_pending,
                self.dropped,
            )
        if self._live_file is not None:
            self._live_file.queued(event)  # on the disk before it can reach the dispatch server
        self._pending.append(event)
        self._idle.clear()
        self._wake.set()

    def _dropped(self, event: AnyRelayEvent | RelayStarted) -> None:
        self.dropped += 1
        if self._live_file is not None:
            self._live_file.dropped(event)

    async def _run(self) -> None:
        wait = FIRST_RETRY_SECONDS
        failing = False
        while True:
            if not self._pending:
                if self._live_file is not None:
                    self._live_file.settled()
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            event = self._pending[0]
            body = RelayReport(node=self._node, event=event).model_dump(mode="json")
            try:
                response = await self._client.post(self._url, json=body)
            except httpx.HTTPError as error:
                problem = f"cannot reach it: {error!r}"
            else:
                if response.is_success:
                    if self._pending and self._pending[0] is event:  # not dropped meanwhile
                        self._pending.popleft()
                    self.delivered += 1
                    if self._live_file is not None:
                        self._live_file.delivered(event)
                    if failing:
                        logger.warning("the dispatch server takes the relay's events again")
                    failing, wait = False, FIRST_RETRY_SECONDS
                    continue
                if response.status_code in (400, 413, 422):  # this event will never be taken
                    if self._pending and self._pending[0] is event:
                        self._pending.popleft()
                    self._dropped(event)
                    logger.error(
                        "the dispatch server refused relay event %s (%d): %s",
                        event.type,
                        response.status_code,
                        response.text[:500],
                    )
                    continue
                problem = f"it answered {response.status_code}: {response.text[:200]}"
            if not failing:
                logger.error(
                    "relay events wait: the dispatch server at %s does not take them (%s); retrying",
                    self._url,
                    problem,
                )
            failing = True
            await asyncio.sleep(wait)
            wait = min(wait * 2, self._retry_max)
