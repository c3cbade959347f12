"""Retention and evidence holds (R2, R17; issue 4): a recording is kept at least its retention after
it ends and as long as a hold on it or on its incident lasts; a deletion asked for inside either is
refused with the reason (409); an allowed one tombstones the segments in the manifest, removes the
files and is recorded in the catalog, and verification then counts them as deleted, not missing.
Every attempt, refused or not, is audited with its outcome.

Real SQLite and PostgreSQL, real Matroska segments from the recorder; the app runs in the test's
process on a clock the test moves across the six months.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete

from dispatch_server.archive import service as catalog
from dispatch_server.archive.models import DeletedSegment, RecordingDeletion
from dispatch_server.incidents import service as incidents
from dispatch_server.people.models import Person, Role
from dispatch_server.scheduling.clock import ManualClock
from dispatch_server.streams.models import Stream
from media_relay.recording.manifest import line_hash
from media_relay.recording.verify import verify_stream
from tests.dispatch_server.conftest import BACKENDS, database_for
from tests.dispatch_server.inprocess import Client, InProcess, in_process
from tests.media_relay.recordings import interleaved, opus_frames, record, vp8_frames
from zhihui.settings import MIN_RETENTION_DAYS

DAY = 24 * 3600.0


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def _recorded(zhihui: InProcess, officer: Client, stream_id: str) -> Path:
    """A finished stream of ``officer``, two segments recorded and catalogued: its folder."""
    root = zhihui.context.settings.recording.root
    async with zhihui.context.db.sessions() as db_session:
        now = zhihui.clock.now()
        db_session.add(
            Stream(id=stream_id, officer_id=officer.id, device="bodycam", started_at=now, ended_at=now)
        )
        await db_session.commit()
    recorder = record(root, stream_id, interleaved(vp8_frames(30), opus_frames(2)))
    async with zhihui.context.db.sessions() as db_session:
        assert await catalog.reconcile(db_session=db_session, root=root) == 2
    return recorder.directory


async def _on_incident(zhihui: InProcess, commander: Client, officer: Client, stream_id: str) -> int:
    """An incident with the officer on it, whose timeline names the stream."""
    opened = await commander.http.post(
        "/api/incidents", json={"kind": "sensitive", "title": "Seizure", "officer_ids": [officer.id]}
    )
    assert opened.status_code == 201, opened.text
    async with zhihui.context.db.sessions() as db_session:
        person = await db_session.get(Person, officer.id)
        assert person is not None
        await incidents.record_stream_change(
            db_session=db_session, stream_id=stream_id, officer=person, up=True, at=zhihui.clock.now()
        )
    return int(opened.json()["id"])


async def _audit(admin: Client, **params: object) -> list[dict[str, Any]]:
    response = await admin.http.get("/api/audit", params={"limit": 500, **params})
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]


async def _delete(client: Client, stream_id: str, reason: str = "retention over") -> Any:
    return await client.http.request("DELETE", f"/api/recordings/{stream_id}", json={"reason": reason})


@pytest.mark.parametrize("backend", BACKENDS)
async def test_deletion_is_refused_inside_retention_then_tombstoned_and_verified_as_deleted(
    backend: str, tmp_path: Path
) -> None:
    """R2, R17: refused until the retention runs out, never by a non-administrator; then the files go,
    the manifest gains a tombstone, the chain stays whole and verification counts them as deleted."""
    clock = ManualClock(_now())
    with database_for(backend, tmp_path) as database_url:
        async with in_process(database_url, tmp_path, clock) as zhihui:
            admin = await zhihui.person("root", Role.ADMIN)
            commander = await zhihui.person("chief", Role.COMMANDER)
            officer = await zhihui.person("li", Role.FIELD_OFFICER)
            folder = await _recorded(zhihui, officer, "li-bodycam-1")
            segments = sorted(folder.glob("*.mkv"))
            assert len(segments) == 2

            retention = (await admin.http.get("/api/recordings/li-bodycam-1/retention")).json()
            assert retention["retention_days"] == MIN_RETENTION_DAYS
            assert retention["deletable"] is False and "inside its retention" in retention["refusal"]
            kept_until = datetime.fromisoformat(retention["kept_until"])
            assert kept_until - datetime.fromisoformat(retention["ended_at"]) == timedelta(days=184)

            unexplained = await admin.http.delete("/api/recordings/li-bodycam-1")
            assert unexplained.status_code == 422 and "needs a reason" in unexplained.json()["detail"]
            refused = await _delete(admin, "li-bodycam-1")
            assert refused.status_code == 409
            assert "inside its retention" in refused.json()["detail"]
            assert kept_until.isoformat() in refused.json()["detail"]
            assert (await _delete(commander, "li-bodycam-1")).status_code == 403
            await clock.advance((kept_until - clock.now()).total_seconds() - 60)
            assert (await _delete(admin, "li-bodycam-1")).status_code == 409  # a minute short
            assert all(path.exists() for path in segments)

            await clock.advance(120)
            deleted = await _delete(admin, "li-bodycam-1", "six months passed, no case pending")
            assert deleted.status_code == 200, deleted.text
            deletion = deleted.json()
            assert (deletion["segments"], deletion["deleted_by"]) == (2, "root (admin)")
            assert deletion["bytes"] == sum(e["bytes"] for e in _entries(folder) if e["type"] == "segment")
            assert not any(path.exists() for path in segments)

            # The manifest: every earlier line as it was, one tombstone appended, the chain whole.
            lines = (folder / "manifest.jsonl").read_bytes().splitlines()
            tombstone = json.loads(lines[-1])
            assert tombstone["type"] == "deletion" and tombstone["basis"] == "retention"
            assert tombstone["prev"] == line_hash(lines[-2])
            assert [s["sequence"] for s in tombstone["segments"]] == [1, 2]
            assert tombstone["reason"] == "six months passed, no case pending"
            assert deletion["entry_hash"] == line_hash(lines[-1])
            report = verify_stream(folder)
            assert report.ok, report.problems
            assert (report.segments, report.deleted) == (2, 2)
            assert report.deletions[0].line == len(lines)

            verified = (await commander.http.post("/api/recordings/li-bodycam-1/verify")).json()
            assert verified["ok"] is True, verified["problems"]
            assert verified["deleted"] == 2 and verified["head"] == verified["catalog_head"]

            # The catalog: nothing left to play or export, the deletion on record, no second one.
            listed = await commander.http.get("/api/recordings", params={"stream_id": "li-bodycam-1"})
            assert listed.json() == []
            retention = (await admin.http.get("/api/recordings/li-bodycam-1/retention")).json()
            assert retention["deleted_at"] is not None and retention["deletable"] is False
            again = await _delete(admin, "li-bodycam-1")
            assert again.status_code == 409 and "was deleted" in again.json()["detail"]

            rows = await _audit(admin, action="archive.delete")
            assert [(r["actor_name"], r["outcome"]) for r in reversed(rows)] == [
                ("root", "failure"),
                ("root", "denied"),
                ("chief", "denied"),
                ("root", "denied"),
                ("root", "success"),
                ("root", "denied"),
            ]
            for row in rows:
                assert row["object"] == "stream:li-bodycam-1" and row["source"] == "127.0.0.1" and row["role"]
            assert "inside its retention" in rows[-2]["detail"]["error"]
            assert rows[1]["detail"]["tombstone"] == deletion["entry_hash"]
            assert (await admin.http.get("/api/audit/verify")).json()["ok"] is True

            # A catalog rebuilt from the manifests knows the deletion from its tombstone.
            async with zhihui.context.db.sessions() as db_session:
                await db_session.execute(delete(DeletedSegment))
                await db_session.execute(delete(RecordingDeletion))
                await db_session.commit()
                assert await catalog.reconcile(db_session=db_session, root=folder.parents[3]) == 1
            rebuilt = (await commander.http.post("/api/recordings/li-bodycam-1/verify")).json()
            assert rebuilt["ok"] is True and rebuilt["deleted"] == 2, rebuilt["problems"]
            retention = (await admin.http.get("/api/recordings/li-bodycam-1/retention")).json()
            assert retention["deleted_at"] is not None and retention["retention_days"] == MIN_RETENTION_DAYS


@pytest.mark.parametrize("backend", BACKENDS)
async def test_holds_on_the_stream_or_its_incident_keep_it_past_retention_until_lifted(
    backend: str, tmp_path: Path
) -> None:
    """R2, R17: an evidence hold placed by a commander or leader keeps a recording past its retention;
    an incident's hold keeps its streams; lifting is audited and each hold is lifted once."""
    clock = ManualClock(_now())
    with database_for(backend, tmp_path) as database_url:
        async with in_process(database_url, tmp_path, clock) as zhihui:
            admin = await zhihui.person("root", Role.ADMIN)
            commander = await zhihui.person("chief", Role.COMMANDER)
            leader = await zhihui.person("head", Role.LEADER)
            duty = await zhihui.person("clerk", Role.DUTY_OFFICER)
            officer = await zhihui.person("li", Role.FIELD_OFFICER)
            folder = await _recorded(zhihui, officer, "li-phone-7")
            incident_id = await _on_incident(zhihui, commander, officer, "li-phone-7")

            on_stream = await commander.http.post(
                "/api/holds", json={"stream_id": "li-phone-7", "reason": "party contests the seizure"}
            )
            assert on_stream.status_code == 201, on_stream.text
            on_incident = await leader.http.post(
                "/api/holds", json={"incident_id": incident_id, "reason": "appeal (2026)京01执复12号"}
            )
            assert on_incident.status_code == 201, on_incident.text
            stream_hold, incident_hold = on_stream.json(), on_incident.json()
            assert stream_hold["placed_by"]["username"] == "chief" and stream_hold["active"] is True
            by_duty = await duty.http.post("/api/holds", json={"stream_id": "li-phone-7", "reason": "mine"})
            assert by_duty.status_code == 403
            bad = await commander.http.post("/api/holds", json={"reason": "nothing named"})
            assert bad.status_code == 422 and "name a stream or an incident" in bad.json()["detail"]
            missing = await commander.http.post("/api/holds", json={"incident_id": 999, "reason": "none"})
            assert missing.status_code == 404

            await clock.advance(MIN_RETENTION_DAYS * DAY + 3600)
            held = await _delete(admin, "li-phone-7")
            assert held.status_code == 409
            detail = held.json()["detail"]
            assert "under evidence hold" in detail
            assert f"hold {stream_hold['id']} on stream li-phone-7" in detail
            assert f"hold {incident_hold['id']} on incident {incident_id}" in detail
            listed = (await duty.http.get("/api/holds", params={"stream_id": "li-phone-7"})).json()
            assert {h["id"] for h in listed} == {stream_hold["id"], incident_hold["id"]}

            lifted = await commander.http.post(
                f"/api/holds/{stream_hold['id']}/lift", json={"reason": "the party withdrew"}
            )
            assert lifted.status_code == 200, lifted.text
            assert lifted.json()["lifted_by"]["username"] == "chief" and lifted.json()["active"] is False
            twice = await leader.http.post(f"/api/holds/{stream_hold['id']}/lift", json={"reason": "again"})
            assert twice.status_code == 409 and "was lifted" in twice.json()["detail"]
            still = await _delete(admin, "li-phone-7")
            assert still.status_code == 409 and f"hold {incident_hold['id']}" in still.json()["detail"]
            assert f"hold {stream_hold['id']} " not in still.json()["detail"]
            by_officer = await officer.http.post(
                f"/api/holds/{incident_hold['id']}/lift", json={"reason": "mine"}
            )
            assert by_officer.status_code == 403
            lifted = await admin.http.post(
                f"/api/holds/{incident_hold['id']}/lift", json={"reason": "appeal decided"}
            )
            assert lifted.status_code == 200

            assert (await _delete(admin, "li-phone-7")).status_code == 200
            assert not list(folder.glob("*.mkv"))
            active = (await duty.http.get("/api/holds", params={"active": "true"})).json()
            assert active == []

            placed = await _audit(admin, action="archive.hold")
            assert {(r["actor_name"], r["outcome"], r["object"]) for r in placed} == {
                ("chief", "success", "stream:li-phone-7"),
                ("head", "success", f"incident:{incident_id}"),
                ("clerk", "denied", "stream:li-phone-7"),
                ("chief", "failure", "stream:None"),
                ("chief", "failure", "incident:999"),
            }
            lifts = await _audit(admin, action="archive.hold_lift")
            assert [(r["actor_name"], r["outcome"]) for r in reversed(lifts)] == [
                ("chief", "success"),
                ("head", "denied"),
                ("li", "denied"),
                ("root", "success"),
            ]
            assert lifts[-1]["detail"]["reason"] == "the party withdrew"
            assert lifts[-1]["detail"]["placed_by"] == "chief"
            assert (await admin.http.get("/api/audit/verify")).json()["ok"] is True


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_forged_tombstone_and_a_damaged_recording_are_not_taken_for_lawful_deletions(
    backend: str, tmp_path: Path
) -> None:
    """R2: a segment removed behind the archive's back, with a tombstone appended to explain it, is
    found by the catalog at the tombstone's line; a recording that does not verify is not deleted."""
    clock = ManualClock(_now())
    with database_for(backend, tmp_path) as database_url:
        async with in_process(database_url, tmp_path, clock) as zhihui:
            admin = await zhihui.person("root", Role.ADMIN)
            officer = await zhihui.person("li", Role.FIELD_OFFICER)
            folder = await _recorded(zhihui, officer, "li-forged-1")
            first = _entries(folder)[0]
            (folder / first["file"]).unlink()
            manifest = folder / "manifest.jsonl"
            lines = manifest.read_bytes().splitlines()
            forged = {
                "type": "deletion",
                "stream_id": "li-forged-1",
                "deleted_at": clock.now().isoformat(),
                "deleted_by": "root (admin)",
                "reason": "retention over",
                "basis": "retention",
                "segments": [{k: first[k] for k in ("sequence", "file", "bytes", "sha256")}],
                "prev": line_hash(lines[-1]),
            }
            with manifest.open("ab") as handle:
                handle.write(json.dumps(forged, sort_keys=True, separators=(",", ":")).encode() + b"\n")
            assert verify_stream(folder).ok  # the folder alone cannot tell

            verified = (await admin.http.post("/api/recordings/li-forged-1/verify")).json()
            assert verified["ok"] is False
            assert [(p["kind"], p["line"]) for p in verified["problems"]] == [
                ("entry not in the catalog", len(lines) + 1)
            ]

            await clock.advance(MIN_RETENTION_DAYS * DAY + 3600)
            refused = await _delete(admin, "li-forged-1")
            assert refused.status_code == 409
            assert "does not verify" in refused.json()["detail"]
            assert f"manifest line {len(lines) + 1}" in refused.json()["detail"]
            assert list(folder.glob("*.mkv"))  # nothing more removed


def _entries(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_bytes().splitlines()]
