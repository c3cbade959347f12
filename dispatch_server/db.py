"""The database: one async engine per app, SQLite by default, PostgreSQL at scale."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, DateTime, TypeDecorator, event, inspect, text
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.schema import CreateColumn

__all__ = ["Base", "Database", "UtcDateTime", "utcnow"]

SCHEMA_LOCK_KEY = 0x5A48_4855_4901
"""PostgreSQL advisory lock held while the schema is created, so that several processes can
start at once on one database."""


def utcnow() -> datetime:
    return datetime.now(UTC)


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


class Database:
    """Owns the engine and the session factory; ``start`` creates the schema, ``stop`` disposes."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.engine: AsyncEngine = create_async_engine(url, pool_pre_ping=not url.startswith("sqlite"))
        if url.startswith("sqlite"):
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    async def start(self) -> None:
        """Create what is missing of the schema: new tables, and new columns that may be NULL or
        have a server default (there are no migrations yet)."""
        # Import every domain's models so their tables are known.
        from dispatch_server.alerts import models as _alerts  # noqa: F401
        from dispatch_server.archive import models as _archive  # noqa: F401
        from dispatch_server.audit import models as _audit  # noqa: F401
        from dispatch_server.audit.roles import warn_if_audit_writable
        from dispatch_server.audit.service import ensure_head
        from dispatch_server.auth import models as _auth  # noqa: F401
        from dispatch_server.devices import models as _devices  # noqa: F401
        from dispatch_server.directives import models as _directives  # noqa: F401
        from dispatch_server.duty import models as _duty  # noqa: F401
        from dispatch_server.field_ops import models as _field_ops  # noqa: F401
        from dispatch_server.people import models as _people  # noqa: F401
        from dispatch_server.positions import models as _positions  # noqa: F401
        from dispatch_server.realtime.eventlog import ensure_counter
        from dispatch_server.streams import models as _streams  # noqa: F401
        from dispatch_server.units import models as _units  # noqa: F401

        async with self.engine.begin() as connection:
            await _lock_schema(connection)
            await connection.run_sync(Base.metadata.create_all)
            await connection.run_sync(_add_missing_columns)
            await ensure_counter(connection)
            await ensure_head(connection)
            await warn_if_audit_writable(connection)

    async def stop(self) -> None:
        await self.engine.dispose()

    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session


def _add_missing_columns(connection: Connection) -> None:
    """Add the columns a model gained since its table was made (``create_all`` makes only new
    tables). Only additions, and only columns that may be NULL or have a server default, so that
    existing rows stay valid; anything else needs a real migration and is refused here."""
    inspector = inspect(connection)
    present_tables = set(inspector.get_table_names())
    for table in Base.metadata.sorted_tables:
        if table.name not in present_tables:
            continue
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            if not column.nullable and column.server_default is None:
                raise RuntimeError(
                    f"{table.name}.{column.name} is NOT NULL without a server default: migrate by hand"
                )
            spec = CreateColumn(column).compile(dialect=connection.dialect)
            connection.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {spec}"))


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


async def _lock_schema(connection: AsyncConnection) -> None:
    if connection.dialect.name == "postgresql":
        await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
