"""The dispatch app in the test's own process, with a clock the test moves: for rules that run on
time (deadlines, escalation), which must not be tested by waiting. Real SQLite or PostgreSQL; the
HTTP goes through httpx's ASGI transport."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from dispatch_server.app import create_app
from dispatch_server.context import Context
from dispatch_server.escalation.scheduler import EscalationScheduler
from dispatch_server.people import service as people
from dispatch_server.people.models import Role
from dispatch_server.realtime.bus import command_channel
from dispatch_server.realtime.messages import ServerMessage
from dispatch_server.scheduling.clock import ManualClock
from tests.dispatch_server.deployment import async_url
from zhihui.settings import Settings


@dataclass
class Client:
    """A signed-in person talking to the in-process app."""

    id: int
    username: str
    http: httpx.AsyncClient


@dataclass
class InProcess:
    app: FastAPI
    clock: ManualClock
    commands: list[ServerMessage] = field(default_factory=list)
    """Every message pushed to the command room while it ran."""
    clients: list[Client] = field(default_factory=list)

    @property
    def context(self) -> Context:
        return self.app.state.context  # type: ignore[no-any-return]

    @property
    def scheduler(self) -> EscalationScheduler:
        return self.app.state.scheduler  # type: ignore[no-any-return]

    def http(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://zhihui.test", headers=headers
        )

    async def person(self, username: str, role: Role) -> Client:
        """The person (created if new), signed in."""
        async with self.context.db.sessions() as db_session:
            existing = [p for p in await people.list_people(db_session=db_session) if p.username == username]
            person = existing[0] if existing else None
            if person is None:
                person = await people.create(
                    db_session=db_session,
                    username=username,
                    display_name=username.title(),
                    role=role,
                    password="correct horse battery",
                )
                await db_session.commit()
        token, _ = self.context.tokens.issue(person.id, person.role)
        client = Client(person.id, username, self.http(token))
        self.clients.append(client)
        return client

    async def advance(self, seconds: float) -> None:
        """Move the clock, then wait until the scheduler has fired all that is due at the new time
        and sleeps again."""
        now = await self.clock.advance(seconds)
        await until(lambda: (idle := self.scheduler.idle_until) is not None and idle > now)

    def escalations(self) -> list[dict[str, Any]]:
        return [m.model_dump(mode="json") for m in self.commands if m.type == "escalation"]


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait (real time, briefly) for something the app does in the background."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 (the app changes nothing a test could wait on)
            await asyncio.sleep(0.01)


def settings_for(database_url: str, workdir: Path, **escalation: float) -> Settings:
    return Settings(
        data_dir=workdir / "var",
        database_url=database_url,
        recording={"root": workdir / "recordings"},  # type: ignore[arg-type]
        escalation=escalation,  # type: ignore[arg-type]
        auth={"jwt_secret": "in-process-test-secret-of-some-length"},  # type: ignore[arg-type]
    )


@contextlib.asynccontextmanager
async def in_process(
    database_url: str, workdir: Path, clock: ManualClock, **escalation: float
) -> AsyncIterator[InProcess]:
    """The app on this database (``sqlite:///`` or ``postgresql://``), started and stopped as
    ``zhihui up`` would, with ``clock`` for its time."""
    settings = settings_for(async_url(database_url), workdir, **escalation)
    app = create_app(settings, clock=clock)
    running = InProcess(app=app, clock=clock)
    unsubscribe = running.context.bus.subscribe(command_channel(), running.commands.append)
    try:
        async with app.router.lifespan_context(app):
            yield running
    finally:
        unsubscribe()
        for client in running.clients:
            await client.http.aclose()
