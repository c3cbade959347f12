"""Checking an archive (R2, R17): every segment against its manifest entry, every entry against the chain.

:func:`verify_stream` rehashes every file in one stream's folder and walks the manifest line by line.
It reports each problem with where it is (manifest line, file) and what was expected against what
was found; it prints nothing. What it finds:

- a line whose ``prev`` is not the hash of the line before it (a line edited, removed, inserted
  or moved: the chain breaks at the line after the change);
- a line that is not JSON, or an entry that contradicts its folder (stream id, sequence, name);
- a segment that is missing, shorter or longer than recorded, or altered in place;
- a segment whose recorded content is found in another file (files swapped or renamed);
- a file in the folder that no entry lists;
- a tombstone (a lawful deletion, see :mod:`media_relay.recording.deletion`) that names a segment
  no line above it lists as it is, or a file a tombstone names that is still there.

A segment whose file is missing because a later tombstone removed it is no problem: it is counted
in :attr:`StreamReport.deleted` and the deletion is listed in :attr:`StreamReport.deletions`.

What a chain cannot show on its own: a last line rewritten or appended whole (a tombstone included),
with a correct ``prev``. Catch that by keeping each line's hash somewhere else (the catalog) and
comparing: :attr:`StreamReport.line_hashes` are there for it, and :class:`ProblemKind` has the kinds.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from media_relay.recording.deletion import DELETION
from media_relay.recording.manifest import GENESIS_HASH, line_hash, sha256_file
from media_relay.recording.recorder import MANIFEST_NAME

__all__ = [
    "DeletionNote",
    "Problem",
    "ProblemKind",
    "StreamReport",
    "find_streams",
    "problems_of",
    "segment_file_name",
    "verify_stream",
]


Progress = Callable[[int], None]
"""Called with the number of bytes just hashed, for a progress bar."""


class ProblemKind(enum.StrEnum):
    MANIFEST_MISSING = "manifest missing"
    LINE_UNREADABLE = "line unreadable"
    CHAIN_BROKEN = "chain broken"
    ENTRY_INCONSISTENT = "entry inconsistent"
    SEGMENT_MISSING = "segment missing"
    SEGMENT_MOVED = "segment moved"
    SEGMENT_TRUNCATED = "segment truncated"
    SEGMENT_SIZE_CHANGED = "segment size changed"
    SEGMENT_ALTERED = "segment altered"
    FILE_UNLISTED = "file not in manifest"
    DELETION_UNFINISHED = "deleted segment still present"
    CATALOGUED_ENTRY_MISSING = "catalogued entry missing"
    """Found by comparing with the catalog: a line it catalogued is not in the manifest any more."""
    ENTRY_NOT_CATALOGUED = "entry not in the catalog"
    """Found by comparing with the catalog: a line it never catalogued."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in a stream's folder."""

    kind: ProblemKind
    """What is wrong."""
    line: int | None
    """The manifest line (1-based) it concerns, or None for a file no line lists."""
    file: str | None
    """The file it concerns, by name within the stream's folder."""
    expected: str
    """What the manifest (or the chain) says should be there."""
    found: str
    """What is there."""
    note: str = ""
    """What the finding most likely means, when that can be told."""


@dataclass(frozen=True, slots=True)
class DeletionNote:
    """A lawful deletion the manifest records (a tombstone line)."""

    line: int
    """Its manifest line (1-based)."""
    segments: list[int]
    """The sequences of the segments it removed."""
    deleted_at: str
    deleted_by: str
    reason: str
    basis: str
    """What allowed it, e.g. ``retention``."""


@dataclass(slots=True)
class StreamReport:
    """The outcome of checking one stream's folder."""

    stream_id: str
    """The folder's name, which is the stream's id."""
    directory: Path
    """The stream's folder."""
    lines: int = 0
    """Manifest lines read."""
    segments: int = 0
    """Segment entries in the manifest."""
    gaps: int = 0
    """Gap entries in the manifest."""
    recovered: int = 0
    """Segment entries sealed after a crash."""
    deleted: int = 0
    """Segment entries whose files a later tombstone removed (lawfully, not missing)."""
    deletions: list[DeletionNote] = field(default_factory=list)
    """The tombstones, in manifest order."""
    line_hashes: list[str] = field(default_factory=list)
    """Each manifest line's hash, in order, to compare with a copy kept elsewhere."""
    bytes_hashed: int = 0
    """Bytes of segment files hashed."""
    head: str = GENESIS_HASH
    """Hash of the manifest's last line: the chain's tip, to be kept outside the folder."""
    problems: list[Problem] = field(default_factory=list)
    """Everything found wrong, in manifest order, then unlisted files."""

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True)
class _FileFacts:
    size: int
    sha256: str


