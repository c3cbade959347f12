"""``zhihui verify --incident`` and ``zhihui delete`` (R2, R17; issue 4): an incident's streams found
through the catalog and checked, each problem named with its manifest line and file, the catalog's
copy of the chain catching what the folder alone cannot; a deletion refused inside retention and
allowed after it, after which verify lists the segments as deleted. Every run audited.

Real parts: the ``zhihui`` command in a subprocess, SQLite, segments from the recorder.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from dispatch_server.archive import service as catalog
from dispatch_server.archive.models import RecordingSegment
from dispatch_server.audit import service as audit
from dispatch_server.audit.models import AuditEvent
from dispatch_server.db import Database
from dispatch_server.incidents import service as incidents
from dispatch_server.incidents.models import IncidentKind
from dispatch_server.people.models import Person, Role
from dispatch_server.streams.models import Stream
from tests.media_relay.recordings import interleaved, opus_frames, record, vp8_frames
from tests.support import run_zhihui


@dataclass
class Archive:
    workdir: Path
    incident_id: int
    folders: dict[str, Path]
    """Each stream's folder: ``on-1`` and ``on-2`` are on the incident, ``off-1`` is not."""

    @property
    def database_url(self) -> str:
        return f"sqlite+aiosqlite:///{self.workdir / 'var' / 'zhihui.db'}"


async def _make_archive(workdir: Path) -> Archive:
    root = workdir / "recordings"
    database = Database(f"sqlite+aiosqlite:///{workdir / 'var' / 'zhihui.db'}")
    await database.start()
    try:
        async with database.sessions() as db_session:
            chief = Person(username="chief", display_name="Chief", role=Role.COMMANDER, password_hash="x")
            li = Person(username="li", display_name="Li", role=Role.FIELD_OFFICER, password_hash="x")
            db_session.add_all([chief, li])
            await db_session.flush()
            now = datetime.now(UTC)
            incident = await incidents.open_incident(
                db_session=db_session,
                opener=chief,
                kind=IncidentKind.GROUP,
                title="Crowd at the gate",
                officer_ids=[li.id],
                now=now,
                audit_actor=audit.Actor(person_id=chief.id, name="chief", role="commander", source=""),
            )
            await db_session.commit()
            incident_id = incident.id
            folders = {}
            for n, stream_id in enumerate(("on-1", "on-2", "off-1")):
                db_session.add(Stream(id=stream_id, officer_id=li.id, started_at=now, ended_at=now))
                await db_session.commit()
                if stream_id.startswith("on"):
                    await incidents.record_stream_change(
                        db_session=db_session, stream_id=stream_id, officer=li, up=True, at=now
                    )
                frames = interleaved(vp8_frames(30, seed=n), opus_frames(2))
                folders[stream_id] = record(root, stream_id, frames).directory
            assert await catalog.reconcile(db_session=db_session, root=root) == 6
    finally:
        await database.stop()
    return Archive(workdir, incident_id, folders)


@pytest.fixture
def archive(tmp_path: Path) -> Archive:
    return asyncio.run(_make_archive(tmp_path))


def _zhihui(archive: Archive, *args: str) -> subprocess.CompletedProcess[str]:
    return run_zhihui(archive.workdir, *args, COLUMNS="240")


def _audit(archive: Archive, action: str) -> list[AuditEvent]:
    async def rows() -> list[AuditEvent]:
        database = Database(archive.database_url)
        try:
            async with database.sessions() as db_session:
                query = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
                return list((await db_session.scalars(query)).all())
        finally:
            await database.stop()

    return asyncio.run(rows())


def _lines(folder: Path) -> list[bytes]:
    return (folder / "manifest.jsonl").read_bytes().splitlines()


