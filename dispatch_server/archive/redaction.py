"""Redactions (issue 4): a stream's recording, or a time range of it, as a derived copy with the
faces blurred, made in the background like an export.

A request becomes a plan (which segments, from the catalog), then a catalog row naming those
segments and their hashes, then the copy (:func:`build`, in a thread): each segment is first
checked against its catalogued SHA-256, so a copy never names a hash its source no longer has; the
faces are blurred (:mod:`dispatch_server.archive.faces`); a sidecar JSON beside the copy names the
sources, the range, the detector and the copy's own hash. The segments are only ever read.

:class:`RedactionRunner` owns the running redactions (a :class:`~dispatch_server.archive.jobs.
JobRunner`, as exports have): progress goes to the row about twice a second, :meth:`stop` cancels.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_server.archive import service as catalog
from dispatch_server.archive.faces import CASCADES, RedactionCancelled, SourceSegment, redact_segments
from dispatch_server.archive.jobs import FileJob, JobResult, JobRunner, update_row
from dispatch_server.archive.models import Redaction, RedactionSource, RedactionState
from dispatch_server.archive.remux import container_for
from dispatch_server.audit import service as audit
from dispatch_server.audit.models import AuditAction, Outcome
from dispatch_server.db import Database, utcnow
from dispatch_server.errors import Conflict, DomainError, Invalid, NotFound
from media_relay.recording.manifest import sha256_file, utc_iso
from zhihui.settings import Settings

__all__ = [
    "Built",
    "RedactionPlan",
    "RedactionRunner",
    "build",
    "create",
    "plan",
    "redact_locally",
    "sidecar_path",
]

HASHING_SHARE = 0.05
"""The part of the progress bar that checking the sources' hashes takes."""


@dataclass(frozen=True, slots=True)
class PlannedSource:
    segment: SourceSegment
    file: str
    """Relative to the recordings root."""


@dataclass(slots=True)
class RedactionPlan:
    stream_id: str
    video_codec: str | None
    since: datetime | None
    until: datetime | None
    sources: list[PlannedSource] = field(default_factory=list)

    @property
    def container(self) -> str:
        return container_for(self.video_codec)


def sidecar_path(copy: Path) -> Path:
    """The sidecar JSON of a redacted copy: ``<copy>.json``."""
    return copy.with_name(copy.name + ".json")


async def plan(
    *,
    db_session: AsyncSession,
    root: Path,
    stream_id: str,
    since: datetime | None = None,
    until: datetime | None = None,
) -> RedactionPlan:
    """The stream's segments that overlap the range (all of them when it is open), from the catalog.
    NotFound without any; Conflict when one of their files is missing."""
    if since is not None and until is not None and until <= since:
        raise Invalid("the time range ends before it starts")
    recording = await catalog.recording_of(db_session=db_session, stream_id=stream_id)
    if recording.stream.video_codec is None:
        raise Invalid(f"stream {stream_id!r} has no video to redact")
    chosen = [
        segment
        for segment in recording.segments
        if segment.video_frames > 0
        and (since is None or segment.ended_at >= since)
        and (until is None or segment.started_at <= until)
    ]
    if not chosen:
        raise NotFound(f"stream {stream_id!r} has no recorded video in that time range")
    missing = [segment.file for segment in chosen if not (root / segment.file).exists()]
    if missing:
        raise Conflict(f"segment file(s) missing from the archive: {', '.join(missing[:5])}")
    return RedactionPlan(
        stream_id=stream_id,
        video_codec=recording.stream.video_codec,
        since=since,
        until=until,
        sources=[
            PlannedSource(
                SourceSegment(
                    sequence=segment.sequence,
                    path=root / segment.file,
                    sha256=segment.sha256,
                    started_at=segment.started_at,
                    media_start=segment.media_start,
                    video_frames=segment.video_frames,
                ),
                segment.file,
            )
            for segment in chosen
        ],
    )


