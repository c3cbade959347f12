"""R4, R6: a directive goes to people, to a unit (everyone in it and its sub-units when it is
issued) or to everyone on an incident, one target row per person; a target reports it done after
acknowledging it; a completion deadline makes late targets overdue; an upper-court observer
directs the officers of an incident shared with it, and its directives are marked as the upper
court's. Real websockets against ``zhihui up`` on SQLite and PostgreSQL, and in-process with a
clock the test moves for the deadlines."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dispatch_server.people.models import Role
from dispatch_server.scheduling.clock import ManualClock
from tests.conftest import ApiClient
from tests.dispatch_server.conftest import BACKENDS, database_for
from tests.dispatch_server.deployment import Deployment, Socket, target_state
from tests.dispatch_server.inprocess import in_process

PASSWORD = "a-long-password"


def _admin(deployment: Deployment) -> ApiClient:
    return ApiClient(deployment.base_url, "admin", str(deployment.zhihui.admin_password))


def _person(deployment: Deployment, role: str, unit_id: int | None = None) -> ApiClient:
    username = f"{role.replace('_', '')}-{secrets.token_hex(3)}"
    body = {"username": username, "display_name": username, "role": role, "password": PASSWORD}
    created = _admin(deployment).http.post("/api/people", json=body | {"unit_id": unit_id})
    assert created.status_code == 201, created.text
    return ApiClient(deployment.base_url, username, PASSWORD)


def _unit(deployment: Deployment, name: str, parent_id: int | None = None) -> int:
    created = _admin(deployment).http.post("/api/units", json={"name": name, "parent_id": parent_id})
    assert created.status_code == 201, created.text
    return int(created.json()["id"])


def _issue(client: ApiClient, **body: Any) -> dict[str, Any]:
    response = client.http.post("/api/directives", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def _refused(response: Any, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


async def test_a_directive_to_a_unit_reaches_everyone_in_it_at_issue_time(deployment: Deployment) -> None:
    tag = secrets.token_hex(3)
    squad = _unit(deployment, f"Squad {tag}")
    team = _unit(deployment, f"Team {tag}", parent_id=squad)
    li, zhao = _person(deployment, "field_officer", squad), _person(deployment, "field_officer", team)
    sockets = [await Socket.open(deployment.base_url, c.token) for c in (li, zhao)]
    wall = await Socket.open(deployment.base_url, deployment.commander.token)
    try:
        directive = _issue(deployment.commander, unit_id=squad, text="Muster at the north gate")
        assert directive["scope"] == "unit" and directive["unit"] == {"id": squad, "name": f"Squad {tag}"}
        assert sorted(t["person"]["id"] for t in directive["targets"]) == sorted([li.id, zhao.id])
        assert directive["origin"] == "center"
        for socket, officer in zip(sockets, (li, zhao), strict=True):
            received = await socket.next("directive", directive__id=directive["id"])
            assert received["directive"]["scope"] == "unit"
            assert received["directive"]["unit"]["id"] == squad
            assert [t["person"]["id"] for t in received["directive"]["targets"]] == [officer.id]
        issued = await wall.next("directive_update", directive__id=directive["id"])
        assert issued["directive"]["unit"]["name"] == f"Squad {tag}"
    finally:
        for socket in (*sockets, wall):
            await socket.close()

    # Who joins the unit later is not a target of what was issued before.
    late = _person(deployment, "field_officer", squad)
    rows = await deployment.sql(
        "SELECT t.person_id FROM directive_target t WHERE t.directive_id = :id ORDER BY t.person_id",
        id=directive["id"],
    )
    assert [row[0] for row in rows] == sorted([li.id, zhao.id])
    assert late.id not in [row[0] for row in rows]
    stored = await deployment.sql("SELECT scope, unit_id FROM directive WHERE id = :id", id=directive["id"])
    assert stored == [("UNIT", squad)]


def test_unknown_and_empty_targets_get_a_clear_4xx(deployment: Deployment) -> None:
    commander, officer1 = deployment.commander, deployment.officer1
    empty = _unit(deployment, f"Empty {secrets.token_hex(3)}")
    _refused(commander.http.post("/api/directives", json={"unit_id": 10**6, "text": "x"}), 404, "no unit")
    _refused(
        commander.http.post("/api/directives", json={"unit_id": empty, "text": "x"}), 422, "nobody in it"
    )
    both = {"unit_id": empty, "target_ids": [officer1.id], "text": "x"}
    _refused(commander.http.post("/api/directives", json=both), 422, "not both")
    _refused(commander.http.post("/api/directives", json={"text": "x"}), 422, "unit_id")
    now = datetime.now(UTC)
    past = {"target_ids": [officer1.id], "text": "x", "complete_by": (now - timedelta(minutes=1)).isoformat()}
    _refused(commander.http.post("/api/directives", json=past), 422, "in the past")
    early = {
        "target_ids": [officer1.id],
        "text": "x",
        "ack_deadline_seconds": 600,
        "complete_by": (now + timedelta(minutes=5)).isoformat(),
    }
    _refused(commander.http.post("/api/directives", json=early), 422, "before the acknowledgement deadline")
    naive = {"target_ids": [officer1.id], "text": "x", "complete_by": "2031-01-01T10:00:00"}
    _refused(commander.http.post("/api/directives", json=naive), 422, "complete_by")


async def test_a_directive_to_everyone_on_an_incident_is_expanded_and_recorded(
    deployment: Deployment,
) -> None:
    commander, officer1, officer2 = deployment.commander, deployment.officer1, deployment.officer2
    opened = commander.http.post(
        "/api/incidents", json={"kind": "group", "title": "Crowd", "officer_ids": [officer1.id, officer2.id]}
    )
    incident_id = opened.json()["id"]
    field = await Socket.open(deployment.base_url, officer2.token)
    try:
        directive = _issue(commander, incident_id=incident_id, text="Form a line")
        assert directive["scope"] == "incident" and directive["incident_id"] == incident_id
        assert sorted(t["person"]["id"] for t in directive["targets"]) == sorted([officer1.id, officer2.id])
        received = await field.next("directive", directive__id=directive["id"])
        assert received["directive"]["scope"] == "incident"
        assert received["directive"]["incident_id"] == incident_id
    finally:
        await field.close()
    # Assigned later: not a target.
    third = _person(deployment, "field_officer")
    commander.http.post(f"/api/incidents/{incident_id}/officers", json={"person_ids": [third.id]})
    again = {
        d["id"]: d for d in commander.http.get("/api/directives", params={"incident_id": incident_id}).json()
    }
    assert third.id not in [t["person"]["id"] for t in again[directive["id"]]["targets"]]
    stored = await deployment.sql(
        "SELECT d.scope, i.incident_id FROM directive d JOIN directive_incident i ON i.directive_id = d.id "
        "WHERE d.id = :id",
        id=directive["id"],
    )
    assert stored == [("INCIDENT", incident_id)]


async def test_done_comes_after_acknowledging_and_is_idempotent(deployment: Deployment) -> None:
    commander, officer1, officer2 = deployment.commander, deployment.officer1, deployment.officer2
    incident_id = commander.http.post(
        "/api/incidents", json={"kind": "major", "title": "Seizure", "officer_ids": [officer1.id]}
    ).json()["id"]
    complete_by = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    wall = await Socket.open(deployment.base_url, commander.token)
    field = await Socket.open(deployment.base_url, officer1.token)
    try:
        directive = _issue(
            commander,
            target_ids=[officer1.id],
            incident_id=incident_id,
            text="Seal the warehouse",
            ack_deadline_seconds=600,
            complete_by=complete_by,
        )
        directive_id = directive["id"]
        assert directive["complete_by"] is not None and directive["targets"][0]["done_at"] is None
        received = await field.next("directive", directive__id=directive_id)
        assert received["directive"]["complete_by"] == directive["complete_by"]

        early = officer1.http.post(f"/api/directives/{directive_id}/done")
        _refused(early, 409, "acknowledge directive")
        await field.ws.send(json.dumps({"type": "ack", "directive_id": directive_id}))
        await wall.next(
            "directive_update",
            directive__id=directive_id,
            until=lambda m: target_state(m["directive"], officer1.id) == "acknowledged",
        )
        done = officer1.http.post(f"/api/directives/{directive_id}/done")
        assert done.status_code == 200, done.text
        mine = done.json()["targets"][0]
        assert mine["state"] == "done" and mine["done_at"] >= mine["acknowledged_at"]
        assert mine["overdue"] is False

        update = await wall.next("directive_update", directive__id=directive_id)
        target = update["directive"]["targets"][0]
        assert (target["state"], target["done_at"]) == ("done", mine["done_at"])
        own = await field.next(
            "directive_update",
            directive__id=directive_id,
            until=lambda m: target_state(m["directive"], officer1.id) == "done",
        )
        assert [t["person"]["id"] for t in own["directive"]["targets"]] == [officer1.id]

        # Again: the same answer, nothing new pushed or logged.
        again = officer1.http.post(f"/api/directives/{directive_id}/done")
        assert again.status_code == 200 and again.json()["targets"][0]["done_at"] == mine["done_at"]
        assert not [m for m in await wall.drain(0.3) if m.get("directive", {}).get("id") == directive_id]
        # Acknowledging what is done changes nothing either.
        assert (
            target_state(officer1.http.post(f"/api/directives/{directive_id}/ack").json(), officer1.id)
            == "done"
        )
        _refused(officer2.http.post(f"/api/directives/{directive_id}/done"), 404, "addressed to you")
        _refused(officer1.http.post("/api/directives/987654/done"), 404, "no directive 987654")
    finally:
        await wall.close()
        await field.close()

    rows = await deployment.sql(
        "SELECT state, done_at IS NOT NULL FROM directive_target WHERE directive_id = :id", id=directive_id
    )
    assert rows == [("DONE", True)]
    logged = await deployment.sql(
        "SELECT channel, type FROM event WHERE subject = :subject ORDER BY id",
        subject=f"directive:{directive_id}",
    )
    assert len(logged) == 8  # issued, delivered, acknowledged, done: for the wall and the officer each
    timeline = commander.http.get(f"/api/incidents/{incident_id}/timeline").json()["items"]
    assert [e["kind"] for e in timeline][-3:] == ["directive", "acknowledged", "done"]
    assert timeline[-1]["person"]["id"] == officer1.id and timeline[-1]["directive_id"] == directive_id


async def test_an_upper_court_observer_directs_a_shared_incident_only(deployment: Deployment) -> None:
    commander, officer1, officer2 = deployment.commander, deployment.officer1, deployment.officer2
    observer = _person(deployment, "upper_observer")
    shared = commander.http.post(
        "/api/incidents", json={"kind": "emergency", "title": "Standoff", "officer_ids": [officer1.id]}
    ).json()["id"]
    unshared = commander.http.post(
        "/api/incidents", json={"kind": "emergency", "title": "Elsewhere", "officer_ids": [officer1.id]}
    ).json()["id"]
    assert (
        commander.http.post(f"/api/incidents/{shared}/shares", json={"person_ids": [observer.id]}).status_code
        == 200
    )

    field = await Socket.open(deployment.base_url, officer1.token)
    wall = await Socket.open(deployment.base_url, commander.token)
    try:
        directive = _issue(observer, incident_id=shared, text="Hold position until we arrive")
        assert directive["origin"] == "upper_court" and directive["issuer"]["id"] == observer.id
        assert [t["person"]["id"] for t in directive["targets"]] == [officer1.id]
        received = await field.next("directive", directive__id=directive["id"])
        assert received["directive"]["origin"] == "upper_court"
        seen = await wall.next("directive_update", directive__id=directive["id"])
        assert seen["directive"]["origin"] == "upper_court"
    finally:
        await field.close()
        await wall.close()
    listed = observer.http.get("/api/directives", params={"incident_id": shared}).json()
    assert [d["id"] for d in listed] == [directive["id"]]
    timeline = commander.http.get(f"/api/incidents/{shared}/timeline").json()["items"]
    assert "(upper court)" in timeline[-1]["summary"]

    post = observer.http.post
    _refused(post("/api/directives", json={"incident_id": unshared, "text": "x"}), 403, "not shared")
    _refused(post("/api/directives", json={"incident_id": 10**6, "text": "x"}), 403, "not shared")
    _refused(post("/api/directives", json={"target_ids": [officer1.id], "text": "x"}), 403, "shared with it")
    outside = {"incident_id": shared, "target_ids": [officer2.id], "text": "x"}
    _refused(post("/api/directives", json=outside), 403, "not on it")
    claim = {"incident_id": shared, "text": "x", "origin": "center"}
    _refused(post("/api/directives", json=claim), 422, "upper court")
    unit = _unit(deployment, f"Observer unit {secrets.token_hex(3)}")
    _refused(
        post("/api/directives", json={"incident_id": shared, "unit_id": unit, "text": "x"}), 403, "units"
    )
    # Unshared, it is refused again.
    commander.http.delete(f"/api/incidents/{shared}/shares/{observer.id}")
    _refused(post("/api/directives", json={"incident_id": shared, "text": "x"}), 403, "not shared")

    # A center commander may record a directive relayed from the upper court.
    relayed = _issue(commander, target_ids=[officer2.id], text="From the upper court", origin="upper_court")
    assert relayed["origin"] == "upper_court" and relayed["issuer"]["id"] == commander.id


@pytest.mark.parametrize("backend", BACKENDS)
async def test_targets_are_overdue_after_the_deadlines_and_escalation_shows(
    backend: str, tmp_path: Path
) -> None:
    t0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    clock = ManualClock(t0)
    with database_for(backend, tmp_path) as database_url:
        async with in_process(database_url, tmp_path, clock) as zhihui:
            chief = await zhihui.person("chief", Role.COMMANDER)
            li = await zhihui.person("li", Role.FIELD_OFFICER)
            zhao = await zhihui.person("zhao", Role.FIELD_OFFICER)
            body = {
                "target_ids": [li.id, zhao.id],
                "text": "Search the premises",
                "ack_deadline_seconds": 60,
                "complete_by": (t0 + timedelta(minutes=10)).isoformat(),
            }
            issued = await chief.http.post("/api/directives", json=body)
            assert issued.status_code == 201, issued.text
            directive_id = issued.json()["id"]

            async def targets() -> dict[int, dict[str, Any]]:
                listed = (await chief.http.get("/api/directives")).json()
                directive = next(d for d in listed if d["id"] == directive_id)
                return {t["person"]["id"]: t for t in directive["targets"]}

            assert {t["overdue"] for t in (await targets()).values()} == {False}
            assert (await li.http.post(f"/api/directives/{directive_id}/ack")).status_code == 200
            await zhihui.advance(61)
            now = await targets()
            assert (now[li.id]["overdue"], now[zhao.id]["overdue"]) == (False, True)  # zhao never acked
            assert (now[li.id]["escalations"], now[zhao.id]["escalations"]) == (0, 1)
            await zhihui.advance(10 * 60)
            now = await targets()
            assert (now[li.id]["overdue"], now[zhao.id]["overdue"]) == (True, True)  # li has not done it
            done = await li.http.post(f"/api/directives/{directive_id}/done")
            assert done.status_code == 200
            assert done.json()["targets"][0]["overdue"] is False  # done, late, but no longer overdue
            now = await targets()
            assert (now[li.id]["state"], now[li.id]["overdue"]) == ("done", False)
