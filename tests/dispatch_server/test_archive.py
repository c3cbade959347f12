"""The archive (R2, R17, issue 4): the relay's sealed segments and gaps become catalog rows as the
manifest records them; search by officer and time; playback remuxed to WebM without transcoding;
exports with the original segments, manifests, hashes and a summary; every attempt audited.

Real parts: the session's ``zhihui up --demo``, aiortc publishers, ffmpeg, PyAV.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import av
import httpx
import pytest

from tests.archive_support import catalogued, finished_job, record_with_gap
from tests.conftest import ApiClient
from tests.support import ZhihuiProcess, _run_async


@pytest.fixture(scope="module")
def stream_id(zhihui: ZhihuiProcess) -> str:
    return str(_run_async(record_with_gap(zhihui, "officer1", "archive")))


@pytest.fixture(scope="module")
def admin(zhihui: ZhihuiProcess) -> ApiClient:
    assert zhihui.admin_password
    return ApiClient(zhihui.base_url, "admin", zhihui.admin_password)


def _manifest(zhihui: ZhihuiProcess, stream_id: str) -> list[dict[str, Any]]:
    path = next(zhihui.recordings.glob(f"*/*/*/{stream_id}/manifest.jsonl"))
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def _audit(admin: ApiClient, **params: object) -> list[dict[str, Any]]:
    response = admin.http.get("/api/audit", params={"limit": 500, **params})
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]


def _packets(data: bytes) -> list[bytes]:
    with av.open(io.BytesIO(data)) as container:
        return [bytes(p) for p in container.demux(video=0) if p.size]


def _video_frames(data: bytes | Path) -> int:
    source = io.BytesIO(data) if isinstance(data, bytes) else str(data)
    with av.open(source) as container:
        return sum(1 for _ in container.decode(video=0))


def test_sealed_segments_and_gaps_are_catalogued_as_the_manifest_records_them(
    zhihui: ZhihuiProcess, commander: ApiClient, stream_id: str
) -> None:
    recording = catalogued(commander, stream_id)
    entries = _manifest(zhihui, stream_id)
    assert [e["type"] for e in entries] == ["segment", "gap", "segment"]
    segments = [e for e in entries if e["type"] == "segment"]
    assert [(s["sequence"], s["sha256"], s["bytes"]) for s in recording["segments"]] == [
        (e["sequence"], e["sha256"], e["bytes"]) for e in segments
    ]
    assert [s["video_frames"] for s in recording["segments"]] == [e["frames"]["video"] for e in segments]
    assert recording["gaps"] == [
        {
            "started_at": _z(entries[1]["started_at"]),
            "ended_at": _z(entries[1]["ended_at"]),
            "reason": "publisher reconnected",
        }
    ]
    assert recording["officer"]["username"] == "officer1"
    assert (recording["video_codec"], recording["audio_codec"], recording["container"]) == (
        "vp8",
        "opus",
        "webm",
    )

    # What a catalogued segment's chain head says is what the manifest's chain says.
    verified = commander.http.post(f"/api/recordings/{stream_id}/verify").json()
    assert verified["ok"] is True and verified["head"] == verified["catalog_head"]


def _z(iso: str) -> str:
    return datetime.fromisoformat(iso).isoformat().replace("+00:00", "Z")


def test_recordings_are_found_by_officer_and_time(
    commander: ApiClient, officer1: ApiClient, officer2: ApiClient, stream_id: str
) -> None:
    recording = catalogued(commander, stream_id)
    start = datetime.fromisoformat(recording["started_at"])

    def found(**params: object) -> set[str]:
        response = commander.http.get("/api/recordings", params=params)
        assert response.status_code == 200, response.text
        return {r["stream_id"] for r in response.json()}

    assert stream_id in found(officer_id=officer1.id)
    assert stream_id not in found(officer_id=officer2.id)
    around = {
        "from": (start - timedelta(seconds=1)).isoformat(),
        "to": (start + timedelta(seconds=1)).isoformat(),
    }
    assert stream_id in found(**around)
    before = {
        "from": (start - timedelta(hours=2)).isoformat(),
        "to": (start - timedelta(hours=1)).isoformat(),
    }
    assert stream_id not in found(**before)


def test_playback_joins_the_segments_into_webm_by_stream_copy(
    zhihui: ZhihuiProcess, commander: ApiClient, stream_id: str
) -> None:
    recording = catalogued(commander, stream_id)
    played = commander.http.get(f"/api/recordings/{stream_id}/play")
    assert played.status_code == 200, played.text
    assert played.headers["content-type"] == "video/webm"
    recorded = sum(s["video_frames"] for s in recording["segments"])
    assert _video_frames(played.content) == recorded

    # No transcoding: the WebM's first video packet is the first segment's, byte for byte.
    first_segment = next(zhihui.recordings.glob(f"*/*/*/{stream_id}/{stream_id}-00001.mkv"))
    assert _packets(played.content)[0] == _packets(first_segment.read_bytes())[0]

    # From a time in the second segment: only that segment is served.
    second = recording["segments"][1]
    start = datetime.fromisoformat(second["started_at"]) + timedelta(milliseconds=200)
    later = commander.http.get(f"/api/recordings/{stream_id}/play", params={"start": start.isoformat()})
    assert later.status_code == 200
    assert 0 < _video_frames(later.content) <= second["video_frames"]


def test_a_ticket_plays_one_stream_for_a_browser_and_nothing_else(
    zhihui: ZhihuiProcess, commander: ApiClient, stream_id: str
) -> None:
    ticket = commander.http.post(f"/api/recordings/{stream_id}/ticket").json()
    assert ticket["url"].startswith(f"/api/recordings/{stream_id}/play?ticket=")
    assert httpx.get(zhihui.base_url + ticket["url"]).status_code == 200
    other = f"/api/recordings/someone-else/play?ticket={ticket['ticket']}"
    assert httpx.get(zhihui.base_url + other).status_code == 401
    assert httpx.get(f"{zhihui.base_url}/api/recordings/{stream_id}/play").status_code == 401


def test_every_archive_attempt_is_audited_refusals_included(
    commander: ApiClient, officer1: ApiClient, admin: ApiClient, stream_id: str
) -> None:
    catalogued(commander, stream_id)
    assert officer1.http.get("/api/recordings").status_code == 403
    assert officer1.http.post(f"/api/recordings/{stream_id}/ticket").status_code == 403
    assert officer1.http.post("/api/exports", json={"stream_ids": [stream_id]}).status_code == 403
    deleted = commander.http.delete(f"/api/recordings/{stream_id}")
    assert deleted.status_code == 403  # only an administrator asks, and inside retention gets 409
    assert commander.http.get(f"/api/recordings/{stream_id}/play").status_code == 200

    rows = _audit(admin, action="archive.*")
    seen = {(r["actor_name"], r["action"], r["outcome"], r["object"]) for r in rows}
    assert {
        ("officer1", "archive.search", "denied", "recordings"),
        ("officer1", "archive.play", "denied", f"stream:{stream_id}"),
        ("officer1", "archive.export", "denied", "recordings"),
        ("commander", "archive.delete", "denied", f"stream:{stream_id}"),
        ("commander", "archive.play", "success", f"stream:{stream_id}"),
        ("commander", "archive.search", "success", "recordings"),
    } <= seen
    for row in rows:  # no role only for attempts without valid credentials, where nobody is known
        assert row["source"] == "127.0.0.1" and row["at"]
        assert row["role"] or (row["actor_id"] is None and row["outcome"] == "denied")
    assert admin.http.get("/api/audit/verify").json()["ok"] is True
    # Nothing was deleted: the segments are all still there.
    assert len(catalogued(commander, stream_id)["segments"]) == 2


def test_an_export_holds_the_stream_the_original_segments_the_manifest_hashes_and_a_summary(
    zhihui: ZhihuiProcess, commander: ApiClient, officer1: ApiClient, admin: ApiClient, stream_id: str
) -> None:
    recording = catalogued(commander, stream_id)
    start = datetime.fromisoformat(recording["started_at"])
    end = datetime.fromisoformat(recording["ended_at"])
    body = {
        "from": (start - timedelta(seconds=1)).isoformat(),
        "to": (end + timedelta(seconds=1)).isoformat(),
        "officer_ids": [officer1.id],
    }
    created = commander.http.post("/api/exports", json=body)
    assert created.status_code == 202, created.text
    job = finished_job(commander, f"/api/exports/{created.json()['id']}", timeout=20, poll=0.1)
    assert job["state"] == "done" and job["percent"] == 100, job
    ticket = commander.http.post(f"/api/exports/{job['id']}/ticket").json()
    download = httpx.get(zhihui.base_url + ticket["url"], timeout=30)
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == job["sha256"]

    package = zipfile.ZipFile(io.BytesIO(download.content))
    prefix = f"export-{job['id']}/"
    files = {name.removeprefix(prefix): package.read(name) for name in package.namelist()}
    sums = dict(
        reversed(line.split("  ", 1))
        for line in files["SHA256SUMS"].decode().splitlines()  # type: ignore[misc]
    )
    assert set(sums) == set(files) - {"SHA256SUMS"}
    for name, digest in sums.items():
        assert hashlib.sha256(files[name]).hexdigest() == digest, name
    for segment in recording["segments"]:
        name = f"segments/{stream_id}/{stream_id}-{segment['sequence']:05d}.mkv"
        assert hashlib.sha256(files[name]).hexdigest() == segment["sha256"]
    manifest_path = next(zhihui.recordings.glob(f"*/*/*/{stream_id}/manifest.jsonl"))
    assert files[f"manifests/{stream_id}.manifest.jsonl"] == manifest_path.read_bytes()

    joined = files[f"streams/{stream_id}.webm"]
    assert _video_frames(joined) == sum(s["video_frames"] for s in recording["segments"])

    summary = files["SUMMARY.txt"].decode()
    for expected in ("commander", "officer1", "publisher reconnected", "intact", stream_id):
        assert expected in summary
    for segment in recording["segments"]:
        assert segment["sha256"] in summary

    exports = [r for r in _audit(admin, action="archive.export*") if r["object"] == f"export:{job['id']}"]
    assert {(r["action"], r["detail"].get("stage")) for r in exports} == {
        ("archive.export", "requested"),
        ("archive.export", "built"),
        ("archive.export_download", None),
    }


def test_an_export_of_nothing_is_refused_and_audited(commander: ApiClient, admin: ApiClient) -> None:
    long_ago = {"from": "2001-01-01T00:00:00Z", "to": "2001-01-02T00:00:00Z"}
    assert commander.http.post("/api/exports", json=long_ago).status_code == 404
    assert commander.http.post("/api/exports", json={}).status_code == 422
    failures = _audit(admin, action="archive.export", outcome="failure", actor_id=commander.id)
    assert any("2001-01-01" in r["detail"]["error"] for r in failures)
