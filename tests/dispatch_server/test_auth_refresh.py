"""R17: a sign-in outlives its 15-minute access tokens through refresh tokens that are good once.
Refreshing rotates the token; a spent token shown again revokes the whole sign-in (and is
audited); logging out ends it; a disabled person's sign-ins stop; and no answer tells whether an
account exists. Against ``zhihui up`` on SQLite and PostgreSQL, and in-process with a clock the
test moves for the expiry."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from dispatch_server.people.models import Role
from dispatch_server.scheduling.clock import ManualClock
from tests.conftest import ApiClient
from tests.dispatch_server.conftest import BACKENDS, database_for
from tests.dispatch_server.deployment import Deployment, Socket
from tests.dispatch_server.inprocess import in_process
from tests.support import login

PASSWORD = "a-long-password"
ENDED = "the sign-in has ended: sign in again"


def _new_officer(deployment: Deployment) -> tuple[str, int]:
    admin = ApiClient(deployment.base_url, "admin", str(deployment.zhihui.admin_password))
    username = f"refresh-{secrets.token_hex(3)}"
    created = admin.http.post(
        "/api/people",
        json={"username": username, "display_name": username, "role": "field_officer", "password": PASSWORD},
    )
    assert created.status_code == 201, created.text
    return username, int(created.json()["id"])


def _refresh(base_url: str, token: str) -> httpx.Response:
    return httpx.post(f"{base_url}/api/auth/refresh", json={"refresh_token": token})


def _me(base_url: str, access_token: str) -> httpx.Response:
    return httpx.get(f"{base_url}/api/me", headers={"Authorization": f"Bearer {access_token}"})


async def test_refresh_rotates_and_a_reused_token_revokes_the_whole_sign_in(deployment: Deployment) -> None:
    base = deployment.base_url
    username, person_id = _new_officer(deployment)
    signed_in = login(base, username, PASSWORD)
    assert signed_in["expires_in"] == 15 * 60
    assert signed_in["refresh_expires_in"] == 12 * 3600
    first = str(signed_in["refresh_token"])

    renewed = _refresh(base, first)
    assert renewed.status_code == 200, renewed.text
    body = renewed.json()
    second = body["refresh_token"]
    assert second != first and body["access_token"] != signed_in["access_token"]
    assert body["user"]["id"] == person_id
    assert 12 * 3600 - 60 <= body["refresh_expires_in"] <= 12 * 3600  # the sign-in's end stays put
    assert _me(base, body["access_token"]).json()["username"] == username
    # The new access token opens the websocket like any other.
    socket = await Socket.open(base, body["access_token"])
    assert socket.ready["user"]["id"] == person_id
    await socket.close()

    third = _refresh(base, second).json()["refresh_token"]
    # The first token, spent, comes back (a copy someone kept): the whole family ends ...
    reused = _refresh(base, first)
    assert reused.status_code == 401 and reused.json()["detail"] == ENDED
    # ... including the newest token, which had not been used yet.
    assert _refresh(base, third).status_code == 401
    # Another sign-in of the same person is not affected.
    other = login(base, username, PASSWORD)
    assert _refresh(base, str(other["refresh_token"])).status_code == 200

    rows = await deployment.sql(
        "SELECT token_hash, spent_at IS NOT NULL, revoked_at IS NOT NULL FROM refresh_token "
        "WHERE person_id = :id ORDER BY id",
        id=person_id,
    )
    assert [(spent, revoked) for _hash, spent, revoked in rows] == [
        (True, True),  # first
        (True, True),  # second
        (False, True),  # third: never used, revoked with its family
        (True, False),  # the other sign-in's token, exchanged
        (False, False),  # and its successor
    ]
    assert all(len(token_hash) == 64 and token_hash not in (first, second, third) for token_hash, *_ in rows)
    audited = await deployment.sql(
        "SELECT actor_id, outcome, detail FROM audit_event "
        "WHERE action = 'auth.refresh_reuse' AND actor_id = :id",
        id=person_id,
    )
    assert len(audited) == 1
    actor_id, outcome, detail = audited[0]
    assert (actor_id, outcome) == (person_id, "denied") and json.loads(detail)["revoked"] == 3


async def test_logout_ends_the_sign_in_and_always_answers_204(deployment: Deployment) -> None:
    base = deployment.base_url
    username, person_id = _new_officer(deployment)
    token = str(login(base, username, PASSWORD)["refresh_token"])
    assert httpx.post(f"{base}/api/auth/logout", json={"refresh_token": token}).status_code == 204
    refused = _refresh(base, token)
    assert refused.status_code == 401 and refused.json()["detail"] == ENDED
    assert httpx.post(f"{base}/api/auth/logout", json={"refresh_token": token}).status_code == 204
    assert httpx.post(f"{base}/api/auth/logout", json={"refresh_token": "made-up"}).status_code == 204
    bad = httpx.post(f"{base}/api/auth/logout", json={})
    assert bad.status_code == 422 and "refresh_token" in bad.json()["detail"]
    logouts = await deployment.sql(
        "SELECT outcome FROM audit_event WHERE action = 'auth.logout' AND actor_id = :id", id=person_id
    )
    assert logouts == [("success",)]  # once: the second logout ended nothing


def test_answers_do_not_tell_whether_an_account_exists_or_is_disabled(deployment: Deployment) -> None:
    base = deployment.base_url
    username, person_id = _new_officer(deployment)
    token = str(login(base, username, PASSWORD)["refresh_token"])
    admin = ApiClient(base, "admin", str(deployment.zhihui.admin_password))
    disabled = admin.http.patch(f"/api/people/{person_id}", json={"active": False})
    assert disabled.status_code == 200 and disabled.json()["active"] is False

    # Refresh: a disabled person's token, a made-up one and a malformed one get the same answer.
    answers = [_refresh(base, candidate) for candidate in (token, "made-up", secrets.token_urlsafe(32))]
    assert {(a.status_code, a.json()["detail"]) for a in answers} == {(401, ENDED)}
    # Sign-in: a disabled account, an unknown one and a wrong password look the same.
    tries = [
        httpx.post(f"{base}/api/auth/login", json={"username": u, "password": p})
        for u, p in (
            (username, PASSWORD),
            (f"nobody-{secrets.token_hex(3)}", PASSWORD),
            (username, "wrong-one"),
        )
    ]
    assert {(t.status_code, t.json()["detail"]) for t in tries} == {(401, "invalid username or password")}

    enabled = admin.http.patch(f"/api/people/{person_id}", json={"active": True})
    assert enabled.status_code == 200
    assert _refresh(base, token).status_code == 401  # disabling ended that sign-in for good
    assert _refresh(base, str(login(base, username, PASSWORD)["refresh_token"])).status_code == 200
    own = admin.http.patch(f"/api/people/{admin.id}", json={"active": False})
    assert own.status_code == 422 and "own account" in own.json()["detail"]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_refresh_token_expires_with_its_sign_in(backend: str, tmp_path: Path) -> None:
    clock = ManualClock(datetime(2026, 3, 2, 8, 0, tzinfo=UTC))
    with database_for(backend, tmp_path) as database_url:
        async with in_process(database_url, tmp_path, clock) as zhihui:
            await zhihui.person("shift", Role.DUTY_OFFICER)
            async with zhihui.http() as http:
                signed_in = await http.post(
                    "/api/auth/login", json={"username": "shift", "password": "correct horse battery"}
                )
                assert signed_in.status_code == 200, signed_in.text
                token = signed_in.json()["refresh_token"]
                await zhihui.advance(11 * 3600)
                renewed = await http.post("/api/auth/refresh", json={"refresh_token": token})
                assert renewed.status_code == 200
                assert renewed.json()["refresh_expires_in"] == 3600  # rotation does not extend it
                token = renewed.json()["refresh_token"]
                await zhihui.advance(3600)
                expired = await http.post("/api/auth/refresh", json={"refresh_token": token})
                assert expired.status_code == 401 and expired.json()["detail"] == ENDED
