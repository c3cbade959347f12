"""The audit log in the database (R17): the role the app connects as may add audit rows, never
change or remove them.

- SQLite: triggers refuse UPDATE and DELETE (made by the migrations, ``dispatch_server/migrations``).
  Whoever holds the file can drop them; :func:`~dispatch_server.audit.service.verify_chain` then shows
  what changed.
- PostgreSQL: the same triggers, and one refusing TRUNCATE, for every role. On their own they do not
  stop the table's owner, who may drop or disable them. So in production the schema belongs to an
  administrator's role and the app connects as a role of its own, made ready by
  :func:`grant_app_role` (``zhihui db setup --app-role NAME``, run with the administrator's URL):
  every privilege the app needs on every table, but only SELECT and INSERT on ``audit_event``, and,
  not being the owner, no way to touch its triggers. A superuser can still do anything; the hash
  chain shows it.

:func:`audit_writable` tells whether the current connection could change audit rows, so that the
server warns when it runs as the owner. (The app's role cannot change tables it does not own: after an
upgrade of Zhihui that brings migrations, run ``zhihui db setup`` again as the administrator; it
migrates, then grants on the new tables.)
"""

from __future__ import annotations

import logging
import re

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["audit_writable", "grant_app_role", "warn_if_audit_writable"]

logger = logging.getLogger(__name__)

_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _statements(role: str) -> list[str]:
    quoted = f'"{role}"'
    return [
        f"""
        DO $$ BEGIN
          EXECUTE format('GRANT CONNECT ON DATABASE %I TO {quoted}', current_database());
        END $$
        """,
        f"GRANT USAGE, CREATE ON SCHEMA public TO {quoted}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE, REFERENCES ON ALL TABLES IN SCHEMA public TO {quoted}",
        f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {quoted}",
        f"REVOKE UPDATE, DELETE, TRUNCATE ON audit_event FROM {quoted}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE, REFERENCES "
        f"ON TABLES TO {quoted}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {quoted}",
    ]


async def grant_app_role(connection: AsyncConnection, app_role: str) -> None:
    """Give the app's role (which must exist, and not be a superuser or the tables' owner) what it
    needs, audit rows excepted. Run as the owner of the schema, after it was created; idempotent."""
    if connection.dialect.name != "postgresql":
        raise ValueError("database roles are a PostgreSQL matter: on SQLite the triggers refuse")
    if not _ROLE_NAME.match(app_role):
        raise ValueError(f"{app_role!r} is not a plain role name (lower-case letters, digits, _)")
    found = (
        await connection.execute(
            text("SELECT rolsuper FROM pg_roles WHERE rolname = :role"), {"role": app_role}
        )
    ).one_or_none()
    if found is None:
        raise ValueError(f"there is no role {app_role!r}: CREATE ROLE {app_role} LOGIN PASSWORD '...' first")
    if found.rolsuper:
        raise ValueError(f"{app_role!r} is a superuser: nothing can be kept from it")
    owner = await connection.scalar(text("SELECT tableowner FROM pg_tables WHERE tablename = 'audit_event'"))
    if owner == app_role:
        raise ValueError(f"{app_role!r} owns the tables: create them as another role, then run this")
    for statement in _statements(app_role):
        await connection.execute(text(statement))


async def audit_writable(connection: AsyncConnection) -> bool:
    """Whether this connection's role could change or remove audit rows (PostgreSQL; False on SQLite,
    where the triggers are all there is)."""
    if connection.dialect.name != "postgresql":
        return False
    query = text(
        "SELECT rolsuper OR pg_has_role(current_user, tableowner, 'MEMBER') "
        "OR has_table_privilege('audit_event', 'UPDATE') OR has_table_privilege('audit_event', 'DELETE') "
        "FROM pg_roles, pg_tables WHERE rolname = current_user AND tablename = 'audit_event'"
    )
    return bool(await connection.scalar(query))


async def warn_if_audit_writable(connection: AsyncConnection) -> None:
    """Log a warning when the app's database role could change audit rows."""
    if await audit_writable(connection):
        logger.warning(
            "the database role %s could change or remove audit rows (it owns them, or is a superuser): "
            "in production, connect as a role made ready by `zhihui db setup --app-role NAME`",
            await connection.scalar(text("SELECT current_user")),
        )
