"""The database's schema, made and changed by Alembic migrations (``versions/``, one file each).

``Database.start`` brings every database to the newest revision (:func:`upgrade`) on a connection
that holds the schema lock, so that processes starting together take turns. ``zhihui db`` shows the
revision (:func:`current`), upgrades, and writes a new revision from the models
(:func:`make_revision`, for developers: a model changed without a migration fails
``tests/dispatch_server/test_migrations.py``).

A database made before there were migrations (by ``create_all``: no ``alembic_version`` table, but
Zhihui's tables) is adopted: compared with what the first revision makes, on the same kind of
database, then marked as being at that revision and upgraded from there. One that differs is
refused with :class:`SchemaError`, which names the differences: Zhihui does not guess.

On SQLite the migrations run with foreign keys off (a batch migration copies a table and drops the
old one, which would otherwise cascade to the rows that point at it), and their integrity is
checked before the commit.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.operations.ops import MigrationScript
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData, create_engine, inspect, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import BLANK_SCHEMA

from dispatch_server.db import load_models

__all__ = [
    "BASELINE",
    "SchemaError",
    "config",
    "current",
    "downgrade",
    "head",
    "make_revision",
    "triggers",
    "upgrade",
]

MIGRATIONS = Path(__file__).parent
VERSIONS = MIGRATIONS / "versions"
BASELINE = "0001"
"""The first revision: the schema as ``create_all`` made it before there were migrations."""
_SCRATCH_SCHEMA = "zhihui_baseline_check"
_REVISION_ID = re.compile(r"^\d{4}$")


class SchemaError(RuntimeError):
    """A database this Zhihui will not migrate on its own; the message says why and what to do."""


def config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, without an ini file; migrations run on ``connection`` if given."""
    alembic_config = Config()
    alembic_config.set_main_option("script_location", str(MIGRATIONS))
    alembic_config.set_main_option("path_separator", "os")
    if connection is not None:
        alembic_config.attributes["connection"] = connection
    return alembic_config


def head() -> str:
    """The newest revision of this code."""
    found = ScriptDirectory.from_config(config()).get_current_head()
    if found is None:
        raise SchemaError(f"there are no migrations in {VERSIONS}")
    return found


def current(connection: Connection) -> str | None:
    """The database's revision; None for an empty database or one made before migrations."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Bring the schema to ``revision``, adopting a database made before migrations first.

    ``connection`` is in a transaction that holds the schema lock (``Database.schema_locked``);
    the caller commits."""
    before = current(connection)
    if before is None and _has_zhihui_tables(connection):
        _adopt(connection)
    postgresql = connection.dialect.name == "postgresql"
    role = connection.scalar(text("SELECT current_user")) if postgresql else None
    try:
        command.upgrade(config(connection), revision)
    except DBAPIError as error:
        if postgresql and re.search(r"must be owner|permission denied", str(error.orig)):
            raise SchemaError(
                f"the schema is at revision {before or '(none)'}, this Zhihui needs {head()}, and the "
                f"role {role} may not change it: run `zhihui db setup --app-role {role}` as the "
                "schema's owner (it migrates, then grants on what is new), then start again"
            ) from error
        raise
    _check_foreign_keys(connection)


def downgrade(connection: Connection, revision: str) -> None:
    """Take the schema back to ``revision`` (``base``: nothing left). For developers and tests."""
    command.downgrade(config(connection), revision)
    _check_foreign_keys(connection)


def _check_foreign_keys(connection: Connection) -> None:
    """SQLite migrates with foreign keys off (``Database.schema_locked``): check them before the
    commit."""
    if connection.dialect.name == "sqlite":
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
        if broken:
            raise SchemaError(f"the migration left rows that point at nothing: {broken[:5]}")


def make_revision(message: str) -> Path | None:
    """Write a new revision with what the models have that the migrations do not make (compared
    on a new SQLite database brought to the head); None when there is nothing. Check what it wrote:
    autogenerate misses some changes (renames, triggers, server defaults)."""
    engine = create_engine("sqlite://")
    written: list[Path] = []

    def keep_if_not_empty(_context: Any, _revision: Any, directives: list[MigrationScript]) -> None:
        if directives[0].upgrade_ops is None or directives[0].upgrade_ops.is_empty():
            directives.clear()

    try:
        with engine.connect() as connection:
            with connection.begin():
                command.upgrade(config(connection), "head")
            alembic_config = config(connection)
            if importlib.util.find_spec("ruff") is not None:
                alembic_config.set_section_option("post_write_hooks", "hooks", "ruff_format, ruff_fix")
                for hook, options in (("ruff_format", "format"), ("ruff_fix", "check --fix --quiet")):
                    alembic_config.set_section_option("post_write_hooks", f"{hook}.type", "module")
                    alembic_config.set_section_option("post_write_hooks", f"{hook}.module", "ruff")
                    alembic_config.set_section_option(
                        "post_write_hooks", f"{hook}.options", f"{options} REVISION_SCRIPT_FILENAME"
                    )
            with connection.begin():
                scripts = command.revision(
                    alembic_config,
                    message=message,
                    autogenerate=True,
                    rev_id=_next_revision_id(),
                    process_revision_directives=keep_if_not_empty,
                )
            for script in scripts if isinstance(scripts, list) else [scripts]:
                if script is not None:
                    written.append(Path(script.path))
    finally:
        engine.dispose()
    return written[0] if written else None


