"""Alembic's environment for Zhihui's database (run by Alembic, not imported).

The migrations run on a connection handed over in ``config.attributes["connection"]`` by
:mod:`dispatch_server.migrations` (``Database.start``, ``zhihui db``), which holds the schema lock.
Without one, an async engine is made from ``sqlalchemy.url`` (the async drivers Zhihui uses:
aiosqlite, asyncpg) and the migrations run through it. SQLite alters tables in batch mode (a copy
of the table), the only way it can change most of them.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from alembic import context
from sqlalchemy import Connection, TypeDecorator
from sqlalchemy.ext.asyncio import create_async_engine

from dispatch_server.db import load_models

config = context.config
target_metadata = load_models()


def render_item(kind: str, item: Any, _autogen_context: Any) -> str | Literal[False]:
    """Write a type of our own (``UtcDateTime``) as the SQLAlchemy type it stores as, so that a
    revision does not change when our code does."""
    if kind == "type" and isinstance(item, TypeDecorator):
        return f"sa.{item.impl!r}"
    return False


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_with_new_engine(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(run_migrations)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("Zhihui's migrations run on a database, not as SQL scripts (no --sql)")
handed_over: Connection | None = config.attributes.get("connection")
if handed_over is not None:
    run_migrations(handed_over)
else:
    asyncio.run(run_with_new_engine(config.get_main_option("sqlalchemy.url") or ""))
