"""R8: field operations (外出执行) are registered (team, case, place, planned times), started and
ended, and supervised while they run: a team member without a live stream for longer than
``alerts.no_stream_seconds`` raises ``field_op_no_stream``, which clears itself when a stream of
theirs goes live; a stream that ends, freezes, goes black or is covered during the operation
raises its own alert, cleared when the stream is back or the picture fine. Rules on a clock the
test moves (in-process app, real SQLite and PostgreSQL); the REST surface against ``zhihui up``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dispatch_server.alerts.rules import RuleRunner
from dispatch_server.people.models import Role
from dispatch_server.realtime.messages import AlertMessage, AlertUpdateMessage
from dispatch_server.scheduling.clock import ManualClock
from media_relay.events import AnyRelayEvent, StreamDown, StreamHealth, StreamUp
from tests.conftest import ApiClient
from tests.dispatch_server.conftest import BACKENDS, database_for
from tests.dispatch_server.deployment import Deployment, Socket, query
from tests.dispatch_server.inprocess import Client, InProcess, in_process, until
from tests.media import publishing
from tests.support import running_zhihui

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NO_STREAM_SECONDS = 60  # the setting's default


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class Field:
    """The in-process app seen from the command room, with the relay's reports fed in by hand."""

    def __init__(self, zhihui: InProcess, commander: Client) -> None:
        self.zhihui = zhihui
        self.commander = commander

    @property
    def rules(self) -> RuleRunner:
        return self.zhihui.app.state.rules  # type: ignore[no-any-return]

    async def advance(self, seconds: float) -> None:
        """Move the clock; wait until the rules have run at the new time."""
        now = await self.zhihui.clock.advance(seconds)
        await until(lambda: (idle := self.rules.idle_until) is not None and idle > now and self.rules.settled)

    async def relay(self, event: AnyRelayEvent) -> None:
        """What the relay would report; the rules run at once (a stream changed)."""
        await self.zhihui.app.state.relay_events(event)
        await until(lambda: self.rules.settled)

    async def publish(self, officer: Client) -> str:
        granted = await officer.http.post("/api/grants/publish", json={"device": "bodycam"})
        assert granted.status_code == 200, granted.text
        stream_id = str(granted.json()["stream_id"])
        now = self.zhihui.clock.now()
        await self.relay(
            StreamUp(
                stream_id=stream_id,
                officer_id=str(officer.id),
                started_at=now,
                video_codec="vp8",
                audio_codec="opus",
            )
        )
        return stream_id

    async def drop(self, officer: Client, stream_id: str) -> None:
        now = self.zhihui.clock.now()
        await self.relay(
            StreamDown(stream_id=stream_id, officer_id=str(officer.id), ended_at=now, reason="ice failed")
        )

    async def flag(self, officer: Client, stream_id: str, *flags: str) -> None:
        now = self.zhihui.clock.now()
        await self.relay(
            StreamHealth(stream_id=stream_id, officer_id=str(officer.id), at=now, flags=list(flags))
        )

    async def alerts(self, **params: Any) -> list[dict[str, Any]]:
        response = await self.commander.http.get("/api/alerts", params={"state": "all", **params})
        assert response.status_code == 200, response.text
        return response.json()["items"]  # type: ignore[no-any-return]

    async def open_alerts(self) -> set[tuple[str, int]]:
        """(kind, person id) of every open alert of a field operation (other rules, e.g. the duty
        roster's empty seat, raise their own)."""
        return {
            (a["kind"], a["person"]["id"])
            for a in await self.alerts(state="open")
            if a["field_operation_id"] is not None
        }


