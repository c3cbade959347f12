"""R4, DESIGN.md 4: the database is the record. Directives issued while their officers were
offline, and still pending when the dispatch server stopped, are delivered after it restarts: to
a client resuming from its last event id, and to one connecting afresh. SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.dispatch_server.conftest import BACKENDS, database_for
from tests.dispatch_server.deployment import Deployment, Socket
from tests.support import start_zhihui


@pytest.mark.parametrize("backend", BACKENDS)
async def test_directives_pending_at_shutdown_are_delivered_after_a_restart(
    backend: str, tmp_path: Path
) -> None:
    with database_for(backend, tmp_path) as database_url:
        env = {"ZHIHUI_DATABASE_URL": database_url} if backend == "postgresql" else {}
        deployment = Deployment(backend, database_url, [start_zhihui(tmp_path, "--demo", **env)])
        try:
            deployment.sign_in(deployment.zhihui.credentials)
            officer1, officer2 = deployment.officer1, deployment.officer2
            field = await Socket.open(deployment.base_url, officer2.token)
            resume_at = field.last_event_id
            await field.close()
            issued = [
                deployment.commander.http.post(
                    "/api/directives", json={"target_ids": [officer1.id, officer2.id], "text": f"Before #{n}"}
                ).json()["id"]
                for n in range(3)
            ]
        finally:
            deployment.stop()

        # Same folder (keys, SQLite file) or same PostgreSQL database; no --demo: same passwords.
        deployment.processes = [start_zhihui(tmp_path, **env)]
        try:
            for person in deployment.people.values():  # the tokens are still good: same secret
                person.http.base_url = deployment.base_url
            resumed = await Socket.open(deployment.base_url, officer2.token, last_event_id=resume_at)
            fresh = await Socket.open(deployment.base_url, officer1.token)
            try:
                got = await resumed.drain(0.5)
                assert [m["directive"]["id"] for m in got if m["type"] == "directive"] == issued
                assert all(m["event_id"] > resume_at for m in got)
                pending = await fresh.drain(0.5)
                assert [m["directive"]["id"] for m in pending if m["type"] == "directive"] == issued
            finally:
                await resumed.close()
                await fresh.close()
            listed = {d["id"]: d for d in officer2.http.get("/api/directives").json()}
            for directive_id in issued:
                states = {t["person"]["id"]: t["state"] for t in listed[directive_id]["targets"]}
                assert states == {officer1.id: "delivered", officer2.id: "delivered"}
        finally:
            deployment.stop()
