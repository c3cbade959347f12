"""The bus pushes server messages to channels; the database stays the record (DESIGN.md 4).

Channels: ``person.<id>`` for one person's devices, ``command`` for the command room.
:class:`InProcessBus` serves one process; :class:`RedisBus` carries the same messages between
processes over Redis pub/sub. A message lost on the bus loses nothing: clients re-read SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Protocol

from dispatch_server.realtime.messages import ServerMessage, server_message

__all__ = ["Bus", "InProcessBus", "RedisBus", "Subscriber", "command_channel", "person_channel"]

logger = logging.getLogger(__name__)

Subscriber = Callable[[ServerMessage], None]

COMMAND_CHANNEL = "command"


def person_channel(person_id: int) -> str:
    return f"person.{person_id}"


def command_channel() -> str:
    return COMMAND_CHANNEL


class Bus(Protocol):
    kind: str
    """Either "in-process" or "redis"."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def publish(self, channel: str, message: ServerMessage) -> None: ...
    def subscribe(self, channel: str, subscriber: Subscriber) -> Callable[[], None]: ...
    async def reachable(self) -> bool: ...


class InProcessBus:
    kind = "in-process"

    def __init__(self) -> None:
        self._subscribers: dict[str, set[Subscriber]] = defaultdict(set)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self._subscribers.clear()

    async def publish(self, channel: str, message: ServerMessage) -> None:
        self._deliver(channel, message)

    async def reachable(self) -> bool:
        """Whether a message published now would reach the other processes."""
        return True

    def subscribe(self, channel: str, subscriber: Subscriber) -> Callable[[], None]:
        self._subscribers[channel].add(subscriber)

        def unsubscribe() -> None:
            subscribers = self._subscribers.get(channel)
            if subscribers is not None:
                subscribers.discard(subscriber)
                if not subscribers:
                    del self._subscribers[channel]

        return unsubscribe

    def _deliver(self, channel: str, message: ServerMessage) -> None:
        for subscriber in tuple(self._subscribers.get(channel, ())):
            try:
                subscriber(message)
            except Exception:
                logger.exception("bus subscriber on %s failed", channel)


class RedisBus(InProcessBus):
    """Publishes through Redis; every process delivers what arrives to its own subscribers.

    Redis channels are named ``<prefix>bus:<channel>``; deployments sharing one Redis use different
    prefixes (setting ``redis_prefix``).
    """

    kind = "redis"

    def __init__(self, url: str, prefix: str = "zhihui:") -> None:
        super().__init__()
        import redis.asyncio as redis

        self._prefix = f"{prefix}bus:"
        self._redis = redis.from_url(url)
        self._pubsub = self._redis.pubsub()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._pubsub.psubscribe(self._prefix + "*")
        self._task = asyncio.create_task(self._listen())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._pubsub.aclose()
        await self._redis.aclose()
        await super().stop()

    async def publish(self, channel: str, message: ServerMessage) -> None:
        try:
            await self._redis.publish(self._prefix + channel, message.model_dump_json())
        except Exception:
            # The message is in SQL already: its readers find it on their next poll of the log.
            logger.exception("redis bus: publish on %s failed; the push will be late", channel)

    async def reachable(self) -> bool:
        try:
            async with asyncio.timeout(2):
                return bool(await self._redis.ping())
        except Exception:
            return False

    async def _listen(self) -> None:
        while True:
            try:
                item = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("redis bus: receive failed; retrying")
                await asyncio.sleep(1)
                continue
            if item is None or item.get("type") != "pmessage":
                continue
            channel = item["channel"].decode().removeprefix(self._prefix)
            try:
                message = server_message.validate_json(item["data"])
            except ValueError:
                logger.warning("redis bus: dropped a malformed message on %s", channel)
                continue
            self._deliver(channel, message)
