"""R4, R18: database work that a disconnect cancels (a websocket's writer marking a directive
delivered as its officer goes offline) is finished or undone, never left holding its locks.

Without :func:`~dispatch_server.db.to_the_end`, about one cancellation in ten here left SQLite's
write lock with a connection that only the garbage collector closed, and every sign-in and
directive behind it waited. Real SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from sqlalchemy import text

from dispatch_server.db import Database, to_the_end
from tests.dispatch_server.conftest import BACKENDS, database_for
from tests.dispatch_server.deployment import async_url

ROUNDS = 150


async def _bump(database: Database) -> None:
    """Two writes with a read between: a transaction with several round trips to cancel inside."""
    async with database.sessions() as db_session:
        await db_session.execute(text("UPDATE counter SET value = value + 1 WHERE id = 1"))
        await db_session.execute(text("SELECT value FROM counter WHERE id = 1"))
        await db_session.execute(text("UPDATE counter SET value = value + 1 WHERE id = 1"))
        await db_session.commit()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_work_cancelled_halfway_ends_its_transaction(backend: str, tmp_path: Path) -> None:
    with database_for(backend, tmp_path) as url:
        database, other = Database(async_url(url)), Database(async_url(url))
        try:
            async with database.engine.begin() as connection:
                await connection.exec_driver_sql(
                    "CREATE TABLE counter (id INTEGER PRIMARY KEY, value INTEGER)"
                )
                await connection.exec_driver_sql("INSERT INTO counter VALUES (1, 0)")
            rng = random.Random(7)
            cancelled = 0
            for _ in range(ROUNDS):
                caller = asyncio.create_task(to_the_end(_bump(database)))
                await asyncio.sleep(rng.random() * 0.004)
                caller.cancel()
                try:
                    await caller
                except asyncio.CancelledError:
                    cancelled += 1
                # Another connection writes the same row at once: nothing holds it any more.
                async with other.engine.connect() as connection:
                    if backend == "postgresql":
                        await connection.exec_driver_sql("SET lock_timeout = '2s'")
                    else:
                        await connection.exec_driver_sql("PRAGMA busy_timeout = 2000")
                    await connection.exec_driver_sql("UPDATE counter SET value = value WHERE id = 1")
                    await connection.commit()
            async with other.engine.connect() as connection:
                value = await connection.scalar(text("SELECT value FROM counter WHERE id = 1"))
            # Each round's work ran whole, cancelled caller or not: two increments each.
            assert value == 2 * ROUNDS
            assert cancelled > ROUNDS // 4  # the cancellations did land mid-work
        finally:
            await database.stop()
            await other.stop()
