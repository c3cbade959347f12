"""R9: officers send their position over the websocket or ``POST /api/positions``; fixes are
stored in batches (the track in ``position``, each person's newest in ``last_position``), pushed
to the command room at most once per batch per officer, and read back as everyone's newest
(filtered by incident or unit) and as a person's track over a time range, a page at a time. Bad
fixes get a clear 4xx; an officer reports only its own position; a clean stop stores every
accepted fix. Against ``zhihui up`` on SQLite and PostgreSQL, and in process with a manual clock
for the batching itself."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from dispatch_server.people.models import Role
from dispatch_server.positions.recorder import PositionRecorder
from dispatch_server.realtime.messages import PositionsMessage
from dispatch_server.scheduling.clock import ManualClock
from tests.conftest import ApiClient
from tests.dispatch_server.conftest import BACKENDS, database_for
from tests.dispatch_server.deployment import Deployment, Socket, query
from tests.dispatch_server.inprocess import InProcess, in_process
from tests.support import login, running_zhihui

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _fix(latitude: float, longitude: float, at: datetime, **extra: Any) -> dict[str, Any]:
    return {"latitude": latitude, "longitude": longitude, "accuracy_m": 12.0, "at": _iso(at), **extra}


async def test_positions_arrive_by_websocket_and_rest_are_pushed_stored_and_read_back(
    deployment: Deployment,
) -> None:
    """R9: an officer's fix over the websocket and another's over REST reach the wall's websocket
    within about a second, land in the track and as each one's newest, and come back from
    ``/api/positions/latest`` (with its incident and unit filters) and the track endpoint."""
    commander, officer1, officer2 = deployment.commander, deployment.officer1, deployment.officer2
    now = datetime.now(UTC).replace(microsecond=0)
    wall = await Socket.open(deployment.base_url, commander.token)
    phone = await Socket.open(deployment.base_url, officer1.token)
    try:
        for n in range(3):  # a short walk north, one fix a second
            fix = _fix(31.2304 + n * 0.0001, 121.4737, now - timedelta(seconds=3 - n), heading_deg=0.0)
            await phone.ws.send(json.dumps({"type": "position", **fix, "speed_mps": 1.4}))
        posted = officer2.http.post("/api/positions", json=_fix(39.9042, 116.4074, now))
        assert posted.status_code == 202, posted.text
        assert posted.json() == {"accepted": 1}

        seen: dict[int, dict[str, Any]] = {}

        def both(message: dict[str, Any]) -> bool:
            seen.update({p["person_id"]: p for p in message["positions"]})
            return {officer1.id, officer2.id} <= seen.keys() and seen[officer1.id]["latitude"] > 31.2305

        await wall.next("positions", timeout=5, until=both)
        newest = seen[officer1.id]
        assert (newest["latitude"], newest["longitude"], newest["heading_deg"], newest["speed_mps"]) == (
            31.2306,
            121.4737,
            0.0,
            1.4,
        )
        assert newest["at"] == _iso(now - timedelta(seconds=1))
        assert seen[officer2.id]["latitude"] == 39.9042
        assert [m for m in phone.seen if m["type"] in ("positions", "error")] == []  # officers get none
    finally:
        await wall.close()
        await phone.close()

    latest = commander.http.get("/api/positions/latest")
    assert latest.status_code == 200, latest.text
    by_person = {item["person"]["id"]: item for item in latest.json()["items"]}
    assert by_person[officer1.id]["latitude"] == 31.2306 and by_person[officer1.id]["person"]["username"] == (
        "officer1"
    )
    assert by_person[officer2.id]["at"] == _iso(now)

    incident = commander.http.post(
        "/api/incidents", json={"kind": "major", "title": "Positions", "officer_ids": [officer1.id]}
    ).json()
    on_it = commander.http.get("/api/positions/latest", params={"incident_id": incident["id"]}).json()
    assert [item["person_id"] for item in on_it["items"]] == [officer1.id] and on_it["total"] == 1
    assert deployment.zhihui.admin_password is not None
    admin = ApiClient(deployment.base_url, "admin", deployment.zhihui.admin_password)
    unit = admin.http.post("/api/units", json={"name": f"Positions {secrets.token_hex(4)}"}).json()
    account = {"display_name": "Unit Officer", "role": "field_officer", "unit_id": unit["id"]}
    account |= {"username": f"unit-officer-{secrets.token_hex(3)}", "password": "unit-officer-pw"}
    member = admin.http.post("/api/people", json=account).json()
    radioed = {**_fix(23.1291, 113.2644, now), "person_id": member["id"]}  # entered by the room
    assert commander.http.post("/api/positions", json=radioed).status_code == 202
    in_unit = _stored_soon(commander, "/api/positions/latest", {"unit_id": unit["id"]})
    assert [item["person_id"] for item in in_unit["items"]] == [member["id"]]
    everyone = commander.http.get("/api/positions/latest").json()
    paged = commander.http.get("/api/positions/latest", params={"limit": 1, "offset": 1}).json()
    assert paged["total"] == everyone["total"] >= 3 and paged["items"] == everyone["items"][1:2]
    assert commander.http.get("/api/positions/latest", params={"incident_id": 999999}).status_code == 404
    assert commander.http.get("/api/positions/latest", params={"unit_id": 999999}).status_code == 404

    window = {"since": _iso(now - timedelta(seconds=3)), "until": _iso(now)}
    track = commander.http.get(f"/api/people/{officer1.id}/track", params=window)
    assert track.status_code == 200, track.text
    assert [p["latitude"] for p in track.json()["items"]] == [31.2304, 31.2305, 31.2306]
    second = commander.http.get(
        f"/api/people/{officer1.id}/track", params={**window, "limit": 2, "offset": 2}
    ).json()
    assert second["total"] == 3 and [p["latitude"] for p in second["items"]] == [31.2306]
    later = {"since": _iso(now - timedelta(seconds=2)), "until": _iso(now - timedelta(seconds=1))}
    narrow = commander.http.get(f"/api/people/{officer1.id}/track", params=later).json()
    assert [p["latitude"] for p in narrow["items"]] == [31.2305]  # since inclusive, until exclusive
    backwards = commander.http.get(
        f"/api/people/{officer1.id}/track", params={"since": window["until"], "until": window["since"]}
    )
    assert backwards.status_code == 422 and "until must be after since" in backwards.json()["detail"]
    assert commander.http.get("/api/people/999999/track").status_code == 404
    naive = commander.http.get(f"/api/people/{officer1.id}/track", params={"since": "2026-03-02T09:00:00"})
    assert naive.status_code == 422 and "since" in naive.json()["detail"]
    assert officer1.http.get(f"/api/people/{officer1.id}/track").status_code == 403
    assert officer1.http.get("/api/positions/latest").status_code == 403

    stored = await deployment.sql(
        "SELECT latitude, speed_mps FROM position WHERE person_id = :p AND at >= :since ORDER BY at",
        p=officer1.id,
        since=now - timedelta(seconds=3),
    )
    assert stored == [(31.2304, 1.4), (31.2305, 1.4), (31.2306, 1.4)]
    audited = await deployment.sql(
        "SELECT actor_name, object FROM audit_event WHERE action = 'positions.track' AND object = :o",
        o=f"person:{officer1.id}",
    )
    assert ("commander", f"person:{officer1.id}") in audited


async def test_bad_fixes_get_a_clear_4xx_and_officers_report_only_their_own(deployment: Deployment) -> None:
    """R9: out-of-range coordinates, impossible accuracy, heading or speed, device times far in
    the future or too old, times without a zone and unknown fields are refused with a message
    naming the field; over the websocket, with an ``error`` message. An officer may not report
    another's position; the command room may enter one radioed in, which is audited."""
    commander, officer1, officer2 = deployment.commander, deployment.officer1, deployment.officer2
    now = datetime.now(UTC)
    refused = {
        "latitude": _fix(90.5, 0, now),
        "longitude": _fix(0, -180.01, now),
        "accuracy_m": _fix(0, 0, now, accuracy_m=-1),
        "heading_deg": _fix(0, 0, now, heading_deg=360),
        "speed_mps": _fix(0, 0, now, speed_mps=400),
        "ahead of the server's clock": _fix(0, 0, now + timedelta(hours=1)),
        "older than 72 hours": _fix(0, 0, now - timedelta(days=4)),
        "timezone": {**_fix(0, 0, now), "at": "2026-03-02T09:00:00"},
        "altitude": _fix(0, 0, now, altitude=30),
        "at: Field required": {"latitude": 1, "longitude": 1, "accuracy_m": 5},
    }
    for words, body in refused.items():
        response = officer1.http.post("/api/positions", json=body)
        assert response.status_code == 422, (words, response.text)
        assert words in response.json()["detail"], (words, response.json()["detail"])
    not_a_number = officer1.http.post(  # Python's json writes NaN; the server must not take it
        "/api/positions", content=json.dumps(_fix(float("nan"), 0, now))
    )
    assert not_a_number.status_code == 422

    # A batch is all or nothing, and says which fix was wrong.
    batch = [_fix(1, 1, now), _fix(2, 2, now + timedelta(days=1))]
    refused_batch = officer1.http.post("/api/positions/batch", json={"positions": batch})
    assert refused_batch.status_code == 422 and "positions[1]: at is" in refused_batch.json()["detail"]
    assert officer1.http.post("/api/positions/batch", json={"positions": []}).status_code == 422
    kept = [_fix(22.5431, 114.0579, now - timedelta(minutes=30 - n)) for n in range(5)]
    accepted = officer1.http.post("/api/positions/batch", json={"positions": kept})
    assert accepted.status_code == 202 and accepted.json() == {"accepted": 5}

    mine_only = officer1.http.post("/api/positions", json={**_fix(1, 1, now), "person_id": officer2.id})
    assert mine_only.status_code == 403 and "only report its own" in mine_only.json()["detail"]
    own_id = officer1.http.post("/api/positions", json={**_fix(1, 1, now), "person_id": officer1.id})
    assert own_id.status_code == 202
    radioed = commander.http.post(
        "/api/positions",
        json={**_fix(30.5728, 104.0668, now - timedelta(seconds=5)), "person_id": officer2.id},
    )
    assert radioed.status_code == 202, radioed.text
    nobody = commander.http.post("/api/positions", json={**_fix(1, 1, now), "person_id": 999999})
    assert nobody.status_code == 422 and "no such person" in nobody.json()["detail"]
    audited = await deployment.sql(
        "SELECT actor_name, object FROM audit_event WHERE action = 'positions.report' ORDER BY id"
    )
    assert audited[-1] == ("commander", f"person:{officer2.id}")

    phone = await Socket.open(deployment.base_url, officer1.token)
    try:
        await phone.ws.send(json.dumps({"type": "position", **_fix(91, 0, now)}))
        assert "latitude" in (await phone.next("error"))["message"]
        await phone.ws.send(json.dumps({"type": "position", **_fix(1, 1, now + timedelta(hours=2))}))
        assert "ahead of the server's clock" in (await phone.next("error"))["message"]
        await phone.ws.send(json.dumps({"type": "position", **_fix(1, 1, now), "person_id": officer2.id}))
        assert "malformed message" in (await phone.next("error"))["message"]  # no person_id on the socket
        await phone.ws.send(json.dumps({"type": "position", **_fix(1, 1, now)}))  # and it still works
        await phone.ws.send(json.dumps({"type": "ack", "directive_id": 999999}))
        assert "position" not in (await phone.next("error"))["message"]  # the good fix was not refused
    finally:
        await phone.close()

    offline = {"since": _iso(now - timedelta(minutes=31)), "until": _iso(now - timedelta(minutes=20))}
    track = _stored_soon(commander, f"/api/people/{officer1.id}/track", offline)
    assert [p["latitude"] for p in track["items"]] == [22.5431] * 5  # the batch kept while offline


