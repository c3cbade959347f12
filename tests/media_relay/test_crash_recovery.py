"""R2: a relay killed while four streams record loses at most its last second, and seals the rest.

Real parts only: ``zhihui up --demo`` killed with SIGKILL and started again on the same folder,
aiortc publishers on loopback, PyAV decoding the archive, ``zhihui verify`` in a subprocess.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import av
import httpx

from field_client.dispatch import DispatchClient
from field_client.sources import TestPatternTrack, ToneTrack
from field_client.whip import WhipPublisher
from tests.support import LOOPBACK, ZhihuiProcess, login, running_zhihui, start_zhihui, zhihui_env

FPS = 15
PUBLISHERS = [("officer1", "bodycam"), ("officer1", "phone"), ("officer2", "bodycam"), ("officer2", "phone")]
SEGMENT_SECONDS = "2"  # several sealed segments before the kill, and one left open by it


class Publishing:
    """One officer's stream: the dispatch client, the WHIP publisher and its test pattern."""

    def __init__(
        self,
        client: DispatchClient,
        publisher: WhipPublisher,
        video: TestPatternTrack,
        grant: str,
        whip_url: str,
        stream_id: str,
    ) -> None:
        self.client = client
        self.publisher = publisher
        self.video = video
        self.grant = grant
        self.whip_url = whip_url
        self.stream_id = stream_id

    async def stop(self) -> None:
        await self.publisher.stop()
        await self.client.close()


async def _publish(zhihui: ZhihuiProcess, officer: str, device: str) -> Publishing:
    client = DispatchClient(zhihui.base_url)
    await client.login(officer, zhihui.credentials[officer])
    grant = await client.publish_grant(device)
    video = TestPatternTrack(width=320, height=240, fps=FPS, label=device)
    publisher = WhipPublisher(grant.whip_url, grant.grant, host_addresses=[LOOPBACK])
    await publisher.start(video, ToneTrack())
    return Publishing(client, publisher, video, grant.grant, grant.whip_url, grant.stream_id)


def _folder(recordings: Path, stream_id: str) -> Path:
    folders = list(recordings.glob(f"*/*/*/{stream_id}"))
    assert len(folders) == 1, folders
    return folders[0]


def _entries(folder: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_bytes().splitlines()]


def _video_times(path: Path) -> list[float]:
    """Decode every video frame of a segment; their presentation times, in seconds."""
    with av.open(str(path)) as container:
        return [float(frame.time) for frame in container.decode(video=0) if frame.time is not None]


@dataclass
class Kill:
    """What the publishers had sent when the relay was killed, and a second before."""

    streams: list[Publishing]
    sent_before: dict[str, int]
    """Video frames each publisher had sent one second before the kill."""
    sent_at_kill: dict[str, int]


async def _publish_then_kill(zhihui: ZhihuiProcess) -> Kill:
    streams: list[Publishing] = []
    try:
        for officer, device in PUBLISHERS:
            streams.append(await _publish(zhihui, officer, device))
        await asyncio.sleep(6)
        sent_before = {s.stream_id: s.video.frames_sent for s in streams}
        await asyncio.sleep(1)
        sent_at_kill = {s.stream_id: s.video.frames_sent for s in streams}
        zhihui.process.kill()
    finally:
        zhihui.stop()
        for stream in streams:
            await stream.stop()  # the relay is gone: its DELETE fails, quietly
    return Kill(streams, sent_before, sent_at_kill)


async def _carry_on(zhihui: ZhihuiProcess, stream: Publishing) -> None:
    """Publish again with the stream's grant (a new port, the same signing key) for 2 s."""
    whip_url = zhihui.base_url + httpx.URL(stream.whip_url).path
    publisher = WhipPublisher(whip_url, stream.grant, host_addresses=[LOOPBACK])
    await publisher.start(TestPatternTrack(width=320, height=240, fps=FPS), ToneTrack())
    await asyncio.sleep(2)
    await publisher.stop()
    await asyncio.sleep(0.5)


def test_relay_killed_while_four_streams_record_loses_at_most_its_last_second_and_seals_all(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site"
    env = {"ZHIHUI_RECORDING__SEGMENT_SECONDS": SEGMENT_SECONDS}
    kill = asyncio.run(_publish_then_kill(start_zhihui(site, "--demo", **env)))

    # Started again on the same folder, the relay seals what the kill left open, and a stream
    # that carries on continues its manifest after a gap.
    with running_zhihui(site, "--demo", **env) as second:
        assert "left open by a crash" in second.log()
        # The wall no longer shows the streams the crash cut: they ended with the old relay.
        token = login(second.base_url, "commander", second.credentials["commander"])["access_token"]
        listed = httpx.get(f"{second.base_url}/api/streams", headers={"Authorization": f"Bearer {token}"})
        assert listed.status_code == 200 and listed.json() == []
        carried = kill.streams[0]
        asyncio.run(_carry_on(second, carried))

    kept = {}
    for stream in kill.streams:
        folder = _folder(second.recordings, stream.stream_id)
        entries = _entries(folder)
        segments = [e for e in entries if e["type"] == "segment"]
        first_run = segments[: next(i for i, e in enumerate(segments) if e.get("recovered")) + 1]
        assert [bool(e.get("recovered")) for e in first_run] == [False] * (len(first_run) - 1) + [True]
        assert len(first_run) >= 2, entries  # sealed at a keyframe after 2 s, then the one left open
        times: list[float] = []
        empty = set()
        for entry in segments:
            if entry.get("readable") is False:
                # Killed between sealing one segment and writing the next one's first cluster: a
                # header alone, no frame lost, and listed as such rather than hidden.
                assert entry["frames"] == {"audio": 0, "video": 0} and entry["bytes"] < 4096, entry
                empty.add(entry["file"])
                continue
            decoded = _video_times(folder / str(entry["file"]))
            assert len(decoded) == entry["frames"]["video"], entry  # type: ignore[index]
            if entry in first_run:
                times += decoded
        for leftover in folder.glob("*.mkv"):  # originals kept beside a remuxed copy decode too
            if leftover.name not in empty:
                _video_times(leftover)
        assert len(times) == len(set(times)), "a frame recorded twice"
        # Frame i of a publisher is at first + i / FPS: count those sent before the last second.
        start = min(times)
        sent = kill.sent_before[stream.stream_id]
        before = {index for t in times if (index := round((t - start) * FPS)) < sent}
        kept[stream.stream_id] = (len(before), sent, len(times), kill.sent_at_kill[stream.stream_id])
        if stream is carried:
            tail = entries[entries.index(first_run[-1]) + 1 :]
            assert [e["type"] for e in tail][:2] == ["gap", "segment"], tail
            assert tail[0]["reason"] == "relay restart"

    for stream_id, (recorded, sent, _, _) in kept.items():
        assert recorded >= 0.99 * sent, (stream_id, kept)
    print("video frames kept/sent up to 1 s before the kill, kept/sent in all:", kept)

    verify = subprocess.run(
        [sys.executable, "-m", "zhihui.cli", "verify", "--all"],
        cwd=site,
        env=zhihui_env(site, COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "all intact" in verify.stdout
