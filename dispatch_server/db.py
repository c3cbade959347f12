"""The database: one async engine per app, SQLite by default, PostgreSQL at scale."""

from __future__ import annotations

import asyncio
import importlib
import sqlite3
import time
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import DateTime, MetaData, TypeDecorator, event, text
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

__all__ = ["Base", "Database", "UnusableDatabase", "UtcDateTime", "load_models", "to_the_end", "utcnow"]

T = TypeVar("T")

SCHEMA_LOCK_KEY = 0x5A48_4855_4901
"""PostgreSQL advisory lock held while the schema is migrated, so that several processes can
start at once on one database."""


def utcnow() -> datetime:
    return datetime.now(UTC)


async def to_the_end(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work``, a unit of database work in a session of its own, to its end even if the
    caller is cancelled meanwhile; the cancellation is raised after it.

    Cancelled halfway through a statement, SQLAlchemy's asyncio adapter may give up the
    connection without ending its transaction, and on SQLite that connection keeps the one write
    lock until the garbage collector closes it: every other writer waits, for seconds or more (a
    websocket's writer, cancelled as its officer disconnected while it marked a directive
    delivered, kept sign-ins waiting past 15 s). So work that a disconnect can cancel runs here."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait({task})  # its transaction ends before the caller goes on ending
        raise


class UnusableDatabase(Exception):
    """The database cannot be used at all where the settings say it is (before any connection)."""


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


def load_models() -> MetaData:
    """Import every domain's models (``dispatch_server/<domain>/models.py``), so that the mappers
    and ``Base.metadata`` know every table; return that metadata."""
    for package in sorted(Path(__file__).parent.iterdir()):
        if (package / "models.py").is_file():
            importlib.import_module(f"dispatch_server.{package.name}.models")
    return Base.metadata


class Database:
    """Owns the engine and the session factory; ``start`` migrates the schema, ``stop`` disposes."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                folder = Path(path).parent
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                except OSError as error:
                    raise UnusableDatabase(
                        f"the folder {folder} for the SQLite database cannot be made: {error.strerror}"
                    ) from error
        self.engine: AsyncEngine = create_async_engine(url, pool_pre_ping=not url.startswith("sqlite"))
        if url.startswith("sqlite"):
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    async def start(self) -> None:
        """Bring the schema to the newest revision (:mod:`dispatch_server.migrations`; a database
        made before migrations is adopted or refused), then make the rows every database starts
        with. Raises :class:`~dispatch_server.migrations.SchemaError` for a database it will not
        migrate."""
        from dispatch_server import migrations
        from dispatch_server.audit.roles import warn_if_audit_writable
        from dispatch_server.audit.service import ensure_head
        from dispatch_server.realtime.eventlog import ensure_counter

        load_models()
        async with self.schema_locked() as connection:
            await connection.run_sync(migrations.upgrade)
            await ensure_counter(connection)
            await ensure_head(connection)
            await warn_if_audit_writable(connection)

    async def schema_revision(self) -> tuple[str | None, str]:
        """The database's revision (None: empty, or made before migrations) and this code's newest."""
        from dispatch_server import migrations

        async with self.engine.connect() as connection:
            return await connection.run_sync(migrations.current), migrations.head()

    @asynccontextmanager
    async def schema_locked(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction that holds the schema lock until it commits (on leaving
        the block) or rolls back (on an error): PostgreSQL's advisory lock, SQLite's write lock
        (``BEGIN IMMEDIATE``). On SQLite foreign keys are off inside, so that a migration may copy
        and drop a table without cascading (``migrations.upgrade`` checks them before the commit)."""
        async with self.engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:  # only outside a transaction does this pragma take effect
                await connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
                await connection.commit()
            try:
                async with connection.begin():
                    if sqlite:
                        await connection.exec_driver_sql("BEGIN IMMEDIATE")
                    else:
                        await connection.execute(
                            text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY}
                        )
                    yield connection
            finally:
                if sqlite:
                    await connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                    await connection.commit()

    async def stop(self) -> None:
        await self.engine.dispose()

    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session


SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long a writer waits for SQLite's one write lock. Every transaction that holds it is short,
but many writers take turns (requests, positions, alert rules, deliveries, audit records) and a
busy machine stretches each turn: 5 s was not always enough. (What once held the lock for far
longer was a cancelled transaction: see :func:`to_the_end`.)"""


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    _use_wal(cursor)
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _use_wal(cursor: Any) -> None:
    """Put the database file in WAL mode (it stays so). Switching takes an exclusive lock and
    SQLite answers "database is locked" at once, without the busy handler, when another
    connection switches at the same moment (processes starting together on a new file): so
    look first, and retry for as long as a writer would wait."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode")
            if cursor.fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