@pytest.mark.parametrize("backend", BACKENDS)
async def test_fixes_are_stored_in_batches_pushed_once_per_officer_and_never_moved_back(
    backend: str, tmp_path: Path
) -> None:
    """R9: many fixes between two flushes are one transaction and one push carrying each
    officer's newest; a late fix older than the newest goes into the track but does not move the
    newest back; a fix is refused against the server's clock, not the machine's."""
    clock = ManualClock(T0)
    with database_for(backend, tmp_path) as database_url:
        async with in_process(database_url, tmp_path, clock) as zhihui:
            recorder = _recorder(zhihui)
            await recorder.stop()  # its loop, that is: the test ticks by hand
            commander = await zhihui.person("chief", Role.COMMANDER)
            li, zhao = [await zhihui.person(name, Role.FIELD_OFFICER) for name in ("li", "zhao")]
            await recorder.tick()
            zhihui.commands.clear()
            for n in range(20):
                for officer, base in ((li, 30.0), (zhao, 40.0)):
                    fix = _fix(base + n * 0.001, 120.0, T0 + timedelta(seconds=n))
                    assert (await officer.http.post("/api/positions", json=fix)).status_code == 202
            assert recorder.pending == 40
            await recorder.tick()
            pushes = [m for m in zhihui.commands if isinstance(m, PositionsMessage)]
            assert len(pushes) == 1
            pushed = {p.person_id: p for p in pushes[0].positions}
            assert len(pushes[0].positions) == 2 and pushed[li.id].latitude == pytest.approx(30.019)
            assert pushed[zhao.id].at == T0 + timedelta(seconds=19)

            late = _fix(35.0, 120.0, T0 + timedelta(seconds=5))  # kept by the phone, sent late
            assert (await li.http.post("/api/positions", json=late)).status_code == 202
            await recorder.tick()
            latest = (await commander.http.get("/api/positions/latest")).json()["items"]
            assert {i["person_id"]: i["latitude"] for i in latest}[li.id] == pytest.approx(30.019)
            track = (await commander.http.get(f"/api/people/{li.id}/track")).json()
            assert track["total"] == 21 and 35.0 in [p["latitude"] for p in track["items"]]

            ahead = _fix(1, 1, T0 + timedelta(minutes=6))  # the server's clock says 09:00
            refused = await li.http.post("/api/positions", json=ahead)
            assert refused.status_code == 422 and "360 s ahead" in refused.json()["detail"]
            await clock.advance(120)
            assert (await li.http.post("/api/positions", json=ahead)).status_code == 202
            await recorder.tick()

        rows = await query(database_url, "SELECT count(*), count(DISTINCT received_at) FROM position")
        assert rows == [(42, 2)]  # received by the server's clock: before and after it moved


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_clean_stop_stores_every_accepted_fix(backend: str, tmp_path: Path) -> None:
    """R9: fixes accepted but not yet flushed when the server stops are stored on the way out
    (a crash would lose at most the last flush interval's)."""
    clock = ManualClock(T0)
    with database_for(backend, tmp_path) as database_url:
        async with in_process(database_url, tmp_path, clock) as zhihui:
            await _recorder(zhihui).stop()  # its loop: nothing is stored until the app stops
            officer = await zhihui.person("li", Role.FIELD_OFFICER)
            batch = [_fix(30.0, 120.0 + n * 0.0001, T0 - timedelta(seconds=n)) for n in range(250)]
            for start in range(0, 250, 50):
                answer = await officer.http.post(
                    "/api/positions/batch", json={"positions": batch[start : start + 50]}
                )
                assert answer.status_code == 202
            assert _recorder(zhihui).pending == 250
        rows = await query(database_url, "SELECT count(*) FROM position WHERE person_id = :p", p=officer.id)
        newest = await query(database_url, "SELECT at FROM last_position WHERE person_id = :p", p=officer.id)
    assert rows == [(250,)]
    assert len(newest) == 1 and str(newest[0][0]).startswith("2026-03-02 09:00:00")


