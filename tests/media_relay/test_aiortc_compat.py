"""The one module that touches aiortc internals must fail loudly on an aiortc it was not written for."""

from __future__ import annotations

import aiortc
import pytest
from aiortc import RTCPeerConnection

from media_relay import aiortc_compat


def test_installed_aiortc_matches_the_pin() -> None:
    aiortc_compat.check_versions()


def test_a_different_aiortc_version_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aiortc, "__version__", "1.17.0")
    with pytest.raises(aiortc_compat.IncompatibleAiortc, match=r"1\.16\.0"):
        aiortc_compat.check_versions()


async def test_receiver_still_has_the_decoder_queue_the_tap_replaces() -> None:
    pc = RTCPeerConnection()
    transceiver = pc.addTransceiver("video", direction="recvonly")
    for name in ("decoder_queue", "active_ssrc", "rtx_ssrc", "jitter_buffer", "nack_generator"):
        assert hasattr(transceiver.receiver, f"_RTCRtpReceiver__{name}"), name
    connection = transceiver.receiver.transport.transport.iceGatherer._connection
    for name in ("_local_candidates_start", "_local_candidates_end", "_components", "_protocols"):
        assert hasattr(connection, name), name
    assert hasattr(transceiver.sender.transport, "_send_rtp")
    seen = []
    aiortc_compat.tap_receiver(transceiver.receiver, lambda codec, frame: seen.append(frame))
    transceiver.receiver._RTCRtpReceiver__decoder_queue.put(("codec", "frame"))  # type: ignore[attr-defined]
    assert seen == ["frame"]
    await pc.close()


async def test_host_addresses_are_restricted_per_connection_only() -> None:
    restricted, default = RTCPeerConnection(), RTCPeerConnection()
    for pc in (restricted, default):
        pc.addTransceiver("video", direction="sendonly")
    aiortc_compat.restrict_host_addresses(restricted, ["127.0.0.1"])
    await restricted.setLocalDescription(await restricted.createOffer())
    await default.setLocalDescription(await default.createOffer())
    candidates = [
        line for line in restricted.localDescription.sdp.splitlines() if line.startswith("a=candidate")
    ]
    assert candidates and all(" 127.0.0.1 " in line for line in candidates)
    assert not any(" 127.0.0.1 " in line for line in default.localDescription.sdp.splitlines())
    await restricted.close()
    await default.close()
