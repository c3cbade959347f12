"""PostgreSQL refuses TRUNCATE of audit_event (R17): a row trigger does not fire for it.

Before migrations this trigger came with ``zhihui db setup --app-role``, so a database adopted at
0001 may have it already.

Revision ID: 0002
Revises: 0001
Created: 2026-11-27 11:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite has no TRUNCATE: a DELETE without WHERE fires the row triggers
    op.execute(
        """
        DO $$ BEGIN
          IF NOT EXISTS (
            SELECT 1 FROM pg_trigger WHERE tgname = 'audit_event_no_truncate'
              AND tgrelid = 'audit_event'::regclass
          ) THEN
            CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event
              FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only();
          END IF;
        END $$
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_event_no_truncate ON audit_event")
