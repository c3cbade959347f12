"""R4: a commander's directive reaches the officer over the websocket, is acknowledged, and the
command room sees each state; everything is in SQL. Real websockets against ``zhihui up``."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from typing import Any

import pytest
import websockets

from tests.conftest import ApiClient
from tests.support import ZhihuiProcess


class Socket:
    def __init__(self, ws: Any) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, zhihui: ZhihuiProcess, token: str, **kwargs: Any) -> Socket:
        ws = await websockets.connect(zhihui.base_url.replace("http", "ws") + "/ws", **kwargs)
        await ws.send(json.dumps({"type": "auth", "token": token}))
        socket = cls(ws)
        ready = await socket.next("ready")
        assert ready["user"]["id"]
        return socket

    async def next(
        self,
        kind: str,
        timeout: float = 5,
        until: Callable[[dict[str, Any]], bool] | None = None,
        **match: Any,
    ) -> dict[str, Any]:
        """The next message of this type (matching fields, and ``until``), skipping others."""

        async def find() -> dict[str, Any]:
            while True:
                message = json.loads(await self.ws.recv())
                if (
                    message["type"] == kind
                    and all(_get(message, k) == v for k, v in match.items())
                    and (until is None or until(message))
                ):
                    return message

        return await asyncio.wait_for(find(), timeout)

    async def close(self) -> None:
        await self.ws.close()


def _get(message: dict[str, Any], dotted: str) -> Any:
    value: Any = message
    for part in dotted.split("__"):
        value = value[part]
    return value


def _target_state(directive: dict[str, Any], person_id: int) -> str:
    return next(t["state"] for t in directive["targets"] if t["person"]["id"] == person_id)


def _sql(zhihui: ZhihuiProcess, query: str, *args: object) -> list[tuple[Any, ...]]:
    with sqlite3.connect(zhihui.database) as db:
        return db.execute(query, args).fetchall()


async def test_directive_round_trip_over_websockets(
    zhihui: ZhihuiProcess, commander: ApiClient, officer1: ApiClient
) -> None:
    wall = await Socket.open(zhihui, commander.token)
    field = await Socket.open(zhihui, officer1.token)
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
        issued = await wall.next("directive_update", directive__id=directive_id)
        assert _target_state(issued["directive"], officer1.id) in ("sent", "delivered")
        delivered = await wall.next(
            "directive_update",
            directive__id=directive_id,
            until=lambda m: _target_state(m["directive"], officer1.id) != "sent",
        )
        assert _target_state(delivered["directive"], officer1.id) == "delivered"

        await field.ws.send(json.dumps({"type": "ack", "directive_id": directive_id}))
        acked = await wall.next("directive_update", directive__id=directive_id)
        assert _target_state(acked["directive"], officer1.id) == "acknowledged"

        # Idempotent: a second ack changes nothing and pushes nothing.
        again = officer1.http.post(f"/api/directives/{directive_id}/ack")
        assert again.status_code == 200
        assert _target_state(again.json(), officer1.id) == "acknowledged"
    finally:
        await wall.close()
        await field.close()

    rows = _sql(
        zhihui,
        "SELECT d.text, t.state, t.delivered_at IS NOT NULL, t.acknowledged_at IS NOT NULL "
        "FROM directive d JOIN directive_target t ON t.directive_id = d.id WHERE d.id = ?",
        directive_id,
    )
    assert rows == [("Hold the gate, wait for the bailiffs", "ACKNOWLEDGED", 1, 1)]


async def test_an_offline_officer_gets_pending_directives_on_connect(
    zhihui: ZhihuiProcess, commander: ApiClient, officer2: ApiClient
) -> None:
    ids = [
        commander.http.post(
            "/api/directives", json={"target_ids": [officer2.id], "text": f"Report in #{n}"}
        ).json()["id"]
        for n in range(2)
    ]
    field = await Socket.open(zhihui, officer2.token)
    try:
        got = [(await field.next("directive"))["directive"]["id"] for _ in ids]
        assert got == ids
        for directive_id in ids:
            await field.ws.send(json.dumps({"type": "ack", "directive_id": directive_id}))
    finally:
        await field.close()
    await asyncio.sleep(0.3)
    listed = {d["id"]: d for d in officer2.http.get("/api/directives").json()}
    assert all(_target_state(listed[i], officer2.id) == "acknowledged" for i in ids)


def test_directive_to_an_unknown_officer_is_404(commander: ApiClient) -> None:
    response = commander.http.post("/api/directives", json={"target_ids": [9999], "text": "Go"})
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
    commander: ApiClient, body: dict[str, Any], words: str
) -> None:
    response = commander.http.post("/api/directives", json=body)
    assert response.status_code == 422
    assert words in response.json()["detail"]


def test_officers_may_not_issue_directives(officer1: ApiClient, officer2: ApiClient) -> None:
    response = officer1.http.post("/api/directives", json={"target_ids": [officer2.id], "text": "Go"})
    assert response.status_code == 403


def test_acknowledging_someone_elses_directive_is_404(
    commander: ApiClient, officer1: ApiClient, officer2: ApiClient
) -> None:
    directive_id = commander.http.post(
        "/api/directives", json={"target_ids": [officer1.id], "text": "Go"}
    ).json()["id"]
    assert officer2.http.post(f"/api/directives/{directive_id}/ack").status_code == 404


async def test_websocket_rejects_a_bad_token(zhihui: ZhihuiProcess) -> None:
    async with websockets.connect(zhihui.base_url.replace("http", "ws") + "/ws") as ws:
        await ws.send(json.dumps({"type": "auth", "token": "nonsense"}))
        message = json.loads(await ws.recv())
        assert message == {"type": "error", "message": "the access token is not valid: sign in again"}
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd.code == 1008


async def test_websocket_requires_auth_first(zhihui: ZhihuiProcess) -> None:
    async with websockets.connect(zhihui.base_url.replace("http", "ws") + "/ws") as ws:
        await ws.send(json.dumps({"type": "ack", "directive_id": 1}))
        message = json.loads(await ws.recv())
        assert message["type"] == "error" and "first message" in message["message"]


async def test_websocket_rejects_a_foreign_origin(zhihui: ZhihuiProcess) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(
            zhihui.base_url.replace("http", "ws") + "/ws",
            origin="http://evil.example",  # type: ignore[arg-type]
        )
    assert refused.value.response.status_code == 403


async def test_websocket_answers_malformed_and_oversized_messages(
    zhihui: ZhihuiProcess, officer1: ApiClient
) -> None:
    field = await Socket.open(zhihui, officer1.token, max_size=None)
    try:
        await field.ws.send("{not json")
        assert "malformed" in (await field.next("error"))["message"]
        await field.ws.send(json.dumps({"type": "ack", "directive_id": "seven"}))
        assert "malformed" in (await field.next("error"))["message"]
        await field.ws.send(json.dumps({"type": "launch"}))
        assert "malformed" in (await field.next("error"))["message"]
        await field.ws.send(json.dumps({"type": "ack", "directive_id": 1, "pad": "x" * 70000}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await field.next("error")
        assert closed.value.rcvd.code == 1009
    finally:
        await field.close()
