"""Who is connected: each websocket's bounded outbox, fed from the bus."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

from dispatch_server.realtime.bus import Bus, command_channel, person_channel
from dispatch_server.realtime.messages import ServerMessage

__all__ = ["Connection", "Hub"]

OUTBOX_SIZE = 256


class Connection:
    """One signed-in websocket. If its outbox overflows it is closed: the client reconnects and
    re-reads what it missed from SQL, so a slow client never grows the server's memory."""

    def __init__(self, person_id: int, watches_command: bool) -> None:
        self.person_id = person_id
        self.watches_command = watches_command
        self.outbox: asyncio.Queue[ServerMessage | None] = asyncio.Queue(maxsize=OUTBOX_SIZE)
        self.overflowed = False
        self._unsubscribe: list[Callable[[], None]] = []

    def push(self, message: ServerMessage) -> None:
        if self.overflowed:
            return
        try:
            self.outbox.put_nowait(message)
        except asyncio.QueueFull:
            self.overflowed = True
            while not self.outbox.empty():
                self.outbox.get_nowait()
            self.outbox.put_nowait(None)


class Hub:
    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self._online: Counter[int] = Counter()

    def attach(self, connection: Connection) -> None:
        connection._unsubscribe.append(
            self._bus.subscribe(person_channel(connection.person_id), connection.push)
        )
        if connection.watches_command:
            connection._unsubscribe.append(self._bus.subscribe(command_channel(), connection.push))
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
