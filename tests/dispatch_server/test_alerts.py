"""R8, R9, R4, R2: alerts. Raising an alert that is open already changes nothing, whoever raises
it and however many at once (one row, one event); acknowledging and resolving, with notes, are
idempotent; SOS reaches the command room's websocket at once; storage alerts are alert rows.
Real SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dispatch_server.alerts import service as alerts
from dispatch_server.alerts.models import AlertKind, AlertLevel
from dispatch_server.db import Database
from dispatch_server.people.models import Role
from dispatch_server.realtime.bus import InProcessBus, command_channel
from dispatch_server.realtime.eventlog import LoggedEvent
from dispatch_server.realtime.messages import AlertMessage, ServerMessage, event_message
from dispatch_server.scheduling.clock import ManualClock
from dispatch_server.streams import service as streams
from media_relay.events import StorageAlert
from tests.dispatch_server.conftest import BACKENDS, database_for
from tests.dispatch_server.deployment import Deployment, Socket, async_url, query
from tests.dispatch_server.inprocess import in_process, until

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


async def _raise(database: Database, subject: str, now: datetime) -> list[LoggedEvent]:
    async with database.sessions() as db_session:
        events = await alerts.raise_alert(
            db_session=db_session,
            kind=AlertKind.STREAM_LOST,
            subject=subject,
            message="Li's stream ended",
            level=AlertLevel.CRITICAL,
            now=now,
        )
        await db_session.commit()
        return events


@pytest.mark.parametrize("backend", BACKENDS)
async def test_an_alert_raised_many_times_at_once_from_two_processes_is_one_row(
    backend: str, tmp_path: Path
) -> None:
    """Two engines on one database stand for two dispatch processes: 20 raises of the same alert
    at once leave one open row and one event; once resolved, it can open again."""
    with database_for(backend, tmp_path) as database_url:
        (tmp_path / "var").mkdir(exist_ok=True)
        first, second = Database(async_url(database_url)), Database(async_url(database_url))
        await first.start()
        await second.start()
        try:
            raised = await asyncio.gather(
                *(_raise((first, second)[n % 2], "field_op:1:person:7", T0) for n in range(20))
            )
            assert sum(len(events) for events in raised) == 1
            (event,) = (e for events in raised for e in events)
            assert event.message.type == "alert" and event.channel == "command"
            assert event.message.alert.kind is AlertKind.STREAM_LOST  # type: ignore[union-attr]

            async with second.sessions() as db_session:
                cleared = await alerts.resolve_open(
                    db_session=db_session,
                    kind=AlertKind.STREAM_LOST,
                    subject="field_op:1:person:7",
                    now=T0 + timedelta(seconds=5),
                    note="the stream is back",
                )
                again = await alerts.resolve_open(
                    db_session=db_session,
                    kind=AlertKind.STREAM_LOST,
                    subject="field_op:1:person:7",
                    now=T0 + timedelta(seconds=6),
                    note="twice",
                )
                await db_session.commit()
            assert [e.message.type for e in cleared] == ["alert_update"] and again == []
            reopened = await _raise(first, "field_op:1:person:7", T0 + timedelta(seconds=9))
            assert len(reopened) == 1
        finally:
            await first.stop()
            await second.stop()
        rows = await query(database_url, "SELECT subject, resolved_note FROM alert ORDER BY id")
        logged = await query(database_url, "SELECT type FROM event WHERE subject LIKE 'alert:%' ORDER BY id")
    assert rows == [("field_op:1:person:7", "the stream is back"), ("field_op:1:person:7", "")]
    assert logged == [("alert",), ("alert_update",), ("alert",)]


async def test_an_sos_reaches_the_command_room_at_once_and_is_acknowledged_and_resolved_with_notes(
    deployment: Deployment,
) -> None:
    """R9: an officer's SOS over the websocket is a critical alert on the commander's websocket,
    and the officer sees it arrive and be acknowledged; pressing again gives the same alert."""
    commander, officer1, officer2 = deployment.commander, deployment.officer1, deployment.officer2
    wall = await Socket.open(deployment.base_url, commander.token)
    phone = await Socket.open(deployment.base_url, officer1.token)
    try:
        position = {"latitude": 39.9042, "longitude": 116.4074, "accuracy_m": 8}
        await phone.ws.send(json.dumps({"type": "sos", "position": position, "note": "crowd turning"}))
        seen = await wall.next("alert", alert__kind="sos")
        alert = seen["alert"]
        assert alert["level"] == "critical" and alert["person"]["id"] == officer1.id
        assert (alert["latitude"], alert["longitude"], alert["accuracy_m"]) == (39.9042, 116.4074, 8)
        assert "crowd turning" in alert["message"] and "39.90420, 116.40740" in alert["message"]
        mine = await phone.next("alert", alert__id=alert["id"])
        assert mine["event_id"] == seen["event_id"] + 1  # one transaction: the room's, then the officer's

        again = officer1.http.post("/api/alerts/sos", json={})  # pressed again while open: that one
        assert again.status_code == 200 and again.json()["id"] == alert["id"]
        await phone.ws.send(json.dumps({"type": "sos"}))
        assert (await phone.next("alert"))["alert"]["id"] == alert["id"]

        path = f"/api/alerts/{alert['id']}"
        acked = commander.http.post(f"{path}/acknowledge", json={"note": "Unit 3 on its way"})
        assert acked.status_code == 200, acked.text
        assert acked.json()["acknowledged_by"]["id"] == commander.id
        assert acked.json()["acknowledged_note"] == "Unit 3 on its way"
        update = await phone.next("alert_update", alert__id=alert["id"])  # the officer knows help is coming
        assert update["alert"]["acknowledged_note"] == "Unit 3 on its way"
        twice = commander.http.post(f"{path}/acknowledge", json={"note": "other words"})
        assert twice.status_code == 200 and twice.json() == acked.json()  # idempotent: the same state

        resolved = commander.http.post(f"{path}/resolve", json={"note": "Officer safe, crowd dispersed"})
        assert (
            resolved.status_code == 200
            and resolved.json()["resolved_note"] == "Officer safe, crowd dispersed"
        )
        assert commander.http.post(f"{path}/resolve", json={"note": "again"}).json() == resolved.json()
        await wall.next("alert_update", until=lambda m: m["alert"]["resolved_at"] is not None)
        updates = [m for m in await wall.drain(0.5) if m["type"] == "alert_update"]
        assert updates == []  # the second resolve changed nothing and pushed nothing
    finally:
        await wall.close()
        await phone.close()

    # Acknowledging what was resolved unacknowledged is refused; bad input is a clear 4xx.
    other = officer2.http.post("/api/alerts/sos", json={"note": "flat tyre, alone"})
    assert other.status_code == 201, other.text
    other_path = f"/api/alerts/{other.json()['id']}"
    assert commander.http.post(f"{other_path}/resolve", json={}).status_code == 200
    late = commander.http.post(f"{other_path}/acknowledge", json={"note": "sorry"})
    assert late.status_code == 409 and "resolved already" in late.json()["detail"]
    assert commander.http.post("/api/alerts/999999/acknowledge", json={}).status_code == 404
    assert commander.http.post(f"{other_path}/resolve", json={"note": "x" * 2001}).status_code == 422
    assert commander.http.post(f"{other_path}/resolve", json={"comment": "?"}).status_code == 422
    far = officer2.http.post("/api/alerts/sos", json={"position": {"latitude": 91, "longitude": 0}})
    assert far.status_code == 422 and "latitude" in far.json()["detail"]
    assert commander.http.post("/api/alerts/sos", json={}).status_code == 403
    assert commander.http.get("/api/alerts", params={"state": "closed"}).status_code == 422
    naive = commander.http.get("/api/alerts", params={"since": "2026-03-02T09:00:00"})
    assert naive.status_code == 422 and "since" in naive.json()["detail"]
    wall = await Socket.open(deployment.base_url, commander.token)
    try:
        await wall.ws.send(json.dumps({"type": "sos"}))
        assert "only field officers" in (await wall.next("error"))["message"]
    finally:
        await wall.close()

    # The list: open by default, all on request, filtered and paged.
    open_ids = [a["id"] for a in commander.http.get("/api/alerts").json()["items"]]
    assert alert["id"] not in open_ids and other.json()["id"] not in open_ids
    since = {"state": "all", "kind": "sos", "since": alert["raised_at"]}
    everything = commander.http.get("/api/alerts", params=since).json()
    assert [a["id"] for a in everything["items"]][-2:] == [other.json()["id"], alert["id"]]
    page = commander.http.get("/api/alerts", params={**since, "limit": 1, "offset": 1}).json()
    assert page["total"] == everything["total"] and len(page["items"]) == 1
    assert page["items"][0]["id"] == everything["items"][1]["id"]
    assert (
        commander.http.get("/api/alerts", params={"person_id": officer2.id, "state": "all"}).json()["total"]
        >= 1
    )

    audited = await deployment.sql(
        "SELECT action, actor_name, object FROM audit_event WHERE object = :o ORDER BY id",
        o=f"alert:{alert['id']}",
    )
    assert audited == [
        ("alert.sos", "officer1", f"alert:{alert['id']}"),
        ("alert.acknowledge", "commander", f"alert:{alert['id']}"),
        ("alert.resolve", "commander", f"alert:{alert['id']}"),
    ]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_missed_acknowledgement_raises_ack_overdue_which_clears_when_acknowledged(
    backend: str, tmp_path: Path
) -> None:
    """R4: the escalation of a target that did not acknowledge in time opens one ack_overdue
    alert (not one per escalation level); a late acknowledgement resolves it at the rules' next run,
    even when the target has also reported the directive done by then."""
    clock = ManualClock(T0)
    with database_for(backend, tmp_path) as database_url:
        async with in_process(database_url, tmp_path, clock, leader_after_seconds=60) as zhihui:
            chief = await zhihui.person("chief", Role.COMMANDER)
            await zhihui.person("leader", Role.LEADER)
            li = await zhihui.person("li", Role.FIELD_OFFICER)
            issued = await chief.http.post(
                "/api/directives",
                json={"target_ids": [li.id], "text": "Report in", "ack_deadline_seconds": 30},
            )
            assert issued.status_code == 201, issued.text
            directive_id = issued.json()["id"]
            await zhihui.advance(31)
            await until(lambda: len(zhihui.escalations()) == 1)
            await zhihui.advance(61)
            await until(lambda: len(zhihui.escalations()) == 2)
            raised = [
                m.alert
                for m in zhihui.commands
                if isinstance(m, AlertMessage) and m.alert.kind is AlertKind.ACK_OVERDUE
            ]
            assert [(a.kind, a.person.id if a.person else None) for a in raised] == [
                (AlertKind.ACK_OVERDUE, li.id)
            ]
            assert raised[0].subject == f"directive:{directive_id}:person:{li.id}"
            assert "escalated to Chief" in raised[0].message
            assert raised[0].raised_at == T0 + timedelta(seconds=31)

            assert (await li.http.post(f"/api/directives/{directive_id}/ack")).status_code == 200
            assert (await li.http.post(f"/api/directives/{directive_id}/done")).status_code == 200
            rules = zhihui.app.state.rules
            now = await clock.advance(5)
            await until(lambda: (idle := rules.idle_until) is not None and idle > now)
            cleared = (
                await chief.http.get("/api/alerts", params={"state": "all", "kind": "ack_overdue"})
            ).json()
            (alert,) = cleared["items"]
            assert alert["resolved_at"] is not None and alert["resolved_note"].startswith("acknowledged late")


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_relays_storage_reports_are_alert_rows(backend: str, tmp_path: Path) -> None:
    """R2: a low disk opens one storage alert however often the relay repeats it, and "ok"
    resolves it; a failed write is a critical alert of its own. (The streams service without the
    app, whose own relay reports the real disk; ``test_storage_alert.py`` runs the whole way.)"""
    with database_for(backend, tmp_path) as database_url:
        (tmp_path / "var").mkdir(exist_ok=True)
        database, bus = Database(async_url(database_url)), InProcessBus()
        pushed: list[ServerMessage] = []
        bus.subscribe(command_channel(), pushed.append)
        await database.start()
        try:

            async def report(level: str, message: str, at: datetime, stream_id: str = "") -> None:
                event = StorageAlert(level=level, message=message, at=at, stream_id=stream_id)
                async with database.sessions() as db_session:
                    await streams.record_storage_alert(db_session=db_session, bus=bus, event=event)

            async def storage_alerts(open_only: bool) -> list[tuple[str, str, str, str]]:
                async with database.sessions() as db_session:
                    rows, _total = await alerts.list_alerts(
                        db_session=db_session, open_only=open_only, kind=AlertKind.STORAGE
                    )
                return [(a.level.value, a.subject, a.message, a.resolved_note) for a in rows]

            for minute in (0, 5, 10):
                await report("low", f"free space now {9 - minute} GiB", T0 + timedelta(minutes=minute))
            await report("write_failed", "No space left", T0, stream_id="s-1")
            assert await storage_alerts(open_only=True) == [
                ("critical", "storage:write:s-1", "No space left", ""),
                ("warning", "storage:disk", "free space now 9 GiB", ""),
            ]
            await report("ok", "free space back to 80 GiB", T0 + timedelta(hours=1))
            assert [subject for _, subject, _, _ in await storage_alerts(open_only=True)] == [
                "storage:write:s-1"  # a person resolves that one
            ]
            assert (await storage_alerts(open_only=False))[-1][3] == "free space back to 80 GiB"
            assert [m.type for m in pushed] == ["alert", "alert", "alert_update"]
        finally:
            await database.stop()


def test_storage_alerts_logged_before_alerts_were_rows_still_read() -> None:
    """A database from before alert rows holds storage events with their fields at the top: a
    client reconnecting over them must not break on them."""
    old = '{"type": "alert", "kind": "storage", "level": "low", "message": "free space now 3 GiB", '
    old += '"at": "2026-03-02T09:00:00Z", "stream_id": ""}'
    message = event_message.validate_json(old)
    assert isinstance(message, AlertMessage)
    assert (message.alert.kind, message.alert.level, message.alert.id) == (
        AlertKind.STORAGE,
        AlertLevel.WARNING,
        0,
    )
    assert message.alert.raised_at == T0 and message.alert.resolved_at is None
