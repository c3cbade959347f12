"""The websocket's event log (DESIGN.md 4): every pushed message is in SQL first, with an
increasing id; a client that reconnects with the last id it saw gets everything after it that is
its to see, then live events, each once. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from tests.dispatch_server.deployment import Deployment, Socket, target_state


def _issue(deployment: Deployment, target_ids: list[int], text: str) -> int:
    body = {"target_ids": target_ids, "text": text}
    response = deployment.commander.http.post("/api/directives", json=body)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def _ids(messages: list[dict[str, Any]]) -> list[int]:
    return [m["event_id"] for m in messages if m.get("event_id") is not None]


async def test_an_officer_offline_for_a_while_gets_every_missed_directive_once_on_reconnect(
    deployment: Deployment,
) -> None:
    officer1, officer2 = deployment.officer1, deployment.officer2
    field = await Socket.open(deployment.base_url, officer2.token)
    await field.drain(0.3)  # whatever earlier tests left pending
    last_seen = field.last_event_id
    await field.close()

    # Offline: five directives for officer2, one of them acknowledged from another device, and
    # one for officer1 only.
    missed = [_issue(deployment, [officer2.id], f"Missed #{n}") for n in range(5)]
    not_mine = _issue(deployment, [officer1.id], "For officer1 only")
    assert officer2.http.post(f"/api/directives/{missed[1]}/ack").status_code == 200

    field = await Socket.open(deployment.base_url, officer2.token, last_event_id=last_seen)
    try:
        assert field.ready["last_event_id"] == last_seen
        got = await field.drain(0.5)
        directives = [m["directive"]["id"] for m in got if m["type"] == "directive"]
        assert directives == missed, got
        assert not_mine not in {m["directive"]["id"] for m in got if "directive" in m}
        assert {m["type"] for m in got} == {"directive", "directive_update"}  # no command-room events
        ids = _ids(got)
        assert len(ids) == len(got) and ids == sorted(set(ids)) and ids[0] > last_seen
        acked = [m for m in got if m["type"] == "directive_update" and m["directive"]["id"] == missed[1]]
        assert target_state(acked[-1]["directive"], officer2.id) == "acknowledged"
        # Delivery was recorded for the four not yet acknowledged (and pushed back, once each).
        delivered = [
            m["directive"]["id"]
            for m in got
            if m["type"] == "directive_update" and target_state(m["directive"], officer2.id) == "delivered"
        ]
        assert sorted(delivered) == sorted(set(missed) - {missed[1]})

        live = _issue(deployment, [officer2.id], "Live again")
        assert (await field.next("directive"))["directive"]["id"] == live
        await field.drain(0.3)
        resume_at = field.last_event_id
    finally:
        await field.close()

    # Reconnecting again from where it was: nothing is sent twice.
    field = await Socket.open(deployment.base_url, officer2.token, last_event_id=resume_at)
    try:
        assert await field.drain(0.5) == []
    finally:
        await field.close()


async def test_events_reach_a_watcher_in_id_order_and_a_replay_is_the_same_sequence(
    deployment: Deployment,
) -> None:
    """Concurrent writers: event ids are given and committed in order, so what a live watcher got
    and what a watcher resuming from the same point reads back are the same sequence."""
    commander, officer1, officer2 = deployment.commander, deployment.officer1, deployment.officer2
    wall = await Socket.open(deployment.base_url, commander.token)
    start = wall.last_event_id
    fields = [
        await Socket.open(deployment.base_url, officer.token, last_event_id=start)
        for officer in (officer1, officer2)
    ]
    try:
        async with httpx.AsyncClient(
            base_url=deployment.base_url, headers={"Authorization": f"Bearer {commander.token}"}
        ) as http:
            responses = await asyncio.gather(
                *(
                    http.post(
                        "/api/directives", json={"target_ids": [officer1.id, officer2.id], "text": f"#{n}"}
                    )
                    for n in range(20)
                )
            )
        assert all(r.status_code == 201 for r in responses)
        for field in fields:  # both officers acknowledge everything over their sockets, concurrently
            for response in responses:
                await field.ws.send(json.dumps({"type": "ack", "directive_id": response.json()["id"]}))
        await asyncio.sleep(0.5)
        live = await wall.drain(0.7)
        for field in fields:
            await field.drain(0.1)
    finally:
        for socket in (wall, *fields):
            await socket.close()

    live_ids = _ids(live)
    assert len(live_ids) == len(live) and live_ids == sorted(set(live_ids)) and live_ids[0] > start
    final = {m["directive"]["id"]: m["directive"] for m in live}  # the last update of each
    assert sorted(final) == sorted(r.json()["id"] for r in responses)
    assert all(target_state(d, o.id) == "acknowledged" for d in final.values() for o in (officer1, officer2))
    # Issued, then up to two deliveries (an ack may come first), then two acknowledgements.
    assert 20 * 3 <= len(live) <= 20 * 5

    replay = await Socket.open(deployment.base_url, commander.token, last_event_id=start)
    try:
        replayed = await replay.drain(0.7)
    finally:
        await replay.close()
    assert replayed == live

    logged = await deployment.sql(
        "SELECT id FROM event WHERE channel = 'command' AND id > :start ORDER BY id", start=start
    )
    assert [row[0] for row in logged] == live_ids


async def test_a_cursor_from_another_database_falls_back_to_pending_directives(
    deployment: Deployment,
) -> None:
    officer2 = deployment.officer2
    pending = _issue(deployment, [officer2.id], "Still pending")
    field = await Socket.open(deployment.base_url, officer2.token, last_event_id=10**12)
    try:
        newest = field.ready["last_event_id"]
        assert newest < 10**12
        got = await field.drain(0.5)
        assert pending in [m["directive"]["id"] for m in got if m["type"] == "directive"]
        assert all(m["directive"]["targets"][0]["person"]["id"] == officer2.id for m in got)
    finally:
        await field.close()
    for directive in officer2.http.get("/api/directives").json():  # leave nothing pending behind
        officer2.http.post(f"/api/directives/{directive['id']}/ack")
