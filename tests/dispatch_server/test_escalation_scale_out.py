"""R4, R6, R18: two ``zhihui up`` processes over one PostgreSQL and one Redis both run the
escalation scheduler on the same timers: every escalation fires exactly once, and the command
room on either process sees each once. Real processes on the real clock, with one-second
deadlines (the controllable clock is in ``test_escalation.py``)."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ApiClient
from tests.dispatch_server.deployment import Deployment, Socket
from tests.support import postgres_database, redis_url, start_zhihui

DIRECTIVES = 15


@pytest.fixture(scope="module")
def two_schedulers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    redis = redis_url()
    with postgres_database() as database_url:
        env = {
            "ZHIHUI_DATABASE_URL": database_url,
            "ZHIHUI_REDIS_URL": redis,
            "ZHIHUI_REDIS_PREFIX": f"zhihui-test-{secrets.token_hex(6)}:",
            "ZHIHUI_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "ZHIHUI_ESCALATION__LEADER_AFTER_SECONDS": "1",
            "ZHIHUI_ESCALATION__POLL_SECONDS": "0.1",
        }
        root: Path = tmp_path_factory.mktemp("escalation-scale-out")
        deployment = Deployment(backend="postgresql", database_url=database_url, processes=[])
        try:
            deployment.processes.append(start_zhihui(root / "a", "--demo", **env))
            deployment.processes.append(start_zhihui(root / "b", **env))
            deployment.sign_in(deployment.processes[0].credentials)
            yield deployment
        finally:
            deployment.stop()


async def test_each_escalation_fires_once_with_two_processes(two_schedulers: Deployment) -> None:
    a, b = two_schedulers.processes
    assert a.admin_password is not None
    admin = ApiClient(a.base_url, "admin", a.admin_password)
    created = admin.http.post(
        "/api/people",
        json={
            "username": "leader",
            "display_name": "Leader Sun",
            "role": "leader",
            "password": "leader-pass-1",
        },
    )
    assert created.status_code == 201, created.text
    leader_id = created.json()["id"]
    commander, officer1, officer2 = two_schedulers.commander, two_schedulers.officer1, two_schedulers.officer2
    incident = commander.http.post(
        "/api/incidents",
        json={"kind": "group", "title": "Eviction, Block 7", "officer_ids": [officer1.id, officer2.id]},
    ).json()

    walls = [await Socket.open(p.base_url, commander.token) for p in (a, b)]
    try:
        on_b = ApiClient(b.base_url, "commander", a.credentials["commander"])
        issuers = (commander.http, on_b.http)  # half on each process, all at once
        body = {"incident_id": incident["id"], "ack_deadline_seconds": 1}
        responses = await asyncio.gather(
            *(
                asyncio.to_thread(
                    issuers[n % 2].post, "/api/directives", json={**body, "text": f"Check in #{n}"}
                )
                for n in range(DIRECTIVES)
            )
        )
        assert all(r.status_code == 201 for r in responses), [r.text for r in responses]
        expected = DIRECTIVES * 2 * 2  # two officers each, to the commander and then to the leader
        seen = []
        for wall in walls:
            got: list[dict[str, object]] = []
            async with asyncio.timeout(15):
                while len(got) < expected:
                    got.append(await wall.next("escalation", timeout=15))
            got += [m for m in await wall.drain(0.7) if m["type"] == "escalation"]  # and nothing more
            seen.append(got)
    finally:
        for wall in walls:
            await wall.close()

    assert [m["event_id"] for m in seen[0]] == [m["event_id"] for m in seen[1]]
    assert len({m["event_id"] for m in seen[0]}) == expected
    rows = await two_schedulers.sql(
        "SELECT directive_id, person_id, level, to_person_id, fired_by FROM escalation"
    )
    assert len(rows) == expected
    assert Counter((d, p, level) for d, p, level, _to, _by in rows).most_common(1)[0][1] == 1
    assert {to for _d, _p, level, to, _by in rows if level == "LEADER"} == {leader_id}
    assert {to for _d, _p, level, to, _by in rows if level == "COMMANDER"} == {commander.id}
    logged = await two_schedulers.sql("SELECT count(*) FROM event WHERE type = 'escalation'")
    assert logged == [(expected,)]
    print("escalations fired per process:", Counter(by for *_, by in rows))
