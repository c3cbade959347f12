"""``zhihui redact`` (issue 4): a copy of a recording with the faces blurred, on the command line,
with a progress bar; catalogued and audited like the API's; the segments never change."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from field_client.sources import StillTrack
from tests.archive_support import catalogued, record_with_gap
from tests.conftest import ApiClient
from tests.faces_support import picture
from tests.support import ZhihuiProcess, _run_async, run_zhihui


@pytest.fixture(scope="module")
def stream_id(zhihui: ZhihuiProcess) -> str:
    return str(
        _run_async(
            record_with_gap(zhihui, "officer2", "cli-face", seconds=1.0, video=lambda: StillTrack(picture(0)))
        )
    )


def _redact(zhihui: ZhihuiProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return run_zhihui(zhihui.workdir, "redact", *args, timeout=300, COLUMNS="160")


def _hashes(zhihui: ZhihuiProcess, stream_id: str) -> dict[str, str]:
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in zhihui.recordings.glob(f"*/*/*/{stream_id}/*.mkv")
    }


def test_redact_writes_a_copy_and_its_sidecar_catalogued_and_audited(
    zhihui: ZhihuiProcess, commander: ApiClient, stream_id: str, tmp_path: Path
) -> None:
    recording = catalogued(commander, stream_id)
    before = _hashes(zhihui, stream_id)
    done = _redact(zhihui, "--stream", stream_id, "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "redacting" in done.stdout and "100%" in done.stdout

    (copy,) = tmp_path.glob(f"{stream_id}-redacted-*.webm")
    sidecar = json.loads((tmp_path / f"{copy.name}.json").read_text())
    sources = [(s["sequence"], s["sha256"]) for s in recording["segments"]]
    assert [(s["sequence"], s["sha256"]) for s in sidecar["derived_from"]] == sources
    assert sidecar["copy"]["sha256"] == hashlib.sha256(copy.read_bytes()).hexdigest()
    assert sidecar["faces"]["frames_with_faces"] == sidecar["copy"]["frames"] > 0
    assert _hashes(zhihui, stream_id) == before

    assert zhihui.admin_password
    admin = ApiClient(zhihui.base_url, "admin", zhihui.admin_password)
    (row,) = admin.http.get("/api/redactions", params={"stream_id": stream_id}).json()
    assert row["state"] == "done" and row["sha256"] == sidecar["copy"]["sha256"]
    assert row["requested_by"].startswith("cli:")
    assert [(s["sequence"], s["sha256"]) for s in row["derived_from"]] == sources
    events = admin.http.get("/api/audit", params={"action": "archive.redact", "limit": 100}).json()["items"]
    mine = {
        (e["detail"].get("stage"), e["outcome"]) for e in events if e["object"] == f"redaction:{row['id']}"
    }
    assert mine == {("requested", "success"), ("built", "success")}


def test_redact_bad_usage_and_nothing_to_redact(zhihui: ZhihuiProcess, tmp_path: Path) -> None:
    unknown = _redact(zhihui, "--stream", "no-such-stream", "--out", str(tmp_path))
    assert unknown.returncode == 1 and "no-such-stream" in unknown.stdout
    backwards = _redact(
        zhihui, "--stream", "x", "--from", "2026-05-02T00:00:00", "--to", "2026-05-01T00:00:00", "--out", "y"
    )
    assert backwards.returncode == 2
    assert _redact(zhihui, "--stream", "x", "--from", "yesterday", "--out", "y").returncode == 2