def test_verify_an_incident_checks_its_streams_and_names_each_problem_with_its_line_and_file(
    archive: Archive,
) -> None:
    clean = _zhihui(archive, "verify", "--incident", str(archive.incident_id))
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert f"Incident {archive.incident_id}: Crowd at the gate (2 recorded stream(s))" in clean.stdout
    assert "on-1" in clean.stdout and "on-2" in clean.stdout and "off-1" not in clean.stdout
    assert "all intact" in clean.stdout

    # A bit flipped in on-1's second segment; on-2's last line rewritten whole with its prev kept
    # (the folder alone cannot tell that one: the catalog can).
    lines = _lines(archive.folders["on-1"])
    second = json.loads(lines[1])
    with (archive.folders["on-1"] / second["file"]).open("r+b") as handle:
        handle.seek(second["bytes"] // 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0x10]))
    lines = _lines(archive.folders["on-2"])
    last = json.loads(lines[-1])
    last["ended_at"] = (datetime.fromisoformat(last["ended_at"]) + timedelta(minutes=5)).isoformat()
    lines[-1] = json.dumps(last, sort_keys=True, separators=(",", ":")).encode()
    (archive.folders["on-2"] / "manifest.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))

    damaged = _zhihui(archive, "verify", "--incident", str(archive.incident_id))
    assert damaged.returncode == 1, damaged.stdout + damaged.stderr
    assert f"on-1  manifest line 2  {second['file']}  segment altered" in damaged.stdout
    assert f"on-2  manifest line {len(lines)}  {last['file']}  catalogued entry missing" in damaged.stdout
    assert "this line was changed after it was catalogued" in damaged.stdout
    assert "2 problems in 2 stream(s)" in damaged.stdout

    unknown = _zhihui(archive, "verify", "--incident", "999")
    assert unknown.returncode == 2 and "there is no incident 999" in unknown.stdout
    assert _zhihui(archive, "verify", "on-1", "--incident", "1").returncode == 2

    rows = _audit(archive, "archive.verify")
    assert [(r.object, r.outcome) for r in rows] == [
        (f"incident:{archive.incident_id}", "success"),
        (f"incident:{archive.incident_id}", "failure"),
    ]
    assert all(r.actor_name.startswith("cli:") and (r.role, r.source) == ("cli", "local") for r in rows)
    assert json.loads(rows[1].detail)["streams"] == {"on-1": 1, "on-2": 1}


def test_delete_is_refused_inside_retention_then_verify_lists_the_deleted_segments(archive: Archive) -> None:
    refused = _zhihui(archive, "delete", "off-1", "--reason", "no longer needed")
    assert refused.returncode == 1
    assert "Not deleted" in refused.stdout and "inside its retention" in refused.stdout
    assert len(list(archive.folders["off-1"].glob("*.mkv"))) == 2

    async def recorded_long_ago() -> None:
        database = Database(archive.database_url)
        try:
            async with database.sessions() as db_session:
                query = select(RecordingSegment).where(RecordingSegment.stream_id == "off-1")
                for segment in await db_session.scalars(query):
                    segment.started_at -= timedelta(days=200)
                    segment.ended_at -= timedelta(days=200)
                await db_session.commit()
        finally:
            await database.stop()

    asyncio.run(recorded_long_ago())
    deleted = _zhihui(archive, "delete", "off-1", "--reason", "retention over, no case")
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    assert "Deleted the recording of off-1: 2 segments" in deleted.stdout
    assert list(archive.folders["off-1"].glob("*.mkv")) == []

    verified = _zhihui(archive, "verify", "off-1")
    assert verified.returncode == 0, verified.stdout
    assert "manifest line 3  2 segments deleted (retention)" in verified.stdout
    assert "retention over, no case" in verified.stdout and "all intact" in verified.stdout
    assert _zhihui(archive, "delete", "off-1", "--reason", "x").returncode == 2

    rows = _audit(archive, "archive.delete")
    assert [(r.object, r.outcome) for r in rows] == [("stream:off-1", "denied"), ("stream:off-1", "success")]
    assert json.loads(rows[1].detail)["segments"] == 2
