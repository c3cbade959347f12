"""WHIP (RFC 9725) and WHEP details beyond POST, and the relay's statistics (R1, R3, R8)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from field_client.dispatch import DispatchClient
from field_client.sources import TestPatternTrack
from field_client.whip import WhipError, WhipPublisher
from media_relay.signaling.routes import ice_server_links
from tests.conftest import ApiClient
from tests.media import publishing, watching
from tests.support import LOOPBACK, ZhihuiProcess, running_zhihui
from zhihui.settings import IceServer

TRICKLE = "application/trickle-ice-sdpfrag"


def test_options_tells_what_whip_and_whep_accept(zhihui: ZhihuiProcess) -> None:
    for path in ("/relay/whip", "/relay/whep/any-stream"):
        response = httpx.options(zhihui.base_url + path)
        assert response.status_code == 204, path
        assert response.headers["accept-post"] == "application/sdp"


def test_cors_preflight_allows_a_browser_on_another_origin(zhihui: ZhihuiProcess) -> None:
    response = httpx.options(
        zhihui.base_url + "/relay/whip",
        headers={
            "Origin": "https://wall.court.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code == 200
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "authorization" in response.headers["access-control-allow-headers"].lower()
    actual = httpx.post(zhihui.base_url + "/relay/whip", headers={"Origin": "https://wall.court.example"})
    assert "location" in actual.headers["access-control-expose-headers"].lower()


def test_ice_servers_are_announced_as_link_headers() -> None:
    links = ice_server_links(
        [
            IceServer(urls=["stun:stun.court.example:3478"]),
            IceServer(
                urls=["turn:turn.court.example?transport=udp"], username="u1", credential=SecretStr("pw")
            ),
        ]
    )
    assert links == [
        '<stun:stun.court.example:3478>; rel="ice-server"',
        '<turn:turn.court.example?transport=udp>; rel="ice-server"; username="u1"; credential="pw";'
        ' credential-type="password"',
    ]


async def test_patch_trickles_candidates_and_refuses_an_ice_restart(zhihui: ZhihuiProcess) -> None:
    client = DispatchClient(zhihui.base_url)
    await client.login("officer2", zhihui.credentials["officer2"])
    grant = await client.publish_grant("phone")
    publisher = WhipPublisher(grant.whip_url, grant.grant, host_addresses=[LOOPBACK])
    await publisher.start(TestPatternTrack(width=160, height=120), None)
    assert publisher.session_url is not None
    session_url = publisher.session_url
    auth = {"Authorization": f"Bearer {grant.grant}"}
    try:
        candidate = "a=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\n"
        ok = httpx.patch(publisher.session_url, content=candidate, headers={**auth, "Content-Type": TRICKLE})
        assert ok.status_code == 204, ok.text

        restart = "a=ice-ufrag:newu\r\na=ice-pwd:newpasswordnewpassword\r\n"
        refused = httpx.patch(
            publisher.session_url, content=restart, headers={**auth, "Content-Type": TRICKLE}
        )
        assert refused.status_code == 501
        assert "new session with the same grant" in refused.json()["detail"]

        wrong_type = httpx.patch(
            publisher.session_url, content=candidate, headers={**auth, "Content-Type": "text/plain"}
        )
        assert wrong_type.status_code == 415

        no_grant = httpx.patch(publisher.session_url, content=candidate, headers={"Content-Type": TRICKLE})
        assert no_grant.status_code == 401

        other = await client.publish_grant("bodycam")
        foreign = httpx.patch(
            publisher.session_url,
            content=candidate,
            headers={"Authorization": f"Bearer {other.grant}", "Content-Type": TRICKLE},
        )
        assert foreign.status_code == 403
    finally:
        await publisher.stop()
        await client.close()
    gone = httpx.patch(session_url, content="", headers={**auth, "Content-Type": TRICKLE})
    assert gone.status_code == 404


async def test_stats_report_rates_viewers_and_rtt_as_json_and_prometheus(
    zhihui: ZhihuiProcess, commander: ApiClient
) -> None:
    async with (
        publishing(zhihui, "officer1") as live,
        watching(zhihui, commander, live.stream_id),
    ):
        await asyncio.sleep(4.5)  # three whole seconds of rates, and a receiver report or two
        stats = httpx.get(zhihui.base_url + "/relay/stats").json()
        mine = next(s for s in stats["streams"] if s["stream_id"] == live.stream_id)
        assert mine["viewer_count"] == 1
        assert 12 <= mine["video"]["fps"] <= 17, mine["video"]
        assert mine["video"]["bitrate_bps"] > 20_000
        assert 45 <= mine["audio"]["fps"] <= 55, mine["audio"]  # 20 ms Opus frames
        assert mine["keyframe_requests"] >= 1 and mine["plis_sent"] >= 1  # the viewer's join
        (seen,) = mine["viewers"]
        assert seen["frames_sent"] > 40 and seen["frames_dropped"] >= 0
        assert seen["rtt_ms"] is not None and 0 <= seen["rtt_ms"] < 200
        lag = stats["event_loop_lag"]
        assert lag["counts"][-1] >= 100 and lag["counts"] == sorted(lag["counts"])  # cumulative
        assert lag["recent_p50_ms"] is not None and 0 <= lag["recent_p50_ms"] <= lag["recent_p99_ms"]

        metrics = httpx.get(zhihui.base_url + "/relay/metrics").text
        fps_lines = [
            line
            for line in metrics.splitlines()
            if line.startswith("zhihui_relay_fps{")
            and f'stream="{live.stream_id}"' in line
            and 'kind="video"' in line
        ]
        assert len(fps_lines) == 1 and 12 <= float(fps_lines[0].rsplit(" ", 1)[1]) <= 17, fps_lines
        assert (
            f'zhihui_relay_viewers{{officer="{mine["officer_id"]}",stream="{live.stream_id}"}} 1.0'
            in metrics
        )
        assert "zhihui_relay_plis_total" in metrics
        assert 'zhihui_relay_event_loop_lag_seconds_bucket{le="0.02"}' in metrics


def _free_udp_pair() -> int:
    """A UDP port p on loopback with p + 1 free too."""
    import socket

    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first:
            first.bind((LOOPBACK, 0))
            port = first.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as second:
                try:
                    second.bind((LOOPBACK, port + 1))
                except OSError:
                    continue
        return int(port)
    raise RuntimeError("no two free UDP ports in a row")


async def test_media_ports_come_from_the_configured_range_and_a_full_range_is_a_clear_503(
    tmp_path: Path,
) -> None:
    """R18: a firewall opens a known UDP range; the relay stays inside it and says when it is full."""
    first = _free_udp_pair()
    with running_zhihui(tmp_path, "--demo", ZHIHUI_RELAY__UDP_PORT_RANGE=f"[{first}, {first + 1}]") as zhihui:
        commander = ApiClient(zhihui.base_url, "commander", zhihui.credentials["commander"])
        async with publishing(zhihui, "officer1") as live:
            ports = _candidate_ports(live.publisher.pc.remoteDescription.sdp)
            assert ports and all(first <= port <= first + 1 for port in ports), ports
            async with watching(zhihui, commander, live.stream_id) as viewer:
                await asyncio.wait_for(viewer.first_video_frame.wait(), 10)
                assert all(first <= p <= first + 1 for p in _candidate_ports(viewer.pc.remoteDescription.sdp))
                client = DispatchClient(zhihui.base_url)
                await client.login("officer2", zhihui.credentials["officer2"])
                grant = await client.publish_grant("phone")
                await client.close()
                full = WhipPublisher(grant.whip_url, grant.grant, host_addresses=[LOOPBACK])
                with pytest.raises(WhipError, match=r"503.*no free UDP port"):
                    await full.start(TestPatternTrack(width=160, height=120))
                await full.stop()
            # The viewer's port is free again.
            async with watching(zhihui, commander, live.stream_id) as again:
                await asyncio.wait_for(again.first_video_frame.wait(), 10)


def _candidate_ports(sdp: str) -> list[int]:
    return [int(line.split()[5]) for line in sdp.splitlines() if line.startswith("a=candidate:")]
