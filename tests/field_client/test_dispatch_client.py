"""R4, R9: the field client's directive channel survives drops and expired sign-ins, and gets
every directive it missed exactly once."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from field_client.dispatch import DispatchClient
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


async def test_an_expired_sign_in_is_renewed_on_reconnect(zhihui: ZhihuiProcess) -> None:
    client = DispatchClient(zhihui.base_url)
    await client.login("officer1", zhihui.credentials["officer1"])
    client.token = "expired-or-forged"
    ready = asyncio.Event()

    async def on_message(message: dict[str, Any]) -> None:
        if message["type"] == "ready":
            ready.set()

    listener = asyncio.create_task(client.listen(on_message))
    try:
        await asyncio.wait_for(ready.wait(), 10)
        assert client.token != "expired-or-forged"
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        await client.close()


async def _until(predicate: Any, timeout: float = 5) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "not in time"
        await asyncio.sleep(0.05)
