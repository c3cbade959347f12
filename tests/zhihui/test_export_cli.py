"""``zhihui export`` (issue 4): an evidence package on the command line, with a progress bar,
audited like the API's; by stream, or by time range and officer."""

from __future__ import annotations

import hashlib
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.archive_support import catalogued, record_with_gap
from tests.conftest import ApiClient
from tests.support import ZhihuiProcess, _run_async, run_zhihui


@pytest.fixture(scope="module")
def stream_id(zhihui: ZhihuiProcess) -> str:
    return str(_run_async(record_with_gap(zhihui, "officer2", "cli", seconds=1.5)))


def _export(zhihui: ZhihuiProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return run_zhihui(zhihui.workdir, "export", *args, COLUMNS="120")


def test_export_by_stream_writes_a_checked_package_and_is_audited(
    zhihui: ZhihuiProcess, commander: ApiClient, stream_id: str, tmp_path: Path
) -> None:
    recording = catalogued(commander, stream_id)
    out = tmp_path / "package"
    done = _export(zhihui, "--stream", stream_id, "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "exporting" in done.stdout and "100%" in done.stdout
    assert stream_id in done.stdout

    for line in (out / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest, name
    assert (out / "streams" / f"{stream_id}.webm").stat().st_size > 0
    assert (out / "manifests" / f"{stream_id}.manifest.jsonl").exists()
    assert len(list((out / "segments" / stream_id).glob("*.mkv"))) == len(recording["segments"]) == 2
    assert "publisher reconnected" in (out / "SUMMARY.txt").read_text()

    again = _export(zhihui, "--stream", stream_id, "--out", str(out))
    assert again.returncode == 2 and "already holds a package" in again.stdout

    assert zhihui.admin_password
    admin = ApiClient(zhihui.base_url, "admin", zhihui.admin_password)
    rows = admin.http.get("/api/audit", params={"action": "archive.export", "limit": 100}).json()["items"]
    mine = [r for r in rows if r["actor_name"].startswith("cli:") and r["detail"].get("out") == str(out)]
    assert len(mine) == 1 and mine[0]["outcome"] == "success" and mine[0]["source"] == "local"
    assert mine[0]["detail"]["sha256sums"] == hashlib.sha256((out / "SHA256SUMS").read_bytes()).hexdigest()


def test_export_by_time_and_officer_and_bad_usage(
    zhihui: ZhihuiProcess, commander: ApiClient, stream_id: str, tmp_path: Path
) -> None:
    recording = catalogued(commander, stream_id)
    start = datetime.fromisoformat(recording["started_at"])
    window = ["--from", (start - timedelta(seconds=1)).isoformat(), "--to", recording["ended_at"]]
    done = _export(zhihui, *window, "--officer", "officer2", "--out", str(tmp_path / "range"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "range" / "segments" / stream_id).is_dir()

    nobody = _export(zhihui, *window, "--officer", "nobody", "--out", str(tmp_path / "none"))
    assert nobody.returncode == 1 and "unknown officer" in nobody.stdout
    assert _export(zhihui, "--out", str(tmp_path / "x")).returncode == 2
    assert (
        _export(zhihui, "--from", "yesterday", "--to", "today", "--out", str(tmp_path / "y")).returncode == 2
    )
