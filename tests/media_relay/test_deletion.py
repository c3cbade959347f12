"""R2: a lawful deletion appends a tombstone and only then removes the files; the chain stays whole
and verify counts the segments as deleted; an interrupted deletion is reported and finished by
applying it again; an edited tombstone explains nothing; a tombstone for a manifest that grew since
it was made is refused."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from media_relay.recording.deletion import TombstoneRefused, apply_tombstone, prepare_tombstone
from media_relay.recording.manifest import Manifest
from media_relay.recording.verify import ProblemKind, verify_stream
from tests.media_relay.recordings import interleaved, opus_frames, record, vp8_frames

AT = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return record(tmp_path / "recordings", "s1", interleaved(vp8_frames(45), opus_frames(3))).directory


def _tombstone(folder: Path) -> bytes:
    prepared = prepare_tombstone(folder, deleted_by="root (admin)", reason="over", basis="retention", at=AT)
    assert prepared is not None and prepared.sequences == [1, 2, 3]
    return prepared.line


def test_a_deletion_keeps_the_chain_and_is_counted_not_reported(folder: Path) -> None:
    line = _tombstone(folder)
    removal = apply_tombstone(folder, line)
    assert removal.appended and len(removal.files) == 3 and not list(folder.glob("*.mkv"))
    report = verify_stream(folder)
    assert report.ok, report.problems
    assert (report.segments, report.deleted, report.deletions[0].line) == (3, 3, 4)
    again = apply_tombstone(folder, line)
    assert not again.appended and again.files == []
    assert len(Manifest(folder / "manifest.jsonl").entries()) == 4
    assert prepare_tombstone(folder, deleted_by="x", reason="x", basis="retention", at=AT) is None


def test_an_interrupted_deletion_is_reported_then_finished(folder: Path, tmp_path: Path) -> None:
    kept = tmp_path / "kept"
    shutil.copytree(folder, kept)
    line = _tombstone(folder)
    apply_tombstone(folder, line)
    for path in kept.glob("*.mkv"):  # as if the relay died after the tombstone, before the files went
        shutil.copy(path, folder / path.name)
    report = verify_stream(folder)
    assert [(p.kind, p.line) for p in report.problems] == [
        (ProblemKind.DELETION_UNFINISHED, 1),
        (ProblemKind.DELETION_UNFINISHED, 2),
        (ProblemKind.DELETION_UNFINISHED, 3),
    ]
    assert "line 4" in report.problems[0].expected
    finished = apply_tombstone(folder, line)
    assert not finished.appended and len(finished.files) == 3
    assert verify_stream(folder).ok


def test_an_edited_tombstone_explains_no_missing_segment(folder: Path) -> None:
    entry = json.loads(_tombstone(folder))
    entry["segments"][1]["sha256"] = "0" * 64
    apply_tombstone(folder, json.dumps(entry, sort_keys=True, separators=(",", ":")).encode())
    kinds = {(p.kind, p.line, p.file) for p in verify_stream(folder).problems}
    second = entry["segments"][1]["file"]
    assert kinds == {
        (ProblemKind.ENTRY_INCONSISTENT, 4, second),
        (ProblemKind.SEGMENT_MISSING, 2, second),
    }


def test_a_tombstone_for_a_manifest_that_grew_is_refused(folder: Path) -> None:
    line = _tombstone(folder)
    Manifest(folder / "manifest.jsonl").append({"type": "gap", "stream_id": "s1", "reason": "restart"})
    before = (folder / "manifest.jsonl").read_bytes()
    with pytest.raises(TombstoneRefused):
        apply_tombstone(folder, line)
    assert (folder / "manifest.jsonl").read_bytes() == before and len(list(folder.glob("*.mkv"))) == 3
