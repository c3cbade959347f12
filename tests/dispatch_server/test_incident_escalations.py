"""R5, R6: an incident reported up, to the leader on duty or to the upper court's command center,
with an escalation package built and stored at that moment (summary, live links, open directives
with their targets' states, recent alerts, last timeline entries), pushed at once to the
recipients' websockets, audited, on the incident's timeline, acknowledged by the recipients. An
upper-court escalation shares the incident: the observers it went to then see it, watch its
streams and direct its officers; the others do not. Against ``zhihui up`` on SQLite and PostgreSQL
(real websockets), and in-process with a manual clock for the timeline that joins every event."""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dispatch_server.people.models import Role
from dispatch_server.scheduling.clock import ManualClock
from media_relay.events import StreamDown, StreamUp
from tests.conftest import ApiClient
from tests.dispatch_server.conftest import BACKENDS, database_for
from tests.dispatch_server.deployment import Deployment, Socket, query
from tests.dispatch_server.inprocess import Client, InProcess, in_process, until

LEADER_POST = "leader-on-duty"


def _person(deployment: Deployment, role: str) -> ApiClient:
    """A new person of this role, created by the admin, signed in."""
    admin = ApiClient(deployment.base_url, "admin", str(deployment.zhihui.admin_password))
    username = f"{role.replace('_', '')}-{secrets.token_hex(3)}"
    created = admin.http.post(
        "/api/people",
        json={"username": username, "display_name": username, "role": role, "password": "a-long-password"},
    )
    assert created.status_code == 201, created.text
    return ApiClient(deployment.base_url, username, "a-long-password")