def segment_file_name(stream_id: str, sequence: int, *, recovered: bool = False) -> str:
    """The name the recorder (or crash recovery, for a remuxed copy) gives a segment."""
    return f"{stream_id}-{sequence:05d}{'.recovered' if recovered else ''}.mkv"


def find_streams(root: Path) -> dict[str, Path]:
    """Every stream folder under an archive root (``<yyyy>/<mm>/<dd>/<stream-id>``), by stream id."""
    found: dict[str, Path] = {}
    for directory in sorted(root.glob("*/*/*/*")):
        if directory.is_dir() and ((directory / MANIFEST_NAME).exists() or any(directory.glob("*.mkv"))):
            found.setdefault(directory.name, directory)
    return found


def verify_stream(directory: Path, *, progress: Progress | None = None) -> StreamReport:
    """Check one stream's folder against its manifest. Never raises for what it finds."""
    report = StreamReport(stream_id=directory.name, directory=directory)
    files = _hash_files(directory, report, progress)
    manifest_path = directory / MANIFEST_NAME
    check = _ManifestCheck(report, files)
    if not manifest_path.exists():
        report.problems.append(
            Problem(ProblemKind.MANIFEST_MISSING, None, MANIFEST_NAME, "a manifest", "no such file")
        )
    else:
        check.run(manifest_path.read_bytes())
    for name in sorted(files):
        if name not in check.listed and name not in check.accounted:
            facts = files[name]
            report.problems.append(
                Problem(
                    ProblemKind.FILE_UNLISTED,
                    None,
                    name,
                    "every file listed in the manifest",
                    f"{facts.size} bytes, sha256 {facts.sha256}",
                    "left open by a crash and never sealed, or put here afterwards",
                )
            )
    return report


# -- files -------------------------------------------------------------------------------------------


def _hash_files(directory: Path, report: StreamReport, progress: Progress | None) -> dict[str, _FileFacts]:
    files: dict[str, _FileFacts] = {}
    for path in sorted(directory.iterdir()):
        if path.name == MANIFEST_NAME or not path.is_file():
            continue
        size = path.stat().st_size
        files[path.name] = _FileFacts(size=size, sha256=sha256_file(path))
        report.bytes_hashed += size
        if progress is not None:
            progress(size)
    return files


# -- the manifest ------------------------------------------------------------------------------------


def _split_lines(raw: bytes) -> list[bytes]:
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


