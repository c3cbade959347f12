"""A frame's packets leave in one system call where the kernel allows it, and arrive as the same
datagrams in the same order whichever way they left (R1: forwarding to viewers)."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest

from media_relay.forwarding import udp_batch
from media_relay.forwarding.udp_batch import UdpBatchSender

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="UDP segmentation offload is Linux's")


class Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.datagrams: list[bytes] = []
        self.arrived = asyncio.Event()
        self.expected = 0

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.datagrams.append(data)
        if len(self.datagrams) >= self.expected:
            self.arrived.set()


async def send_and_collect(
    datagrams: list[bytes], *, backlog: bool = False
) -> tuple[list[bytes], UdpBatchSender]:
    loop = asyncio.get_running_loop()
    receiving, collector = await loop.create_datagram_endpoint(Collector, local_addr=("127.0.0.1", 0))
    sending, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    collector.expected = len(datagrams)
    sender = UdpBatchSender(sending)
    if backlog:  # as if the socket had been full: the transport holds a queue
        sending.get_write_buffer_size = lambda: 1  # type: ignore[method-assign]
    try:
        sender.send(datagrams, receiving.get_extra_info("sockname"))
        await asyncio.wait_for(collector.arrived.wait(), 5)
        await asyncio.sleep(0.05)  # nothing more comes
        return collector.datagrams, sender
    finally:
        receiving.close()
        sending.close()


def frame(sizes: list[int]) -> list[bytes]:
    return [bytes([n % 256]) * size for n, size in enumerate(sizes)]


async def test_a_frames_packets_leave_in_one_call_and_arrive_one_by_one() -> None:
    packets = frame([1100] * 9 + [517])
    received, sender = await send_and_collect(packets)
    assert received == packets
    assert sender.calls == 1


async def test_runs_of_other_sizes_keep_their_order() -> None:
    packets = frame([1200, 1200, 800, 1200, 1200, 1200, 300, 300, 90, 1000])
    received, sender = await send_and_collect(packets)
    assert received == packets
    assert sender.calls == 3  # 1200 1200 800 | 1200 1200 1200 300 | 300 90: a longer one starts a run


async def test_a_queue_in_the_transport_is_joined_not_overtaken() -> None:
    packets = frame([1100] * 5)
    received, sender = await send_and_collect(packets, backlog=True)
    assert received == packets
    assert sender.calls == 0


async def test_when_the_kernel_refuses_the_datagrams_go_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(udp_batch, "MAX_SEGMENTS", 1000)  # the kernel takes 64 (128 since 6.x) per call
    packets = frame([50] * 150)
    received, sender = await send_and_collect(packets)
    assert received == packets
    assert sender.calls == 0
    assert not sender._segmenting  # and it does not try again on that socket


def test_on_uvloop_as_the_relay_runs() -> None:
    import uvloop

    packets = frame([1100] * 9 + [517])
    received, sender = uvloop.run(send_and_collect(packets))
    assert received == packets
    assert sender.calls == 1
