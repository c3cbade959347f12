"""What publisher and viewer sessions share: one peer connection, its end, and trickle ICE."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from media_relay.sessions.rtc import apply_trickle, new_peer_connection
from zhihui.grants import PublishGrant, ViewGrant
from zhihui.settings import RelaySettings

__all__ = ["PeerSession"]

logger = logging.getLogger(__name__)

G = TypeVar("G", PublishGrant, ViewGrant)


class PeerSession(Generic[G]):
    """A WHIP or WHEP session. It closes itself when its connection fails or closes; ``close``
    runs once, releases what the subclass holds (:meth:`_release`), then tells the registry."""

    kind = "peer"

    def __init__(
        self, *, grant: G, settings: RelaySettings, on_closed: Callable[[Any], Awaitable[None]]
    ) -> None:
        self.id = uuid.uuid4().hex
        self.grant: G = grant
        self._settings = settings
        self._on_closed = on_closed
        self._pc = new_peer_connection(settings)
        self._closed = False
        self._close_task: asyncio.Task[None] | None = None

        @self._pc.on("connectionstatechange")
        def _on_state() -> None:
            if self._pc.connectionState in ("failed", "closed") and self._close_task is None:
                self._close_task = asyncio.ensure_future(self.close())

    @property
    def closed(self) -> bool:
        return self._closed

    async def trickle(self, fragment: str) -> int:
        """Add the client's late ICE candidates (WHIP/WHEP PATCH)."""
        return await apply_trickle(self._pc, fragment)

    async def _release(self) -> None:
        """Let go of what the session holds, before its connection closes."""

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._release()
        await self._pc.close()
        try:
            await self._on_closed(self)
        except Exception:
            logger.exception("%s session %s: close handler failed", self.kind, self.id)
