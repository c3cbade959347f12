"""Redacted copies (R2, R17; issue 4): a stream's recording, or a time range of it, becomes a copy
with the faces blurred, made in the background with its progress in percent; it names its source
segments' hashes in the catalog and in a sidecar JSON; the segments never change; every attempt is
audited, refusals included.

Real parts: the session's ``zhihui up --demo``, an aiortc publisher sending a photographed face
(``tests/faces_support.py``) through the relay's recorder, OpenCV's cascades, PyAV.
"""

from __future__ import annotations

import hashlib
import io
import json
from datetime import datetime, timedelta
from typing import Any

import av
import httpx
import pytest

from field_client.sources import StillTrack
from tests.archive_support import catalogued, finished_job, record_with_gap
from tests.conftest import ApiClient
from tests.faces_support import AWAY, face_box, picture, sharpness
from tests.support import ZhihuiProcess, _run_async


@pytest.fixture(scope="module")
def stream_id(zhihui: ZhihuiProcess) -> str:
    """A still face published twice with one grant, a second each time: segment, gap, segment.
    (Each picture costs the face search about 0.4 s of both cores here: a second is 15 of them.)"""
    return str(
        _run_async(
            record_with_gap(zhihui, "officer2", "face-cam", seconds=1.0, video=lambda: StillTrack(picture(0)))
        )
    )


@pytest.fixture(scope="module")
def admin(zhihui: ZhihuiProcess) -> ApiClient:
    assert zhihui.admin_password
    return ApiClient(zhihui.base_url, "admin", zhihui.admin_password)


def _segment_files(zhihui: ZhihuiProcess, stream_id: str) -> dict[str, str]:
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(zhihui.recordings.glob(f"*/*/*/{stream_id}/*.mkv"))
    }


def _pictures(data: bytes) -> list[Any]:
    with av.open(io.BytesIO(data)) as container:
        return [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]


def _audit(admin: ApiClient, **params: object) -> list[dict[str, Any]]:
    response = admin.http.get("/api/audit", params={"limit": 500, **params})
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]


def test_a_redacted_copy_blurs_the_face_names_its_sources_and_leaves_them_unchanged(
    zhihui: ZhihuiProcess, commander: ApiClient, admin: ApiClient, stream_id: str
) -> None:
    recording = catalogued(commander, stream_id)
    before = _segment_files(zhihui, stream_id)
    created = commander.http.post("/api/redactions", json={"stream_id": stream_id})
    assert created.status_code == 202, created.text
    job = finished_job(commander, f"/api/redactions/{created.json()['id']}", timeout=120)
    assert job["state"] == "done" and job["percent"] == 100, job
    sources = [(s["sequence"], s["sha256"]) for s in recording["segments"]]
    assert [(s["sequence"], s["sha256"]) for s in job["derived_from"]] == sources
    recorded = sum(s["video_frames"] for s in recording["segments"])
    assert job["frames"] == recorded and job["frames_with_faces"] == recorded

    ticket = commander.http.post(f"/api/redactions/{job['id']}/ticket").json()
    download = httpx.get(zhihui.base_url + ticket["url"], timeout=30)
    assert download.status_code == 200 and download.headers["content-type"] == "video/webm"
    assert hashlib.sha256(download.content).hexdigest() == job["sha256"]

    # The face is gone from every picture; the wall keeps its detail.
    first = next(zhihui.recordings.glob(f"*/*/*/{stream_id}/{stream_id}-00001.mkv"))
    with av.open(str(first)) as container:
        original = next(iter(container.decode(video=0))).to_ndarray(format="bgr24")
    copies = _pictures(download.content)
    assert len(copies) == recorded
    for copy in copies:
        assert sharpness(copy, face_box(0)) < 0.1 * sharpness(original, face_box(0))
        assert sharpness(copy, AWAY) > 0.5 * sharpness(original, AWAY)

    # The sidecar beside the copy names the same sources and the copy's hash.
    sidecar = json.loads(
        (zhihui.workdir / "var" / "redactions" / f"redaction-{job['id']}.webm.json").read_text()
    )
    assert [(s["sequence"], s["sha256"]) for s in sidecar["derived_from"]] == sources
    assert sidecar["copy"]["sha256"] == job["sha256"] and sidecar["stream_id"] == stream_id

    # The originals never change, and still verify.
    assert _segment_files(zhihui, stream_id) == before
    assert set(before.values()) == {s["sha256"] for s in recording["segments"]}
    assert commander.http.post(f"/api/recordings/{stream_id}/verify").json()["ok"] is True

    rows = [r for r in _audit(admin, action="archive.redact*") if r["object"] == f"redaction:{job['id']}"]
    assert {(r["action"], r["outcome"], r["detail"].get("stage")) for r in rows} == {
        ("archive.redact", "success", "requested"),
        ("archive.redact", "success", "built"),
        ("archive.redaction_download", "success", None),
    }
    listed = commander.http.get("/api/redactions", params={"stream_id": stream_id}).json()
    assert job["id"] in [item["id"] for item in listed]


def test_a_time_range_takes_only_the_segments_it_covers(commander: ApiClient, stream_id: str) -> None:
    second = catalogued(commander, stream_id)["segments"][1]
    start = datetime.fromisoformat(second["started_at"])
    body = {
        "stream_id": stream_id,
        "from": (start + timedelta(milliseconds=100)).isoformat(),
        "to": datetime.fromisoformat(second["ended_at"]).isoformat(),
    }
    created = commander.http.post("/api/redactions", json=body)
    assert created.status_code == 202, created.text
    job = finished_job(commander, f"/api/redactions/{created.json()['id']}", timeout=120)
    assert job["state"] == "done", job
    assert [s["sha256"] for s in job["derived_from"]] == [second["sha256"]]
    assert 0 < job["frames"] <= second["video_frames"]


def test_refusals_are_clear_and_audited(
    commander: ApiClient, officer1: ApiClient, admin: ApiClient, stream_id: str
) -> None:
    assert officer1.http.post("/api/redactions", json={"stream_id": stream_id}).status_code == 403
    unknown = commander.http.post("/api/redactions", json={"stream_id": "no-such-stream"})
    assert unknown.status_code == 404 and "no-such-stream" in unknown.json()["detail"]
    backwards = {"stream_id": stream_id, "from": "2026-05-02T00:00:00Z", "to": "2026-05-01T00:00:00Z"}
    assert commander.http.post("/api/redactions", json=backwards).status_code == 422
    long_ago = {"stream_id": stream_id, "from": "2001-01-01T00:00:00Z", "to": "2001-01-02T00:00:00Z"}
    assert commander.http.post("/api/redactions", json=long_ago).status_code == 404
    assert commander.http.post("/api/redactions", json={}).status_code == 422
    # Another person's copy is not there for a commander.
    assert officer1.http.get("/api/redactions/999999").status_code == 404

    rows = _audit(admin, action="archive.redact")
    seen = {(r["actor_name"], r["outcome"], r["object"]) for r in rows}
    assert ("officer1", "denied", f"stream:{stream_id}") in seen
    assert ("commander", "failure", "stream:no-such-stream") in seen
