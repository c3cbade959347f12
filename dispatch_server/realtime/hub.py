"""Who is connected, and waking their writers when the bus says there is something new."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

from dispatch_server.positions.schemas import PositionOut
from dispatch_server.realtime.bus import Bus, command_channel, person_channel
from dispatch_server.realtime.messages import PositionsMessage, ServerMessage

__all__ = ["Connection", "Hub"]


class Connection:
    """One signed-in websocket: the channels it reads and how far it has got (its cursor in the
    event log). The bus only wakes it; its writer reads the events from SQL. So a push lost on
    the way, a slow client or a reconnect loses nothing, and a connection never holds more than
    one page of events in memory.

    Positions are the exception: pushed, not logged, they wait here until the writer sends them,
    the newest per officer only, so a slow wall holds one per officer at most."""

    def __init__(self, person_id: int, watches_command: bool) -> None:
        self.person_id = person_id
        self.watches_command = watches_command
        self.channels: tuple[str, ...] = (person_channel(person_id),) + (
            (command_channel(),) if watches_command else ()
        )
        self.cursor = 0
        """The id of the last event sent (or skipped) on this connection."""
        self._wakeup = asyncio.Event()
        self._log_news = True
        """An event may be in the log past the cursor: the writer reads the log."""
        self._positions: dict[int, PositionOut] = {}
        self._unsubscribe: list[Callable[[], None]] = []

    def notify(self, message: ServerMessage) -> None:
        """Called by the bus: wake the writer unless it has already sent this event."""
        if isinstance(message, PositionsMessage):
            for position in message.positions:
                seen = self._positions.get(position.person_id)
                if seen is None or position.at >= seen.at:
                    self._positions[position.person_id] = position
            self._wakeup.set()
            return
        event_id = getattr(message, "event_id", None)
        if event_id is None or event_id > self.cursor:
            self._log_news = True
            self._wakeup.set()

    def begin_read(self, log: bool = True) -> None:
        """Before reading (the log too, with ``log``): from now on, a notification wakes the next
        :meth:`wait`."""
        self._wakeup.clear()
        if log:
            self._log_news = False

    def take_positions(self) -> list[PositionOut]:
        """The positions waiting to be sent, now taken."""
        positions, self._positions = list(self._positions.values()), {}
        return positions

    async def wait(self, timeout: float) -> bool:
        """Until notified (or ``timeout`` seconds, so that a push lost on the bus is late, not
        lost). True when the log is to be read: it has news, or the time is up."""
        try:
            await asyncio.wait_for(self._wakeup.wait(), timeout)
        except TimeoutError:
            return True
        return self._log_news


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
