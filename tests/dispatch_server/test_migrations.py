"""The schema is made and changed by Alembic migrations (issue 5), on SQLite and PostgreSQL: from an
empty database they make exactly what the models describe (a model changed without a migration
fails here), triggers included (R17's audit log, R10's duty log); they go down to nothing and up
again; a database made before migrations is adopted when it is what the first migration makes, and
refused, untouched, when it is not; processes starting together on one database take turns (R18).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, text

from dispatch_server import migrations
from dispatch_server.audit import service as audit
from dispatch_server.audit.models import AuditAction, Outcome
from dispatch_server.audit.roles import grant_app_role
from dispatch_server.db import Database, load_models
from dispatch_server.migrations import SchemaError
from tests.dispatch_server.conftest import BACKENDS, database_for
from tests.dispatch_server.deployment import async_url
from tests.support import _postgres_admin, _run_async, postgres_database, run_zhihui, start_zhihui

TRIGGERS = {
    "sqlite": {
        "audit_event.audit_event_no_update",
        "audit_event.audit_event_no_delete",
        "duty_log_entry.duty_log_entry_no_update",
        "duty_log_entry.duty_log_entry_no_delete",
    },
    "postgresql": {
        "audit_event.audit_event_append_only",
        "audit_event.audit_event_no_truncate",
        "duty_log_entry.duty_log_entry_append_only",
    },
}
ACTOR = audit.Actor(person_id=None, name="local", role="admin", source="127.0.0.1")


@contextlib.asynccontextmanager
async def _database(backend: str, workdir: Path) -> AsyncIterator[Database]:
    """A new, empty database of this backend."""
    with database_for(backend, workdir) as url:
        database = Database(async_url(url))
        try:
            yield database
        finally:
            await database.stop()


def _model_differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    return compare_metadata(context, load_models())


async def _schema(database: Database) -> tuple[list[Any], set[str], set[str]]:
    """What the models have that the database lacks (or the other way round), its triggers, its
    tables."""
    async with database.engine.connect() as connection:
        differences = await connection.run_sync(_model_differences)
        triggers = await connection.run_sync(migrations.triggers)
        tables = await connection.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    return differences, triggers, tables


async def _assert_append_only(database: Database) -> None:
    await audit.record_committed(
        database=database, action=AuditAction.ARCHIVE_PLAY, outcome=Outcome.SUCCESS, actor=ACTOR
    )
    statements = ["UPDATE audit_event SET outcome = 'denied'", "DELETE FROM audit_event"]
    if database.dialect == "postgresql":
        statements.append("TRUNCATE audit_event")
    for statement in statements:
        async with database.engine.begin() as connection:
            with pytest.raises(Exception, match="append-only"):
                await connection.execute(text(statement))


async def _made_before_migrations(database: Database) -> None:
    """What ``create_all`` made before there were migrations: the first revision's schema without
    Alembic's version table, and a row in it."""
    async with database.schema_locked() as connection:
        await connection.run_sync(migrations.upgrade, migrations.BASELINE)
        await connection.execute(text("DROP TABLE alembic_version"))
        await connection.execute(
            text("INSERT INTO unit (name, created_at) VALUES ('一队', :at)"), {"at": datetime.now(UTC)}
        )


@pytest.mark.parametrize("backend", BACKENDS)
async def test_an_empty_database_gets_exactly_the_schema_of_the_models(backend: str, workdir: Path) -> None:
    async with _database(backend, workdir) as database:
        assert await database.schema_revision() == (None, migrations.head())
        await database.start()
        assert await database.schema_revision() == (migrations.head(), migrations.head())
        differences, triggers, _ = await _schema(database)
        assert differences == [], "a model changed without a migration: `zhihui db revision -m ...`"
        assert triggers == TRIGGERS[backend]
        await _assert_append_only(database)
        await database.start()  # again: nothing to do
        assert await database.schema_revision() == (migrations.head(), migrations.head())


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_migrations_go_down_to_nothing_and_up_again(backend: str, workdir: Path) -> None:
    async with _database(backend, workdir) as database:
        await database.start()
        async with database.schema_locked() as connection:
            await connection.run_sync(migrations.downgrade, "base")
        differences, triggers, tables = await _schema(database)
        assert (tables, triggers) == ({"alembic_version"}, set())
        if backend == "postgresql":
            async with database.engine.connect() as connection:
                functions = await connection.scalars(
                    text("SELECT proname FROM pg_proc WHERE proname LIKE '%append_only'")
                )
                assert list(functions) == []

        await database.start()
        differences, triggers, _ = await _schema(database)
        assert (differences, triggers) == ([], TRIGGERS[backend])
        await _assert_append_only(database)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_database_made_before_migrations_is_adopted_and_keeps_its_rows(
    backend: str, workdir: Path
) -> None:
    async with _database(backend, workdir) as database:
        await _made_before_migrations(database)
        assert (await database.schema_revision())[0] is None

        await database.start()
        assert await database.schema_revision() == (migrations.head(), migrations.head())
        differences, triggers, tables = await _schema(database)
        assert (differences, triggers) == ([], TRIGGERS[backend])  # and later revisions applied
        assert not any(table.startswith("zhihui_baseline") for table in tables)
        async with database.engine.connect() as connection:
            assert await connection.scalar(text("SELECT name FROM unit")) == "一队"
            if backend == "postgresql":  # the scratch copy it was compared with is gone
                schemas = await connection.scalars(text("SELECT nspname FROM pg_namespace"))
                assert migrations._SCRATCH_SCHEMA not in set(schemas)
                assert await connection.scalar(text("SHOW search_path")) == '"$user", public'


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_database_made_before_migrations_that_differs_is_refused_untouched(
    backend: str, workdir: Path
) -> None:
    async with _database(backend, workdir) as database:
        await _made_before_migrations(database)
        async with database.engine.begin() as connection:
            await connection.execute(text("DROP INDEX ix_event_subject"))
            await connection.execute(text("ALTER TABLE person ADD COLUMN shoe_size INTEGER"))
            await connection.execute(text("DROP TABLE last_position"))
        _, _, tables_before = await _schema(database)

        with pytest.raises(SchemaError) as refused:
            await database.start()
        message = str(refused.value)
        assert "made by a Zhihui from before migrations" in message
        for problem in (
            "table last_position is missing",
            "index ix_event_subject on event(subject) is missing",
            "column person.shoe_size is not expected",
            "Start from a new database",
        ):
            assert problem in message, message
        assert (await database.schema_revision())[0] is None
        _, _, tables_after = await _schema(database)
        assert tables_after == tables_before


