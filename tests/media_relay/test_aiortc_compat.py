"""The one module that touches aiortc internals must fail loudly on an aiortc it was not written for."""

from __future__ import annotations

import os
import types

import aiortc
import pylibsrtp
import pytest
from aiortc import RTCPeerConnection

from media_relay import aiortc_compat


def test_installed_aiortc_matches_the_pin() -> None:
    aiortc_compat.check_versions()


def test_a_different_aiortc_version_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aiortc, "__version__", "1.17.0")
    with pytest.raises(aiortc_compat.IncompatibleAiortc, match=r"1\.16\.0"):
        aiortc_compat.check_versions()


def test_a_libsrtp_whose_calls_differ_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The C data path calls srtp_protect and srtp_unprotect as libsrtp 2 declares them."""
    monkeypatch.setattr(aiortc_compat, "_LIBSRTP2_CALL", "srtp_err_status_t(*)(void *, size_t)")
    with pytest.raises(aiortc_compat.IncompatibleAiortc, match="srtp_protect"):
        aiortc_compat.check_versions()


async def test_receiver_still_has_the_decoder_queue_the_tap_replaces() -> None:
    pc = RTCPeerConnection()
    transceiver = pc.addTransceiver("video", direction="recvonly")
    for name in (
        "decoder_queue",
        "active_ssrc",
        "rtx_ssrc",
        "jitter_buffer",
        "nack_generator",
        "remote_bitrate_estimator",
    ):
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


def test_the_relays_rate_counter_gives_aiortcs_results() -> None:
    """The constant-cost stand-in for the bandwidth estimator's counter (R1: REMB to publishers)."""
    from aiortc.rate import RateCounter

    ours, theirs = aiortc_compat._RateCounter(1000, 8000), RateCounter(1000, 8000)
    now = 10_000
    for step, size in enumerate([1200, 900, 0, 1400] * 300):
        now += (step * 7) % 23  # bursts and pauses, some longer than the window
        if step % 250 == 249:
            now += 1500
        for counter in (ours, theirs):
            counter.add(size, now)
        assert ours.rate(now) == theirs.rate(now), step
        assert ours.rate(now + 400) == theirs.rate(now + 400), step
    ours.reset()
    theirs.reset()
    assert ours.rate(now) is None and theirs.rate(now) is None


def test_remb_is_sent_at_most_every_200_ms() -> None:
    class Overusing:
        incoming_bitrate = None
        estimator = types.SimpleNamespace(ts_delta_hist=[])

        def add(self, **kwargs: object) -> tuple[int, list[int]]:
            return 1_000_000, [1]

    throttled = aiortc_compat._ThrottledRemb(Overusing())
    sent = [t for t in range(0, 1000, 5) if throttled.add(arrival_time_ms=t, abs_send_time=0) is not None]
    assert sent == [0, 200, 400, 600, 800]


async def test_sender_still_has_what_the_packet_output_writes_to() -> None:
    pc = RTCPeerConnection()
    transceiver = pc.addTransceiver(aiortc_compat.SilentTrack("video"), direction="sendonly")
    sender = transceiver.sender
    for name in ("ntp_timestamp", "rtp_timestamp", "octet_count", "packet_count"):
        assert isinstance(getattr(sender, f"_RTCRtpSender__{name}"), int), name
    assert isinstance(sender._ssrc, int) and isinstance(sender._rtx_ssrc, int)
    assert hasattr(sender.transport, "_tx_srtp") and hasattr(sender.transport, "_state")
    assert isinstance(sender.transport.transport._connection._nominated, dict)
    await pc.setLocalDescription(await pc.createOffer())
    assert transceiver._codecs and isinstance(transceiver._headerExtensions, list)
    mid_id = next(e.id for e in transceiver._headerExtensions if e.uri == aiortc_compat.MID_EXTENSION)
    # RFC 8285: 0xBEDE, one word of elements: (id, length - 1), the mid "0", padding.
    assert aiortc_compat._mid_extension(transceiver) == bytes([0xBE, 0xDE, 0, 1, mid_id << 4, 0x30, 0, 0])
    with pytest.raises(ValueError):  # a transceiver that has no codec settled cannot send
        aiortc_compat.SenderOutput(
            pc.addTransceiver("audio"), on_nack=lambda seqs: None, on_keyframe_request=lambda: None
        )
    await pc.close()


async def test_eager_run_finishes_at_once_or_hands_a_real_wait_to_a_task() -> None:
    """The direct receive path runs aiortc's packet handlers as eager tasks: a handler that never
    waits is done before ``_run_eagerly`` returns; one that does wait still finishes."""
    import asyncio

    done: list[str] = []

    async def quick() -> None:
        done.append("quick")

    async def slow() -> None:
        await asyncio.sleep(0)
        future = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.01, future.set_result, "x")
        done.append(await future)

    aiortc_compat._run_eagerly(quick())
    assert done == ["quick"]
    aiortc_compat._run_eagerly(slow())
    assert done == ["quick"]
    await asyncio.sleep(0.05)
    assert done == ["quick", "x"]


def test_arrival_and_send_times_are_on_aiortcs_clocks() -> None:
    from aiortc.clock import current_ms, current_ntp_time

    before = current_ms()
    ours = aiortc_compat.ntp_ms()
    assert before - 1 <= ours <= current_ms() + 1
    before = current_ntp_time()
    ours = aiortc_compat.ntp_now()
    after = current_ntp_time()
    one_ms = (1 << 32) // 1000
    assert before - one_ms <= ours <= after + one_ms


