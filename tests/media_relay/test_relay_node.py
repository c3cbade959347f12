"""R18 (with R1, R2): the relay run as a node of its own (``zhihui relay``), apart from the dispatch
server (``zhihui up`` with ``relay_node.in_process = false``), reporting its events over HTTP.

Real parts only: two ``zhihui`` processes on loopback, aiortc peers, the dispatch server's REST API.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from field_client.whep import WhepViewer
from media_relay.recording.manifest import sha256_file
from media_relay.reporter import SECRET_HEADER
from tests.conftest import ApiClient
from tests.media import publishing
from tests.support import (
    LOOPBACK,
    RelayNodeProcess,
    ZhihuiProcess,
    free_port,
    start_relay_node,
    start_zhihui,
    zhihui_env,
)

SECRET = secrets.token_urlsafe(24)
NODE = "relay-a"


@dataclass
class Nodes:
    """A dispatch server and one relay node, each a process of its own, in folders of their own."""

    dispatch: ZhihuiProcess
    relay_dir: Path
    relay_port: int
    relay: RelayNodeProcess | None = None
    starts: int = 0

    @property
    def relay_url(self) -> str:
        return f"http://{LOOPBACK}:{self.relay_port}"

    def start_relay(self) -> None:
        self.relay = start_relay_node(
            self.relay_dir,
            self.relay_port,
            dispatch_url=self.dispatch.base_url,
            secret=SECRET,
            name=NODE,
            log_name=f"relay-{self.starts}.log",
            ZHIHUI_RELAY_NODE__RETRY_MAX_SECONDS="0.5",
        )
        self.starts += 1

    def stop_relay(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.relay is not None:
            self.relay.stop(sig)
        self.relay = None


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    workdir = tmp_path_factory.mktemp("nodes")
    relay_port = free_port()
    dispatch = start_zhihui(
        workdir / "dispatch",
        "--demo",
        ZHIHUI_RELAY_NODE__IN_PROCESS="false",
        ZHIHUI_RELAY_NODE__SECRET=SECRET,
        ZHIHUI_RELAY__PUBLIC_URL=f"http://{LOOPBACK}:{relay_port}",
    )
    world = Nodes(dispatch=dispatch, relay_dir=workdir / "relay", relay_port=relay_port)
    try:
        world.start_relay()
        yield world
    finally:
        world.stop_relay()
        dispatch.stop()


@pytest.fixture(scope="module")
def commander(nodes: Nodes) -> ApiClient:
    return ApiClient(nodes.dispatch.base_url, "commander", nodes.dispatch.credentials["commander"])


async def _wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


def _live(commander: ApiClient) -> set[str]:
    return {s["stream_id"] for s in commander.http.get("/api/streams").json()}


def _report(event: dict[str, Any]) -> dict[str, Any]:
    return {"node": "relay-test", "event": event}


async def test_a_stream_published_through_a_separate_relay_is_live_viewed_and_catalogued(
    nodes: Nodes, commander: ApiClient
) -> None:
    """R18, R1, R2: the grant sends the officer to the relay node; its events reach the dispatch
    server over HTTP: live on the wall, down when it stops, its segments in the catalog."""
    assert not nodes.dispatch.log().count("Traceback")
    async with publishing(nodes.dispatch, "officer1") as live:
        stream_id = live.stream_id
        assert live.grant.whip_url == f"{nodes.relay_url}/whip"
        await _wait_for(lambda: stream_id in _live(commander))
        (listed,) = [s for s in commander.http.get("/api/streams").json() if s["stream_id"] == stream_id]
        assert listed["whep_url"] == f"{nodes.relay_url}/whep/{stream_id}"
        assert listed["video_codec"] == "vp8"

        view = commander.http.post("/api/grants/view", json={"stream_ids": [stream_id]})
        assert view.status_code == 200, view.text
        whep_url = view.json()["streams"][0]["whep_url"]
        assert whep_url == f"{nodes.relay_url}/whep/{stream_id}"
        viewer = WhepViewer(whep_url, view.json()["grant"], host_addresses=[LOOPBACK])
        try:
            await viewer.start()
            await asyncio.wait_for(viewer.first_video_frame.wait(), 10)
            await asyncio.sleep(1.5)
            assert viewer.frames["video"] >= 10, viewer.frames
        finally:
            await viewer.stop()
        # The relay serves it; the dispatch server has no relay of its own.
        assert stream_id in {s["stream_id"] for s in httpx.get(f"{nodes.relay_url}/streams").json()}
        assert httpx.get(f"{nodes.dispatch.base_url}/relay/streams").status_code == 404

    await _wait_for(lambda: stream_id not in _live(commander))

    def catalogued() -> list[dict[str, Any]]:
        found = commander.http.get("/api/recordings", params={"stream_id": stream_id})
        assert found.status_code == 200, found.text
        return [segment for recording in found.json() for segment in recording["segments"]]

    await _wait_for(lambda: bool(catalogued()))
    segment = catalogued()[0]
    assert segment["video_frames"] > 0
    # Recorded on the relay node, in its own recordings root: the catalogued segment is that file.
    (folder,) = (nodes.relay_dir / "recordings").glob(f"*/*/*/{stream_id}")
    assert segment["sha256"] in {sha256_file(path) for path in folder.glob("*.mkv")}
    assert not list(nodes.dispatch.recordings.glob(f"*/*/*/{stream_id}"))

    # The node counts what it reported: everything taken, nothing dropped.
    reports = httpx.get(f"{nodes.relay_url}/reports").json()
    assert reports["node"] == NODE and reports["dropped"] == 0 and reports["delivered"] >= 3, reports


def test_nodes_without_their_settings_refuse_to_start(tmp_path: Path) -> None:
    """R18: a relay node that cannot report (no dispatch server, no secret, a short secret), or a
    dispatch server without its relay that does not know where the relay is or how relays prove
    themselves, says what is missing and exits with code 2, instead of running deaf."""

    def zhihui(command: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "zhihui.cli", command, "--port", str(free_port())],
            cwd=tmp_path,
            env=zhihui_env(tmp_path, **env),
            capture_output=True,
            text=True,
            timeout=60,
        )

    no_dispatch = zhihui("relay")
    assert no_dispatch.returncode == 2 and "relay_node.dispatch_url" in no_dispatch.stdout
    no_secret = zhihui("relay", ZHIHUI_RELAY_NODE__DISPATCH_URL="http://127.0.0.1:9")
    assert no_secret.returncode == 2 and "relay_node.secret" in no_secret.stdout
    short = zhihui(
        "relay", ZHIHUI_RELAY_NODE__DISPATCH_URL="http://127.0.0.1:9", ZHIHUI_RELAY_NODE__SECRET="short"
    )
    assert short.returncode == 2 and "at least 16 characters" in short.stdout

    nowhere = zhihui("up", ZHIHUI_RELAY_NODE__IN_PROCESS="false", ZHIHUI_RELAY_NODE__SECRET=SECRET)
    assert nowhere.returncode == 2 and "relay.public_url" in nowhere.stdout
    no_secret = zhihui(
        "up", ZHIHUI_RELAY_NODE__IN_PROCESS="false", ZHIHUI_RELAY__PUBLIC_URL="http://127.0.0.1:9"
    )
    assert no_secret.returncode == 2 and "relay_node.secret" in no_secret.stdout


def test_a_report_without_the_relay_secret_gets_401_and_changes_nothing(
    nodes: Nodes, commander: ApiClient
) -> None:
    """R18, R17: only a relay with the shared secret may report; the right one is taken."""
    officer = ApiClient(nodes.dispatch.base_url, "officer2", nodes.dispatch.credentials["officer2"])
    stream_id = officer.http.post("/api/grants/publish", json={"device": "phone"}).json()["stream_id"]
    up = {
        "type": "stream_up",
        "stream_id": stream_id,
        "officer_id": str(officer.id),
        "started_at": datetime.now(UTC).isoformat(),
        "video_codec": "vp8",
        "audio_codec": None,
    }
    url = f"{nodes.dispatch.base_url}/api/relay/events"
    for headers in ({}, {SECRET_HEADER: "not-the-secret-at-all"}, {SECRET_HEADER: SECRET[:-1]}):
        refused = httpx.post(url, json=_report(up), headers=headers)
        assert refused.status_code == 401, refused.text
        assert "secret" in refused.json()["detail"]
    # A person's token is no relay's secret, whatever the role.
    assert commander.http.post("/api/relay/events", json=_report(up)).status_code == 401
    assert stream_id not in _live(commander)

    # Bad input from a relay: a clear 422.
    malformed = httpx.post(url, json=_report({"type": "stream_up"}), headers={SECRET_HEADER: SECRET})
    assert malformed.status_code == 422
    assert stream_id not in _live(commander)

    taken = httpx.post(url, json=_report(up), headers={SECRET_HEADER: SECRET})
    assert taken.status_code == 204, taken.text
    assert stream_id in _live(commander)
    down = {
        "type": "stream_down",
        "stream_id": stream_id,
        "officer_id": str(officer.id),
        "ended_at": datetime.now(UTC).isoformat(),
        "reason": "publisher left",
    }
    assert httpx.post(url, json=_report(down), headers={SECRET_HEADER: SECRET}).status_code == 204
    assert stream_id not in _live(commander)


async def test_a_relay_killed_and_restarted_ends_the_streams_it_left_live(
    nodes: Nodes, commander: ApiClient
) -> None:
    """R18, R1: a relay node that died (SIGKILL, nothing reported) reports on its next start that it
    has no streams; the dispatch server ends what it held live on that node, and only that node."""
    url = f"{nodes.dispatch.base_url}/api/relay/events"
    other = ApiClient(nodes.dispatch.base_url, "officer2", nodes.dispatch.credentials["officer2"])
    elsewhere = other.http.post("/api/grants/publish", json={"device": "phone"}).json()["stream_id"]
    up_elsewhere = {
        "type": "stream_up",
        "stream_id": elsewhere,
        "officer_id": str(other.id),
        "started_at": datetime.now(UTC).isoformat(),
        "video_codec": "vp8",
        "audio_codec": None,
    }
    # A stream live on another node, which keeps running.
    assert httpx.post(url, json=_report(up_elsewhere), headers={SECRET_HEADER: SECRET}).status_code == 204

    async with publishing(nodes.dispatch, "officer1") as live:
        stream_id = live.stream_id
        await _wait_for(lambda: stream_id in _live(commander))
        await asyncio.sleep(1.5)  # a segment well under way when the relay dies
        nodes.stop_relay(signal.SIGKILL)
        await asyncio.sleep(0.5)
        assert stream_id in _live(commander)  # nobody told the dispatch server yet

        nodes.start_relay()
        await _wait_for(lambda: stream_id not in _live(commander))

        # The segment the crash left open, sealed by the relay on start, is catalogued (R2).
        def recovered() -> list[dict[str, Any]]:
            found = commander.http.get("/api/recordings", params={"stream_id": stream_id}).json()
            return [s for recording in found for s in recording["segments"] if s["recovered"]]

        await _wait_for(lambda: bool(recovered()))
        assert recovered()[0]["video_frames"] > 0
    assert elsewhere in _live(commander)  # another node's stream is not this node's to end


async def test_events_wait_for_a_dispatch_server_that_is_down_and_reach_it_when_it_is_back(
    tmp_path: Path,
) -> None:
    """R18, R1, R2: while the dispatch server is down the relay goes on (the officer publishes with
    the grant already given, the recording runs) and keeps its reports; when the dispatch server is
    back they reach it, in order: the stream ends on the wall and its segments are catalogued."""
    port, relay_port = free_port(), free_port()
    env = {
        "ZHIHUI_RELAY_NODE__IN_PROCESS": "false",
        "ZHIHUI_RELAY_NODE__SECRET": SECRET,
        "ZHIHUI_RELAY__PUBLIC_URL": f"http://{LOOPBACK}:{relay_port}",
    }
    dispatch = start_zhihui(tmp_path / "dispatch", "--demo", port=port, **env)
    relay = start_relay_node(
        tmp_path / "relay",
        relay_port,
        dispatch_url=dispatch.base_url,
        secret=SECRET,
        ZHIHUI_RELAY_NODE__RETRY_MAX_SECONDS="0.5",
    )
    try:
        commander = ApiClient(dispatch.base_url, "commander", dispatch.credentials["commander"])
        async with publishing(dispatch, "officer1") as live:
            stream_id = live.stream_id
            await _wait_for(lambda: stream_id in _live(commander))
            dispatch.stop()
            await asyncio.sleep(2)  # still publishing, to a relay whose dispatch server is away
        # The officer stopped: the relay's reports of it wait.
        reports = httpx.get(f"{relay.base_url}/reports").json()
        assert reports["pending"] >= 2 and reports["dropped"] == 0, reports

        dispatch = start_zhihui(tmp_path / "dispatch", port=port, **env)  # the same people and database
        await _wait_for(lambda: stream_id not in _live(commander))
        found = commander.http.get("/api/recordings", params={"stream_id": stream_id}).json()
        assert found and found[0]["segments"], found
        await _wait_for(lambda: httpx.get(f"{relay.base_url}/reports").json()["pending"] == 0)
        assert httpx.get(f"{relay.base_url}/reports").json()["dropped"] == 0
    finally:
        relay.stop()
        dispatch.stop()