@pytest.mark.parametrize("backend", BACKENDS)
async def test_databases_starting_together_take_turns(backend: str, workdir: Path) -> None:
    with database_for(backend, workdir) as url:
        databases = [Database(async_url(url)) for _ in range(4)]
        try:
            await asyncio.gather(*(database.start() for database in databases))
            differences, triggers, _ = await _schema(databases[0])
            assert (differences, triggers) == ([], TRIGGERS[backend])
        finally:
            for database in databases:
                await database.stop()


def test_two_zhihui_processes_starting_together_on_postgresql_both_come_up(tmp_path: Path) -> None:
    """R18: several dispatch processes on one PostgreSQL; the first start of both at once."""
    with postgres_database() as url:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            starting = [
                pool.submit(start_zhihui, tmp_path / name, timeout=60, ZHIHUI_DATABASE_URL=url)
                for name in ("a", "b")
            ]
            processes = [future.result() for future in starting]
        try:
            for process in processes:
                assert httpx.get(f"{process.base_url}/api/openapi.json").status_code == 200
            # One of them made the administrator, and showed the password once.
            assert sum(process.admin_password is not None for process in processes) == 1
        finally:
            for process in processes:
                process.stop()


async def test_an_app_role_that_may_not_migrate_is_told_what_the_owner_must_run() -> None:
    """R17: on PostgreSQL the app's own role does not own the tables, so it cannot migrate them; it
    says so, naming the command, and starts once the owner has run it."""
    role = f"zhihui_app_{uuid.uuid4().hex[:8]}"
    _run_async(_postgres_admin(f'CREATE ROLE "{role}" LOGIN'))
    try:
        with postgres_database() as url:
            parts = urlsplit(url)
            app_url = urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port or 5432}"))
            owner, app = Database(async_url(url)), Database(async_url(app_url))
            try:
                await owner.start()
                async with owner.engine.begin() as connection:
                    await grant_app_role(connection, role)
                async with owner.schema_locked() as connection:  # as if 0002 came with a new version
                    await connection.run_sync(migrations.downgrade, migrations.BASELINE)

                with pytest.raises(SchemaError) as refused:
                    await app.start()
                assert f"the role {role} may not change it" in str(refused.value)
                assert f"run `zhihui db setup --app-role {role}` as the schema's owner" in str(refused.value)
                assert await owner.schema_revision() == (migrations.BASELINE, migrations.head())

                await owner.start()
                await app.start()
                assert await app.schema_revision() == (migrations.head(), migrations.head())
            finally:
                await owner.stop()
                await app.stop()
    finally:
        _run_async(_postgres_admin(f'DROP ROLE IF EXISTS "{role}"'))


def test_zhihui_db_shows_and_upgrades_the_revision_and_refuses_a_database_it_will_not_migrate(
    workdir: Path,
) -> None:
    head = migrations.head()
    behind = run_zhihui(workdir, "db", "current")
    assert behind.returncode == 1 and f"this Zhihui's newest is {head}" in behind.stdout, behind
    upgraded = run_zhihui(workdir, "db", "upgrade")
    assert upgraded.returncode == 0 and f"from revision (none) to {head}" in upgraded.stdout, upgraded
    again = run_zhihui(workdir, "db", "upgrade")
    assert again.returncode == 0 and "nothing to do" in again.stdout, again
    current = run_zhihui(workdir, "db", "current")
    assert current.returncode == 0 and f"Revision {head}, the newest." in current.stdout, current

    (workdir / "var" / "zhihui.db").unlink()
    database = Database(f"sqlite+aiosqlite:///{workdir / 'var' / 'zhihui.db'}")

    async def make_one_that_differs() -> None:
        try:
            await _made_before_migrations(database)
            async with database.engine.begin() as connection:
                await connection.execute(text("DROP INDEX ix_event_subject"))
        finally:
            await database.stop()

    asyncio.run(make_one_that_differs())
    refused = run_zhihui(workdir, "up", "--port", "1")
    assert refused.returncode == 1, refused
    assert "index ix_event_subject on event(subject) is missing" in refused.stdout
    assert "Traceback" not in refused.stdout + refused.stderr
