"""A dispatch deployment under test: ``zhihui up`` on SQLite or PostgreSQL, signed-in people, a
websocket client and a look into its database."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import websockets
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import ApiClient
from tests.support import ZhihuiProcess


class Socket:
    """A client's ``/ws``: authenticate, then read messages by type."""

    def __init__(self, ws: Any, ready: dict[str, Any]) -> None:
        self.ws = ws
        self.ready = ready
        self.seen: list[dict[str, Any]] = []
        """Every message received after ``ready``, including those ``next`` skipped."""

    @classmethod
    async def open(
        cls, base_url: str, token: str, last_event_id: int | None = None, **kwargs: Any
    ) -> Socket:
        ws = await websockets.connect(base_url.replace("http", "ws") + "/ws", **kwargs)
        auth: dict[str, Any] = {"type": "auth", "token": token}
        if last_event_id is not None:
            auth["last_event_id"] = last_event_id
        await ws.send(json.dumps(auth))
        ready = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert ready["type"] == "ready", ready
        return cls(ws, ready)

    @property
    def last_event_id(self) -> int:
        """What a client would send on reconnect: the newest event id it has seen."""
        ids = [m["event_id"] for m in self.seen if m.get("event_id") is not None]
        return max([self.ready["last_event_id"], *ids])

    async def receive(self, timeout: float = 5) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.seen.append(message)
        return message

    async def next(
        self,
        kind: str,
        timeout: float = 5,
        until: Callable[[dict[str, Any]], bool] | None = None,
        **match: Any,
    ) -> dict[str, Any]:
        """The next message of this type (matching fields, and ``until``), skipping others."""

        async def find() -> dict[str, Any]:
            while True:
                message = await self.receive(timeout)
                if (
                    message["type"] == kind
                    and all(_get(message, k) == v for k, v in match.items())
                    and (until is None or until(message))
                ):
                    return message

        return await asyncio.wait_for(find(), timeout)

    async def drain(self, quiet: float = 0.5) -> list[dict[str, Any]]:
        """Everything that arrives until nothing has for ``quiet`` seconds."""
        got = []
        while True:
            try:
                got.append(await self.receive(quiet))
            except TimeoutError:
                return got

    async def close(self) -> None:
        await self.ws.close()


def _get(message: dict[str, Any], dotted: str) -> Any:
    value: Any = message
    for part in dotted.split("__"):
        value = value[part]
    return value


def target_state(directive: dict[str, Any], person_id: int) -> str:
    return str(next(t["state"] for t in directive["targets"] if t["person"]["id"] == person_id))


def async_url(database_url: str) -> str:
    for plain, driver in (("postgresql://", "postgresql+asyncpg://"), ("sqlite:///", "sqlite+aiosqlite:///")):
        if database_url.startswith(plain):
            return driver + database_url.removeprefix(plain)
    return database_url


async def query(database_url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """Rows from the deployment's own database (SQLite file or PostgreSQL), read directly."""
    engine = create_async_engine(async_url(database_url))
    try:
        async with engine.connect() as connection:
            return [tuple(row) for row in await connection.execute(text(sql), params)]
    finally:
        await engine.dispose()


@dataclass
class Deployment:
    """One or more ``zhihui up`` processes on one database, with the demo people signed in."""

    backend: str
    """``sqlite`` or ``postgresql``."""
    database_url: str
    processes: list[ZhihuiProcess]
    people: dict[str, ApiClient] = field(default_factory=dict)

    @property
    def zhihui(self) -> ZhihuiProcess:
        return self.processes[0]

    @property
    def base_url(self) -> str:
        return self.zhihui.base_url

    @property
    def commander(self) -> ApiClient:
        return self.people["commander"]

    @property
    def officer1(self) -> ApiClient:
        return self.people["officer1"]

    @property
    def officer2(self) -> ApiClient:
        return self.people["officer2"]

    def sign_in(self, credentials: dict[str, str], base_url: str | None = None) -> None:
        for username in ("commander", "officer1", "officer2"):
            self.people[username] = ApiClient(base_url or self.base_url, username, credentials[username])

    async def sql(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        return await query(self.database_url, sql, **params)

    def stop(self) -> None:
        for process in self.processes:
            process.stop()
