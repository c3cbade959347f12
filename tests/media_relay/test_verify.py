"""R2, R17: ``verify`` finds every kind of tampering with an archive, at the right place.

The archive is real: VP8 and Opus encoded with PyAV, recorded by StreamRecorder into Matroska
segments and a hash-chained manifest (two publisher sessions, so a gap entry too). Each test
damages a copy and checks what :func:`verify_stream` reports, and where.
"""

from __future__ import annotations

import itertools
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from media_relay.recording.manifest import line_hash
from media_relay.recording.verify import (
    Problem,
    ProblemKind,
    StreamReport,
    find_streams,
    verify_stream,
)
from tests.media_relay.recordings import interleaved, opus_frames, record, vp8_frames
from tests.support import zhihui_env

STREAM = "officer1-bodycam-0a1b2c3d"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An archive root holding one stream: 3 segments, a gap, 2 segments."""
    root = tmp_path_factory.mktemp("archive") / "recordings"
    record(root, STREAM, interleaved(vp8_frames(45), opus_frames(3)))
    record(root, STREAM, interleaved(vp8_frames(30, seed=8), opus_frames(2)))
    return root


@pytest.fixture
def folder(pristine: Path, tmp_path: Path) -> Path:
    """A fresh copy of the pristine stream's folder, to damage."""
    root = tmp_path / "recordings"
    shutil.copytree(pristine, root)
    return find_streams(root)[STREAM]


def _lines(folder: Path) -> list[bytes]:
    return (folder / "manifest.jsonl").read_bytes().splitlines()


