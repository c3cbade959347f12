"""The audit log (R17): hash-chained rows that stay one linear chain under concurrent writers on
SQLite and PostgreSQL, that the database refuses to edit, and whose edits ``verify_chain`` finds;
sign-ins audited without telling whether a username exists; only administrators and leaders read it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from dispatch_server.audit import service as audit
from dispatch_server.audit.models import AuditAction, Outcome
from dispatch_server.db import Database
from tests.conftest import ApiClient
from tests.support import ZhihuiProcess, postgres_database

WRITERS = 40


@contextlib.asynccontextmanager
async def _databases(backend: str, workdir: Path) -> AsyncIterator[tuple[Database, Database]]:
    """Two engines on one new database: two processes' worth of connections."""
    with contextlib.ExitStack() as stack:
        if backend == "postgresql":
            url = stack.enter_context(postgres_database()).replace("postgresql://", "postgresql+asyncpg://")
        else:
            url = f"sqlite+aiosqlite:///{workdir / 'audit.db'}"
        first, second = Database(url), Database(url)
        await first.start()
        await second.start()
        try:
            yield first, second
        finally:
            await first.stop()
            await second.stop()


def _actor(n: int) -> audit.Actor:
    return audit.Actor(person_id=n, name=f"user{n}", role="commander", source="127.0.0.1")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_concurrent_writers_keep_one_linear_chain_that_verifies(backend: str, workdir: Path) -> None:
    async with _databases(backend, workdir) as (first, second):
        await asyncio.gather(
            *(
                audit.record_committed(
                    database=(first, second)[n % 2],
                    action=AuditAction.ARCHIVE_PLAY,
                    outcome=Outcome.SUCCESS,
                    actor=_actor(n),
                    object=f"stream:s{n}",
                    detail={"n": n, "text": "回放"},
                )
                for n in range(WRITERS)
            )
        )
        async with first.sessions() as db_session:
            report = await audit.verify_chain(db_session=db_session)
            rows = (
                await db_session.execute(text("SELECT id, prev_hash, hash FROM audit_event ORDER BY id"))
            ).all()
        assert report.ok, report.problems
        assert report.rows == WRITERS
        assert [row.id for row in rows] == list(range(1, WRITERS + 1))
        assert rows[0].prev_hash == audit.GENESIS_HASH
        assert all(later.prev_hash == earlier.hash for earlier, later in itertools.pairwise(rows))
        assert report.head == rows[-1].hash

        # The database refuses to change or remove an audit row.
        for statement in (
            "UPDATE audit_event SET outcome = 'denied' WHERE id = 3",
            "DELETE FROM audit_event",
        ):
            async with first.sessions() as db_session:
                with pytest.raises(Exception, match="append-only"):
                    await db_session.execute(text(statement))
                await db_session.rollback()


async def test_verify_chain_finds_an_edited_a_removed_and_a_trailing_removed_row(workdir: Path) -> None:
    async with _databases("sqlite", workdir) as (database, _):
        for n in range(6):
            await audit.record_committed(
                database=database,
                action=AuditAction.LOGIN,
                outcome=Outcome.SUCCESS,
                actor=_actor(n),
                detail={"n": n},
            )
        async with database.sessions() as db_session:
            # Someone with the database file in hand: triggers dropped, rows changed.
            for trigger in ("audit_event_no_update", "audit_event_no_delete"):
                await db_session.execute(text(f"DROP TRIGGER {trigger}"))
            await db_session.execute(
                text("UPDATE audit_event SET detail = :d WHERE id = 2"), {"d": '{"n":99}'}
            )
            await db_session.execute(text("DELETE FROM audit_event WHERE id IN (4, 6)"))
            await db_session.commit()
            report = await audit.verify_chain(db_session=db_session)
        found = {(problem.event_id, problem.kind) for problem in report.problems}
        assert found == {
            (2, "hash mismatch"),
            (5, "id skipped"),
            (5, "link broken"),
            (None, "head mismatch"),
        }


def _audit(admin: ApiClient, **params: object) -> list[dict[str, object]]:
    response = admin.http.get("/api/audit", params={"limit": 200, **params})
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def admin(zhihui: ZhihuiProcess) -> ApiClient:
    assert zhihui.admin_password
    return ApiClient(zhihui.base_url, "admin", zhihui.admin_password)


def test_sign_ins_are_audited_without_telling_whether_the_username_exists(
    zhihui: ZhihuiProcess, admin: ApiClient, commander: ApiClient
) -> None:
    answers = [
        httpx.post(f"{zhihui.base_url}/api/auth/login", json={"username": name, "password": "wrong-password"})
        for name in ("commander", "no-such-person")
    ]
    assert [a.status_code for a in answers] == [401, 401]
    assert answers[0].json() == answers[1].json()
    ApiClient(zhihui.base_url, "commander", zhihui.credentials["commander"])

    failed = _audit(admin, action="auth.login", outcome="failure")
    failures = {row["detail"]["username"]: row for row in failed}  # type: ignore[index]
    known, unknown = failures["commander"], failures["no-such-person"]
    for row in (known, unknown):
        assert (row["actor_id"], row["actor_name"], row["role"], row["object"]) == (None, "", "", "")
        assert row["source"] == "127.0.0.1"
    success = _audit(admin, action="auth.login", outcome="success", actor_id=commander.id)
    assert success and success[0]["actor_name"] == "commander" and success[0]["role"] == "commander"


def test_only_administrators_and_leaders_read_the_audit_log_and_refusals_are_audited(
    commander: ApiClient, admin: ApiClient
) -> None:
    refused = commander.http.get("/api/audit")
    assert refused.status_code == 403
    denied = _audit(admin, action="audit.*", outcome="denied", actor_id=commander.id)
    assert denied and denied[0]["action"] == "audit.read" and denied[0]["actor_name"] == "commander"

    first = admin.http.get("/api/audit", params={"limit": 2}).json()
    assert len(first["items"]) == 2 and first["next_before_id"] == first["items"][-1]["id"]
    older = admin.http.get("/api/audit", params={"limit": 2, "before_id": first["next_before_id"]}).json()
    assert all(row["id"] < first["next_before_id"] for row in older["items"])

    chain = admin.http.get("/api/audit/verify").json()
    assert chain["ok"] is True and chain["problems"] == [] and chain["rows"] > 4
