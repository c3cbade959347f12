"""Removing a stream's segments lawfully (R2): a tombstone line in its manifest, then the files.

The manifest stays append-only and its chain unbroken: a deletion edits and removes no line. It
appends one ``"type": "deletion"`` entry naming every segment it removes (sequence, file, bytes,
SHA-256, and a recovered segment's original), who asked, when, why and on what basis, and only
then removes the files. :func:`~media_relay.recording.verify.verify_stream` then finds each missing
file accounted for by a later tombstone and counts it as deleted, not as tampering.

Two steps, so that the caller can record the deletion elsewhere (the catalog) in between:
:func:`prepare_tombstone` makes the exact line, :func:`apply_tombstone` appends it (fsynced) and
removes the files. Applying is idempotent: run again after a crash, it appends nothing twice and
removes what is left. The tombstone always goes before the files, so a crash never leaves files
missing with nothing to explain them. What decides whether a deletion is allowed (retention,
holds) is not here: see :mod:`dispatch_server.archive.retention`.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from media_relay.recording.manifest import Manifest, line_hash, utc_iso
from media_relay.recording.recorder import MANIFEST_NAME

__all__ = [
    "DELETION",
    "Removal",
    "Tombstone",
    "TombstoneRefused",
    "apply_tombstone",
    "deleted_files",
    "prepare_tombstone",
    "tombstones",
]

DELETION = "deletion"
"""The ``type`` of a tombstone entry."""
_SEGMENT_KEYS = ("sequence", "file", "bytes", "sha256", "recovered", "original")


class TombstoneRefused(Exception):
    """The manifest is not as the tombstone was prepared for (it grew since): nothing was changed."""


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A tombstone line, ready to append."""

    line: bytes
    """The manifest line, without its newline."""
    hash: str
    """Its hash: the manifest's head once appended."""
    sequences: list[int]
    """The segments it deletes."""
    bytes: int
    """Their recorded size, originals of recovered segments included."""


@dataclass(slots=True)
class Removal:
    """What :func:`apply_tombstone` did."""

    appended: bool = False
    """The tombstone was appended now (False: it was there already, from an interrupted run)."""
    files: list[str] = field(default_factory=list)
    """Files removed now."""
    bytes: int = 0
    """Their size."""


def _files_of(segment: dict[str, Any]) -> list[dict[str, Any]]:
    files = [segment]
    original = segment.get("original")
    if segment.get("recovered") and isinstance(original, dict):
        files.append(original)
    return files


def deleted_files(entries: list[dict[str, Any]]) -> set[str]:
    """Every file some tombstone in ``entries`` names."""
    names: set[str] = set()
    for entry in entries:
        if entry.get("type") == DELETION:
            for segment in entry.get("segments") or []:
                if isinstance(segment, dict):
                    names.update(str(item.get("file")) for item in _files_of(segment))
    return names


def tombstones(directory: Path) -> list[tuple[dict[str, Any], str, str]]:
    """Every tombstone in the stream's manifest: its entry, its line's hash and the line itself.
    Lines that are not JSON or lack a deletion time are left out (``verify`` reports those)."""
    path = directory / MANIFEST_NAME
    if not path.exists():
        return []
    found = []
    for raw in path.read_bytes().splitlines():
        entries = _entries([raw])
        if entries and entries[0].get("type") == DELETION and isinstance(entries[0].get("deleted_at"), str):
            found.append((entries[0], line_hash(raw), raw.decode(errors="replace")))
    return found


def prepare_tombstone(
    directory: Path,
    *,
    deleted_by: str,
    reason: str,
    basis: str,
    at: datetime,
    facts: dict[str, Any] | None = None,
) -> Tombstone | None:
    """The line that deletes every segment of the stream's manifest not deleted yet; None if none.
    ``facts`` go into it too (what the basis rested on, e.g. the retention and when it ran out)."""
    manifest = Manifest(directory / MANIFEST_NAME)
    entries = manifest.entries()
    already = deleted_files(entries)
    segments = [e for e in entries if e.get("type") == "segment" and str(e.get("file")) not in already]
    if not segments:
        return None
    entry = {
        "type": DELETION,
        "stream_id": directory.name,
        "deleted_at": utc_iso(at),
        "deleted_by": deleted_by,
        "reason": reason,
        "basis": basis,
        **(facts or {}),
        "segments": [{key: s[key] for key in _SEGMENT_KEYS if key in s} for s in segments],
        "prev": manifest.head,
    }
    line = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return Tombstone(
        line=line,
        hash=line_hash(line),
        sequences=[int(s["sequence"]) for s in segments],
        bytes=sum(int(item.get("bytes") or 0) for s in segments for item in _files_of(s)),
    )


def apply_tombstone(directory: Path, line: bytes) -> Removal:
    """Append the tombstone unless it is there, then remove every file a tombstone names.
    TombstoneRefused when it is not there and the manifest's head is not the line's ``prev``."""
    path = directory / MANIFEST_NAME
    with path.open("rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one deletion at a time, across processes
        removal = Removal()
        lines = [raw for raw in path.read_bytes().splitlines() if raw.strip()]
        if line_hash(line) not in {line_hash(raw) for raw in lines}:
            head = line_hash(lines[-1]) if lines else None
            if json.loads(line).get("prev") != head:
                raise TombstoneRefused(
                    f"the manifest of {directory.name} changed since the deletion was asked"
                )
            _append(path, line)
            removal.appended = True
            lines.append(line)
        for name in sorted(deleted_files(_entries(lines))):
            target = directory / name
            if target.parent == directory and target.is_file():
                removal.bytes += target.stat().st_size
                target.unlink()
                removal.files.append(name)
        if removal.files:
            _sync(directory)
        return removal


def _entries(lines: list[bytes]) -> list[dict[str, Any]]:
    entries = []
    for raw in lines:
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def _append(path: Path, line: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, line + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