def _next_revision_id() -> str:
    """Revisions are numbered 0001, 0002, ...: their order reads from the file names."""
    revisions = ScriptDirectory.from_config(config()).walk_revisions()
    numbers = [int(script.revision) for script in revisions if _REVISION_ID.match(script.revision)]
    return f"{max(numbers, default=0) + 1:04d}"


# -- databases made before migrations --------------------------------------------------------------


def _has_zhihui_tables(connection: Connection) -> bool:
    present = set(inspect(connection).get_table_names())
    return bool(present & set(load_models().tables))


def _adopt(connection: Connection) -> None:
    """Mark a database made by ``create_all`` as being at the baseline, if it is exactly that."""
    baseline, baseline_triggers = _baseline_schema(connection)
    context = MigrationContext.configure(
        connection,
        opts={
            "compare_type": True,
            # Tables that are not Zhihui's may share the database.
            "include_name": lambda name, kind, _parents: kind != "table" or name in baseline.tables,
        },
    )
    differences = [_describe(difference) for difference in compare_metadata(context, baseline)]
    differences += [
        f"trigger {name} is missing" for name in sorted(baseline_triggers - triggers(connection))
    ]
    if differences:
        shown = "\n  ".join(differences[:12])
        more = f"\n  ... and {len(differences) - 12} more" if len(differences) > 12 else ""
        raise SchemaError(
            "This database was made by a Zhihui from before migrations, and its schema is not the one "
            f"the first migration ({BASELINE}) makes:\n  {shown}{more}\n"
            "Zhihui does not guess how to change it. Start from a new database (SQLite: move the "
            "file aside; PostgreSQL: a new database or an empty schema), or change this one to match "
            "and start again: the last Zhihui without migrations, started once on it, makes the "
            "tables and columns it lacks."
        )
    command.stamp(config(connection), BASELINE)


def _baseline_schema(connection: Connection) -> tuple[MetaData, set[str]]:
    """The tables and triggers the baseline revision makes on this kind of database, reflected from
    a scratch copy: a new in-memory SQLite database, or a PostgreSQL schema that is rolled back."""
    if connection.dialect.name == "sqlite":
        engine = create_engine("sqlite://")
        try:
            with engine.connect() as scratch:
                with scratch.begin():
                    command.upgrade(config(scratch), BASELINE)
                metadata = MetaData()
                metadata.reflect(scratch)
                made = triggers(scratch)
        finally:
            engine.dispose()
    else:
        savepoint = connection.begin_nested()
        try:
            connection.execute(text(f"CREATE SCHEMA {_SCRATCH_SCHEMA}"))
            connection.execute(text(f"SET LOCAL search_path TO {_SCRATCH_SCHEMA}"))
            command.upgrade(config(connection), BASELINE)
            reflected = MetaData()
            reflected.reflect(connection, schema=_SCRATCH_SCHEMA)
            metadata = MetaData()
            for table in reflected.sorted_tables:  # as if in the database's own schema
                # None and BLANK_SCHEMA: no schema (documented; the annotations are narrower).
                table.to_metadata(
                    metadata,
                    schema=None,  # type: ignore[arg-type]
                    referred_schema_fn=lambda *_: BLANK_SCHEMA,  # type: ignore[arg-type,return-value]
                )
            made = triggers(connection, _SCRATCH_SCHEMA)
        finally:
            savepoint.rollback()
    metadata.remove(metadata.tables["alembic_version"])
    return metadata, made


def triggers(connection: Connection, schema: str | None = None) -> set[str]:
    """``table.trigger`` for every trigger made by hand (PostgreSQL: in ``schema``, else the current
    one)."""
    if connection.dialect.name == "sqlite":
        query = "SELECT tbl_name || '.' || name FROM sqlite_master WHERE type = 'trigger'"
        return set(connection.scalars(text(query)))
    query = (
        "SELECT c.relname || '.' || t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE NOT t.tgisinternal AND n.nspname = coalesce(:schema, current_schema())"
    )
    return set(connection.scalars(text(query), {"schema": schema}))


def _describe(difference: Any) -> str:
    """One line for one of ``compare_metadata``'s differences (what the database would need)."""
    if isinstance(difference, list):  # column changes come as a list of one or more
        return "; ".join(_describe(item) for item in difference)
    kind, *rest = difference
    if kind in ("add_table", "remove_table"):
        return f"table {rest[0].name} is {'missing' if kind == 'add_table' else 'not expected'}"
    if kind in ("add_column", "remove_column"):
        _schema, table, column = rest
        return f"column {table}.{column.name} is {'missing' if kind == 'add_column' else 'not expected'}"
    if kind in ("add_index", "remove_index", "add_constraint", "remove_constraint", "add_fk", "remove_fk"):
        what = rest[0]
        columns = ", ".join(column.name for column in what.columns) if hasattr(what, "columns") else ""
        state = "missing" if kind.startswith("add") else "not expected"
        return f"{kind.split('_', 1)[1]} {what.name or ''} on {what.table.name}({columns}) is {state}"
    if kind.startswith("modify_"):
        _schema, table, column, _options, found, wanted = rest
        return f"column {table}.{column} has {kind[7:]} {found!r}, expected {wanted!r}"
    return repr(difference)