@pytest.mark.parametrize("backend", BACKENDS)
async def test_supervision_raises_and_clears_stream_alerts_during_a_field_operation(
    backend: str, tmp_path: Path
) -> None:
    clock = ManualClock(T0)
    with database_for(backend, tmp_path) as database_url:
        async with in_process(database_url, tmp_path, clock) as zhihui:
            commander = await zhihui.person("chief", Role.COMMANDER)
            li, zhao = [await zhihui.person(name, Role.FIELD_OFFICER) for name in ("li", "zhao")]
            field = Field(zhihui, commander)
            created = await commander.http.post(
                "/api/field-operations",
                json={
                    "case_number": "(2026)京0105执1234号",
                    "place": "Chaoyang, Block 7",
                    "team_ids": [li.id, zhao.id],
                    "planned_start": _iso(T0),
                    "planned_end": _iso(T0 + timedelta(hours=2)),
                },
            )
            assert created.status_code == 201, created.text
            operation = created.json()
            assert operation["status"] == "planned" and operation["streaming_required"] is True
            assert [m["id"] for m in operation["team"]] == [li.id, zhao.id]

            li_stream = await field.publish(li)
            await field.advance(NO_STREAM_SECONDS + 5)  # not started: nothing is supervised yet
            assert await field.open_alerts() == set()
            started = await li.http.post(f"/api/field-operations/{operation['id']}/start")  # a team member
            assert started.status_code == 200, started.text
            assert started.json()["status"] == "active" and started.json()["started_at"] == _iso(clock.now())
            start = clock.now()

            await field.advance(NO_STREAM_SECONDS)  # exactly N seconds: not more than N yet
            assert await field.open_alerts() == set()
            await field.advance(5)
            assert await field.open_alerts() == {("field_op_no_stream", zhao.id)}  # li streams
            (no_stream,) = await field.alerts(kind="field_op_no_stream")
            assert no_stream["field_operation_id"] == operation["id"] and no_stream["level"] == "warning"
            assert no_stream["raised_at"] == _iso(start + timedelta(seconds=NO_STREAM_SECONDS + 5))
            assert "Zhao" in no_stream["message"] and "Block 7" in no_stream["message"]
            await field.advance(NO_STREAM_SECONDS)  # still none: still the one alert
            assert len(await field.alerts(kind="field_op_no_stream")) == 1

            zhao_stream = await field.publish(zhao)  # the stream comes up: the alert clears itself
            assert await field.open_alerts() == set()
            (cleared,) = await field.alerts(kind="field_op_no_stream")
            assert cleared["resolved_at"] == _iso(clock.now()) and cleared["resolved_by"] is None
            assert cleared["resolved_note"] == "streaming again"

            await field.drop(li, li_stream)  # lost at once, no waiting
            assert await field.open_alerts() == {("stream_lost", li.id)}
            (lost,) = await field.alerts(kind="stream_lost")
            assert (
                lost["level"] == "critical"
                and lost["stream_id"] == li_stream
                and "ice failed" in lost["message"]
            )
            await field.flag(zhao, zhao_stream, "frozen")
            assert await field.open_alerts() == {("stream_lost", li.id), ("stream_frozen", zhao.id)}
            await field.flag(zhao, zhao_stream)  # the picture moves again
            assert await field.open_alerts() == {("stream_lost", li.id)}
            await field.advance(NO_STREAM_SECONDS + 1)  # and li has been without a stream too long
            assert await field.open_alerts() == {("stream_lost", li.id), ("field_op_no_stream", li.id)}
            await field.publish(li)  # back: both clear
            assert await field.open_alerts() == set()

            await field.flag(zhao, zhao_stream, "covered", "black")
            assert await field.open_alerts() == {("stream_covered", zhao.id), ("stream_black", zhao.id)}
            ended = await commander.http.post(
                f"/api/field-operations/{operation['id']}/end", json={"note": "Property sealed"}
            )
            assert ended.status_code == 200, ended.text
            assert ended.json()["status"] == "ended" and ended.json()["end_note"] == "Property sealed"
            assert await field.open_alerts() == set()
            assert {a["resolved_note"] for a in await field.alerts(kind="stream_covered")} == {
                "the field operation ended"
            }
            await field.drop(zhao, zhao_stream)  # after the end: nothing more is supervised
            await field.advance(10 * NO_STREAM_SECONDS)
            assert await field.open_alerts() == set()

            pushed = [m.type for m in zhihui.commands]
            assert pushed.count("field_operation") == 3  # registered, started, ended
            ours = [m for m in zhihui.commands if isinstance(m, AlertMessage | AlertUpdateMessage)]
            ours = [m for m in ours if m.alert.field_operation_id == operation["id"]]
            assert [m.type for m in ours].count("alert") == 6 and len(ours) == 12

        audited = await query(
            database_url,
            "SELECT action, actor_name, object FROM audit_event WHERE action LIKE 'field_op.%' ORDER BY id",
        )
    subject = f"field_op:{operation['id']}"
    assert audited == [
        ("field_op.create", "chief", subject),
        ("field_op.start", "li", subject),
        ("field_op.end", "chief", subject),
    ]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_an_operation_without_required_streaming_raises_no_no_stream_alert(
    backend: str, tmp_path: Path
) -> None:
    clock = ManualClock(T0)
    with database_for(backend, tmp_path) as database_url:
        async with in_process(database_url, tmp_path, clock) as zhihui:
            commander = await zhihui.person("chief", Role.COMMANDER)
            li = await zhihui.person("li", Role.FIELD_OFFICER)
            field = Field(zhihui, commander)
            body = {
                "case_number": "(2026)执9号",
                "place": "Court 3",
                "team_ids": [li.id],
                "planned_start": _iso(T0),
                "planned_end": _iso(T0 + timedelta(hours=1)),
                "streaming_required": False,
            }
            operation = (await commander.http.post("/api/field-operations", json=body)).json()
            assert (
                await commander.http.post(f"/api/field-operations/{operation['id']}/start")
            ).status_code == 200
            await field.advance(10 * NO_STREAM_SECONDS)
            assert await field.open_alerts() == set()
            stream_id = await field.publish(li)  # when they do stream, a covered camera still counts
            await field.flag(li, stream_id, "covered")
            assert await field.open_alerts() == {("stream_covered", li.id)}


