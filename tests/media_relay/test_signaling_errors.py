"""Bad input at the relay's edges gets a clear 4xx with a message, never a stack trace (R17)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from aiortc import RTCPeerConnection

from tests.conftest import ApiClient
from tests.support import ZhihuiProcess
from zhihui.grants import GrantSigner, load_or_create_private_key


async def _offer() -> str:
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="sendonly")
    pc.addTransceiver("audio", direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


def _post(
    url: str, body: str | bytes, grant: str | None, content_type: str = "application/sdp"
) -> httpx.Response:
    headers = {"Content-Type": content_type}
    if grant is not None:
        headers["Authorization"] = f"Bearer {grant}"
    return httpx.post(url, content=body, headers=headers, timeout=15)


def _assert_clear(response: httpx.Response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert words in detail, detail
    assert "Traceback" not in response.text


@pytest.fixture
def publish_grant(officer1: ApiClient) -> dict[str, str]:
    return officer1.http.post("/api/grants/publish", json={"device": "bodycam"}).json()  # type: ignore[no-any-return]


async def test_whip_without_a_grant_is_401(zhihui: ZhihuiProcess) -> None:
    response = _post(f"{zhihui.base_url}/relay/whip", await _offer(), None)
    _assert_clear(response, 401, "grant is required")
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_whip_with_an_expired_grant_is_401(zhihui: ZhihuiProcess) -> None:
    signer = GrantSigner(load_or_create_private_key(zhihui.workdir / "var" / "grant_ed25519.pem"))
    token, _ = signer.publish(
        person_id="3", name="x", stream_id="s", minutes=1, now=datetime.now(UTC) - timedelta(minutes=5)
    )
    _assert_clear(_post(f"{zhihui.base_url}/relay/whip", await _offer(), token), 401, "expired")


async def test_whip_with_a_forged_grant_is_401(zhihui: ZhihuiProcess) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    token, _ = GrantSigner(Ed25519PrivateKey.generate()).publish(
        person_id="3", name="x", stream_id="s", minutes=5
    )
    _assert_clear(_post(f"{zhihui.base_url}/relay/whip", await _offer(), token), 401, "not valid")


async def test_whip_with_a_view_grant_is_403(
    zhihui: ZhihuiProcess, commander: ApiClient, publish_grant: dict[str, str]
) -> None:
    view = commander.http.post("/api/grants/view", json={"stream_ids": [publish_grant["stream_id"]]}).json()
    _assert_clear(_post(f"{zhihui.base_url}/relay/whip", await _offer(), view["grant"]), 403, "grant")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("hello", "must start with 'v=0'"),
        ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", "no audio or video"),
        (b"\xff\xfe\x00", "not UTF-8"),
    ],
)
async def test_whip_with_a_malformed_offer_is_400(
    zhihui: ZhihuiProcess, publish_grant: dict[str, str], body: str | bytes, words: str
) -> None:
    _assert_clear(_post(f"{zhihui.base_url}/relay/whip", body, publish_grant["grant"]), 400, words)


async def test_whip_offer_without_fingerprint_is_400(
    zhihui: ZhihuiProcess, publish_grant: dict[str, str]
) -> None:
    offer = "".join(
        line + "\r\n" for line in (await _offer()).splitlines() if not line.startswith("a=fingerprint")
    )
    _assert_clear(_post(f"{zhihui.base_url}/relay/whip", offer, publish_grant["grant"]), 400, "fingerprint")


async def test_whip_offer_over_the_size_limit_is_413(
    zhihui: ZhihuiProcess, publish_grant: dict[str, str]
) -> None:
    body = (await _offer()) + "a=x-padding:" + "x" * (1024 * 1024) + "\r\n"
    _assert_clear(_post(f"{zhihui.base_url}/relay/whip", body, publish_grant["grant"]), 413, "larger than")


async def test_whip_offer_of_the_wrong_type_is_415(
    zhihui: ZhihuiProcess, publish_grant: dict[str, str]
) -> None:
    response = _post(
        f"{zhihui.base_url}/relay/whip", await _offer(), publish_grant["grant"], "application/json"
    )
    _assert_clear(response, 415, "application/sdp")


async def test_whep_for_a_stream_outside_the_grant_is_403(
    zhihui: ZhihuiProcess, commander: ApiClient, publish_grant: dict[str, str], officer1: ApiClient
) -> None:
    other = officer1.http.post("/api/grants/publish", json={"device": "phone"}).json()
    view = commander.http.post("/api/grants/view", json={"stream_ids": [other["stream_id"]]}).json()
    url = f"{zhihui.base_url}/relay/whep/{publish_grant['stream_id']}"
    _assert_clear(_post(url, await _offer(), view["grant"]), 403, "does not cover")


async def test_whep_for_a_stream_that_is_not_live_is_404(
    zhihui: ZhihuiProcess, commander: ApiClient, publish_grant: dict[str, str]
) -> None:
    view = commander.http.post("/api/grants/view", json={"stream_ids": [publish_grant["stream_id"]]}).json()
    url = f"{zhihui.base_url}/relay/whep/{publish_grant['stream_id']}"
    _assert_clear(_post(url, await _offer(), view["grant"]), 404, "not live")


def test_publish_grant_is_only_for_field_officers(commander: ApiClient) -> None:
    response = commander.http.post("/api/grants/publish", json={"device": "bodycam"})
    assert response.status_code == 403
    assert "may not" in response.json()["detail"]


def test_view_grant_for_an_unknown_stream_is_404(commander: ApiClient) -> None:
    response = commander.http.post("/api/grants/view", json={"stream_ids": ["nobody-bodycam-00000000"]})
    assert response.status_code == 404
    assert "unknown stream" in response.json()["detail"]


def test_officers_may_not_watch_the_wall(officer1: ApiClient) -> None:
    assert officer1.http.get("/api/streams").status_code == 403
