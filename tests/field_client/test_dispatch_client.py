"""R4, R9: the field client's directive channel survives drops and expired sign-ins, and gets
every directive it missed exactly once."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from field_client.dispatch import DispatchClient, SignedOut
from tests.conftest import ApiClient
from tests.support import ZhihuiProcess


async def test_a_dropped_channel_resumes_where_it_was_and_misses_nothing(
    zhihui: ZhihuiProcess, commander: ApiClient, officer2: ApiClient
) -> None:
    client = DispatchClient(zhihui.base_url)
    await client.login("officer2", zhihui.credentials["officer2"])
    received: list[int] = []
    ready = asyncio.Event()

    async def on_message(message: dict[str, Any]) -> None:
        if message["type"] == "ready":
            ready.set()
        if message["type"] == "directive":
            received.append(message["directive"]["id"])

    def send(text: str) -> int:
        response = commander.http.post("/api/directives", json={"target_ids": [officer2.id], "text": text})
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    listener = asyncio.create_task(client.listen(on_message))
    try:
        await asyncio.wait_for(ready.wait(), 5)
        first = send("Report your position")
        await _until(lambda: first in received)
        for directive_id in received:
            await client.acknowledge(directive_id)

        ready.clear()
        assert client._ws is not None
        await client._ws.close()  # the network drops
        missed = [send(f"Missed while offline #{n}") for n in range(3)]
        await asyncio.wait_for(ready.wait(), 10)  # back
        await _until(lambda: all(m in received for m in missed))
        await asyncio.sleep(0.5)
        assert received.count(first) == 1
        assert [received.count(m) for m in missed] == [1, 1, 1]
        assert received[-3:] == missed
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        await client.close()


async def test_a_refused_access_token_is_renewed_with_the_refresh_token(zhihui: ZhihuiProcess) -> None:
    """R17: the websocket refuses a bad access token; the client renews it with its refresh token
    (rotating it) instead of keeping the password to sign in again."""
    client = DispatchClient(zhihui.base_url)
    await client.login("officer1", zhihui.credentials["officer1"])
    assert not [v for v in vars(client).values() if v == zhihui.credentials["officer1"]]
    first_refresh = client.refresh_token
    client.token = "expired-or-forged"
    ready = asyncio.Event()

    async def on_message(message: dict[str, Any]) -> None:
        if message["type"] == "ready":
            ready.set()

    listener = asyncio.create_task(client.listen(on_message))
    try:
        await asyncio.wait_for(ready.wait(), 10)
        assert client.token != "expired-or-forged"
        assert client.refresh_token not in (None, first_refresh)
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        await client.close()


async def test_rest_calls_renew_an_expiring_token_and_stop_when_the_sign_in_ends(
    zhihui: ZhihuiProcess, commander: ApiClient, officer2: ApiClient
) -> None:
    """R4, R17: an access token about to expire is renewed before the request; the officer reports
    a directive done; after logging out, requests raise SignedOut."""
    client = DispatchClient(zhihui.base_url)
    await client.login("officer2", zhihui.credentials["officer2"])
    directive_id = commander.http.post(
        "/api/directives", json={"target_ids": [officer2.id], "text": "Photograph the notice"}
    ).json()["id"]
    await client.acknowledge(directive_id)  # no websocket: by POST
    old_token, old_refresh = client.token, client.refresh_token
    client.token_expires_at = 0.0  # as if 15 minutes had passed
    done = await client.done(directive_id)
    assert done["targets"][0]["state"] == "done"
    assert client.token != old_token and client.refresh_token != old_refresh

    await client.logout()
    client.refresh_token = old_refresh  # a spent token is no way back in either
    client.token_expires_at = 0.0  # (access tokens given out stay good until they expire)
    with pytest.raises(SignedOut):
        await client.done(directive_id)
    await client.close()


async def _until(predicate: Any, timeout: float = 5) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "not in time"
        await asyncio.sleep(0.05)
