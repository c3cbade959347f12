"""Verifying recordings (R2, R17): each stream's folder against its manifest, and the manifest
against the catalog.

:func:`media_relay.recording.verify.verify_stream` rehashes the files and walks the chain. What a
chain cannot show on its own (a last line rewritten or appended whole, a tombstone forged to
explain a removed segment, a whole folder removed) the catalog can: it kept every line's hash as
the line was catalogued. :func:`compare_with_catalog` adds those findings to the report, each with
its manifest line where there is one.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch_server.archive.models import RecordingDeletion, RecordingGap, RecordingSegment
from dispatch_server.errors import NotFound
from dispatch_server.streams.models import Stream
from media_relay.recording.recorder import MANIFEST_NAME
from media_relay.recording.verify import Problem, ProblemKind, Progress, StreamReport, verify_stream

__all__ = [
    "CataloguedLine",
    "catalog_head",
    "catalogued_lines",
    "compare_with_catalog",
    "stream_folder",
    "verify_catalogued",
]


@dataclass(frozen=True, slots=True)
class CataloguedLine:
    """A manifest line as the catalog recorded it."""

    hash: str
    what: str
    """``segment 3``, ``gap ending ...``, ``deletion 2``."""
    sequence: int | None = None
    file: str | None = None
    """The segment's file name, within the stream's folder."""


async def catalogued_lines(*, db_session: AsyncSession, stream_id: str) -> list[CataloguedLine]:
    """Every line of the stream's manifest the catalog knows: segments (deleted ones too), gaps and
    deletions."""
    lines = [
        CataloguedLine(row.entry_hash, f"segment {row.sequence}", row.sequence, Path(row.file).name)
        for row in await db_session.scalars(
            select(RecordingSegment).where(RecordingSegment.stream_id == stream_id)
        )
    ]
    lines += [
        CataloguedLine(row.entry_hash, f"gap ending {row.ended_at.isoformat()}")
        for row in await db_session.scalars(select(RecordingGap).where(RecordingGap.stream_id == stream_id))
    ]
    lines += [
        CataloguedLine(
            row.entry_hash,
            f"deletion {row.id} by {row.deleted_by}"
            + ("" if row.finished_at else ", unfinished: ask for it again to finish it"),
        )
        for row in await db_session.scalars(
            select(RecordingDeletion).where(RecordingDeletion.stream_id == stream_id)
        )
    ]
    return lines


def catalog_head(report: StreamReport, catalogued: list[CataloguedLine]) -> str | None:
    """The hash of the latest manifest line the catalog knows: the head, when all is well."""
    known = {line.hash for line in catalogued}
    return next((h for h in reversed(report.line_hashes) if h in known), None)


def _segment_lines(directory: Path) -> dict[int, int]:
    """Manifest line of each segment sequence (the first listing)."""
    found: dict[int, int] = {}
    path = directory / MANIFEST_NAME
    if not path.exists():
        return found
    for number, line in enumerate(path.read_bytes().split(b"\n"), start=1):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or entry.get("type") != "segment":
            continue
        if isinstance(entry.get("sequence"), int):
            found.setdefault(entry["sequence"], number)
    return found


def compare_with_catalog(report: StreamReport, catalogued: list[CataloguedLine], *, live: bool) -> None:
    """Add to ``report`` every catalogued line the manifest lacks and, unless the stream is live
    (its newest lines may not be catalogued yet), every manifest line the catalog lacks."""
    by_hash = {line.hash: line for line in catalogued}
    line_of = {h: number for number, h in enumerate(report.line_hashes, start=1)}
    segment_lines = _segment_lines(report.directory)
    explained: set[int] = set()
    for line in catalogued:
        if line.hash in line_of:
            continue
        number = segment_lines.get(line.sequence) if line.sequence is not None else None
        if number is not None and number <= len(report.line_hashes):
            found = report.line_hashes[number - 1]
            if found not in by_hash:
                report.problems.append(
                    Problem(
                        ProblemKind.CATALOGUED_ENTRY_MISSING,
                        number,
                        line.file,
                        f"line hash {line.hash}, as catalogued ({line.what})",
                        f"line hash {found}",
                        "this line was changed after it was catalogued",
                    )
                )
                explained.add(number)
                continue
        report.problems.append(
            Problem(
                ProblemKind.CATALOGUED_ENTRY_MISSING,
                None,
                line.file,
                f"a line with hash {line.hash} ({line.what})",
                "no such line in the manifest",
                "a catalogued line was removed or changed",
            )
        )
    if live:
        return
    unreadable = {p.line for p in report.problems if p.kind is ProblemKind.LINE_UNREADABLE}
    for number, found in enumerate(report.line_hashes, start=1):
        if found in by_hash or number in explained or number in unreadable:
            continue
        report.problems.append(
            Problem(
                ProblemKind.ENTRY_NOT_CATALOGUED,
                number,
                None,
                "a line the catalog has",
                f"line hash {found}",
                "written or changed after it was catalogued (or the catalog is behind: a restart "
                "of the server catches it up)",
            )
        )


async def stream_folder(*, db_session: AsyncSession, root: Path, stream_id: str) -> Path | None:
    """Where the catalog says the stream's segments are (deleted ones count); None if it knows none."""
    file = await db_session.scalar(
        select(RecordingSegment.file).where(RecordingSegment.stream_id == stream_id).limit(1)
    )
    return (root / file).parent if file is not None else None


async def verify_catalogued(
    *, db_session: AsyncSession, root: Path, stream_id: str, progress: Progress | None = None
) -> StreamReport:
    """Check a catalogued stream: its folder against its manifest, its manifest against the
    catalog. NotFound when the catalog knows no segment of it."""
    directory = await stream_folder(db_session=db_session, root=root, stream_id=stream_id)
    stream = await db_session.get(Stream, stream_id)
    if directory is None or stream is None:
        raise NotFound(f"no recording of stream {stream_id!r}")
    catalogued = await catalogued_lines(db_session=db_session, stream_id=stream_id)
    if directory.is_dir():
        report = await asyncio.to_thread(verify_stream, directory, progress=progress)
    else:
        report = StreamReport(stream_id=stream_id, directory=directory)
        report.problems.append(
            Problem(
                ProblemKind.MANIFEST_MISSING,
                None,
                MANIFEST_NAME,
                "the stream's folder, with its manifest",
                f"no folder {directory}",
                "the whole folder was removed or moved",
            )
        )
    compare_with_catalog(report, catalogued, live=stream.live)
    return report
