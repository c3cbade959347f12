"""Publishing and watching against a running Zhihui, as the field client and the wall do."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from field_client.dispatch import DispatchClient, PublishGrant
from field_client.sources import TestPatternTrack, ToneTrack
from field_client.whep import WhepViewer
from field_client.whip import WhipPublisher
from tests.conftest import ApiClient
from tests.support import LOOPBACK, ZhihuiProcess


@dataclass
class Live:
    """An officer publishing a moving test pattern (and a tone) over WHIP."""

    client: DispatchClient
    grant: PublishGrant
    publisher: WhipPublisher
    video: TestPatternTrack

    @property
    def stream_id(self) -> str:
        return self.grant.stream_id


@asynccontextmanager
async def signed_in(
    zhihui: ZhihuiProcess, username: str
) -> AsyncIterator[tuple[DispatchClient, dict[str, Any]]]:
    """The field client signed in as ``username`` (with the account's own person record), closed
    at the end."""
    client = DispatchClient(zhihui.base_url)
    try:
        me = await client.login(username, zhihui.credentials[username])
        yield client, me
    finally:
        await client.close()


@asynccontextmanager
async def publishing(
    zhihui: ZhihuiProcess,
    username: str,
    *,
    device: str = "bodycam",
    width: int = 320,
    height: int = 240,
    fps: float = 15,
    audio: bool = True,
) -> AsyncIterator[Live]:
    async with signed_in(zhihui, username) as (client, _):
        grant = await client.publish_grant(device)
        video = TestPatternTrack(width=width, height=height, fps=fps)
        publisher = WhipPublisher(grant.whip_url, grant.grant, host_addresses=[LOOPBACK])
        try:
            await publisher.start(video, ToneTrack() if audio else None)
            yield Live(client, grant, publisher, video)
        finally:
            await publisher.stop()


@asynccontextmanager
async def watching(zhihui: ZhihuiProcess, commander: ApiClient, stream_id: str) -> AsyncIterator[WhepViewer]:
    """A WHEP viewer with a view grant from the commander; it decodes what it gets."""
    view = commander.http.post("/api/grants/view", json={"stream_ids": [stream_id]})
    view.raise_for_status()
    body = view.json()
    viewer = WhepViewer(
        zhihui.base_url + body["streams"][0]["whep_url"], body["grant"], host_addresses=[LOOPBACK]
    )
    try:
        await viewer.start()
        yield viewer
    finally:
        await viewer.stop()