def test_zhihui_up_stores_positions_accepted_just_before_it_is_stopped(tmp_path: Path) -> None:
    """R9: ``zhihui up`` stopped (SIGTERM) less than a flush interval after accepting fixes has
    them all in the database."""
    with running_zhihui(tmp_path, "--demo") as zhihui:
        token = login(zhihui.base_url, "officer1", zhihui.credentials["officer1"])["access_token"]
        now = datetime.now(UTC)
        batch = [_fix(30.0, 120.0, now - timedelta(seconds=n)) for n in range(100)]
        with httpx.Client(base_url=zhihui.base_url, headers={"Authorization": f"Bearer {token}"}) as http:
            assert http.post("/api/positions/batch", json={"positions": batch}).status_code == 202
        zhihui.stop()  # SIGTERM: uvicorn shuts the app down, then dies of the signal it caught
    import sqlite3

    with sqlite3.connect(zhihui.database) as db:
        assert db.execute("SELECT count(*) FROM position").fetchone() == (100,)


def _stored_soon(client: ApiClient, path: str, params: dict[str, Any]) -> dict[str, Any]:
    """The page once it has items: fixes are stored within a second of being accepted."""
    deadline = time.monotonic() + 3
    while True:
        page: dict[str, Any] = client.http.get(path, params=params).json()
        if page["items"] or time.monotonic() > deadline:
            return page
        time.sleep(0.1)


