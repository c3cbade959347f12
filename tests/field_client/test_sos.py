"""R9: an officer calls for help from the field client (``zhihui-officer --sos``, or ``sos`` typed
at its keyboard): the command room gets one critical alert with the officer's position and note;
pressing again while it is open gives the same alert."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from field_client.position import Fix
from tests.conftest import ApiClient
from tests.media import signed_in
from tests.support import LOOPBACK, ZhihuiProcess


def _open_sos(commander: ApiClient, person_id: int) -> list[dict[str, Any]]:
    page = commander.http.get("/api/alerts", params={"kind": "sos", "person_id": person_id}).json()
    return list(page["items"])


def _resolve(commander: ApiClient, alert_id: int) -> None:
    resolved = commander.http.post(f"/api/alerts/{alert_id}/resolve", json={"note": "test over"})
    assert resolved.status_code == 200, resolved.text


def test_zhihui_officer_sos_reaches_the_command_room_with_position_and_note(
    zhihui: ZhihuiProcess, commander: ApiClient, officer1: ApiClient
) -> None:
    ran = subprocess.run(
        [
            sys.executable,
            "-m",
            "field_client.cli",
            "--server",
            zhihui.base_url,
            "--username",
            "officer1",
            "--password",
            zhihui.credentials["officer1"],
            "--source",
            "black",
            "--ice-host",
            LOOPBACK,
            "--position",
            "31.2304,121.4737",
            "--sos",
            "two men blocking the exit",
            "--duration",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "SOS 求助 #" in ran.stdout and "sent with your position" in ran.stdout, ran.stdout
    [alert] = _open_sos(commander, officer1.id)
    try:
        assert alert["level"] == "critical"
        assert (alert["latitude"], alert["longitude"]) == (31.2304, 121.4737)
        assert "two men blocking the exit" in alert["message"]
    finally:
        _resolve(commander, alert["id"])


async def test_pressing_sos_again_while_it_is_open_gives_the_same_alert(
    zhihui: ZhihuiProcess, commander: ApiClient
) -> None:
    async with signed_in(zhihui, "officer2") as (client, me):
        first = await client.sos("hurt", Fix(22.5431, 114.0579, accuracy_m=8))
        try:
            again = await client.sos()  # no position, no note: still the one alert
            assert again["id"] == first["id"]
            assert (first["latitude"], first["accuracy_m"]) == (22.5431, 8)
            assert [a["id"] for a in _open_sos(commander, me["id"])] == [first["id"]]
        finally:
            _resolve(commander, first["id"])
