"""Who is connected, and waking their writers when the bus says there is something new."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable

from dispatch_server.realtime.bus import Bus, command_channel, person_channel
from dispatch_server.realtime.messages import ServerMessage

__all__ = ["Connection", "Hub"]


class Connection:
    """One signed-in websocket: the channels it reads and how far it has got (its cursor in the
    event log). The bus only wakes it; its writer reads the events from SQL. So a push lost on
    the way, a slow client or a reconnect loses nothing, and a connection never holds more than
    one page of events in memory."""

    def __init__(self, person_id: int, watches_command: bool) -> None:
        self.person_id = person_id
        self.watches_command = watches_command
        self.channels: tuple[str, ...] = (person_channel(person_id),) + (
            (command_channel(),) if watches_command else ()
        )
        self.cursor = 0
        """The id of the last event sent (or skipped) on this connection."""
        self._wakeup = asyncio.Event()
        self._unsubscribe: list[Callable[[], None]] = []

    def notify(self, message: ServerMessage) -> None:
        """Called by the bus: wake the writer unless it has already sent this event."""
        event_id = getattr(message, "event_id", None)
        if event_id is None or event_id > self.cursor:
            self._wakeup.set()

    def begin_read(self) -> None:
        """Before reading the log: from now on, a notification wakes the next :meth:`wait`."""
        self._wakeup.clear()

    async def wait(self, timeout: float) -> None:
        """Until notified (or ``timeout`` seconds, so that a push lost on the bus is late, not lost)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout)


class Hub:
    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._online: Counter[int] = Counter()

    def attach(self, connection: Connection) -> None:
        for channel in connection.channels:
            connection._unsubscribe.append(self._bus.subscribe(channel, connection.notify))
        self._online[connection.person_id] += 1

    def detach(self, connection: Connection) -> None:
        for unsubscribe in connection._unsubscribe:
            unsubscribe()
        connection._unsubscribe.clear()
        self._online[connection.person_id] -= 1
        if self._online[connection.person_id] <= 0:
            del self._online[connection.person_id]

    def is_online(self, person_id: int) -> bool:
        return self._online.get(person_id, 0) > 0
