"""R17: on PostgreSQL the role the app connects as may add audit rows but not change or remove them,
nor get round the triggers; the app runs as that role; and a row a superuser edits anyway is found
by the chain check. The role is made ready by ``zhihui db setup --app-role``, run as the owner.
(SQLite's triggers: ``test_audit.py``.)
"""

from __future__ import annotations

import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import text

from dispatch_server.audit import service as audit
from dispatch_server.audit.models import AuditAction, Outcome
from dispatch_server.audit.roles import audit_writable
from dispatch_server.db import Database
from dispatch_server.people.models import Role
from dispatch_server.scheduling.clock import ManualClock
from tests.dispatch_server.deployment import async_url
from tests.dispatch_server.inprocess import in_process
from tests.support import _postgres_admin, _run_async, postgres_database, run_zhihui

ACTOR = audit.Actor(person_id=1, name="chief", role="commander", source="127.0.0.1")


def _as(url: str, role: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port or 5432}"))


def _setup(workdir: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_zhihui(workdir, "db", "setup", *args, ZHIHUI_DATABASE_URL=url)


async def test_the_apps_role_only_adds_audit_rows_and_a_superusers_edit_is_found(tmp_path: Path) -> None:
    role = f"zhihui_app_{uuid.uuid4().hex[:8]}"
    _run_async(_postgres_admin(f'CREATE ROLE "{role}" LOGIN'))
    try:
        with postgres_database() as owner_url:
            done = _setup(tmp_path, owner_url, "--app-role", role)
            assert done.returncode == 0, done.stdout + done.stderr
            assert f"{role} may use every table" in done.stdout
            refused = _setup(tmp_path, owner_url, "--app-role", "postgres")  # a superuser
            assert refused.returncode == 1 and "superuser" in refused.stdout

            app_url = _as(owner_url, role)
            # The whole app starts and works as that role: people made, the audit log read (audited).
            async with in_process(app_url, tmp_path, ManualClock(datetime.now(UTC))) as zhihui:
                admin = await zhihui.person("root", Role.ADMIN)
                assert (await admin.http.get("/api/audit")).status_code == 200
                assert (await admin.http.get("/api/audit")).status_code == 200

            app = Database(async_url(app_url))
            owner = Database(async_url(owner_url))
            await app.start()
            try:
                async with app.engine.connect() as connection:
                    assert await audit_writable(connection) is False
                async with owner.engine.connect() as connection:
                    assert await audit_writable(connection) is True
                for n in range(3):
                    await audit.record_committed(
                        database=app,
                        action=AuditAction.ARCHIVE_PLAY,
                        outcome=Outcome.SUCCESS,
                        actor=ACTOR,
                        object=f"stream:s{n}",
                    )
                for statement, refusal in (
                    ("UPDATE audit_event SET outcome = 'denied' WHERE id = 2", "permission denied"),
                    ("DELETE FROM audit_event WHERE id = 2", "permission denied"),
                    ("TRUNCATE audit_event", "permission denied"),
                    ("ALTER TABLE audit_event DISABLE TRIGGER USER", "must be owner"),
                    ("DROP TRIGGER audit_event_append_only ON audit_event", "must be owner"),
                    ("ALTER TABLE audit_event OWNER TO CURRENT_USER", "must be owner"),
                ):
                    async with app.engine.connect() as connection:
                        with pytest.raises(Exception, match=refusal):
                            await connection.execute(text(statement))
                async with app.sessions() as db_session:
                    report = await audit.verify_chain(db_session=db_session)
                    assert report.ok, report.problems
                    rows = report.rows

                # A superuser can do anything (even through the triggers): the chain shows it.
                async with owner.engine.begin() as connection:
                    await connection.execute(text("ALTER TABLE audit_event DISABLE TRIGGER USER"))
                    edit = text("UPDATE audit_event SET object = 'stream:other' WHERE id = :id")
                    await connection.execute(edit, {"id": rows - 1})
                    await connection.execute(text("ALTER TABLE audit_event ENABLE TRIGGER USER"))
                async with app.sessions() as db_session:
                    report = await audit.verify_chain(db_session=db_session)
                assert [(p.event_id, p.kind) for p in report.problems] == [(rows - 1, "hash mismatch")]
            finally:
                await app.stop()
                await owner.stop()
    finally:
        _run_async(_postgres_admin(f'DROP ROLE IF EXISTS "{role}"'))
