"""The archive on the command line (``zhihui export``, ``zhihui verify``, ``zhihui delete``): the same
rules as the API, run against the configured database and archive, audited as the local operator.

The CLI parses arguments, draws progress and prints; everything else is here. Errors are
:class:`~dispatch_server.errors.DomainError` with a message for a person, raised after the
attempt was audited.
"""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from dispatch_server.archive import exports, retention
from dispatch_server.archive import service as catalog
from dispatch_server.archive.models import RecordingDeletion, RecordingSegment
from dispatch_server.archive.package import ExportPlan, build_package
from dispatch_server.archive.verification import stream_folder, verify_catalogued
from dispatch_server.audit import service as audit
from dispatch_server.audit.models import AuditAction, Outcome
from dispatch_server.db import Database
from dispatch_server.errors import Conflict, DomainError, NotFound
from dispatch_server.incidents.models import Incident
from dispatch_server.people.models import Person
from media_relay.recording.manifest import sha256_file
from media_relay.recording.verify import StreamReport, find_streams, verify_stream
from zhihui.settings import Settings

__all__ = [
    "VerifyPlan",
    "VerifyTarget",
    "delete_recording",
    "export_package",
    "operator",
    "plan_verify",
    "run_verify",
]

MAX_AUDITED_STREAMS = 200
"""A verification names at most this many streams in its audit event's detail."""


def operator() -> audit.Actor:
    """Whoever runs the command, as the audit log names them."""
    return audit.Actor(person_id=None, name=f"cli:{getpass.getuser()}"[:64], role="cli", source="local")


@asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings.effective_database_url)
    await database.start()
    try:
        yield database
    finally:
        await database.stop()


async def _note(
    database: Database, action: AuditAction, outcome: Outcome, object: str, **detail: Any
) -> None:
    await audit.record_committed(
        database=database, action=action, outcome=outcome, actor=operator(), object=object, detail=detail
    )


# -- export ------------------------------------------------------------------------------------------


async def export_package(
    settings: Settings,
    *,
    stream_ids: list[str],
    since: datetime | None,
    until: datetime | None,
    officers: list[str],
    out: Path,
    progress: Callable[[float], None],
) -> ExportPlan:
    """Write an evidence package into ``out`` (see :mod:`dispatch_server.archive.package`)."""
    async with _database(settings) as database:
        selection = exports.Selection(stream_ids=stream_ids, since=since, until=until)
        try:
            async with database.sessions() as db_session:
                if officers:
                    rows = (
                        await db_session.execute(
                            select(Person.username, Person.id).where(Person.username.in_(officers))
                        )
                    ).all()
                    unknown = sorted(set(officers) - {username for username, _ in rows})
                    if unknown:
                        raise NotFound(f"unknown officer(s): {', '.join(unknown)}")
                    selection = exports.Selection(
                        stream_ids=stream_ids, since=since, until=until, officer_ids=[pid for _, pid in rows]
                    )
                plan = await exports.plan(
                    db_session=db_session,
                    selection=selection,
                    root=settings.recording.root,
                    requested_by=f"{operator().name} (command line)",
                )
        except DomainError as error:
            await _note(
                database,
                AuditAction.ARCHIVE_EXPORT,
                Outcome.FAILURE,
                "recordings",
                selection=selection.describe(),
                error=error.message,
            )
            raise
        detail: dict[str, Any] = {
            "selection": selection.describe(),
            "out": str(out.resolve()),
            "streams": [stream.stream_id for stream in plan.streams],
            "segments": sum(len(stream.segments) for stream in plan.streams),
        }
        try:
            await asyncio.to_thread(build_package, plan, out, progress=progress)
        except Exception as error:
            await _note(
                database,
                AuditAction.ARCHIVE_EXPORT,
                Outcome.FAILURE,
                "recordings",
                **detail,
                error=str(error)[:500],
            )
            raise
        sums = sha256_file(out / "SHA256SUMS")
        await _note(
            database, AuditAction.ARCHIVE_EXPORT, Outcome.SUCCESS, "recordings", **detail, sha256sums=sums
        )
        return plan


# -- verify ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerifyTarget:
    stream_id: str
    directory: Path
    catalogued: bool
    """The catalog knows it: its manifest is compared with the catalog too."""


@dataclass(slots=True)
class VerifyPlan:
    """What ``zhihui verify`` will check."""

    object: str
    """What was asked for, as the audit log names it: ``stream:<id>``, ``incident:<id>``, ``recordings``."""
    root: Path
    targets: list[VerifyTarget] = field(default_factory=list)
    incident: str | None = None
    """The incident's title, when one was asked for."""
    unrecorded: list[str] = field(default_factory=list)
    """Streams of the incident with nothing recorded."""

    @property
    def files(self) -> list[Path]:
        return [
            path
            for target in self.targets
            if target.directory.is_dir()
            for path in target.directory.iterdir()
            if path.is_file()
        ]


