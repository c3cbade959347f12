"""R18: several dispatch processes over one PostgreSQL and one Redis. A commander on process A
issues a directive to an officer connected to process B; it arrives, and the officer's delivery
and acknowledgement come back to the commander on A. Two real ``zhihui up`` processes."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ApiClient
from tests.dispatch_server.deployment import Deployment, Socket, target_state
from tests.support import postgres_database, redis_url, start_zhihui


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    redis = redis_url()
    with postgres_database() as database_url:
        env = {
            "ZHIHUI_DATABASE_URL": database_url,
            "ZHIHUI_REDIS_URL": redis,
            "ZHIHUI_REDIS_PREFIX": f"zhihui-test-{secrets.token_hex(6)}:",  # this run's own channels
            "ZHIHUI_AUTH__JWT_SECRET": secrets.token_urlsafe(32),  # a token from A is good on B
        }
        root: Path = tmp_path_factory.mktemp("scale-out")
        deployment = Deployment(backend="postgresql", database_url=database_url, processes=[])
        try:
            deployment.processes.append(start_zhihui(root / "a", "--demo", **env))
            deployment.processes.append(start_zhihui(root / "b", **env))  # no --demo: keep A's passwords
            deployment.sign_in(deployment.processes[0].credentials)
            yield deployment
        finally:
            deployment.stop()


async def test_a_directive_round_trip_across_two_processes_over_redis(two_processes: Deployment) -> None:
    a, b = (process.base_url for process in two_processes.processes)
    commander, officer1 = two_processes.commander, two_processes.officer1
    wall = await Socket.open(a, commander.token)
    field = await Socket.open(b, officer1.token)
    try:
        directive_id = commander.http.post(  # commander.http talks to process A
            "/api/directives", json={"target_ids": [officer1.id], "text": "Cross the river"}
        ).json()["id"]
        received = await field.next("directive", directive__id=directive_id)
        assert received["directive"]["text"] == "Cross the river"

        delivered = await wall.next(
            "directive_update",
            directive__id=directive_id,
            until=lambda m: target_state(m["directive"], officer1.id) == "delivered",
        )
        await field.ws.send(json.dumps({"type": "ack", "directive_id": directive_id}))
        acked = await wall.next(
            "directive_update",
            directive__id=directive_id,
            until=lambda m: target_state(m["directive"], officer1.id) == "acknowledged",
        )
        assert received["event_id"] < delivered["event_id"] < acked["event_id"]
        await field.drain(0.3)
        resume_at = field.last_event_id
    finally:
        await wall.close()
        await field.close()

    # The officer moves to process A: it resumes where it was on B, with nothing twice.
    commander.http.post("/api/directives", json={"target_ids": [officer1.id], "text": "And hold it"})
    field = await Socket.open(a, officer1.token, last_event_id=resume_at)
    try:
        got = await field.drain(0.5)
        assert [m["directive"]["text"] for m in got if m["type"] == "directive"] == ["And hold it"]
        assert directive_id not in {m["directive"]["id"] for m in got}
    finally:
        await field.close()


async def test_both_processes_write_one_event_sequence(two_processes: Deployment) -> None:
    """Directives issued on A and on B, acknowledged on the other: the wall on either process
    sees the same events in the same order."""
    a, b = two_processes.processes
    commander, officer2 = two_processes.commander, two_processes.officer2
    walls = [await Socket.open(p.base_url, commander.token) for p in (a, b)]
    field = await Socket.open(a.base_url, officer2.token)
    try:
        start = min(wall.last_event_id for wall in walls)
        on_b = ApiClient(b.base_url, "commander", a.credentials["commander"])
        ids = [
            client.http.post(
                "/api/directives", json={"target_ids": [officer2.id], "text": f"#{n}"}
            ).json()["id"]
            for n, client in enumerate((commander, on_b, commander, on_b))
        ]
        for directive_id in ids:
            await field.ws.send(json.dumps({"type": "ack", "directive_id": directive_id}))
        seen = [await wall.drain(0.7) for wall in walls]
    finally:
        for socket in (*walls, field):
            await socket.close()
    assert seen[0] == seen[1]
    assert {m["directive"]["id"] for m in seen[0]} == set(ids)
    event_ids = [m["event_id"] for m in seen[0]]
    assert event_ids == sorted(set(event_ids)) and event_ids[0] > start
