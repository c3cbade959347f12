"""R4: a commander's directive reaches the officer over the websocket, is acknowledged, and the
command room sees each state; everything is in SQL. Real websockets against ``zhihui up``, on
SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest
import websockets

from tests.conftest import ApiClient
from tests.dispatch_server.deployment import Deployment, Socket, target_state


async def test_directive_round_trip_over_websockets(deployment: Deployment) -> None:
    commander, officer1 = deployment.commander, deployment.officer1
    wall = await Socket.open(deployment.base_url, commander.token)
    field = await Socket.open(deployment.base_url, officer1.token)
    try:
        response = commander.http.post(
            "/api/directives",
            json={
                "target_ids": [officer1.id],
                "text": "Hold the gate, wait for the bailiffs",
                "ack_deadline_seconds": 90,
            },
        )
        assert response.status_code == 201, response.text
        directive_id = response.json()["id"]

        received = await field.next("directive", directive__id=directive_id)
        assert received["directive"]["text"] == "Hold the gate, wait for the bailiffs"
        assert received["event_id"] > field.ready["last_event_id"]
        issued = await wall.next("directive_update", directive__id=directive_id)
        assert target_state(issued["directive"], officer1.id) in ("sent", "delivered")
        delivered = await wall.next(
            "directive_update",
            directive__id=directive_id,
            until=lambda m: target_state(m["directive"], officer1.id) != "sent",
        )
        assert target_state(delivered["directive"], officer1.id) == "delivered"

        await field.ws.send(json.dumps({"type": "ack", "directive_id": directive_id}))
        acked = await wall.next("directive_update", directive__id=directive_id)
        assert target_state(acked["directive"], officer1.id) == "acknowledged"
        assert issued["event_id"] < delivered["event_id"] < acked["event_id"]

        # Idempotent: a second ack changes nothing and pushes nothing.
        again = officer1.http.post(f"/api/directives/{directive_id}/ack")
        assert again.status_code == 200
        assert target_state(again.json(), officer1.id) == "acknowledged"
        assert not [m for m in await wall.drain(0.3) if m.get("directive", {}).get("id") == directive_id]
    finally:
        await wall.close()
        await field.close()

    rows = await deployment.sql(
        "SELECT d.text, t.state, t.delivered_at IS NOT NULL, t.acknowledged_at IS NOT NULL, "
        "t.acknowledged_at >= t.delivered_at "
        "FROM directive d JOIN directive_target t ON t.directive_id = d.id WHERE d.id = :id",
        id=directive_id,
    )
    assert rows == [("Hold the gate, wait for the bailiffs", "ACKNOWLEDGED", True, True, True)]
    logged = await deployment.sql(
        "SELECT id, channel, type FROM event WHERE subject = :subject ORDER BY id",
        subject=f"directive:{directive_id}",
    )
    assert [(channel, kind) for _id, channel, kind in logged] == [
        (f"person.{officer1.id}", "directive"),
        ("command", "directive_update"),
        ("command", "directive_update"),  # delivered
        (f"person.{officer1.id}", "directive_update"),
        ("command", "directive_update"),  # acknowledged
        (f"person.{officer1.id}", "directive_update"),
    ]
    assert [row[0] for row in logged if row[1] == "command"] == [
        issued["event_id"],
        delivered["event_id"],
        acked["event_id"],
    ]


async def test_a_target_sees_only_its_own_entry_and_the_wall_sees_all(deployment: Deployment) -> None:
    officer1, officer2 = deployment.officer1, deployment.officer2
    wall = await Socket.open(deployment.base_url, deployment.commander.token)
    field = await Socket.open(deployment.base_url, officer1.token)
    try:
        directive_id = deployment.commander.http.post(
            "/api/directives", json={"target_ids": [officer1.id, officer2.id], "text": "Both of you"}
        ).json()["id"]
        mine = await field.next("directive", directive__id=directive_id)
        assert [t["person"]["id"] for t in mine["directive"]["targets"]] == [officer1.id]
        full = await wall.next("directive_update", directive__id=directive_id)
        assert [t["person"]["id"] for t in full["directive"]["targets"]] == [officer1.id, officer2.id]
    finally:
        await wall.close()
        await field.close()


async def test_an_offline_officer_gets_pending_directives_on_connect(deployment: Deployment) -> None:
    commander, officer2 = deployment.commander, deployment.officer2
    ids = [
        commander.http.post(
            "/api/directives", json={"target_ids": [officer2.id], "text": f"Report in #{n}"}
        ).json()["id"]
        for n in range(2)
    ]
    field = await Socket.open(deployment.base_url, officer2.token)  # no last_event_id
    try:
        got = [(await field.next("directive", until=lambda m: m["directive"]["id"] in ids)) for _ in ids]
        assert [m["directive"]["id"] for m in got] == ids
        assert all(m["event_id"] <= field.ready["last_event_id"] for m in got)
        for directive_id in ids:
            await field.ws.send(json.dumps({"type": "ack", "directive_id": directive_id}))
        await field.drain(0.3)
    finally:
        await field.close()
    listed = {d["id"]: d for d in officer2.http.get("/api/directives").json()}
    assert all(target_state(listed[i], officer2.id) == "acknowledged" for i in ids)


def test_directive_to_an_unknown_officer_is_404(deployment: Deployment) -> None:
    response = deployment.commander.http.post("/api/directives", json={"target_ids": [9999], "text": "Go"})
    assert response.status_code == 404
    assert response.json()["detail"] == "unknown person id(s): 9999"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"target_ids": [], "text": "Go"}, "target_ids"),
        ({"target_ids": [3], "text": ""}, "text"),
        ({"target_ids": [3], "text": "Go", "ack_deadline_seconds": -5}, "ack_deadline_seconds"),
        ({"target_ids": "all", "text": "Go"}, "target_ids"),
    ],
)
def test_malformed_directive_is_422_with_a_message(
    deployment: Deployment, body: dict[str, Any], words: str
) -> None:
    response = deployment.commander.http.post("/api/directives", json=body)
    assert response.status_code == 422
    assert words in response.json()["detail"]


def test_officers_may_not_issue_directives(deployment: Deployment) -> None:
    response = deployment.officer1.http.post(
        "/api/directives", json={"target_ids": [deployment.officer2.id], "text": "Go"}
    )
    assert response.status_code == 403


def test_acknowledging_someone_elses_directive_is_404(deployment: Deployment) -> None:
    directive_id = deployment.commander.http.post(
        "/api/directives", json={"target_ids": [deployment.officer1.id], "text": "Go"}
    ).json()["id"]
    assert deployment.officer2.http.post(f"/api/directives/{directive_id}/ack").status_code == 404


async def test_websocket_rejects_a_bad_token(deployment: Deployment) -> None:
    async with websockets.connect(deployment.base_url.replace("http", "ws") + "/ws") as ws:
        await ws.send(json.dumps({"type": "auth", "token": "nonsense"}))
        message = json.loads(await ws.recv())
        assert message == {"type": "error", "message": "the access token is not valid: sign in again"}
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_websocket_requires_auth_first(deployment: Deployment) -> None:
    async with websockets.connect(deployment.base_url.replace("http", "ws") + "/ws") as ws:
        await ws.send(json.dumps({"type": "ack", "directive_id": 1}))
        message = json.loads(await ws.recv())
        assert message["type"] == "error" and "first message" in message["message"]


@pytest.mark.parametrize("last_event_id", [-1, "seven", 1.5])
async def test_websocket_refuses_a_malformed_last_event_id(
    deployment: Deployment, last_event_id: Any
) -> None:
    async with websockets.connect(deployment.base_url.replace("http", "ws") + "/ws") as ws:
        auth = {"type": "auth", "token": deployment.officer1.token, "last_event_id": last_event_id}
        await ws.send(json.dumps(auth))
        message = json.loads(await ws.recv())
        assert message["type"] == "error" and "first message" in message["message"]
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_websocket_rejects_a_foreign_origin(deployment: Deployment) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(
            deployment.base_url.replace("http", "ws") + "/ws",
            origin="http://evil.example",  # type: ignore[arg-type]
        )
    assert refused.value.response.status_code == 403


async def test_websocket_answers_malformed_and_oversized_messages(deployment: Deployment) -> None:
    field = await Socket.open(deployment.base_url, deployment.officer1.token, max_size=None)
    try:
        await field.ws.send("{not json")
        assert "malformed" in (await field.next("error"))["message"]
        await field.ws.send(json.dumps({"type": "ack", "directive_id": "seven"}))
        assert "malformed" in (await field.next("error"))["message"]
        await field.ws.send(json.dumps({"type": "launch"}))
        assert "malformed" in (await field.next("error"))["message"]
        await field.ws.send(json.dumps({"type": "ack", "directive_id": 987654}))
        assert "no directive 987654" in (await field.next("error"))["message"]
        await field.ws.send(json.dumps({"type": "ack", "directive_id": 1, "pad": "x" * 70000}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await field.next("error")
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    finally:
        await field.close()


async def test_issuing_acknowledging_and_reporting_done_are_audited(deployment: Deployment) -> None:
    """R17: a directive issued, acknowledged (over the websocket here) and reported done is audited
    with the person, role, address and directive; a repeated acknowledgement changes nothing and is
    not audited again."""
    commander, officer1 = deployment.commander, deployment.officer1
    admin = ApiClient(deployment.base_url, "admin", str(deployment.zhihui.admin_password))
    issued = commander.http.post(
        "/api/directives", json={"target_ids": [officer1.id], "text": "Photograph the seals"}
    )
    assert issued.status_code == 201, issued.text
    directive_id = issued.json()["id"]
    field = await Socket.open(deployment.base_url, officer1.token)
    try:
        await field.next("directive", directive__id=directive_id)
        await field.ws.send(json.dumps({"type": "ack", "directive_id": directive_id}))
        await field.next("directive_update", directive__id=directive_id)
    finally:
        await field.close()
    assert officer1.http.post(f"/api/directives/{directive_id}/ack").status_code == 200
    assert officer1.http.post(f"/api/directives/{directive_id}/done").status_code == 200

    listed = admin.http.get("/api/audit", params={"object": f"directive:{directive_id}"})
    assert listed.status_code == 200, listed.text
    rows = sorted(listed.json()["items"], key=lambda row: row["id"])
    assert [(row["action"], row["actor_id"], row["role"], row["outcome"]) for row in rows] == [
        ("directive.issue", commander.id, "commander", "success"),
        ("directive.acknowledge", officer1.id, "field_officer", "success"),
        ("directive.done", officer1.id, "field_officer", "success"),
    ]
    assert all(row["source"] == "127.0.0.1" for row in rows)
    assert rows[0]["detail"] == {
        "scope": "people",
        "target_ids": [officer1.id],
        "incident_id": None,
        "unit_id": None,
        "origin": "center",
    }
