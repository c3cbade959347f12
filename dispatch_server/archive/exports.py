"""Exports (issue 4): a selection becomes a plan (SQL), then a package (files, in a thread), then a zip.

:class:`ExportRunner` owns the running exports (a :class:`~dispatch_server.archive.jobs.JobRunner`):
:meth:`~ExportRunner.submit` starts one as a task, :meth:`~ExportRunner.stop` cancels them and
waits. Progress is written to the export's row about twice a second, so any dispatch process can
answer ``GET /api/exports/{id}``.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_server.archive import service as catalog
from dispatch_server.archive.jobs import FileJob, JobResult, JobRunner, JobState
from dispatch_server.archive.models import Export
from dispatch_server.archive.package import (
    ExportCancelled,
    ExportPlan,
    GapPlan,
    SegmentPlan,
    StreamPlan,
    build_package,
    zip_package,
)
from dispatch_server.audit import service as audit
from dispatch_server.audit.models import AuditAction
from dispatch_server.db import Database, utcnow
from dispatch_server.errors import Invalid, NotFound

__all__ = ["ExportRunner", "ExportState", "Selection", "create", "plan"]


ExportState = JobState
"""An export's ``state``."""


@dataclass(frozen=True, slots=True)
class Selection:
    """What to export: streams by id, or a time range (optionally only some officers' streams)."""

    stream_ids: list[str] = field(default_factory=list)
    since: datetime | None = None
    until: datetime | None = None
    officer_ids: list[int] = field(default_factory=list)

    def check(self) -> None:
        if not self.stream_ids and (self.since is None or self.until is None):
            raise Invalid("name the streams to export, or a time range with both from and to")
        if self.since is not None and self.until is not None and self.until <= self.since:
            raise Invalid("the time range ends before it starts")

    def describe(self) -> str:
        parts = []
        if self.stream_ids:
            parts.append("streams " + ", ".join(self.stream_ids))
        if self.since is not None or self.until is not None:
            parts.append(
                f"from {self.since.isoformat() if self.since else '…'} to "
                f"{self.until.isoformat() if self.until else '…'}"
            )
        if self.officer_ids:
            parts.append("officers " + ", ".join(str(pid) for pid in self.officer_ids))
        return "; ".join(parts)

    def to_json(self) -> str:
        return json.dumps(
            {
                "stream_ids": self.stream_ids,
                "since": self.since.isoformat() if self.since else None,
                "until": self.until.isoformat() if self.until else None,
                "officer_ids": self.officer_ids,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Selection:
        raw = json.loads(text)
        return cls(
            stream_ids=list(raw.get("stream_ids") or []),
            since=datetime.fromisoformat(raw["since"]) if raw.get("since") else None,
            until=datetime.fromisoformat(raw["until"]) if raw.get("until") else None,
            officer_ids=[int(pid) for pid in raw.get("officer_ids") or []],
        )


async def plan(
    *, db_session: AsyncSession, selection: Selection, root: Path, requested_by: str
) -> ExportPlan:
    """What the selection covers, from the catalog; NotFound when it covers no segment."""
    selection.check()
    found = await catalog.search(
        db_session=db_session,
        officer_ids=selection.officer_ids or None,
        stream_ids=selection.stream_ids or None,
        since=selection.since,
        until=selection.until,
    )
    result = ExportPlan(requested_by=requested_by, requested_at=utcnow(), selection=selection.describe())
    for recording in found:
        if not recording.segments:
            continue
        stream = recording.stream
        paths = [root / segment.file for segment in recording.segments]
        result.streams.append(
            StreamPlan(
                stream_id=stream.id,
                officer=f"{stream.officer.display_name} ({stream.officer.username}, id {stream.officer.id})",
                device=stream.device,
                video_codec=stream.video_codec,
                audio_codec=stream.audio_codec,
                directory=paths[0].parent,
                segments=[
                    SegmentPlan(
                        sequence=segment.sequence,
                        path=path,
                        started_at=segment.started_at,
                        ended_at=segment.ended_at,
                        bytes=segment.bytes,
                        sha256=segment.sha256,
                        recovered=segment.recovered,
                        playable=segment.video_frames + segment.audio_frames > 0,
                    )
                    for segment, path in zip(recording.segments, paths, strict=True)
                ],
                gaps=[GapPlan(gap.started_at, gap.ended_at, gap.reason) for gap in recording.gaps],
            )
        )
    if not result.streams:
        raise NotFound(f"no recorded segments for {selection.describe()}")
    missing = [str(s.path) for stream in result.streams for s in stream.segments if not s.path.exists()]
    if missing:
        raise NotFound(f"segment file(s) missing from the archive: {', '.join(missing[:5])}")
    return result


async def create(*, db_session: AsyncSession, selection: Selection, requested_by: int) -> Export:
    export = Export(requested_by=requested_by, query=selection.to_json(), state=ExportState.QUEUED)
    db_session.add(export)
    await db_session.flush()
    return export


class ExportRunner(JobRunner):
    """Runs exports in this process: one task each, the package and its zip made in a thread."""

    def __init__(self, *, database: Database, root: Path, folder: Path) -> None:
        super().__init__(
            database=database,
            model=Export,
            action=AuditAction.ARCHIVE_EXPORT,
            noun="export",
            cancelled_error=ExportCancelled,
        )
        self._root = root
        self.folder = folder

    def zip_path(self, export: Export) -> Path | None:
        return self.folder / export.file if export.file else None

    def submit(self, export_id: int, *, plan: ExportPlan, actor: audit.Actor) -> None:
        work = self.folder / f"export-{export_id}"
        target = self.folder / f"evidence-{export_id}.zip"

        def build(progress: Callable[[float], None], cancelled: threading.Event) -> JobResult:
            shutil.rmtree(work, ignore_errors=True)
            build_package(plan, work, progress=lambda value: progress(value * 0.95), cancelled=cancelled)
            size, digest = zip_package(work, target)
            shutil.rmtree(work, ignore_errors=True)
            return JobResult(
                values={"file": target.name, "bytes": size, "sha256": digest},
                detail={
                    "zip_sha256": digest,
                    "bytes": size,
                    "streams": [stream.stream_id for stream in plan.streams],
                    "segments": sum(len(stream.segments) for stream in plan.streams),
                },
            )

        def discard() -> None:
            shutil.rmtree(work, ignore_errors=True)

        self.start(export_id, FileJob(build=build, discard=discard, actor=actor))