def _write_lines(folder: Path, lines: list[bytes]) -> None:
    (folder / "manifest.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))


def _segments(folder: Path) -> list[tuple[int, str, int]]:
    """(manifest line, file, bytes) of every segment entry."""
    found = []
    for number, line in enumerate(_lines(folder), start=1):
        entry = json.loads(line)
        if entry["type"] == "segment":
            found.append((number, entry["file"], entry["bytes"]))
    return found


def _only(report: StreamReport) -> Problem:
    assert len(report.problems) == 1, report.problems
    return report.problems[0]


def _rewrite(line: bytes, **changes: object) -> bytes:
    entry = json.loads(line)
    entry.update(changes)
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def test_untouched_archive_verifies_clean(folder: Path) -> None:
    report = verify_stream(folder)
    assert report.ok, report.problems
    assert (report.lines, report.segments, report.gaps) == (6, 5, 1)
    assert report.bytes_hashed == sum(size for _, _, size in _segments(folder))
    assert report.head == line_hash(_lines(folder)[-1])
    assert json.loads(_lines(folder)[3])["type"] == "gap"


def test_a_bit_flipped_anywhere_in_any_segment_is_found_at_that_segment_and_its_line(folder: Path) -> None:
    rng = random.Random(4)
    cases = 0
    for number, name, size in _segments(folder):
        path = folder / name
        original = path.read_bytes()
        for offset in [0, 40, size // 2, size - 1, *rng.sample(range(size), 12)]:
            damaged = bytearray(original)
            damaged[offset] ^= 1 << rng.randrange(8)
            path.write_bytes(damaged)
            problem = _only(verify_stream(folder))
            assert (problem.kind, problem.line, problem.file) == (ProblemKind.SEGMENT_ALTERED, number, name)
            assert str(size) in problem.expected and str(size) in problem.found
            cases += 1
        path.write_bytes(original)
    assert cases == 5 * 16
    assert verify_stream(folder).ok


def test_a_deleted_segment_is_reported_missing_at_its_line(folder: Path) -> None:
    for number, name, _size in _segments(folder):
        kept = (folder / name).read_bytes()
        (folder / name).unlink()
        problem = _only(verify_stream(folder))
        assert (problem.kind, problem.line, problem.file) == (ProblemKind.SEGMENT_MISSING, number, name)
        assert problem.found == "no such file"
        (folder / name).write_bytes(kept)


def test_a_truncated_segment_is_reported_with_its_recorded_and_its_actual_size(folder: Path) -> None:
    for number, name, size in _segments(folder):
        path = folder / name
        original = path.read_bytes()
        for length in (0, 1, size // 3, size - 1):
            path.write_bytes(original[:length])
            problem = _only(verify_stream(folder))
            assert (problem.kind, problem.line, problem.file) == (ProblemKind.SEGMENT_TRUNCATED, number, name)
            assert problem.expected.startswith(f"{size} bytes")
            assert problem.found.startswith(f"{length} bytes")
        path.write_bytes(original)


def test_swapped_segments_are_each_reported_with_where_their_content_went(folder: Path) -> None:
    segments = _segments(folder)
    for (line_a, name_a, _), (line_b, name_b, _) in itertools.pairwise(segments):
        path_a, path_b, spare = folder / name_a, folder / name_b, folder / "swap.tmp"
        path_a.rename(spare)
        path_b.rename(path_a)
        spare.rename(path_b)
        report = verify_stream(folder)
        assert [(p.kind, p.line, p.file) for p in report.problems] == [
            (ProblemKind.SEGMENT_MOVED, line_a, name_a),
            (ProblemKind.SEGMENT_MOVED, line_b, name_b),
        ]
        assert name_b in report.problems[0].found and name_a in report.problems[1].found
        path_a.rename(spare)
        path_b.rename(path_a)
        spare.rename(path_b)
    assert verify_stream(folder).ok


def test_a_renamed_segment_is_reported_at_its_line_with_its_new_name(folder: Path) -> None:
    number, name, _size = _segments(folder)[1]
    (folder / name).rename(folder / "evidence.mkv")
    problem = _only(verify_stream(folder))
    assert (problem.kind, problem.line, problem.file) == (ProblemKind.SEGMENT_MOVED, number, name)
    assert "evidence.mkv" in problem.found


def test_renumbering_the_segments_after_a_deleted_one_is_found(folder: Path) -> None:
    """Delete segment 2 and rename 3 to 2: the hole is still seen."""
    segments = _segments(folder)
    (folder / segments[1][1]).unlink()
    (folder / segments[2][1]).rename(folder / segments[1][1])
    report = verify_stream(folder)
    assert [(p.kind, p.line) for p in report.problems] == [
        (ProblemKind.SEGMENT_MOVED, segments[1][0]),
        (ProblemKind.SEGMENT_MOVED, segments[2][0]),
    ]


def test_a_segment_the_manifest_does_not_list_is_reported(folder: Path) -> None:
    shutil.copyfile(folder / _segments(folder)[0][1], folder / f"{STREAM}-00099.mkv")
    (folder / "notes.txt").write_text("not evidence")
    report = verify_stream(folder)
    assert [(p.kind, p.line, p.file) for p in report.problems] == [
        (ProblemKind.FILE_UNLISTED, None, "notes.txt"),
        (ProblemKind.FILE_UNLISTED, None, f"{STREAM}-00099.mkv"),
    ]


def test_any_edit_to_a_manifest_line_breaks_the_chain_at_the_next_line(folder: Path) -> None:
    lines = _lines(folder)
    cases = 0
    for index, line in enumerate(lines[:-1]):
        entry = json.loads(line)
        for key, value in entry.items():
            if key == "prev":
                continue
            forged = "2000-01-01T00:00:00.000+00:00" if key.endswith("_at") else _changed(value)
            _write_lines(folder, [*lines[:index], _rewrite(line, **{key: forged}), *lines[index + 1 :]])
            report = verify_stream(folder)
            broken = [p for p in report.problems if p.kind is ProblemKind.CHAIN_BROKEN]
            assert [p.line for p in broken] == [index + 2], (key, report.problems)
            assert broken[0].expected == f"prev {line_hash(_rewrite(line, **{key: forged}))}"
            assert broken[0].found == f"prev {line_hash(line)}"
            cases += 1
    assert cases >= 40
    _write_lines(folder, lines)
    assert verify_stream(folder).ok


def test_editing_what_the_last_line_says_of_its_segment_is_found_at_the_last_line(folder: Path) -> None:
    lines = _lines(folder)
    last = json.loads(lines[-1])
    edits: dict[str, object] = {
        "sha256": "f" * 64,
        "bytes": last["bytes"] + 1,
        "file": f"{STREAM}-00004.mkv",
        "sequence": last["sequence"] + 1,
        "stream_id": "officer2-phone-ffffffff",
        "type": "note",
    }
    for key, value in edits.items():
        _write_lines(folder, [*lines[:-1], _rewrite(lines[-1], **{key: value})])
        report = verify_stream(folder)
        assert report.problems, key
        assert {p.line for p in report.problems} <= {len(lines), None}, (key, report.problems)
        assert any(p.line == len(lines) for p in report.problems), (key, report.problems)


def test_a_deleted_manifest_line_is_found_where_it_was(folder: Path) -> None:
    lines = _lines(folder)
    for index in range(len(lines)):
        _write_lines(folder, lines[:index] + lines[index + 1 :])
        problems = verify_stream(folder).problems
        if index < len(lines) - 1:
            broken = [p for p in problems if p.kind is ProblemKind.CHAIN_BROKEN]
            assert broken and broken[0].line == index + 1, (index, problems)
            assert broken[0].note == "the line before it was changed, or a line was removed here"
        else:
            name = json.loads(lines[index])["file"]
            assert [(p.kind, p.file) for p in problems] == [(ProblemKind.FILE_UNLISTED, name)]


def test_reordered_manifest_lines_are_found(folder: Path) -> None:
    lines = _lines(folder)
    for index in range(len(lines) - 1):
        swapped = [*lines[:index], lines[index + 1], lines[index], *lines[index + 2 :]]
        _write_lines(folder, swapped)
        broken = [p for p in verify_stream(folder).problems if p.kind is ProblemKind.CHAIN_BROKEN]
        assert broken and broken[0].line == index + 1, index
        assert "moved" in broken[0].note or "first" in broken[0].note


def test_an_inserted_manifest_line_is_found_even_with_a_correct_prev(folder: Path) -> None:
    lines = _lines(folder)
    for index in range(len(lines) + 1):
        prev = line_hash(lines[index - 1]) if index else "0" * 64
        forged = _rewrite(lines[0], prev=prev, file=f"{STREAM}-00042.mkv", sequence=42, sha256="e" * 64)
        _write_lines(folder, [*lines[:index], forged, *lines[index:]])
        problems = verify_stream(folder).problems
        assert problems, index
        if index < len(lines):
            assert any(p.kind is ProblemKind.CHAIN_BROKEN and p.line == index + 2 for p in problems), index
        assert any(p.kind is ProblemKind.SEGMENT_MISSING and p.line == index + 1 for p in problems), index


def test_an_unreadable_manifest_line_is_named(folder: Path) -> None:
    lines = _lines(folder)
    _write_lines(folder, [lines[0], b"{not json", *lines[1:]])
    report = verify_stream(folder)
    assert [(p.kind, p.line) for p in report.problems] == [
        (ProblemKind.LINE_UNREADABLE, 2),
        (ProblemKind.CHAIN_BROKEN, 3),
    ]


def test_a_missing_manifest_is_reported_with_every_segment_unlisted(folder: Path) -> None:
    (folder / "manifest.jsonl").unlink()
    kinds = [p.kind for p in verify_stream(folder).problems]
    assert kinds == [ProblemKind.MANIFEST_MISSING] + [ProblemKind.FILE_UNLISTED] * 5


def _changed(value: object) -> object:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, dict):
        return {key: _changed(item) for key, item in value.items()}
    return f"{value}x"


# -- the command line --------------------------------------------------------------------------------


def _zhihui_verify(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zhihui.cli", "verify", *args],
        cwd=root.parent,
        env=zhihui_env(root.parent, ZHIHUI_RECORDING__ROOT=str(root), COLUMNS="240"),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_verify_exits_0_on_an_intact_archive_and_1_naming_file_and_line_when_not(folder: Path) -> None:
    root = folder.parents[3]
    clean = _zhihui_verify(root, "--all")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert STREAM in clean.stdout and "all intact" in clean.stdout

    number, name, size = _segments(folder)[2]
    with (folder / name).open("r+b") as handle:
        handle.truncate(size - 100)
    damaged = _zhihui_verify(root, STREAM)
    assert damaged.returncode == 1, damaged.stdout + damaged.stderr
    assert f"manifest line {number}  {name}  segment truncated" in damaged.stdout
    assert f"expected  {size} bytes" in damaged.stdout
    assert f"found     {size - 100} bytes" in damaged.stdout
    assert "1 problem in 1 stream(s)" in damaged.stdout


def test_cli_verify_exits_2_on_an_unknown_stream_or_no_stream_named(folder: Path) -> None:
    root = folder.parents[3]
    unknown = _zhihui_verify(root, "nobody-nothing-00000000")
    assert unknown.returncode == 2 and "nobody-nothing-00000000" in unknown.stdout
    assert _zhihui_verify(root).returncode == 2
    assert _zhihui_verify(root, STREAM, "--all").returncode == 2


def test_find_streams_lists_stream_folders_by_id(pristine: Path) -> None:
    streams = find_streams(pristine)
    assert list(streams) == [STREAM]
    year, month, day, stream = streams[STREAM].relative_to(pristine).parts
    assert (len(year), len(month), len(day), stream) == (4, 2, 2, STREAM)
    assert (year + month + day).isdigit()
