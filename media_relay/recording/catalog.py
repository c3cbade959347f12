"""What the dispatch server's catalog learns from a manifest entry: a sealed segment or a gap.

Used by the registry as each entry is written, and by whoever rebuilds a catalog from an archive
(segments sealed after a crash, events lost while the dispatch server was down).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from media_relay.events import RecordingGap, SegmentSealed
from media_relay.recording.manifest import line_hash
from media_relay.recording.recorder import MANIFEST_NAME

__all__ = ["catalog_event", "manifest_events"]


def _time(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def catalog_event(
    entry: dict[str, Any], *, entry_hash: str, directory: Path, root: Path, officer_id: str = ""
) -> SegmentSealed | RecordingGap | None:
    """The event for one manifest entry; None for an entry of another kind or without times."""
    stream_id = str(entry.get("stream_id") or directory.name)
    ended_at = _time(entry.get("ended_at"))
    if ended_at is None:
        return None
    if entry.get("type") == "gap":
        return RecordingGap(
            stream_id=stream_id,
            officer_id=officer_id,
            started_at=_time(entry.get("started_at")),
            ended_at=ended_at,
            reason=str(entry.get("reason", "")),
            entry_hash=entry_hash,
        )
    started_at = _time(entry.get("started_at"))
    if entry.get("type") != "segment" or started_at is None:
        return None
    frames = entry.get("frames") if isinstance(entry.get("frames"), dict) else {}
    return SegmentSealed(
        stream_id=stream_id,
        officer_id=officer_id,
        file=(directory / str(entry["file"])).relative_to(root).as_posix(),
        sequence=int(entry["sequence"]),
        started_at=started_at,
        ended_at=ended_at,
        media_start=float(entry.get("media_start") or 0.0),
        media_end=float(entry.get("media_end") or 0.0),
        frames={str(kind): int(count) for kind, count in (frames or {}).items()},
        bytes=int(entry.get("bytes") or 0),
        sha256=str(entry.get("sha256", "")),
        recovered=bool(entry.get("recovered", False)),
        entry_hash=entry_hash,
    )


def manifest_events(directory: Path, root: Path) -> Iterator[SegmentSealed | RecordingGap]:
    """Every segment and gap in one stream folder's manifest, in order. Unreadable lines are
    skipped here: ``zhihui verify`` is the place that reports them."""
    path = directory / MANIFEST_NAME
    if not path.exists():
        return
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            event = catalog_event(entry, entry_hash=line_hash(line), directory=directory, root=root)
        except (ValueError, KeyError, TypeError):
            continue
        if event is not None:
            yield event