class _ManifestCheck:
    """Walks one manifest against the files found beside it, adding problems to the report."""

    def __init__(self, report: StreamReport, files: dict[str, _FileFacts]) -> None:
        self.report = report
        self.files = files
        self.listed: set[str] = set()
        """Files some entry names."""
        self.accounted: set[str] = set()
        """Unlisted files already reported as holding a listed segment's content."""
        self.by_content: dict[str, list[str]] = {}
        for name, facts in files.items():
            self.by_content.setdefault(facts.sha256, []).append(name)
        self.recorded: dict[str, int] = {}
        """Manifest line of each recorded sha256."""
        self.tombstoned: dict[str, tuple[int, object]] = {}
        """Each file a tombstone names: the tombstone's line and the sha256 it names."""
        self.segment_files: dict[str, tuple[int, object]] = {}
        """Each file a segment entry names (first listing): its line and its sha256."""
        self._last_sequence: int | None = None

    def _add(self, *args: Any) -> None:
        self.report.problems.append(Problem(*args))

    def run(self, raw: bytes) -> None:
        lines = _split_lines(raw)
        self.report.lines = len(lines)
        line_of_hash = {line_hash(line): number for number, line in enumerate(lines, start=1)}
        entries = [_parse(line) for line in lines]
        self.report.line_hashes = [line_hash(line) for line in lines]
        for number, entry in enumerate(entries, start=1):
            if entry is not None and isinstance(entry.get("sha256"), str):
                self.recorded.setdefault(entry["sha256"], number)
            if entry is not None and entry.get("type") == "segment":
                for item in _files_of(entry):
                    self.segment_files.setdefault(str(item.get("file")), (number, item.get("sha256")))
            if entry is not None and entry.get("type") == DELETION:
                for segment in _items(entry.get("segments")):
                    for item in _files_of(segment):
                        self.tombstoned.setdefault(str(item.get("file")), (number, item.get("sha256")))
        expected_prev = GENESIS_HASH
        for number, (line, entry) in enumerate(zip(lines, entries, strict=True), start=1):
            if entry is None:
                shown = line[:80].decode(errors="replace") or "(blank line)"
                self._add(ProblemKind.LINE_UNREADABLE, number, None, "one JSON object per line", shown)
                expected_prev = line_hash(line)
                continue
            prev = entry.get("prev")
            if prev != expected_prev:
                self._add(
                    ProblemKind.CHAIN_BROKEN,
                    number,
                    None,
                    f"prev {expected_prev}",
                    f"prev {prev}",
                    _chain_note(prev, number, line_of_hash),
                )
            expected_prev = line_hash(line)
            kind = entry.get("type")
            if kind == "gap":
                self.report.gaps += 1
            elif kind == "segment":
                self.report.segments += 1
                self.report.recovered += bool(entry.get("recovered"))
                self._segment_entry(entry, number)
            elif kind == DELETION:
                self._deletion_entry(entry, number)
            else:
                self._add(
                    ProblemKind.ENTRY_INCONSISTENT,
                    number,
                    None,
                    "type segment, gap or deletion",
                    f"type {kind!r}",
                )
        self.report.head = expected_prev

    def _segment_entry(self, entry: dict[str, Any], number: int) -> None:
        stream_id = self.report.stream_id
        name = entry.get("file")
        sequence = entry.get("sequence")
        shown = name if isinstance(name, str) else None
        if entry.get("stream_id") != stream_id:
            self._add(
                ProblemKind.ENTRY_INCONSISTENT,
                number,
                shown,
                f"stream_id {stream_id}",
                f"stream_id {entry.get('stream_id')}",
            )
        if not isinstance(name, str) or not isinstance(sequence, int):
            self._add(
                ProblemKind.ENTRY_INCONSISTENT,
                number,
                shown,
                "a file name and an integer sequence",
                f"file {name!r}, sequence {sequence!r}",
            )
            return
        original = entry.get("original") if entry.get("recovered") else None
        expected_name = segment_file_name(stream_id, sequence, recovered=isinstance(original, dict))
        if name != expected_name:
            self._add(
                ProblemKind.ENTRY_INCONSISTENT,
                number,
                name,
                f"file {expected_name} for sequence {sequence}",
                f"file {name}",
            )
        if self._last_sequence is not None and sequence <= self._last_sequence:
            self._add(
                ProblemKind.ENTRY_INCONSISTENT,
                number,
                name,
                f"sequence above {self._last_sequence}",
                f"sequence {sequence}",
                "segment entries out of order",
            )
        self._last_sequence = sequence
        if self._deleted(number, name, entry.get("sha256")):
            self.report.deleted += 1
        self._file(number, name, entry.get("bytes"), entry.get("sha256"))
        if isinstance(original, dict) and isinstance(original.get("file"), str):
            self._file(number, original["file"], original.get("bytes"), original.get("sha256"))

    def _deleted(self, number: int, name: str, sha256: object) -> bool:
        """A later tombstone names this file as this line lists it."""
        tombstone = self.tombstoned.get(name)
        return tombstone is not None and tombstone[0] > number and tombstone[1] == sha256

    def _deletion_entry(self, entry: dict[str, Any], number: int) -> None:
        segments = _items(entry.get("segments"))
        self.report.deletions.append(
            DeletionNote(
                line=number,
                segments=[s["sequence"] for s in segments if isinstance(s.get("sequence"), int)],
                deleted_at=str(entry.get("deleted_at", "")),
                deleted_by=str(entry.get("deleted_by", "")),
                reason=str(entry.get("reason", "")),
                basis=str(entry.get("basis", "")),
            )
        )
        if not segments:
            self._add(ProblemKind.ENTRY_INCONSISTENT, number, None, "the segments it deleted", "none")
        for segment in segments:
            for item in _files_of(segment):
                name = str(item.get("file"))
                listed = self.segment_files.get(name)
                if listed is None or listed[0] > number or listed[1] != item.get("sha256"):
                    where = f"listed at line {listed[0]} with sha256 {listed[1]}" if listed else "not listed"
                    self._add(
                        ProblemKind.ENTRY_INCONSISTENT,
                        number,
                        name,
                        "a deletion names segments as lines above it list them",
                        f"sha256 {item.get('sha256')}; the file is {where}",
                        "the tombstone or the line it names was edited",
                    )

    def _file(self, number: int, name: str, size: object, sha256: object) -> None:
        if name in self.listed:
            self._add(ProblemKind.ENTRY_INCONSISTENT, number, name, "each file listed once", "listed again")
        self.listed.add(name)
        actual = self.files.get(name)
        if self._deleted(number, name, sha256):
            tombstone_line = self.tombstoned[name][0]
            if actual is not None and actual.sha256 == sha256:
                self._add(
                    ProblemKind.DELETION_UNFINISHED,
                    number,
                    name,
                    f"removed by the deletion at line {tombstone_line}",
                    f"{actual.size} bytes, sha256 {actual.sha256}",
                    "the deletion was interrupted: run it again to finish it",
                )
                return
            if actual is None:
                return  # lawfully deleted
        if actual is not None and actual.sha256 == sha256:
            if actual.size != size:
                self._add(
                    ProblemKind.ENTRY_INCONSISTENT,
                    number,
                    name,
                    f"bytes {actual.size}, the size of the file whose sha256 it names",
                    f"bytes {size}",
                    "the entry was edited",
                )
            return
        recorded = f"{size} bytes, sha256 {sha256}"
        went = [other for other in self.by_content.get(str(sha256), []) if other != name]
        self.accounted.update(went)
        went_note = f"; the recorded content is in {', '.join(went)}" if went else ""
        if actual is None:
            if went:
                self._add(
                    ProblemKind.SEGMENT_MOVED,
                    number,
                    name,
                    recorded,
                    "no such file" + went_note,
                    "segment renamed",
                )
            else:
                self._add(ProblemKind.SEGMENT_MISSING, number, name, recorded, "no such file")
            return
        found = f"{actual.size} bytes, sha256 {actual.sha256}"
        came_from = self.recorded.get(actual.sha256)
        if came_from is not None and came_from != number:
            found += f", the content recorded at line {came_from}"
        if went or came_from is not None:
            self._add(
                ProblemKind.SEGMENT_MOVED,
                number,
                name,
                recorded,
                found + went_note,
                "segments swapped, renamed or renumbered",
            )
        elif isinstance(size, int) and actual.size < size:
            self._add(ProblemKind.SEGMENT_TRUNCATED, number, name, recorded, found)
        elif actual.size != size:
            self._add(ProblemKind.SEGMENT_SIZE_CHANGED, number, name, recorded, found)
        else:
            self._add(ProblemKind.SEGMENT_ALTERED, number, name, recorded, found, "content changed in place")


def _items(value: object) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _files_of(segment: dict[str, Any]) -> list[dict[str, Any]]:
    """The files a segment entry (or a tombstone's item) names: its own, and a recovered one's original."""
    files = [segment]
    original = segment.get("original")
    if segment.get("recovered") and isinstance(original, dict):
        files.append(original)
    return files


def _parse(line: bytes) -> dict[str, Any] | None:
    if not line.strip():
        return None
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None


def _chain_note(prev: object, number: int, line_of_hash: dict[str, int]) -> str:
    if prev == GENESIS_HASH:
        return "this line claims to be the first: the lines before it were inserted, or it was moved"
    follows = line_of_hash.get(prev) if isinstance(prev, str) else None
    if follows is None:
        return "the line before it was changed, or a line was removed here"
    if follows < number - 1:
        return f"this line follows line {follows}: the lines between were inserted, or lines were moved"
    return f"this line follows line {follows}: lines were moved"


def problems_of(reports: Iterable[StreamReport]) -> list[tuple[str, Problem]]:
    """Every problem in several reports, with its stream id."""
    return [(report.stream_id, problem) for report in reports for problem in report.problems]