async def test_a_publishers_media_takes_the_lean_receive_path() -> None:
    """Over a real connection on loopback: every media packet but the first of its source is
    handled by the relay's own path, and the frames come out whole (R1)."""
    import asyncio

    from aiortc import VideoStreamTrack

    from media_relay.forwarding import _datapath
    from media_relay.forwarding.frames import EncodedFrame, MediaKind
    from media_relay.sessions.publisher import negotiated_codecs

    publisher, relay = RTCPeerConnection(), RTCPeerConnection()
    for pc in (publisher, relay):
        aiortc_compat.restrict_host_addresses(pc, ["127.0.0.1"])
    publisher.addTransceiver(VideoStreamTrack(), direction="sendonly")
    await publisher.setLocalDescription(await publisher.createOffer())
    await relay.setRemoteDescription(publisher.localDescription)
    await relay.setLocalDescription(await relay.createAnswer())
    frames: list[EncodedFrame] = []
    receiver = relay.getTransceivers()[0].receiver
    codecs = negotiated_codecs(relay.localDescription.sdp)[MediaKind.VIDEO]
    track = _datapath.Track(True, {pt: (c.name, c.clock_rate) for pt, c in codecs.items()}, nack=True)
    aiortc_compat.install_receive_path(receiver, track, deliver=frames.append, request_keyframe=lambda: None)
    aiortc_compat.receive_directly(relay)
    await publisher.setRemoteDescription(relay.localDescription)
    try:
        for _ in range(200):
            if len(frames) >= 10:
                break
            await asyncio.sleep(0.05)
        statistics = receiver._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined]
        assert list(statistics) == [track.ssrc]  # the track's own, read as aiortc's
        received = statistics[track.ssrc].packets_received
        assert len(frames) >= 10 and frames[0].keyframe
        assert received >= 10 and track.packets >= received - 1
        assert statistics[track.ssrc].packets_lost == 0 and statistics[track.ssrc].fraction_lost == 0
        stats = await receiver.getStats()
        inbound = next(s for s in stats.values() if s.type == "inbound-rtp")
        assert inbound.packetsReceived == received
        assert [f.timestamp for f in frames] == sorted(f.timestamp for f in frames)
    finally:
        await publisher.close()
        await relay.close()


def test_the_shortest_frame_period_is_aiortcs() -> None:
    """The estimator's history of frame periods gives aiortc's answers (R1: REMB to publishers)."""
    import random

    from aiortc.rate import OveruseEstimator

    theirs, ours = OveruseEstimator(), OveruseEstimator()
    aiortc_compat._ThrottledRemb(types.SimpleNamespace(estimator=ours, incoming_bitrate=None))
    rng = random.Random(7)
    for _ in range(500):
        period = rng.choice([33.3, 66.7, 66.6, 100.0, rng.uniform(1, 200)])
        assert ours.update_min_frame_period(period) == theirs.update_min_frame_period(period)
    assert ours.ts_delta_hist == theirs.ts_delta_hist


def _srtp_sessions(profile: int, *directions: int) -> list[pylibsrtp.Session]:
    """Sessions on one key, one per direction given (SSRC_ANY_OUTBOUND, SSRC_ANY_INBOUND)."""
    key = os.urandom(28 if profile == pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM else 30)
    return [
        pylibsrtp.Session(policy=pylibsrtp.Policy(key=key, ssrc_type=direction, srtp_profile=profile))
        for direction in directions
    ]


@pytest.mark.parametrize(
    "profile",
    [pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM],
)
def test_lean_srtp_gives_pylibsrtps_bytes_and_refuses_what_pylibsrtp_refuses(profile: int) -> None:
    outbound, inbound = pylibsrtp.Policy.SSRC_ANY_OUTBOUND, pylibsrtp.Policy.SSRC_ANY_INBOUND
    plain_out, lean_session_out, plain_in, lean_session_in = _srtp_sessions(
        profile, outbound, outbound, inbound, inbound
    )
    lean_out, lean_in = aiortc_compat.LeanSrtp(lean_session_out), aiortc_compat.LeanSrtp(lean_session_in)

    def rtp(sequence: int, size: int) -> bytes:
        return (
            bytes([0x80, 96])
            + sequence.to_bytes(2, "big")
            + (sequence * 3000).to_bytes(4, "big")
            + (b"\x12\x34\x56\x78" + os.urandom(size))
        )

    for sequence, size in enumerate([0, 1, 100, 1188, 1300] * 8, start=1):
        packet = rtp(sequence, size)
        protected = lean_out.protect(packet)
        assert protected == plain_out.protect(packet)  # twin sessions: the same bytes
        assert lean_in.unprotect(protected) == packet == plain_in.unprotect(protected)

    # A tampered packet, a replayed one and datagrams too long to be SRTP raise pylibsrtp's error.
    packet = rtp(500, 100)
    protected = lean_out.protect(packet)
    with pytest.raises(pylibsrtp.Error):
        lean_in.unprotect(protected[:-1] + bytes([protected[-1] ^ 1]))
    assert lean_in.unprotect(protected) == packet
    with pytest.raises(pylibsrtp.Error):
        lean_in.unprotect(protected)  # replayed
    with pytest.raises(pylibsrtp.Error):
        lean_in.unprotect(b"\x80" * 4000)
    with pytest.raises(pylibsrtp.Error):
        lean_out.protect(rtp(501, aiortc_compat.LeanSrtp.BUFFER_BYTES))