def _open(commander: ApiClient, **body: Any) -> dict[str, Any]:
    response = commander.http.post("/api/incidents", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def _states(directive: dict[str, Any]) -> dict[int, tuple[str, bool]]:
    return {t["person"]["id"]: (t["state"], t["overdue"]) for t in directive["targets"]}


async def test_escalating_to_the_leader_on_duty_pushes_the_package_to_their_websocket(
    deployment: Deployment,
) -> None:
    commander = deployment.commander
    leader = _person(deployment, "leader")
    li, zhao = _person(deployment, "field_officer"), _person(deployment, "field_officer")
    assert leader.http.post("/api/duty/sign-in", json={"post": LEADER_POST}).status_code == 200
    wall = await Socket.open(deployment.base_url, commander.token)
    desk = await Socket.open(deployment.base_url, leader.token)
    try:
        incident = _open(
            commander,
            kind="emergency",
            title="Crowd at the gate",
            case_number="(2026)京0105执77号",
            place="North gate",
            officer_ids=[li.id, zhao.id],
        )
        path = f"/api/incidents/{incident['id']}"
        issued = commander.http.post(
            "/api/directives",
            json={"incident_id": incident["id"], "text": "Hold the gate", "ack_deadline_seconds": 600},
        )
        assert issued.status_code == 201, issued.text
        directive = issued.json()
        assert li.http.post(f"/api/directives/{directive['id']}/ack").status_code == 200
        done = commander.http.post(
            "/api/directives",
            json={"target_ids": [zhao.id], "incident_id": incident["id"], "text": "Call in"},
        ).json()
        assert zhao.http.post(f"/api/directives/{done['id']}/ack").status_code == 200
        assert zhao.http.post(f"/api/directives/{done['id']}/done").status_code == 200
        sos = zhao.http.post("/api/alerts/sos", json={"note": "pushed back"})
        assert sos.status_code == 201, sos.text

        escalated = commander.http.post(
            f"{path}/escalations", json={"target": "leader_on_duty", "reason": "The crowd is growing"}
        )
        assert escalated.status_code == 201, escalated.text
        escalation = escalated.json()
        assert escalation["target"] == "leader_on_duty" and escalation["reason"] == "The crowd is growing"
        assert escalation["requested_by"]["id"] == commander.id
        assert [(r["person"]["id"], r["acknowledged_at"]) for r in escalation["recipients"]] == [
            (leader.id, None)
        ]

        # The leader's websocket has it at once, package and all.
        pushed = await desk.next("incident_escalation", escalation__id=escalation["id"])
        assert pushed["escalation"] == escalation
        package = escalation["package"]
        summary = package["incident"]
        assert (summary["id"], summary["kind"], summary["title"]) == (
            incident["id"],
            "emergency",
            "Crowd at the gate",
        )
        assert (summary["case_number"], summary["place"]) == ("(2026)京0105执77号", "North gate")
        assert (summary["status"], summary["commander"]["id"]) == ("open", commander.id)
        assert summary["open_seconds"] >= 0 and {o["id"] for o in summary["officers"]} == {li.id, zhao.id}
        # Open directives only (the one zhao did is not), each target's state and overdue flag.
        assert [d["id"] for d in package["directives"]] == [directive["id"]]
        assert _states(package["directives"][0]) == {li.id: ("acknowledged", False), zhao.id: ("sent", False)}
        assert [(a["id"], a["kind"]) for a in package["alerts"]] == [(sos.json()["id"], "sos")]
        assert package["live"] == [] and package["view_grant_url"].endswith(f"{path}/grants/view")
        kinds = [e["kind"] for e in package["timeline"]]
        assert kinds[-4:] == ["acknowledged", "done", "alert_raised", "escalated"]
        assert "The crowd is growing" in package["timeline"][-1]["summary"]

        # Stored as sent: canonical JSON and its SHA-256, also in the audit record.
        [(stored, sha256)] = await deployment.sql(
            "SELECT package, package_sha256 FROM incident_escalation WHERE id = :id", id=escalation["id"]
        )
        assert hashlib.sha256(stored.encode()).hexdigest() == sha256 == escalation["package_sha256"]
        assert json.loads(stored) == package
        [(detail,)] = await deployment.sql(
            "SELECT detail FROM audit_event WHERE action = 'incident.escalate' AND object = :o",
            o=f"incident:{incident['id']}",
        )
        assert json.loads(detail)["package_sha256"] == sha256
        assert json.loads(detail)["recipients"] == [leader.id]

        # The recipient acknowledges receipt, once; the command room sees it.
        ack_path = f"{path}/escalations/{escalation['id']}/ack"
        assert commander.http.post(ack_path).status_code == 403  # not sent to the commander
        acked = leader.http.post(ack_path)
        assert acked.status_code == 200, acked.text
        acknowledged_at = acked.json()["recipients"][0]["acknowledged_at"]
        assert acknowledged_at is not None
        update = await wall.next("incident_escalation_update", escalation__id=escalation["id"])
        assert update["escalation"]["recipients"][0]["acknowledged_at"] == acknowledged_at
        assert leader.http.post(ack_path).json() == acked.json()  # again: no change

        listed = commander.http.get(f"{path}/escalations").json()
        assert listed["total"] == 1 and listed["items"][0]["package"] == package
        assert leader.http.get("/api/escalations/received", params={"pending": True}).json()["items"] == []
        received = leader.http.get("/api/escalations/received").json()["items"]
        assert [e["id"] for e in received] == [escalation["id"]]
        timeline = [e["kind"] for e in commander.http.get(f"{path}/timeline").json()["items"]]
        assert timeline[-2:] == ["escalated", "escalation_received"]

        # Bad input is a clear 4xx.
        def refused(body: dict[str, Any], status: int, words: str, where: str = path) -> None:
            response = commander.http.post(f"{where}/escalations", json=body)
            assert response.status_code == status, response.text
            assert words in response.json()["detail"], response.text

        refused({"target": "leader_on_duty", "reason": "  "}, 422, "needs a reason")
        refused({"target": "mayor", "reason": "x"}, 422, "target")
        refused({"target": "leader_on_duty"}, 422, "reason")
        refused({"target": "leader_on_duty", "reason": "x", "observer_id": leader.id}, 422, "upper_court")
        refused({"target": "upper_court", "reason": "x", "observer_id": leader.id}, 422, "not an upper-court")
        refused({"target": "upper_court", "reason": "x", "observer_id": 10**9}, 404, "no person")
        refused({"target": "leader_on_duty", "reason": "x"}, 404, "no incident", "/api/incidents/999999")
        assert (
            li.http.post(f"{path}/escalations", json={"target": "leader_on_duty", "reason": "x"}).status_code
            == 403
        )
        assert li.http.get(f"{path}/escalations").status_code == 403
        closed = commander.http.patch(path, json={"status": "closed"})
        assert closed.status_code == 200
        refused({"target": "leader_on_duty", "reason": "x"}, 409, "closed")
    finally:
        leader.http.post("/api/duty/sign-out", json={"post": LEADER_POST})
        await wall.close()
        await desk.close()


async def test_an_upper_court_escalation_shares_the_incident_with_those_it_went_to_only(
    deployment: Deployment,
) -> None:
    commander = deployment.commander
    asked, other = _person(deployment, "upper_observer"), _person(deployment, "upper_observer")
    li = _person(deployment, "field_officer")
    stream_id = li.http.post("/api/grants/publish", json={"device": "bodycam"}).json()["stream_id"]
    incident = _open(commander, kind="major", title="Seizure at the warehouse", officer_ids=[li.id])
    path = f"/api/incidents/{incident['id']}"
    upper = await Socket.open(deployment.base_url, asked.token)
    elsewhere = await Socket.open(deployment.base_url, other.token)
    try:
        # Before: neither observer sees the incident.
        for observer in (asked, other):
            assert observer.http.get(path).status_code == 404
        escalated = commander.http.post(
            f"{path}/escalations",
            json={"target": "upper_court", "reason": "Please command live", "observer_id": asked.id},
        )
        assert escalated.status_code == 201, escalated.text
        escalation = escalated.json()
        assert [r["person"]["id"] for r in escalation["recipients"]] == [asked.id]
        pushed = await upper.next("incident_escalation", escalation__id=escalation["id"])
        assert pushed["escalation"]["package"]["incident"]["id"] == incident["id"]
        assert [m for m in await elsewhere.drain(0.5) if m["type"].startswith("incident_escalation")] == []

        # The observer it went to sees the incident, its streams, and directs its officers (R6).
        assert asked.http.get(path).status_code == 200
        assert asked.http.get(f"{path}/streams").json() == []  # li is not live
        granted = asked.http.post(f"{path}/grants/view", json={"stream_ids": [stream_id]})
        assert granted.status_code == 200, granted.text
        assert [s["stream_id"] for s in granted.json()["streams"]] == [stream_id]
        none_live = asked.http.post(f"{path}/grants/view", json={})
        assert none_live.status_code == 409 and "streaming live" in none_live.json()["detail"]
        directed = asked.http.post(
            "/api/directives", json={"incident_id": incident["id"], "text": "Film the loading bay"}
        )
        assert directed.status_code == 201, directed.text
        assert directed.json()["origin"] == "upper_court"
        assert [e["id"] for e in asked.http.get(f"{path}/escalations").json()["items"]] == [escalation["id"]]
        assert asked.http.post(f"{path}/escalations/{escalation['id']}/ack").status_code == 200
        assert (
            asked.http.post(
                f"{path}/escalations", json={"target": "leader_on_duty", "reason": "x"}
            ).status_code
            == 403
        )

        # The other observer: not shared with it, so none of it is there.
        assert other.http.get(path).status_code == 404
        assert other.http.get(f"{path}/streams").status_code == 404
        assert other.http.post(f"{path}/grants/view", json={"stream_ids": [stream_id]}).status_code == 404
        assert other.http.get(f"{path}/escalations").status_code == 404
        assert other.http.post(f"{path}/escalations/{escalation['id']}/ack").status_code == 404
        assert other.http.get("/api/escalations/received").json()["items"] == []
        refused = other.http.post("/api/directives", json={"incident_id": incident["id"], "text": "Leave"})
        assert refused.status_code == 403

        # A stream of someone not on the incident is refused even to the command room.
        outsider = _person(deployment, "field_officer")
        foreign = outsider.http.post("/api/grants/publish", json={}).json()["stream_id"]
        wrong = commander.http.post(f"{path}/grants/view", json={"stream_ids": [foreign]})
        assert wrong.status_code == 403 and foreign in wrong.json()["detail"]

        # To the upper court with nobody named: every observer, the other one too.
        everyone = commander.http.post(
            f"{path}/escalations", json={"target": "upper_court", "reason": "Still"}
        )
        assert everyone.status_code == 201, everyone.text
        assert {asked.id, other.id} <= {r["person"]["id"] for r in everyone.json()["recipients"]}
        await elsewhere.next("incident_escalation", escalation__id=everyone.json()["id"])
        assert other.http.get(path).status_code == 200
        assert [e["id"] for e in other.http.get(f"{path}/escalations").json()["items"]] == [
            everyone.json()["id"]
        ]
        shared = [e for e in commander.http.get(f"{path}/timeline").json()["items"] if e["kind"] == "shared"]
        assert [e["person"]["id"] for e in shared][:1] == [asked.id] and other.id in [
            e["person"]["id"] for e in shared
        ]
    finally:
        await upper.close()
        await elsewhere.close()


# -- the timeline, in-process with a manual clock -----------------------------------------------------

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


async def _ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return response.json()  # type: ignore[no-any-return]


async def _publish(zhihui: InProcess, officer: Client) -> str:
    granted = await _ok(await officer.http.post("/api/grants/publish", json={"device": "bodycam"}))
    stream_id = str(granted["stream_id"])
    event = StreamUp(
        stream_id=stream_id,
        officer_id=str(officer.id),
        started_at=zhihui.clock.now(),
        video_codec="vp8",
        audio_codec="opus",
    )
    await zhihui.app.state.relay_events(event)
    return stream_id


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_timeline_joins_every_event_in_order_and_pages(backend: str, tmp_path: Path) -> None:
    """R5: directives, acknowledgements, done, both kinds of escalation, alerts raised and resolved,
    field operations started and ended, evidence holds placed and lifted, streams up and down: all
    on the incident's timeline, in order, a page at a time; the package's live links name the
    officers' live streams with their WHEP and wall URLs."""
    clock = ManualClock(T0)
    with database_for(backend, tmp_path) as database_url:
        async with in_process(database_url, tmp_path, clock, leader_after_seconds=60) as zhihui:
            chief = await zhihui.person("chief", Role.COMMANDER)
            leader = await zhihui.person("leader", Role.LEADER)
            li = await zhihui.person("li", Role.FIELD_OFFICER)
            wang = await zhihui.person("wang", Role.FIELD_OFFICER)
            incident = await _ok(
                await chief.http.post(
                    "/api/incidents",
                    json={"kind": "emergency", "title": "Eviction", "officer_ids": [li.id, wang.id]},
                ),
                201,
            )
            path = f"/api/incidents/{incident['id']}"
            operation = await _ok(
                await chief.http.post(
                    "/api/field-operations",
                    json={
                        "case_number": "(2026)执5号",
                        "place": "Block 7",
                        "team_ids": [li.id],
                        "planned_start": _at(0),
                        "planned_end": _at(3600),
                        "incident_id": incident["id"],
                    },
                ),
                201,
            )
            await zhihui.advance(10)
            await _ok(await li.http.post(f"/api/field-operations/{operation['id']}/start"))
            await zhihui.advance(10)
            stream_id = await _publish(zhihui, li)
            await zhihui.advance(10)  # T0+30
            directive = await _ok(
                await chief.http.post(
                    "/api/directives",
                    json={"incident_id": incident["id"], "text": "Open the door", "ack_deadline_seconds": 30},
                ),
                201,
            )
            await zhihui.advance(10)
            await _ok(await li.http.post(f"/api/directives/{directive['id']}/ack"))
            await zhihui.advance(10)
            await _ok(await li.http.post(f"/api/directives/{directive['id']}/done"))
            await zhihui.advance(11)  # T0+61: wang missed the deadline (T0+60)
            sos = await _ok(await li.http.post("/api/alerts/sos", json={"note": "dog"}), 201)
            await zhihui.advance(5)
            escalation = await _ok(
                await chief.http.post(
                    f"{path}/escalations", json={"target": "leader_on_duty", "reason": "Help"}
                ),
                201,
            )
            [link] = escalation["package"]["live"]
            assert (link["stream_id"], link["officer"]["id"], link["device"]) == (stream_id, li.id, "bodycam")
            assert link["whep_url"] == f"/relay/whep/{stream_id}"
            assert link["wall_url"].endswith(f"/wall?incident={incident['id']}&stream={stream_id}")
            assert [r["person"]["id"] for r in escalation["recipients"]] == [leader.id]  # nobody on the post
            assert _states(escalation["package"]["directives"][0]) == {
                li.id: ("done", False),
                wang.id: ("sent", True),
            }
            assert [a["id"] for a in escalation["package"]["alerts"]][:1] == [sos["id"]]
            await zhihui.advance(5)
            await _ok(await leader.http.post(f"{path}/escalations/{escalation['id']}/ack"))
            await _ok(await chief.http.post(f"/api/alerts/{sos['id']}/resolve", json={"note": "calm"}))
            hold = await _ok(
                await chief.http.post(
                    "/api/holds", json={"incident_id": incident["id"], "reason": "Complaint filed"}
                ),
                201,
            )
            await _ok(
                await chief.http.post(f"/api/holds/{hold['id']}/lift", json={"reason": "Complaint withdrawn"})
            )
            await zhihui.advance(5)
            down = StreamDown(stream_id=stream_id, officer_id=str(li.id), ended_at=clock.now(), reason="bye")
            await zhihui.app.state.relay_events(down)
            rules = zhihui.app.state.rules
            await until(lambda: rules.settled)  # the field operation rules: li's stream is lost
            await _ok(
                await li.http.post(
                    f"/api/field-operations/{operation['id']}/end", json={"note": "back at base"}
                )
            )

            everything = await _ok(await chief.http.get(f"{path}/timeline", params={"limit": 500}))
            entries = everything["items"]
            assert everything["next_after"] is None
            kinds = [e["kind"] for e in entries]
            assert kinds == [
                "opened",
                "officer_assigned",
                "officer_assigned",
                "field_op_started",
                "stream_up",
                "directive",
                "acknowledged",
                "done",
                "escalation",  # wang, automatically, to the commander
                "alert_raised",  # ... with its ack_overdue alert
                "alert_raised",  # li's SOS
                "escalated",
                "escalation_received",
                "alert_resolved",
                "hold_placed",
                "hold_lifted",
                "stream_down",
                "alert_raised",  # stream_lost, during the field operation
                "field_op_ended",
                "alert_resolved",  # ... resolved as the operation ended
            ], kinds
            ats = [e["at"] for e in entries]
            assert ats == sorted(ats)
            by_kind = {e["kind"]: e for e in entries}
            assert by_kind["field_op_started"]["subject"] == f"field_op:{operation['id']}"
            assert "back at base" in by_kind["field_op_ended"]["summary"]
            resolved = [e for e in entries if e["kind"] == "alert_resolved"]
            assert resolved[0]["subject"] == f"alert:{sos['id']}" and "calm" in resolved[0]["summary"]
            assert (
                "the field operation ended" in resolved[1]["summary"]
                and resolved[1]["stream_id"] == stream_id
            )
            assert by_kind["hold_placed"]["subject"] == f"hold:{hold['id']}"
            assert "Complaint withdrawn" in by_kind["hold_lifted"]["summary"]
            assert by_kind["escalated"]["subject"] == f"incident_escalation:{escalation['id']}"
            assert by_kind["escalation_received"]["person"]["id"] == leader.id
            assert by_kind["stream_up"]["stream_id"] == stream_id

            # A page at a time gives the same, in the same order.
            paged: list[int] = []
            after = 0
            while True:
                page = await _ok(
                    await chief.http.get(f"{path}/timeline", params={"after": after, "limit": 4})
                )
                paged += [e["id"] for e in page["items"]]
                if page["next_after"] is None:
                    break
                after = page["next_after"]
            assert paged == [e["id"] for e in entries]

        rows = await query(
            database_url,
            "SELECT action, object FROM audit_event WHERE action LIKE 'incident.escalat%' ORDER BY id",
        )
    assert rows == [
        ("incident.escalate", f"incident:{incident['id']}"),
        ("incident.escalation_ack", f"incident_escalation:{escalation['id']}"),
    ]