async def create(
    *, db_session: AsyncSession, plan: RedactionPlan, requested_by: int | None, requested_by_name: str
) -> Redaction:
    """The catalog row, naming the source segments and their hashes (flushed, not committed)."""
    redaction = Redaction(
        stream_id=plan.stream_id,
        requested_by=requested_by,
        requested_by_name=requested_by_name[:128],
        since=plan.since,
        until=plan.until,
        state=RedactionState.QUEUED,
        sources=[
            RedactionSource(sequence=source.segment.sequence, file=source.file, sha256=source.segment.sha256)
            for source in plan.sources
        ],
    )
    db_session.add(redaction)
    await db_session.flush()
    return redaction


@dataclass(frozen=True, slots=True)
class Built:
    path: Path
    bytes: int
    sha256: str
    frames: int
    frames_with_faces: int
    sidecar: dict[str, Any]


def build(
    plan: RedactionPlan,
    target: Path,
    *,
    redaction_id: int | None,
    requested_by: str,
    requested_at: datetime,
    progress: Callable[[float], None] | None = None,
    cancelled: threading.Event | None = None,
) -> Built:
    """Check the sources against their hashes, write the copy to ``target`` and its sidecar beside
    it. Plain file work, for a thread. Raises ValueError when a source has changed or the range
    holds no picture; nothing is left behind then."""
    report = progress or (lambda _fraction: None)
    for index, source in enumerate(plan.sources):
        if cancelled is not None and cancelled.is_set():
            raise RedactionCancelled("the redaction was cancelled")
        found = sha256_file(source.segment.path)
        if found != source.segment.sha256:
            raise ValueError(
                f"segment {source.file} no longer matches its manifest (sha256 {found}, "
                f"catalogued {source.segment.sha256}): not redacted; run zhihui verify"
            )
        report(HASHING_SHARE * (index + 1) / len(plan.sources))
    target.parent.mkdir(parents=True, exist_ok=True)
    result = redact_segments(
        [source.segment for source in plan.sources],
        target,
        video_codec=plan.video_codec,
        since=plan.since,
        until=plan.until,
        progress=lambda fraction: report(HASHING_SHARE + (1 - HASHING_SHARE) * fraction),
        cancelled=cancelled,
    )
    digest = sha256_file(target)
    size = target.stat().st_size
    sidecar = {
        "kind": "zhihui redacted copy",
        "note": (
            "A derived copy, not evidence: faces blurred and the video encoded again. The evidence is "
            "the segments named in derived_from, unchanged; check them with zhihui verify."
        ),
        "redaction_id": redaction_id,
        "stream_id": plan.stream_id,
        "derived_from": [
            {"sequence": source.segment.sequence, "file": source.file, "sha256": source.segment.sha256}
            for source in plan.sources
        ],
        "range": {
            "from": utc_iso(plan.since) if plan.since else None,
            "to": utc_iso(plan.until) if plan.until else None,
        },
        "copy": {
            "file": target.name,
            "sha256": digest,
            "bytes": size,
            "container": result.container,
            "video_codec": result.video_codec,
            "width": result.width,
            "height": result.height,
            "frames": result.frames,
            "seconds": result.seconds,
            "audio": "copied as recorded" if result.audio_packets else "none",
        },
        "faces": {
            "detector": f"OpenCV {cv2.__version__} Haar cascades, frontal and profile (both ways)",
            "cascades": list(CASCADES),
            "frames_with_faces": result.frames_with_faces,
            "detections": result.detections,
        },
        "requested_by": requested_by,
        "requested_at": utc_iso(requested_at),
        "made_at": utc_iso(),
    }
    text = json.dumps(sidecar, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    sidecar_path(target).write_text(text, encoding="utf-8")
    report(1.0)
    return Built(target, size, digest, result.frames, result.frames_with_faces, sidecar)


async def _update(database: Database, redaction_id: int, **values: object) -> None:
    await update_row(database, Redaction, redaction_id, **values)


class RedactionRunner(JobRunner):
    """Runs redactions in this process: one task each, the file work in a thread."""

    def __init__(self, *, database: Database, folder: Path) -> None:
        super().__init__(
            database=database,
            model=Redaction,
            action=AuditAction.ARCHIVE_REDACT,
            noun="redaction",
            cancelled_error=RedactionCancelled,
            expected_errors=(ValueError,),
        )
        self.folder = folder

    def path_of(self, redaction: Redaction) -> Path | None:
        """The copy on disk (made here, or by the command line), once done."""
        return self.folder / redaction.file if redaction.file else None

    def submit(
        self,
        redaction_id: int,
        *,
        plan: RedactionPlan,
        actor: audit.Actor,
        requested_by: str,
        requested_at: datetime,
    ) -> None:
        target = self.folder / f"redaction-{redaction_id}.{plan.container}"

        def work(progress: Callable[[float], None], cancelled: threading.Event) -> JobResult:
            built = build(
                plan,
                target,
                redaction_id=redaction_id,
                requested_by=requested_by,
                requested_at=requested_at,
                progress=progress,
                cancelled=cancelled,
            )
            return JobResult(
                values={
                    "file": built.path.name,
                    "bytes": built.bytes,
                    "sha256": built.sha256,
                    "frames": built.frames,
                    "frames_with_faces": built.frames_with_faces,
                },
                detail={
                    "sha256": built.sha256,
                    "bytes": built.bytes,
                    "frames": built.frames,
                    "frames_with_faces": built.frames_with_faces,
                    "derived_from": [source.segment.sha256 for source in plan.sources],
                },
            )

        def discard() -> None:
            target.unlink(missing_ok=True)

        job = FileJob(build=work, discard=discard, actor=actor, detail={"stream_id": plan.stream_id})
        self.start(redaction_id, job)


async def redact_locally(
    settings: Settings,
    *,
    stream_id: str,
    since: datetime | None,
    until: datetime | None,
    out: Path,
    progress: Callable[[float], None] | None = None,
) -> tuple[int, Built]:
    """``zhihui redact``: the same as the API, run here against the configured database and
    archive, as the local operator; the copy goes into ``out``. Catalogued and audited; a
    :class:`~dispatch_server.errors.DomainError` after the attempt was audited."""
    from dispatch_server.archive.local import operator

    actor = operator()
    requested_by = f"{actor.name} (command line)"
    database = Database(settings.effective_database_url)
    await database.start()
    try:

        async def note(outcome: Outcome, object: str, detail: dict[str, Any]) -> None:
            await audit.record_committed(
                database=database,
                action=AuditAction.ARCHIVE_REDACT,
                outcome=outcome,
                actor=actor,
                object=object,
                detail=detail,
            )

        try:
            async with database.sessions() as db_session:
                chosen = await plan(
                    db_session=db_session,
                    root=settings.recording.root,
                    stream_id=stream_id,
                    since=since,
                    until=until,
                )
                row = await create(
                    db_session=db_session, plan=chosen, requested_by=None, requested_by_name=requested_by
                )
                redaction_id, requested_at = row.id, row.requested_at
                await db_session.commit()
        except DomainError as error:
            await note(Outcome.FAILURE, f"stream:{stream_id}", {"error": error.message})
            raise
        object = f"redaction:{redaction_id}"
        target = (out / f"{stream_id}-redacted-{redaction_id}.{chosen.container}").resolve()
        detail = {
            "stream_id": stream_id,
            "out": str(target),
            "derived_from": [source.segment.sha256 for source in chosen.sources],
        }
        await note(Outcome.SUCCESS, object, {**detail, "stage": "requested"})
        try:
            built = await asyncio.to_thread(
                build,
                chosen,
                target,
                redaction_id=redaction_id,
                requested_by=requested_by,
                requested_at=requested_at,
                progress=progress,
            )
        except Exception as error:
            await _update(
                database,
                redaction_id,
                state=RedactionState.FAILED,
                error=str(error)[:2000],
                finished_at=utcnow(),
            )
            await note(Outcome.FAILURE, object, {**detail, "stage": "build", "error": str(error)[:500]})
            if isinstance(error, ValueError):
                raise Conflict(str(error)) from None
            raise
        await _update(
            database,
            redaction_id,
            state=RedactionState.DONE,
            progress=1.0,
            file=str(built.path),
            bytes=built.bytes,
            sha256=built.sha256,
            frames=built.frames,
            frames_with_faces=built.frames_with_faces,
            finished_at=utcnow(),
        )
        await note(Outcome.SUCCESS, object, {**detail, "stage": "built", "sha256": built.sha256})
        return redaction_id, built
    finally:
        await database.stop()
