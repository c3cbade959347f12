"""R17: playing a recording or downloading an export with no sign-in, or with a ticket that is not
good for it, is audited too: by source address, since nobody is known."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from dispatch_server.people.models import Role
from dispatch_server.scheduling.clock import ManualClock
from tests.dispatch_server.inprocess import in_process


async def test_attempts_without_valid_credentials_are_audited_by_source(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'var' / 'zhihui.db'}"
    async with in_process(url, tmp_path, ManualClock(datetime.now(UTC))) as zhihui:
        admin = await zhihui.person("root", Role.ADMIN)
        ticket = (await admin.http.post("/api/recordings/s-1/ticket")).json()["ticket"]
        async with zhihui.http() as anonymous:
            assert (await anonymous.get("/api/recordings/s-1/play")).status_code == 401
            other = await anonymous.get("/api/recordings/s-2/play", params={"ticket": ticket})
            assert other.status_code == 401
            forged = await anonymous.get("/api/exports/5/download", params={"ticket": "not-a-ticket"})
            assert forged.status_code == 401
        rows = (await admin.http.get("/api/audit", params={"outcome": "denied"})).json()["items"]
        assert [
            (r["action"], r["object"], r["actor_id"], r["source"], r["detail"]["ticket"]) for r in rows
        ] == [
            ("archive.export_download", "export:5", None, "127.0.0.1", True),
            ("archive.play", "stream:s-2", None, "127.0.0.1", True),
            ("archive.play", "stream:s-1", None, "127.0.0.1", False),
        ]
