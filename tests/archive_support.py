"""Recordings for archive tests: a stream published twice with the same grant (segment, gap,
segment), waiting until the catalog has caught up with it, and waiting for an export or a
redaction to finish."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiortc import MediaStreamTrack

from field_client.dispatch import DispatchClient
from field_client.sources import TestPatternTrack, ToneTrack
from field_client.whip import WhipPublisher
from tests.conftest import ApiClient
from tests.support import LOOPBACK, ZhihuiProcess


async def record_with_gap(
    zhihui: ZhihuiProcess,
    username: str,
    device: str,
    seconds: float = 2.0,
    video: Callable[[], MediaStreamTrack] | None = None,
) -> str:
    """Publish a moving test pattern (or ``video()``) and a tone for ``seconds``, stop, publish
    again with the same grant: the recording has a segment, a 'publisher reconnected' gap and a
    segment. Its stream id."""
    client = DispatchClient(zhihui.base_url)
    await client.login(username, zhihui.credentials[username])
    grant = await client.publish_grant(device)
    try:
        for _ in range(2):
            publisher = WhipPublisher(grant.whip_url, grant.grant, host_addresses=[LOOPBACK])
            track = video() if video is not None else TestPatternTrack(width=320, height=240, fps=15)
            await publisher.start(track, ToneTrack())
            await asyncio.sleep(seconds)
            await publisher.stop()
            await asyncio.sleep(0.3)
    finally:
        await client.close()
    return grant.stream_id


def catalogued(client: ApiClient, stream_id: str, segments: int = 2, timeout: float = 10) -> dict[str, Any]:
    """The stream's recording once the catalog lists ``segments`` segments."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.http.get("/api/recordings", params={"stream_id": stream_id})
        assert response.status_code == 200, response.text
        found = response.json()
        if found and len(found[0]["segments"]) >= segments:
            return found[0]  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise AssertionError(f"the catalog did not list {segments} segment(s) of {stream_id}: {found}")
        time.sleep(0.2)


def finished_job(client: ApiClient, path: str, timeout: float, poll: float = 0.2) -> dict[str, Any]:
    """The export or redaction at ``path`` (``/api/exports/1``) once done or failed; its progress
    never went backwards on the way."""
    deadline = time.monotonic() + timeout
    seen: list[int] = []
    while True:
        job = client.http.get(path).json()
        seen.append(job["percent"])
        if job["state"] in ("done", "failed"):
            assert seen == sorted(seen), f"progress went backwards: {seen}"
            return job  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"{path} still {job['state']} at {seen[-1]}%"
        time.sleep(poll)