def _operation(deployment: Deployment, **changes: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    body = {
        "case_number": "(2026)京0105执77号",
        "place": "Haidian, Room 301",
        "team_ids": [deployment.officer1.id],
        "planned_start": _iso(now),
        "planned_end": _iso(now + timedelta(hours=3)),
    } | changes
    return body


async def test_field_operations_over_rest_with_the_rules_on_bad_input_and_who_sees_what(
    deployment: Deployment,
) -> None:
    commander, officer1, officer2 = deployment.commander, deployment.officer1, deployment.officer2
    http = commander.http
    now = datetime.now(UTC)

    def refused(body: dict[str, Any], status: int, words: str) -> None:
        response = http.post("/api/field-operations", json=body)
        assert response.status_code == status, response.text
        assert words in response.json()["detail"], response.json()

    refused(
        _operation(deployment, planned_end=_iso(now - timedelta(hours=1))), 422, "after the planned start"
    )
    refused(
        _operation(
            deployment,
            planned_start=_iso(now - timedelta(hours=3)),
            planned_end=_iso(now - timedelta(hours=1)),
        ),
        422,
        "in the past",
    )
    refused(_operation(deployment, team_ids=[officer1.id, 10**6]), 404, str(10**6))
    refused(_operation(deployment, team_ids=[commander.id]), 422, "field officers")
    refused(_operation(deployment, team_ids=[]), 422, "team_ids")
    refused(_operation(deployment, incident_id=10**6), 404, "no incident")
    refused(_operation(deployment, case_number="  "), 422, "case number")
    refused(_operation(deployment, planned_start="2026-03-02T09:00:00"), 422, "planned_start")

    incident = http.post(
        "/api/incidents", json={"kind": "major", "title": "Seizure", "officer_ids": [officer1.id]}
    )
    wall = await Socket.open(deployment.base_url, officer1.token)
    try:
        created = http.post(
            "/api/field-operations", json=_operation(deployment, incident_id=incident.json()["id"])
        )
        assert created.status_code == 201, created.text
        operation = created.json()
        pushed = await wall.next("field_operation", field_operation__id=operation["id"])
        assert pushed["field_operation"]["status"] == "planned"
    finally:
        await wall.close()
    other = http.post("/api/field-operations", json=_operation(deployment, team_ids=[officer2.id])).json()
    path = f"/api/field-operations/{operation['id']}"

    # Officers see their own; the command room sees all.
    assert officer1.http.get(path).status_code == 200
    assert officer2.http.get(path).status_code == 404
    mine = officer2.http.get("/api/field-operations").json()
    assert other["id"] in [o["id"] for o in mine["items"]] and operation["id"] not in [
        o["id"] for o in mine["items"]
    ]
    listed = http.get("/api/field-operations", params={"incident_id": incident.json()["id"]}).json()
    assert [o["id"] for o in listed["items"]] == [operation["id"]] and listed["total"] == 1
    page = http.get("/api/field-operations", params={"person_id": officer2.id, "limit": 1}).json()
    assert len(page["items"]) == 1 and page["total"] >= 1 and page["limit"] == 1

    assert http.post(f"{path}/end", json={}).status_code == 409  # not started
    assert officer2.http.post(f"{path}/start").status_code == 404  # not on it: not there for them
    assert officer1.http.post(f"{path}/start").status_code == 200
    again = officer1.http.post(f"{path}/start")
    assert again.status_code == 409 and "started already" in again.json()["detail"]
    active = http.get("/api/field-operations", params={"status": "active"}).json()["items"]
    assert operation["id"] in [o["id"] for o in active]
    assert http.post(f"{path}/end", json={"note": "x" * 2001}).status_code == 422
    ended = officer1.http.post(f"{path}/end", json={"note": "Done, nobody hurt"})
    assert ended.status_code == 200 and ended.json()["ended_at"] >= ended.json()["started_at"]
    assert http.post(f"{path}/end", json={}).status_code == 409
    assert http.post(f"{path}/start").status_code == 409
    finished = http.get("/api/field-operations", params={"status": "ended"}).json()["items"]
    assert [o["id"] for o in finished if o["id"] == operation["id"]] == [operation["id"]]
    assert http.get("/api/field-operations", params={"status": "finished"}).status_code == 422


async def test_with_a_real_relay_a_silent_team_member_is_reported_until_their_bodycam_streams(
    workdir: Path,
) -> None:
    """R8 end to end, on the real clock: ``zhihui up`` with a one-second ``no_stream_seconds``, an
    officer publishing over WHIP through the relay, the commander's websocket hearing it all."""
    settings = {"ZHIHUI_ALERTS__NO_STREAM_SECONDS": "1", "ZHIHUI_ALERTS__CHECK_SECONDS": "0.2"}
    with running_zhihui(workdir, "--demo", **settings) as zhihui:
        commander = ApiClient(zhihui.base_url, "commander", zhihui.credentials["commander"])
        officer = ApiClient(zhihui.base_url, "officer1", zhihui.credentials["officer1"])
        now = datetime.now(UTC)
        body = {
            "case_number": "(2026)京0105执5号",
            "place": "Dongcheng, Gate 2",
            "team_ids": [officer.id],
            "planned_start": _iso(now),
            "planned_end": _iso(now + timedelta(hours=1)),
        }
        operation = commander.http.post("/api/field-operations", json=body).json()
        wall = await Socket.open(zhihui.base_url, commander.token)
        try:
            assert officer.http.post(f"/api/field-operations/{operation['id']}/start").status_code == 200
            silent = (await wall.next("alert", timeout=10, alert__kind="field_op_no_stream"))["alert"]
            assert silent["person"]["id"] == officer.id and silent["field_operation_id"] == operation["id"]

            async with publishing(zhihui, "officer1", audio=False) as live:
                back = await wall.next("alert_update", timeout=15, alert__id=silent["id"])
                assert back["alert"]["resolved_note"] == "streaming again"
            lost = (await wall.next("alert", timeout=15, alert__kind="stream_lost"))["alert"]
            assert lost["stream_id"] == live.stream_id and lost["level"] == "critical"

            ended = commander.http.post(f"/api/field-operations/{operation['id']}/end", json={})
            assert ended.status_code == 200, ended.text
            resolved = await wall.next("alert_update", timeout=5, alert__id=lost["id"])
            assert resolved["alert"]["resolved_note"] == "the field operation ended"
        finally:
            await wall.close()
        still_open = commander.http.get("/api/alerts", params={"field_operation_id": operation["id"]}).json()
        assert still_open["items"] == []