async def plan_verify(
    settings: Settings, *, root: Path, stream_ids: list[str], incident_id: int | None, all_streams: bool
) -> VerifyPlan:
    """Which streams to check: those named, an incident's (from the catalog), or every stream on disk
    or in the catalog. NotFound for a stream or incident neither knows."""
    on_disk = find_streams(root) if root.exists() else {}
    async with _database(settings) as database, database.sessions() as db_session:
        if incident_id is not None:
            incident = await db_session.get(Incident, incident_id)
            if incident is None:
                raise NotFound(f"there is no incident {incident_id}")
            wanted = await catalog.streams_of_incident(db_session=db_session, incident_id=incident_id)
            plan = VerifyPlan(object=f"incident:{incident_id}", root=root, incident=incident.title)
        elif all_streams:
            catalogued = (await db_session.scalars(select(RecordingSegment.stream_id).distinct())).all()
            wanted = sorted(set(on_disk) | set(catalogued))
            plan = VerifyPlan(object="recordings", root=root)
        else:
            wanted = list(dict.fromkeys(stream_ids))
            plan = VerifyPlan(object=f"stream:{wanted[0]}" if len(wanted) == 1 else "recordings", root=root)
        unknown = []
        for stream_id in wanted:
            folder = await stream_folder(db_session=db_session, root=root, stream_id=stream_id)
            if folder is not None:
                plan.targets.append(VerifyTarget(stream_id, folder, catalogued=True))
            elif stream_id in on_disk:
                plan.targets.append(VerifyTarget(stream_id, on_disk[stream_id], catalogued=False))
            elif incident_id is not None:
                plan.unrecorded.append(stream_id)
            else:
                unknown.append(stream_id)
        if unknown:
            raise NotFound(f"no recordings under {root} for: {', '.join(unknown)}")
    return plan


async def run_verify(
    settings: Settings, plan: VerifyPlan, *, progress: Callable[[str, int], None] | None = None
) -> list[StreamReport]:
    """Check every target (``progress(stream_id, bytes)`` as files are hashed) and audit it."""
    reports: list[StreamReport] = []
    async with _database(settings) as database:
        async with database.sessions() as db_session:
            for target in plan.targets:

                def advance(size: int, stream_id: str = target.stream_id) -> None:
                    if progress is not None:
                        progress(stream_id, size)

                if target.catalogued:
                    report = await verify_catalogued(
                        db_session=db_session, root=plan.root, stream_id=target.stream_id, progress=advance
                    )
                else:
                    report = await asyncio.to_thread(verify_stream, target.directory, progress=advance)
                reports.append(report)
        ok = all(report.ok for report in reports)
        await _note(
            database,
            AuditAction.ARCHIVE_VERIFY,
            Outcome.SUCCESS if ok else Outcome.FAILURE,
            plan.object,
            ok=ok,
            streams={r.stream_id: len(r.problems) for r in reports[:MAX_AUDITED_STREAMS]},
            problems=sum(len(report.problems) for report in reports),
            deleted=sum(report.deleted for report in reports),
        )
    return reports


# -- delete ------------------------------------------------------------------------------------------


async def delete_recording(settings: Settings, *, stream_id: str, reason: str) -> RecordingDeletion:
    """Delete a stream's recording under the retention rules (Conflict saying why when refused)."""
    actor = operator()
    days = settings.recording.retention_days
    async with _database(settings) as database:
        async with database.sessions() as db_session:
            try:
                deletion = await retention.delete_recording(
                    db_session=db_session,
                    root=settings.recording.root,
                    stream_id=stream_id,
                    retention_days=days,
                    now=datetime.now(UTC),
                    reason=reason,
                    deleted_by=f"{actor.name} (command line)",
                    deleted_by_id=None,
                )
            except DomainError as error:
                await db_session.rollback()
                outcome = Outcome.DENIED if isinstance(error, Conflict) else Outcome.FAILURE
                await _note(
                    database,
                    AuditAction.ARCHIVE_DELETE,
                    outcome,
                    f"stream:{stream_id}",
                    reason=reason,
                    retention_days=days,
                    error=error.message,
                )
                raise
            await audit.record(
                db_session=db_session,
                action=AuditAction.ARCHIVE_DELETE,
                outcome=Outcome.SUCCESS,
                actor=actor,
                object=f"stream:{stream_id}",
                detail=retention.deletion_detail(deletion),
            )
            await db_session.commit()
            return deletion