def _recorder(zhihui: InProcess) -> PositionRecorder:
    return zhihui.app.state.positions  # type: ignore[no-any-return]


async def test_a_websocket_faster_than_the_store_waits_for_it_instead_of_being_refused(
    tmp_path: Path,
) -> None:
    """R9: past two batches waiting, the websocket reads nothing more until the store catches up
    (TCP then slows the sender); only a store that stays behind refuses fixes (429)."""
    clock = ManualClock(T0)
    async with in_process(f"sqlite:///{tmp_path / 'zhihui.db'}", tmp_path, clock) as zhihui:
        recorder = _recorder(zhihui)
        await recorder.stop()  # its loop: the test ticks by hand
        recorder.max_batch, recorder.max_pending = 10, 25
        officer = await zhihui.person("li", Role.FIELD_OFFICER)
        fixes = [_fix(30.0, 120.0, T0 - timedelta(seconds=n)) for n in range(20)]
        assert (await officer.http.post("/api/positions/batch", json={"positions": fixes})).status_code == 202
        waiting = asyncio.create_task(recorder.room())
        await asyncio.sleep(0.05)
        assert not waiting.done()  # 20 waiting: a reader would pause here
        refused = await officer.http.post("/api/positions/batch", json={"positions": fixes[:6]})
        assert refused.status_code == 429 and "send again shortly" in refused.json()["detail"]
        await recorder.flush()  # one batch of 10 stored: room again
        await asyncio.wait_for(waiting, 1)
        assert recorder.pending == 10
