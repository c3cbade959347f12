"""R9: the field client reports positions, fixed or on a simulated walk, over its websocket or,
without one, by REST; the command room finds them among the latest positions."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from field_client.dispatch import Unreachable
from field_client.position import METRES_PER_DEGREE, Fix, Walk, parse_position
from tests.conftest import ApiClient
from tests.media import signed_in
from tests.support import ZhihuiProcess


def test_a_position_is_parsed_or_refused_with_a_clear_message() -> None:
    assert parse_position(" 31.2304, 121.4737 ") == Fix(31.2304, 121.4737)
    for text, words in (("31.2", "latitude,longitude"), ("a,b", "two numbers"), ("91,0", "within ±90")):
        with pytest.raises(ValueError, match=words):
            parse_position(text)


def test_a_walk_moves_at_its_speed_and_turns_a_little_at_each_step() -> None:
    walk = Walk(Fix(31.2304, 121.4737), speed_mps=1.5, turn_deg=20, seed=7)
    before = walk.fix
    for _ in range(50):
        fix = walk.step(2.0)
        north = (fix.latitude - before.latitude) * METRES_PER_DEGREE
        east = (fix.longitude - before.longitude) * METRES_PER_DEGREE * math.cos(math.radians(fix.latitude))
        assert math.hypot(north, east) == pytest.approx(3.0, rel=1e-3)
        assert before.heading_deg is not None and fix.heading_deg is not None
        turn = (fix.heading_deg - before.heading_deg + 180) % 360 - 180
        assert abs(turn) <= 20 and fix.speed_mps == 1.5
        before = fix
    report = before.report()
    assert set(report) == {"latitude", "longitude", "accuracy_m", "at", "heading_deg", "speed_mps"}


async def test_positions_go_over_the_websocket_or_else_by_rest(
    zhihui: ZhihuiProcess, commander: ApiClient
) -> None:
    async with signed_in(zhihui, "officer2") as (client, me):
        await client.send_position(Fix(22.5431, 114.0579, accuracy_m=6))  # no websocket yet: REST
        assert await _latest(commander, me["id"], 22.5431)

        ready = asyncio.Event()

        async def on_message(message: dict[str, Any]) -> None:
            if message["type"] == "ready":
                ready.set()

        listener = asyncio.create_task(client.listen(on_message))
        try:
            await asyncio.wait_for(ready.wait(), 5)
            walk = Walk(Fix(22.6, 114.1), seed=1)
            await client.send_position(walk.step(5))
            assert await _latest(commander, me["id"], round(walk.fix.latitude, 7))
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener


async def test_positions_taken_without_a_network_are_sent_when_it_is_back(
    zhihui: ZhihuiProcess, commander: ApiClient
) -> None:
    """R9: the officer's client keeps working through network loss: fixes taken while the server
    cannot be reached are kept with their own times and arrive, in one batch, with the next one."""

    def no_network(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("network is unreachable", request=request)

    async with signed_in(zhihui, "officer2") as (client, me):
        online = client._http
        client._http = httpx.AsyncClient(base_url=zhihui.base_url, transport=httpx.MockTransport(no_network))
        began = datetime.now(UTC)
        for n in range(3):
            with pytest.raises(Unreachable):
                await client.send_position(Fix(45.0 + n * 0.001, 126.0))
        assert len(client.unsent_positions) == 3
        await client._http.aclose()
        client._http = online  # the network is back
        await client.send_position(Fix(45.003, 126.0))
        assert client.unsent_positions == []
        track: list[dict[str, Any]] = []
        deadline = time.monotonic() + 3
        while len(track) < 4 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            track = commander.http.get(
                f"/api/people/{me['id']}/track", params={"since": began.isoformat()}
            ).json()["items"]
        assert [p["latitude"] for p in track if p["longitude"] == 126.0] == [45.0, 45.001, 45.002, 45.003]


async def _latest(commander: ApiClient, person_id: int, latitude: float) -> bool:
    """Whether the person's newest stored position has this latitude (stored within a second)."""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        items = commander.http.get("/api/positions/latest").json()["items"]
        if any(i["person_id"] == person_id and i["latitude"] == latitude for i in items):
            return True
        await asyncio.sleep(0.1)
    return False
