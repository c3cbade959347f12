"""R8: the relay flags a bodycam whose picture is frozen, black or covered, and a stalled one,
from keyframes it decodes at most once a second."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import numpy as np
import pytest

from field_client.dispatch import DispatchClient
from field_client.sources import StillTrack, TestPatternTrack
from field_client.whip import WhipPublisher
from media_relay.analysis.health import HealthFlag, HealthRules, picture_facts
from tests.support import LOOPBACK, ZhihuiProcess


def test_rules_tell_black_covered_and_normal_pictures_apart() -> None:
    rules = HealthRules()
    rng = np.random.default_rng(1)
    black = np.full((360, 640), 3, dtype=np.uint8)
    covered = np.full((360, 640), 140, dtype=np.uint8) + rng.integers(0, 3, (360, 640), dtype=np.uint8)
    scene = rng.integers(0, 255, (360, 640), dtype=np.uint8)
    assert rules.picture_flags(picture_facts(black)) == {HealthFlag.BLACK}
    assert rules.picture_flags(picture_facts(covered)) == {HealthFlag.COVERED}
    assert rules.picture_flags(picture_facts(scene)) == set()
    assert rules.same_picture(picture_facts(scene), picture_facts(scene.copy()))
    assert not rules.same_picture(picture_facts(scene), picture_facts(np.roll(scene, 40, axis=1)))


async def _health_while_publishing(
    zhihui: ZhihuiProcess,
    track: TestPatternTrack | StillTrack,
    until: Callable[[list[str]], bool],
    seconds: float,
) -> list[list[str]]:
    client = DispatchClient(zhihui.base_url)
    await client.login("officer2", zhihui.credentials["officer2"])
    grant = await client.publish_grant("bodycam")
    publisher = WhipPublisher(grant.whip_url, grant.grant, host_addresses=[LOOPBACK])
    seen: list[list[str]] = []
    try:
        await publisher.start(track, None)
        async with httpx.AsyncClient(base_url=zhihui.base_url) as http:
            for _ in range(int(seconds * 4)):
                await asyncio.sleep(0.25)
                streams = (await http.get("/relay/stats")).json()["streams"]
                health = next((s["health"] for s in streams if s["stream_id"] == grant.stream_id), None)
                if health is not None:
                    seen.append(health)
                    if until(health):
                        break
    finally:
        await publisher.stop()
        await client.close()
    return seen


@pytest.mark.parametrize(
    ("make", "flag"),
    [(StillTrack.black, HealthFlag.BLACK), (StillTrack.frozen, HealthFlag.FROZEN)],
)
async def test_a_black_or_frozen_bodycam_is_flagged(
    zhihui: ZhihuiProcess, make: Callable[[], StillTrack], flag: HealthFlag
) -> None:
    seen = await _health_while_publishing(zhihui, make(), lambda health: flag.value in health, seconds=15)
    assert seen and flag.value in seen[-1], seen


async def test_a_moving_picture_stays_healthy(zhihui: ZhihuiProcess) -> None:
    seen = await _health_while_publishing(zhihui, TestPatternTrack(), lambda health: False, seconds=6)
    assert len(seen) >= 20 and all(health == [] for health in seen), seen
